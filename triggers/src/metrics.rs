//! The metrics of delivery, by trigger. Names and labels are documented in README.

use std::time::Duration;

use herald_broker::CloudEvent;

use crate::attempt::Answer;
use crate::TriggerPlan;

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

/// One attempt to the subscriber (`destination="subscriber"`) or the dead-letter sink.
pub fn attempt(plan: &TriggerPlan, destination: &'static str, answer: &Answer, took: Duration) {
    let code = match answer {
        Answer::Http { status, .. } => status.to_string(),
        Answer::Transport(_) => "error".to_owned(),
    };
    let [namespace, trigger] = trigger_labels(plan);
    let labels = [
        namespace,
        trigger,
        ("destination", destination.to_owned()),
        ("response_code", code),
    ];
    metrics::counter!(DISPATCH_ATTEMPTS, &labels).increment(1);
    metrics::histogram!(DISPATCH_LATENCY, &labels).record(took.as_secs_f64());
}

pub fn retry(plan: &TriggerPlan) {
    metrics::counter!(RETRIES, &trigger_labels(plan)).increment(1);
}

/// A delivered event, with its latency from ingress acceptance (`knativearrivaltime`).
pub fn delivered(plan: &TriggerPlan, event: &CloudEvent) {
    metrics::counter!(DELIVERED, &trigger_labels(plan)).increment(1);
    if let Some(age) = age(event) {
        metrics::histogram!(EVENT_LATENCY, &trigger_labels(plan)).record(age.as_secs_f64());
    }
}

pub fn dead_lettered(plan: &TriggerPlan) {
    metrics::counter!(DEAD_LETTERED, &trigger_labels(plan)).increment(1);
}

pub fn parked(plan: &TriggerPlan) {
    metrics::counter!(PARKED, &trigger_labels(plan)).increment(1);
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
