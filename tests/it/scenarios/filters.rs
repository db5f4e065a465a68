//! Subscriptions API dialects, CESQL and JSONPath filters through the real binary.

use super::*;
use crate::common::{Backend, Herald, HeraldDirs};

/// Sends a JSON-data event with a type and extra attributes.
async fn send_json(
    herald: &Herald,
    id: &str,
    event_type: &str,
    extra: &[(&str, &str)],
    data: &str,
) {
    let mut request = client()
        .post(herald.broker_url(NS, "b"))
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "/shop/eu")
        .header("ce-type", event_type)
        .header("content-type", "application/json")
        // One partition on partitioned logs (Kafka), so the sentinels below come last.
        .header("ce-partitionkey", "dialects")
        .body(data.to_owned());
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    assert_eq!(
        request.send().await.unwrap().status(),
        202,
        "{id} was not accepted"
    );
}

pub async fn every_dialect(backend: &dyn Backend) {
    let subs = [
        ("exact", "filters: [{exact: {type: order.created}}]"),
        ("prefix", "filters: [{prefix: {type: order.}}]"),
        (
            "suffix",
            "filters: [{suffix: {source: /eu}, }, {suffix: {type: .created}}]",
        ),
        (
            "all",
            "filters: [{all: [{prefix: {type: order.}}, {exact: {region: eu}}]}]",
        ),
        (
            "any",
            "filters: [{any: [{exact: {region: us}}, {exact: {type: order.paid}}]}]",
        ),
        ("not", "filters: [{not: {prefix: {type: order.}}}]"),
        (
            "cesql",
            "filters: [{cesql: \"type LIKE 'order.%' AND INT(qty) > 10\"}]",
        ),
        (
            "jsonpath",
            "filters: [{jsonpath: '$.items[?(@.qty > 10)]'}]",
        ),
        (
            "mixed",
            "filters: [{exact: {type: order.created}}, {jsonpath: '$.customer.tier'}]",
        ),
        // filters replace filter.attributes: this trigger would otherwise see nothing.
        (
            "precedence",
            "filter: {attributes: {type: never}}, filters: [{exact: {type: order.paid}}]",
        ),
    ];
    let mut config = broker_yaml("b", None);
    let mut subscribers = Vec::new();
    for (name, spec) in subs {
        let sub = Subscriber::start().await;
        config += &trigger_yaml(name, "b", &sub.url(), spec);
        subscribers.push((name, sub));
    }
    let dirs = HeraldDirs::new(&config);
    let herald = Herald::start(backend, &dirs, &[]).await;
    send_json(
        &herald,
        "1",
        "order.created",
        &[("ce-region", "eu"), ("ce-qty", "12")],
        r#"{"items":[{"qty":12}],"customer":{"tier":"gold"}}"#,
    )
    .await;
    send_json(
        &herald,
        "2",
        "order.paid",
        &[("ce-region", "us"), ("ce-qty", "3")],
        r#"{"items":[{"qty":3}]}"#,
    )
    .await;
    send_json(
        &herald,
        "3",
        "user.created",
        &[("ce-qty", "x")],
        r#"{"items":[{"qty":50}]}"#,
    )
    .await;
    send_json(
        &herald,
        "4",
        "order.created",
        &[("ce-region", "us"), ("ce-qty", "30")],
        "not json",
    )
    .await;
    let expected: [(&str, &[&str], &str); 10] = [
        ("exact", &["1", "4"], "end"),
        ("prefix", &["1", "2", "4"], "end"),
        ("suffix", &["1", "3", "4"], "end"),
        ("all", &["1"], "end"),
        ("any", &["2", "4"], "end-paid"),
        ("not", &["3"], "end-user"),
        ("cesql", &["1", "4"], "end"),
        ("jsonpath", &["1", "3"], "end"),
        ("mixed", &["1"], "end"),
        ("precedence", &["2"], "end-paid"),
    ];
    // Sentinels: once a trigger has its sentinel, it has decided on every earlier event.
    let end = r#"{"items":[{"qty":99}],"customer":{"tier":"x"}}"#;
    send_json(
        &herald,
        "end",
        "order.created",
        &[("ce-region", "eu"), ("ce-qty", "99")],
        end,
    )
    .await;
    send_json(
        &herald,
        "end-paid",
        "order.paid",
        &[("ce-region", "us")],
        "{}",
    )
    .await;
    send_json(&herald, "end-user", "user.end", &[], "{}").await;
    for ((name, sub), (expected_name, wanted, sentinel)) in subscribers.iter().zip(expected) {
        assert_eq!(*name, expected_name);
        sub.wait_for_id(sentinel).await;
        // Deliveries run concurrently: the sentinel may land a moment before an earlier event.
        sub.wait_for(wanted.len() + 1).await;
        let mut got = sorted_ids(sub);
        got.retain(|id| !id.starts_with("end"));
        assert_eq!(got, wanted.to_vec(), "trigger {name}");
    }
}

pub async fn invalid_filters_are_rejected_at_load(_backend: &dyn Backend) {
    let cases = [
        (
            "filters: [{exact: {type: a}, prefix: {type: b}}]",
            "spec.filters[0]",
            "multiple dialects",
        ),
        (
            "filters: [{all: [{exact: {Type: a}}]}]",
            "spec.filters[0].all[0].exact.Type",
            "attribute name",
        ),
        (
            "filters: [{prefix: {type: ''}}]",
            "spec.filters[0].prefix.type",
            "must not be empty",
        ),
        (
            "filters: [{cesql: \"type = 'a' AND\"}]",
            "spec.filters[0].cesql",
            "column 15",
        ),
        (
            "filters: [{jsonpath: '$.items[?(@.qty >'}]",
            "spec.filters[0].jsonpath",
            "invalid JSONPath",
        ),
    ];
    for (spec, field, message) in cases {
        let dirs = HeraldDirs::new(
            &(broker_yaml("b", None) + &trigger_yaml("t", "b", "http://127.0.0.1:1/", spec)),
        );
        let (status, stderr) =
            crate::common::herald::run_invalid(&dirs.config_file(), dirs.data.path());
        assert!(!status.success(), "{spec}: must fail");
        for needle in ["config.yaml", "Trigger default/t", field, message] {
            assert!(
                stderr.contains(needle),
                "{spec}: stderr must name {needle:?}: {stderr}"
            );
        }
    }
}
