//! The end-to-end scenario list. Each scenario takes the backend it runs on, so the same list
//! runs over every backend (see `e2e_sled.rs`).
#![allow(dead_code)]

pub mod admin;
pub mod catalog;
pub mod delivery;
pub mod disk;
pub mod durability;
pub mod filters;
pub mod flows;
pub mod ingress;
pub mod names;
pub mod observability;

use crate::common::{Herald, HeraldDirs, Subscriber};

pub const NS: &str = "default";

pub fn broker_yaml(name: &str, delivery: Option<&str>) -> String {
    let spec = delivery
        .map(|d| format!("spec:\n  delivery: {d}\n"))
        .unwrap_or_default();
    format!("apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: {name}\n  namespace: {NS}\n{spec}---\n")
}

/// A trigger; `extra` is spliced into `spec` as flow-style YAML members.
pub fn trigger_yaml(name: &str, broker: &str, subscriber: &str, extra: &str) -> String {
    format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: {name}\n  namespace: {NS}\nspec: {{broker: {broker}, subscriber: {{uri: '{subscriber}'}}{}{extra}}}\n---\n",
        if extra.is_empty() { "" } else { ", " }
    )
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// POSTs a body with a content type (structured and batched modes).
pub async fn post_body(
    url: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    client()
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// A binary-mode request with the required attributes (source `/s`, type `t`) and no body yet.
pub fn binary_request(url: &str, id: &str) -> reqwest::RequestBuilder {
    client()
        .post(url)
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "/s")
        .header("ce-type", "t")
}

/// POSTs a binary-mode event with the given id and type; returns the status.
pub async fn send_binary(url: &str, id: &str, event_type: &str, extra: &[(&str, &str)]) -> u16 {
    let mut request = client()
        .post(url)
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "/e2e")
        .header("ce-type", event_type)
        .header("content-type", "text/plain")
        .body(format!("data of {id}"));
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap().status().as_u16()
}

/// Every `ce-id` a subscriber has received, in arrival order.
pub fn ids(subscriber: &Subscriber) -> Vec<String> {
    subscriber.ids()
}

/// Broker `b` with one trigger `t` to `subscriber`; `extra` is spliced into the trigger's spec.
pub fn one_trigger(subscriber: &str, extra: &str) -> HeraldDirs {
    HeraldDirs::new(&(broker_yaml("b", None) + &trigger_yaml("t", "b", subscriber, extra)))
}

/// Sends a binary-mode event to broker `b` and asserts it was accepted.
pub async fn accept(herald: &Herald, id: &str, event_type: &str, extra: &[(&str, &str)]) {
    let status = send_binary(&herald.broker_url(NS, "b"), id, event_type, extra).await;
    assert_eq!(status, 202, "event {id} was not accepted");
}

/// The `ce-id`s a subscriber received, sorted.
pub fn sorted_ids(subscriber: &Subscriber) -> Vec<String> {
    let mut got = ids(subscriber);
    got.sort();
    got
}

/// Sends a binary-mode event to a named broker and asserts it was accepted.
pub async fn accept_on(herald: &Herald, broker: &str, id: &str) {
    let status = send_binary(&herald.broker_url(NS, broker), id, "t", &[]).await;
    assert_eq!(status, 202, "event {id} was not accepted by {broker}");
}
