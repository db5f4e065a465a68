//! The per-event cost of the event catalog at ingress (issue 20): one Herald with three
//! brokers that differ only in what ingress checks, measured in the same run with the same
//! JSON events: none, schema validation (`enforce`, every event checked against a compiled
//! schema), and the duplicate window (`herald.dev/duplicate-window`, every id new).

use bytes::Bytes;
use serde::Serialize;

use crate::processes::Herald;
use crate::throughput::{throughput, Throughput};
use crate::Settings;

/// Closed-loop ingress without a trigger, by what ingress checks.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CatalogPoint {
    pub connections: usize,
    pub plain: Throughput,
    pub schema_enforced: Throughput,
    pub duplicate_window: Throughput,
}

/// The schema every benchmark event follows.
const SCHEMA: &str = r#"{"type":"object","required":["id","items","pad"],"properties":{"id":{"type":"string"},"items":{"type":"array","items":{"type":"object","required":["qty"],"properties":{"qty":{"type":"integer","minimum":1}}}},"pad":{"type":"string"}}}"#;

fn config() -> String {
    let broker = |name: &str, annotations: &str| {
        format!("apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: {name}, annotations: {{{annotations}}}}}\nspec: {{}}\n---\n")
    };
    broker("plain", "")
        + &broker("schema", "herald.dev/schema-validation: enforce")
        + &broker("dedup", "herald.dev/duplicate-window: PT2M")
        + &format!("apiVersion: eventing.knative.dev/v1beta3\nkind: EventType\nmetadata: {{name: bench}}\nspec:\n  reference: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: schema}}\n  attributes: [{{name: type, value: dev.herald.bench}}]\n  schemaData: '{SCHEMA}'\n")
}

/// A JSON event of about `bytes` bytes that the schema accepts (the load sends a payload that
/// starts with `{` as `application/json`).
fn payload(bytes: usize) -> Bytes {
    let head = r#"{"id":"order-1","items":[{"qty":1},{"qty":2}],"pad":""#;
    let pad = bytes.saturating_sub(head.len() + 2);
    Bytes::from(format!("{head}{}\"}}", "x".repeat(pad)))
}

/// Measures the three brokers one after another in one Herald.
pub async fn measure(
    settings: &Settings,
    args: &[String],
    pool: &[reqwest::Client],
    connections: usize,
) -> anyhow::Result<CatalogPoint> {
    let herald = Herald::start(&settings.herald, &config(), args)?;
    let payload = payload(settings.event_bytes);
    let url = |broker: &str| format!("{}/default/{broker}", herald.ingress);
    let mut point = CatalogPoint {
        connections,
        ..CatalogPoint::default()
    };
    point.plain = throughput(&herald, &url("plain"), pool, &payload, settings, None).await;
    point.schema_enforced =
        throughput(&herald, &url("schema"), pool, &payload, settings, None).await;
    point.duplicate_window =
        throughput(&herald, &url("dedup"), pool, &payload, settings, None).await;
    Ok(point)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_follows_the_schema_and_has_the_size_asked_for() {
        let payload = payload(512);
        assert_eq!(payload.len(), 512);
        let data: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(data["items"][1]["qty"], 2);
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
        assert_eq!(schema["required"][2], "pad");
    }
}
