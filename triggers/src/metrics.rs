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

/// A trigger's metric handles, made on first use. Building the label strings and looking
/// the series up in the recorder on every delivery cost several percent of dispatch; a
/// handle is an atomic add. Lives in the trigger's [`crate::TriggerStats`], whose trigger
/// (namespace and name) never changes.
#[derive(Default)]
pub struct TriggerMetrics {
    handles: OnceLock<Handles>,
}

impl std::fmt::Debug for TriggerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TriggerMetrics").finish_non_exhaustive()
    }
}

/// An attempt's destination and response code (`None`: no HTTP answer).
type AttemptLabels = (&'static str, Option<u16>);

struct Handles {
    delivered: Counter,
    retries: Counter,
    dead_lettered: Counter,
    parked: Counter,
    event_latency: Histogram,
    attempts: Mutex<HashMap<AttemptLabels, (Counter, Histogram)>>,
}

impl TriggerMetrics {
    fn handles(&self, plan: &TriggerPlan) -> &Handles {
        self.handles.get_or_init(|| {
            let labels = trigger_labels(plan);
            Handles {
                delivered: metrics::counter!(DELIVERED, &labels),
                retries: metrics::counter!(RETRIES, &labels),
                dead_lettered: metrics::counter!(DEAD_LETTERED, &labels),
                parked: metrics::counter!(PARKED, &labels),
                event_latency: metrics::histogram!(EVENT_LATENCY, &labels),
                attempts: Mutex::new(HashMap::new()),
            }
        })
    }
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
    let handles = stats.metrics.handles(plan);
    let (counter, histogram) = match handles.attempts.lock() {
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
    stats.metrics.handles(plan).retries.increment(1);
}

/// A delivered event, with its latency from ingress acceptance (`knativearrivaltime`).
pub fn delivered(plan: &TriggerPlan, stats: &TriggerStats, event: &CloudEvent) {
    let handles = stats.metrics.handles(plan);
    handles.delivered.increment(1);
    if let Some(age) = age(event) {
        handles.event_latency.record(age.as_secs_f64());
    }
}

pub fn dead_lettered(plan: &TriggerPlan, stats: &TriggerStats) {
    stats.metrics.handles(plan).dead_lettered.increment(1);
}

pub fn parked(plan: &TriggerPlan, stats: &TriggerStats) {
    stats.metrics.handles(plan).parked.increment(1);
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
