//! The event catalog through the binary: auto-created EventTypes, schema enforcement at
//! ingress, duplicate suppression through a SIGKILL.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::*;
use crate::common::admin::AdminClient;
use crate::common::{wait_for_async, wait_until, Backend, Herald, HeraldDirs};
use crate::scenarios::observability::wait_for_series;

const EVENT_TYPES: &str = "/apis/eventing.knative.dev/v1beta3/namespaces/default/eventtypes";

fn annotated_broker(annotations: &str) -> String {
    format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: b\n  namespace: {NS}\n  annotations: {{{annotations}}}\n---\n"
    )
}

/// A structured-mode event with JSON data.
#[allow(
    clippy::disallowed_methods,
    reason = "a test reading its own server's answer"
)]
async fn send_json(
    url: &str,
    id: &str,
    event_type: &str,
    source: &str,
    data: Value,
) -> (u16, Value) {
    let response = post_body(
        url,
        "application/cloudevents+json",
        json!({
            "specversion": "1.0", "id": id, "source": source, "type": event_type,
            "datacontenttype": "application/json", "data": data,
        })
        .to_string(),
    )
    .await;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap_or_default();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, body)
}

async fn event_types(herald: &Herald) -> Vec<Value> {
    let (status, list) = AdminClient::new(&herald.admin).get(EVENT_TYPES).await;
    assert_eq!(status, 200, "{list}");
    list["items"].as_array().cloned().unwrap_or_default()
}

fn attribute<'a>(item: &'a Value, name: &str) -> &'a str {
    item["spec"]["attributes"]
        .as_array()
        .and_then(|all| all.iter().find(|a| a["name"] == name))
        .and_then(|a| a["value"].as_str())
        .unwrap_or_default()
}

/// Events of three types (one of them three times) become three EventTypes owned by the
/// broker, named as Knative names them, with counts and times; a declared EventType is
/// listed beside them with Knative's conditions.
pub async fn eventtypes_are_auto_created(backend: &dyn Backend) {
    let declared = "apiVersion: eventing.knative.dev/v1beta2\nkind: EventType\nmetadata: {name: declared, namespace: default}\nspec: {type: com.example.declared, source: /shop, broker: b}\n---\n";
    let dirs = HeraldDirs::new(
        &(annotated_broker("herald.dev/eventtype-auto-create: enabled") + declared),
    );
    let herald = Herald::start(backend, &dirs, &[]).await;
    let url = herald.broker_url(NS, "b");
    for (id, event_type) in [
        ("1", "com.example.a"),
        ("2", "com.example.b"),
        ("3", "com.example.c"),
        ("4", "com.example.a"),
        ("5", "com.example.a"),
    ] {
        let (status, body) = send_json(&url, id, event_type, "/shop", json!({})).await;
        assert_eq!(status, 202, "{body}");
    }
    let items = event_types(&herald).await;
    let declared = items
        .iter()
        .find(|i| i["metadata"]["name"] == "declared")
        .unwrap_or_else(|| panic!("the declared EventType is listed: {items:?}"));
    assert_eq!(declared["apiVersion"], "eventing.knative.dev/v1beta3");
    assert_eq!(attribute(declared, "type"), "com.example.declared");
    let conditions = declared["status"]["conditions"].to_string();
    assert!(conditions.contains("ReferenceExists"), "{conditions}");

    let auto: BTreeMap<String, &Value> = items
        .iter()
        .filter(|i| i["metadata"]["labels"]["herald.dev/auto-created"] == "true")
        .map(|i| (attribute(i, "type").to_owned(), i))
        .collect();
    assert_eq!(
        auto.keys().collect::<Vec<_>>(),
        ["com.example.a", "com.example.b", "com.example.c"],
        "{items:?}"
    );
    let a = auto["com.example.a"];
    assert_eq!(a["status"]["seen"]["count"], 3);
    assert_eq!(a["spec"]["reference"]["kind"], "Broker");
    assert_eq!(a["spec"]["reference"]["name"], "b");
    assert_eq!(attribute(a, "source"), "/shop");
    let name = a["metadata"]["name"].as_str().unwrap();
    let md5 = md5_hex("com.example.a/shopdefaultb");
    assert_eq!(name, format!("et-b-{md5}"), "Knative's name");
    assert!(
        a["status"]["seen"]["first"].as_str().unwrap()
            <= a["status"]["seen"]["last"].as_str().unwrap()
    );

    // The CLI lists the same.
    let output = std::process::Command::new(crate::common::herald::herald_binary())
        .args(["get", "eventtypes", "--server", &herald.admin])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{table}");
    for wanted in [
        "com.example.a",
        "com.example.b",
        "com.example.c",
        "declared",
        name,
    ] {
        assert!(table.contains(wanted), "{wanted} in\n{table}");
    }
}

fn md5_hex(text: &str) -> String {
    use md5::Digest;
    format!("{:x}", md5::Md5::digest(text.as_bytes()))
}

const ORDER_SCHEMA: &str = r#"{"type":"object","required":["id","items"],"properties":{"id":{"type":"string"},"items":{"type":"array","minItems":1,"items":{"type":"object","required":["qty"],"properties":{"qty":{"type":"integer","minimum":1}}}}}}"#;

fn order_type(broker: &str) -> String {
    format!(
        "apiVersion: eventing.knative.dev/v1beta3\nkind: EventType\nmetadata: {{name: order, namespace: default}}\nspec:\n  reference: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: {broker}}}\n  attributes:\n  - {{name: type, value: com.shop.order, required: true}}\n  schemaData: '{ORDER_SCHEMA}'\n---\n"
    )
}

/// `enforce`: good orders pass, the one bad order gets 400 naming the JSON pointer and the
/// rule, an undeclared type is refused with `unknown-event-types: refuse`.
pub async fn schemas_are_enforced(backend: &dyn Backend) {
    let dirs = HeraldDirs::new(
        &(annotated_broker(
            "herald.dev/schema-validation: enforce, herald.dev/unknown-event-types: refuse",
        ) + &order_type("b")),
    );
    let herald = Herald::start(backend, &dirs, &[]).await;
    let url = herald.broker_url(NS, "b");
    let good = json!({"id": "o-1", "items": [{"qty": 1}, {"qty": 5}]});
    for id in ["good-1", "good-2"] {
        let (status, body) = send_json(&url, id, "com.shop.order", "/shop", good.clone()).await;
        assert_eq!(status, 202, "{body}");
    }
    let bad = json!({"id": "o-2", "items": [{"qty": 1}, {"qty": 0}]});
    let (status, body) = send_json(&url, "bad", "com.shop.order", "/shop", bad).await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("/items/1/qty"), "the pointer: {body}");
    assert!(message.contains("minimum"), "the rule: {body}");
    assert_eq!(body["pointer"], "/items/1/qty");
    assert_eq!(body["rule"], "minimum");
    let (status, body) = send_json(&url, "other", "com.shop.unknown", "/shop", json!({})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"]
        .as_str()
        .unwrap_or_default()
        .contains("com.shop.unknown"));
    // Still accepting after the refusals.
    let (status, body) = send_json(&url, "good-3", "com.shop.order", "/shop", good).await;
    assert_eq!(status, 202, "{body}");
    let labels = [("namespace", NS), ("broker", "b"), ("action", "refused")];
    wait_for_series(&herald, "herald_schema_violations_total", &labels, 1.0).await;
}

/// `warn`: a bad order is accepted and counted.
pub async fn schema_violations_are_counted_in_warn_mode(backend: &dyn Backend) {
    let dirs = HeraldDirs::new(
        &(annotated_broker("herald.dev/schema-validation: warn") + &order_type("b")),
    );
    let herald = Herald::start(backend, &dirs, &[]).await;
    let url = herald.broker_url(NS, "b");
    for (id, data) in [
        ("bad-1", json!({"items": []})),
        ("good", json!({"id": "x", "items": [{"qty": 1}]})),
        ("bad-2", json!("not an object")),
    ] {
        let (status, body) = send_json(&url, id, "com.shop.order", "/shop", data).await;
        assert_eq!(status, 202, "{id}: {body}");
    }
    let labels = [("namespace", NS), ("broker", "b"), ("action", "accepted")];
    wait_for_series(&herald, "herald_schema_violations_total", &labels, 2.0).await;
}

/// A producer retrying after a lost 202 sends the same (`source`, `id`) again: answered 202,
/// not appended, also after a SIGKILL and restart (the window is rebuilt from the log, or is
/// JetStream's). A trigger replaying the whole log sees each event once.
pub async fn duplicates_are_dropped_across_a_sigkill(backend: &dyn Backend) {
    let dirs = HeraldDirs::new(&annotated_broker("herald.dev/duplicate-window: PT10M"));
    let herald = Herald::start(backend, &dirs, &[]).await;
    let url = herald.broker_url(NS, "b");
    let ids: Vec<String> = (0..20).map(|i| format!("ev-{i}")).collect();
    for id in &ids {
        assert_eq!(send_binary(&url, id, "t", &[]).await, 202);
    }
    // The same (source, id) from another source is another event.
    assert_eq!(
        send_binary(&url, "ev-0", "t", &[("ce-source", "/other")]).await,
        202
    );
    for id in &ids[..5] {
        assert_eq!(
            send_binary(&url, id, "t", &[]).await,
            202,
            "a copy gets 202"
        );
    }
    let labels = [("namespace", NS), ("broker", "b")];
    wait_for_series(&herald, "herald_duplicates_dropped_total", &labels, 5.0).await;
    herald.kill();

    let herald = Herald::start(backend, &dirs, &[]).await;
    let url = herald.broker_url(NS, "b");
    for id in &ids[5..15] {
        assert_eq!(
            send_binary(&url, id, "t", &[]).await,
            202,
            "a copy after the restart"
        );
    }
    assert_eq!(send_binary(&url, "last", "t", &[]).await, 202);
    wait_for_series(&herald, "herald_duplicates_dropped_total", &labels, 10.0).await;

    // Replay everything: each (source, id) once.
    let subscriber = Subscriber::start().await;
    AdminClient::new(&herald.admin)
        .create(
            crate::common::admin::TRIGGERS,
            &format!(
                "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: replay, namespace: {NS}, annotations: {{herald.dev/start-from: earliest}}}}\nspec: {{broker: b, subscriber: {{uri: '{}'}}}}",
                subscriber.url()
            ),
        )
        .await;
    let expected = ids.len() + 2;
    wait_until("every stored event to be replayed", || {
        subscriber.received().len() >= expected
    })
    .await;
    let count = |id: &str| ids_of(&subscriber).iter().filter(|got| *got == id).count();
    assert_eq!(count("ev-0"), 2, "ev-0 from two sources");
    for id in &ids[1..] {
        assert_eq!(count(id), 1, "{id} is stored once");
    }
}

fn ids_of(subscriber: &Subscriber) -> Vec<String> {
    subscriber.ids()
}

/// A producer inventing 100,000 types fills the auto-created list up to the cap and no
/// further; the counter says how many were not recorded.
pub async fn auto_created_types_are_bounded(backend: &dyn Backend) {
    let dirs = HeraldDirs::new(&annotated_broker(
        "herald.dev/eventtype-auto-create: enabled",
    ));
    let herald = Herald::start(backend, &dirs, &["--eventtype-auto-create-max", "50"]).await;
    let url = herald.broker_url(NS, "b");
    const TYPES: usize = 100_000;
    const BATCH: usize = 1_000;
    for batch in 0..TYPES / BATCH {
        let events: Vec<Value> = (0..BATCH)
            .map(|i| {
                let n = batch * BATCH + i;
                json!({"specversion": "1.0", "id": n.to_string(), "source": "/inventor", "type": format!("type-{n}")})
            })
            .collect();
        let response = post_body(
            &url,
            "application/cloudevents-batch+json",
            Value::Array(events).to_string(),
        )
        .await;
        assert_eq!(response.status().as_u16(), 202);
    }
    let listed = event_types(&herald).await;
    assert_eq!(listed.len(), 50, "the cap holds");
    let labels = [("namespace", NS), ("broker", "b")];
    wait_for_series(
        &herald,
        "herald_eventtypes_not_recorded_total",
        &labels,
        (TYPES - 50) as f64,
    )
    .await;
    // Known types still count.
    let (status, _) = send_json(&url, "again", "type-0", "/inventor", json!({})).await;
    assert_eq!(status, 202);
    wait_for_async("type-0 counted twice", || async {
        let items = event_types(&herald).await;
        items
            .iter()
            .find(|i| attribute(i, "type") == "type-0")
            .and_then(|i| i["status"]["seen"]["count"].as_u64())
            == Some(2)
    })
    .await;
}
