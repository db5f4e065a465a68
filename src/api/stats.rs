//! Read endpoints for the console and the CLI: `/stats/v1/overview` (brokers and triggers with
//! their rates, lag, success ratio and last failures), `/stats/v1/history` (the last hour),
//! `/stats/v1/watch` (the overview again after each sample, as server-sent events) and
//! `.../triggers/{name}/stats` (one trigger with its history).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::history::{self, Key};
use super::ApiState;
use crate::control::ControlError;
use crate::kinds::{BROKER, TRIGGER};

fn key_of(object: &Value) -> Key {
    let meta = &object["metadata"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    std::sync::Arc::new((text(&meta["namespace"]), text(&meta["name"])))
}

/// Whether the object's `Ready` condition is `True`.
fn ready(object: &Value) -> bool {
    object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// A trigger's filter as one line: `type=a, source=b` for `filter.attributes`, the
/// Subscriptions API dialects as JSON, `(all events)` without a filter.
pub fn filter_text(spec: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(attributes) = spec["filter"]["attributes"].as_object() {
        parts.extend(
            attributes
                .iter()
                .map(|(name, value)| format!("{name}={}", value.as_str().unwrap_or_default())),
        );
    }
    if let Some(filters) = spec["filters"].as_array().filter(|f| !f.is_empty()) {
        parts.extend(filters.iter().map(Value::to_string));
    }
    if parts.is_empty() {
        "(all events)".into()
    } else {
        parts.join(", ")
    }
}

fn trigger_entry(object: &Value, point: Option<&history::TriggerPoint>) -> Value {
    let (namespace, name) = &*key_of(object);
    let status = &object["status"];
    let subscriber = status["subscriberUri"]
        .as_str()
        .or_else(|| object["spec"]["subscriber"]["uri"].as_str());
    json!({
        "namespace": namespace,
        "name": name,
        "broker": object["spec"]["broker"],
        "filter": filter_text(&object["spec"]),
        "subscriber": subscriber,
        "ready": ready(object),
        "deliveredPerSecond": point.map(|p| p.delivered_per_second),
        "successRatio": point.and_then(|p| p.success_ratio),
        "meanLatencySeconds": point.and_then(|p| p.mean_latency_seconds),
        "lagEvents": status["lagEvents"],
        "lagSeconds": status["lagSeconds"],
        "parkedEvents": status["parkedEvents"],
        "recentErrors": status.get("recentErrors").cloned().unwrap_or_else(|| json!([])),
    })
}

/// Brokers and triggers with what the console's tables show.
pub async fn overview_value(state: &ApiState) -> Value {
    let (brokers, triggers) = {
        let control = state.control.read().await;
        (
            control.list(&BROKER, None).await,
            control.list(&TRIGGER, None).await,
        )
    };
    let broker_points = state.history.current_brokers();
    let trigger_points = state.history.current_triggers();
    let brokers: Vec<Value> = brokers
        .iter()
        .map(|object| {
            let key = key_of(object);
            let point = broker_points.get(&key);
            let trigger_count = triggers
                .iter()
                .filter(|t| {
                    let (namespace, _) = &*key_of(t);
                    namespace == &key.0 && t["spec"]["broker"] == key.1.as_str()
                })
                .count();
            json!({
                "namespace": key.0,
                "name": key.1,
                "ready": ready(object),
                "address": object["status"]["address"]["url"],
                "ingressPerSecond": point.map(|p| p.ingress_per_second),
                "logRecords": point.and_then(|p| p.log_records),
                "triggers": trigger_count,
            })
        })
        .collect();
    let triggers: Vec<Value> = triggers
        .iter()
        .map(|object| trigger_entry(object, trigger_points.get(&key_of(object))))
        .collect();
    json!({
        "kind": "Overview",
        "sampleIntervalSeconds": history::INTERVAL.as_secs(),
        "rateWindowSeconds": history::RATE_WINDOW.as_secs(),
        "brokers": brokers,
        "triggers": triggers,
    })
}

pub async fn overview(State(state): State<ApiState>) -> Response {
    Json(overview_value(&state).await).into_response()
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    /// Minutes back, 1 to 60 (default 60).
    minutes: Option<u64>,
}

fn since(minutes: Option<u64>) -> Result<f64, ControlError> {
    let minutes = minutes.unwrap_or(60);
    if !(1..=60).contains(&minutes) {
        return Err(ControlError::BadRequest(format!(
            "minutes must be 1 to 60 (the history keeps one hour), not {minutes}"
        )));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    Ok(now - (minutes * 60) as f64)
}

pub async fn history(
    State(state): State<ApiState>,
    Query(query): Query<HistoryQuery>,
) -> Result<Response, ControlError> {
    let series = state.history.series(since(query.minutes)?);
    let named =
        |key: &Key, points: Value| json!({"namespace": key.0, "name": key.1, "points": points});
    Ok(Json(json!({
        "kind": "History",
        "sampleIntervalSeconds": history::INTERVAL.as_secs(),
        "brokers": series.brokers.iter().map(|(k, p)| named(k, json!(p))).collect::<Vec<_>>(),
        "triggers": series.triggers.iter().map(|(k, p)| named(k, json!(p))).collect::<Vec<_>>(),
    }))
    .into_response())
}

#[derive(Deserialize)]
pub struct TriggerPath {
    namespace: String,
    name: String,
}

pub async fn trigger(
    State(state): State<ApiState>,
    Path(path): Path<TriggerPath>,
    Query(query): Query<HistoryQuery>,
) -> Result<Response, ControlError> {
    let since = since(query.minutes)?;
    let object = state
        .control
        .read()
        .await
        .get(&crate::kinds::ObjectKey::new(
            &TRIGGER,
            &path.namespace,
            &path.name,
        ))
        .await?;
    let key = key_of(&object);
    let current = state.history.current_triggers();
    let mut entry = trigger_entry(&object, current.get(&key));
    let points = state.history.series(since).triggers.remove(&key);
    entry["kind"] = json!("TriggerStats");
    entry["points"] = json!(points.unwrap_or_default());
    Ok(Json(entry).into_response())
}

/// The overview now and after each sample, until the client leaves or Herald stops.
pub async fn watch(State(state): State<ApiState>) -> Response {
    let samples = state.history.subscribe();
    let stream = futures_util::stream::unfold(
        (state, samples, true),
        |(state, mut samples, first)| async move {
            if !first {
                tokio::select! {
                    changed = samples.changed() => changed.ok()?,
                    _ = state.shutdown.cancelled() => return None,
                }
            }
            let overview = overview_value(&state).await;
            let event = Event::default()
                .event("overview")
                .data(overview.to_string());
            Some((Ok::<_, Infallible>(event), (state, samples, false)))
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_read_as_one_line() {
        assert_eq!(filter_text(&json!({})), "(all events)");
        assert_eq!(
            filter_text(&json!({"filter": {"attributes": {"type": "a", "source": "b"}}})),
            "source=b, type=a"
        );
        assert_eq!(
            filter_text(&json!({"filters": [{"cesql": "x = 1"}]})),
            r#"{"cesql":"x = 1"}"#
        );
    }
}
