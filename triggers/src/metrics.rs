//! The metrics of delivery, by trigger. Names and labels are documented in README.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use herald_broker::CloudEvent;
use metrics::{Counter, Histogram};

use crate::attempt::Answer;
use crate::{TriggerPlan, TriggerStats};

pub const DISPATCH_ATTEMPTS: &str = "herald_dispatch_attempts_total";
pub const DISPATCH_LATENCY: &str = "herald_dispatch_latency_seconds";
pub const EVENT_LATENCY: &str = "herald_event_latency_seconds";
pub const RETRIES: &str = "herald_retries_total";
pub const DELIVERED: &str = "herald_events_delivered_total";
pub const DEAD_LETTERED: &str = "herald_events_dead_lettered_total";
pub const PARKED: &str = "herald_events_parked_total";
pub const LAG_EVENTS: &str = "herald_trigger_lag_events";
pub const LAG_SECONDS: &str = "herald_trigger_lag_seconds";

fn trigger_labels(plan: &TriggerPlan) -> [(&'static str, String); 2] {
    [
        ("namespace", plan.namespace.clone()),
        ("trigger", plan.name.clone()),
    ]
}

/// Most distinct (destination, response code) label pairs whose handles a trigger keeps;
/// past it (a subscriber answering hundreds of different codes) handles are looked up each time.
const MAX_ATTEMPT_HANDLES: usize = 64;

/// A trigger's metric handles, each made on its first use (a series appears only once it
/// counts something, as before). Building the label strings and looking the series up in
/// the recorder on every delivery cost several percent of dispatch; a handle is an atomic
/// add. Lives in the trigger's [`crate::TriggerStats`], whose trigger (namespace and name)
/// never changes.
#[derive(Default)]
pub struct TriggerMetrics {
    delivered: OnceLock<Counter>,
    retries: OnceLock<Counter>,
    dead_lettered: OnceLock<Counter>,
    parked: OnceLock<Counter>,
    event_latency: OnceLock<Histogram>,
    attempts: Mutex<HashMap<AttemptLabels, (Counter, Histogram)>>,
}

impl std::fmt::Debug for TriggerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TriggerMetrics").finish_non_exhaustive()
    }
}

/// An attempt's destination and response code (`None`: no HTTP answer).
type AttemptLabels = (&'static str, Option<u16>);

/// The trigger's counter `name`, registered the first time.
fn counter<'a>(cell: &'a OnceLock<Counter>, name: &'static str, plan: &TriggerPlan) -> &'a Counter {
    cell.get_or_init(|| metrics::counter!(name, &trigger_labels(plan)))
}

/// One attempt to the subscriber (`destination="subscriber"`) or the dead-letter sink.
pub fn attempt(
    plan: &TriggerPlan,
    stats: &TriggerStats,
    destination: &'static str,
    answer: &Answer,
    took: Duration,
) {
    let status = match answer {
        Answer::Http { status, .. } => Some(*status),
        Answer::Transport(_) => None,
    };
    let make = || {
        let code = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
        let [namespace, trigger] = trigger_labels(plan);
        let labels = [
            namespace,
            trigger,
            ("destination", destination.to_owned()),
            ("response_code", code),
        ];
        (
            metrics::counter!(DISPATCH_ATTEMPTS, &labels),
            metrics::histogram!(DISPATCH_LATENCY, &labels),
        )
    };
    let (counter, histogram) = match stats.metrics.attempts.lock() {
        Ok(mut attempts) => match attempts.get(&(destination, status)) {
            Some(pair) => pair.clone(),
            None if attempts.len() < MAX_ATTEMPT_HANDLES => {
                let pair = make();
                attempts.insert((destination, status), pair.clone());
                pair
            }
            None => make(),
        },
        Err(_) => make(),
    };
    counter.increment(1);
    histogram.record(took.as_secs_f64());
}

pub fn retry(plan: &TriggerPlan, stats: &TriggerStats) {
    counter(&stats.metrics.retries, RETRIES, plan).increment(1);
}

/// A delivered event, with its latency from ingress acceptance (`knativearrivaltime`).
pub fn delivered(plan: &TriggerPlan, stats: &TriggerStats, event: &CloudEvent) {
    counter(&stats.metrics.delivered, DELIVERED, plan).increment(1);
    if let Some(age) = age(event) {
        stats
            .metrics
            .event_latency
            .get_or_init(|| metrics::histogram!(EVENT_LATENCY, &trigger_labels(plan)))
            .record(age.as_secs_f64());
    }
}

pub fn dead_lettered(plan: &TriggerPlan, stats: &TriggerStats) {
    counter(&stats.metrics.dead_lettered, DEAD_LETTERED, plan).increment(1);
}

pub fn parked(plan: &TriggerPlan, stats: &TriggerStats) {
    counter(&stats.metrics.parked, PARKED, plan).increment(1);
}

/// Unfinished events of a trigger, and how long the oldest of them has waited.
pub fn lag(plan: &TriggerPlan, events: Option<u64>, oldest: Option<Duration>) {
    if let Some(events) = events {
        metrics::gauge!(LAG_EVENTS, &trigger_labels(plan)).set(events as f64);
    }
    metrics::gauge!(LAG_SECONDS, &trigger_labels(plan))
        .set(oldest.unwrap_or_default().as_secs_f64());
}

/// Time since the event was accepted at ingress.
pub fn age(event: &CloudEvent) -> Option<Duration> {
    let arrival = event.text(herald_broker::ingress::ARRIVAL_TIME_EXTENSION)?;
    let arrival = chrono::DateTime::parse_from_rfc3339(&arrival).ok()?;
    (chrono::Utc::now() - arrival.with_timezone(&chrono::Utc))
        .to_std()
        .ok()
}
