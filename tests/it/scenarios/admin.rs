//! Resources registered at runtime through the admin API: triggers that start, change and
//! stop without a restart, replay from a point in the log, and the dead-letter store.

use std::collections::BTreeSet;

use serde_json::Value;

use super::*;
use crate::common::admin::{AdminClient, TRIGGERS};
use crate::common::{free_port, wait_until, Backend, Herald, HeraldDirs};

pub fn runtime_trigger(name: &str, subscriber: &str, annotations: &str, delivery: &str) -> String {
    format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: {name}\n  annotations: {{{annotations}}}\nspec:\n  broker: b\n  subscriber: {{uri: '{subscriber}'}}\n{delivery}"
    )
}

fn id_set(subscriber: &Subscriber) -> BTreeSet<String> {
    ids(subscriber).into_iter().collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// A trigger created through the API receives events at once; replacing its subscriber keeps
/// its position (nothing lost or replayed); deleting it stops its deliveries.
pub async fn triggers_change_at_runtime(backend: &dyn Backend) {
    let dirs = HeraldDirs::new(&broker_yaml("b", None));
    let herald = Herald::start(backend, &dirs, &[]).await;
    let admin = AdminClient::new(&herald.admin);
    let first = Subscriber::start().await;
    let second = Subscriber::start().await;
    let witness = Subscriber::start().await;
    admin
        .create(TRIGGERS, &runtime_trigger("t", &first.url(), "", ""))
        .await;
    admin
        .create(
            TRIGGERS,
            &runtime_trigger("witness", &witness.url(), "", ""),
        )
        .await;
    accept(&herald, "e1", "t", &[]).await;
    first.wait_for_id("e1").await;

    // Replace the subscriber: the trigger goes on from where it was.
    let (_, mut trigger) = admin.get(&format!("{TRIGGERS}/t")).await;
    trigger["spec"]["subscriber"]["uri"] = Value::from(second.url());
    let (status, replaced) = admin.put_json(&format!("{TRIGGERS}/t"), &trigger).await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["metadata"]["generation"], 2);
    assert_eq!(replaced["status"]["subscriberUri"], second.url());
    accept(&herald, "e2", "t", &[]).await;
    second.wait_for_id("e2").await;
    witness.wait_for_id("e2").await;
    assert_eq!(id_set(&first), set(&["e1"]));
    assert_eq!(
        id_set(&second),
        set(&["e2"]),
        "position kept: e1 is not replayed"
    );

    // Delete it: later events reach the other trigger but not this one.
    let (status, _) = admin.delete(&format!("{TRIGGERS}/t")).await;
    assert_eq!(status, 200);
    accept(&herald, "e3", "t", &[]).await;
    witness.wait_for_id("e3").await;
    assert_eq!(
        id_set(&second),
        set(&["e2"]),
        "a deleted trigger delivers nothing"
    );
    // A new trigger of the same name starts afresh, at the end of the log.
    admin
        .create(TRIGGERS, &runtime_trigger("t", &first.url(), "", ""))
        .await;
    accept(&herald, "e4", "t", &[]).await;
    first.wait_for_id("e4").await;
    assert_eq!(id_set(&first), set(&["e1", "e4"]));
}

/// `herald.dev/start-from`: earliest replays the whole log, a time replays from that time,
/// the default (Knative's) starts at the end.
pub async fn start_from_replays_exactly(backend: &dyn Backend) {
    let dirs = HeraldDirs::new(&broker_yaml("b", None));
    let herald = Herald::start(backend, &dirs, &[]).await;
    let admin = AdminClient::new(&herald.admin);
    accept(&herald, "old-1", "t", &[]).await;
    accept(&herald, "old-2", "t", &[]).await;
    // Arrival times have microseconds; make sure the next events are stamped later.
    let since = chrono::Utc::now();
    wait_until("the clock to move past the boundary", || {
        chrono::Utc::now() > since + chrono::Duration::milliseconds(5)
    })
    .await;
    accept(&herald, "new-1", "t", &[]).await;
    accept(&herald, "new-2", "t", &[]).await;

    let earliest = Subscriber::start().await;
    let replay = Subscriber::start().await;
    let latest = Subscriber::start().await;
    let stamp = since.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    admin
        .create(
            TRIGGERS,
            &runtime_trigger(
                "earliest",
                &earliest.url(),
                "herald.dev/start-from: earliest",
                "",
            ),
        )
        .await;
    admin
        .create(
            TRIGGERS,
            &runtime_trigger(
                "replay",
                &replay.url(),
                &format!("herald.dev/start-from: '{stamp}'"),
                "",
            ),
        )
        .await;
    admin
        .create(TRIGGERS, &runtime_trigger("latest", &latest.url(), "", ""))
        .await;
    accept(&herald, "after", "t", &[]).await;
    // A log with partitions (Kafka) promises no order across them: wait for the number of
    // events each trigger should get, not for the last one sent.
    earliest.wait_for(5).await;
    replay.wait_for(3).await;
    latest.wait_for_id("after").await;
    assert_eq!(
        id_set(&earliest),
        set(&["old-1", "old-2", "new-1", "new-2", "after"])
    );
    assert_eq!(id_set(&replay), set(&["new-1", "new-2", "after"]));
    assert_eq!(id_set(&latest), set(&["after"]));

    let (status, body) = admin
        .post_yaml(
            TRIGGERS,
            &runtime_trigger("bad", &latest.url(), "herald.dev/start-from: yesterday", ""),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["details"]["causes"][0]["field"],
        "metadata.annotations[herald.dev/start-from]"
    );
}

/// A dead subscriber's events are parked, listed with their failures, redriven one and then
/// all once it is back, and purged.
pub async fn dead_letters_are_listed_redriven_and_purged(backend: &dyn Backend) {
    let dirs = HeraldDirs::new(&broker_yaml("b", None));
    let herald = Herald::start(backend, &dirs, &[]).await;
    let admin = AdminClient::new(&herald.admin);
    let port = free_port();
    let down = format!("http://127.0.0.1:{port}/");
    let delivery = "  delivery: {retry: 1, backoffPolicy: linear, backoffDelay: PT0.01S}\n";
    admin
        .create(TRIGGERS, &runtime_trigger("t", &down, "", delivery))
        .await;
    for id in ["p1", "p2", "p3"] {
        accept(&herald, id, "t", &[]).await;
    }
    let trigger_path = format!("{TRIGGERS}/t");
    let mut parked = 0;
    let deadline = tokio::time::Instant::now() + crate::common::DEADLINE;
    while parked < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "events were not parked"
        );
        let (_, trigger) = admin.get(&trigger_path).await;
        parked = trigger["status"]["parkedEvents"].as_u64().unwrap_or(0);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (status, list) = admin.get(&format!("{trigger_path}/deadletters")).await;
    assert_eq!(status, 200);
    let items = list["items"].as_array().unwrap();
    let by_event: Vec<(String, String)> = items
        .iter()
        .map(|i| {
            (
                i["event"]["id"].as_str().unwrap().to_owned(),
                i["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(by_event.len(), 3);
    for item in items {
        assert_eq!(item["failure"]["attempts"], 2, "{item}");
        assert!(
            item["failure"]["lastError"]
                .as_str()
                .unwrap()
                .contains("dispatch error"),
            "{item}"
        );
        assert_eq!(
            item["event"]["data"],
            format!("data of {}", item["event"]["id"].as_str().unwrap())
        );
    }
    let (_, trigger) = admin.get(&trigger_path).await;
    assert!(
        !trigger["status"]["recentErrors"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{trigger}"
    );
    let id_of = |event: &str| by_event.iter().find(|(e, _)| e == event).unwrap().1.clone();
    let (status, one) = admin
        .get(&format!("{trigger_path}/deadletters/{}", id_of("p2")))
        .await;
    assert_eq!(status, 200);
    assert_eq!(one["event"]["id"], "p2");
    let (status, _) = admin
        .get(&format!("{trigger_path}/deadletters/0-999999"))
        .await;
    assert_eq!(status, 404);

    // Still down: a redrive parks it again with a new failure and says so.
    let redrive_path = format!("{trigger_path}/deadletters/redrive");
    let body = serde_json::json!({"ids": [id_of("p1")]}).to_string();
    let (status, report) = admin
        .call(
            reqwest::Method::POST,
            &redrive_path,
            Some(("application/json", &body)),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["parked"], serde_json::json!([id_of("p1")]));

    let subscriber = Subscriber::start_on(port).await;
    let (status, report) = admin
        .call(
            reqwest::Method::POST,
            &redrive_path,
            Some(("application/json", &body)),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["delivered"], serde_json::json!([id_of("p1")]));
    assert_eq!(id_set(&subscriber), set(&["p1"]));
    let (_, list) = admin.get(&format!("{trigger_path}/deadletters")).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);

    // Purge one, redrive the rest.
    let (status, purged) = admin
        .delete(&format!("{trigger_path}/deadletters?ids={}", id_of("p3")))
        .await;
    assert_eq!(status, 200, "{purged}");
    assert_eq!(purged["purged"], serde_json::json!([id_of("p3")]));
    let (status, report) = admin
        .call(
            reqwest::Method::POST,
            &redrive_path,
            Some(("application/json", r#"{"all": true}"#)),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["delivered"], serde_json::json!([id_of("p2")]));
    assert_eq!(id_set(&subscriber), set(&["p1", "p2"]), "p3 was purged");
    let (_, trigger) = admin.get(&trigger_path).await;
    assert_eq!(trigger["status"]["parkedEvents"], 0);
    let (status, _) = admin
        .call(
            reqwest::Method::POST,
            &redrive_path,
            Some(("application/json", "{}")),
        )
        .await;
    assert_eq!(status, 400, "a redrive must say which events");
}
