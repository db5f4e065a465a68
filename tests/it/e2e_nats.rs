//! The end-to-end scenario list on NATS JetStream, each scenario with its own nats-server.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "test code"
)]

use crate::common;
use crate::scenarios;

use common::herald::Nats;
use common::Server;

every_scenario!(Nats::start());

// Herald's own data dir full while the log is on JetStream; and crashes under load.
on_backend!(Nats::start() =>
    disk::full_data_dir_refuses_changes_then_recovers,
    durability::accepted_events_survive_repeated_sigkill_under_load,
);

/// Every scenario again with triggers reading each broker's stream through one shared reader
/// (`--nats-shared-reader`), crashes under load included.
mod shared_reader {
    use super::*;

    every_scenario!(Nats::shared_reader());

    on_backend!(Nats::shared_reader() =>
        durability::accepted_events_survive_repeated_sigkill_under_load,
    );
}

// The event catalog (issue 20).
on_backend!(Nats::start() =>
    catalog::eventtypes_are_auto_created,
    catalog::schemas_are_enforced,
    catalog::duplicates_are_dropped_across_a_sigkill,
);

/// nats-server dies while producers send: ingress answers 503 within a bounded time, and after
/// the server is back every event that got a 202 is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_killed_during_ingest_loses_nothing_accepted() {
    if common::skip_without(&[Server::Nats]) {
        return;
    }
    scenarios::durability::log_server_killed_during_ingest(
        &mut Nats::start(),
        |nats| nats.server.kill(),
        |nats| nats.server.restart(),
        std::time::Duration::from_secs(12),
    )
    .await;
}

/// With sled as the default, a broker of class NatsJetStreamBroker lives on JetStream with the
/// stream settings of its `herald.dev/*` annotations; a NATS class without NATS is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_class_chooses_the_backend() {
    if common::skip_without(&[Server::Nats]) {
        return;
    }
    use std::time::Duration;

    use scenarios::{accept_on, broker_yaml, trigger_yaml, NS};

    let nats = Nats::start();
    let sub = common::Subscriber::start().await;
    let nats_broker = format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: onnats\n  namespace: {NS}\n  annotations:\n    eventing.knative.dev/broker.class: NatsJetStreamBroker\n    herald.dev/retention-max-age: PT1H\n    herald.dev/retention-max-bytes: \"1048576\"\n    herald.dev/retention: interest\n---\n"
    );
    let config = broker_yaml("onsled", None)
        + &nats_broker
        + &trigger_yaml("a", "onsled", &sub.url(), "")
        + &trigger_yaml("b", "onnats", &sub.url(), "");
    let dirs = common::HeraldDirs::new(&config);
    let url = nats.server.url();
    let herald = common::Herald::start(&common::herald::Sled, &dirs, &["--nats-url", &url]).await;
    accept_on(&herald, "onsled", "via-sled").await;
    accept_on(&herald, "onnats", "via-nats").await;
    sub.wait_for_id("via-sled").await;
    sub.wait_for_id("via-nats").await;

    let client = async_nats::connect(url.as_str()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js
        .get_stream("KN_BROKER_DEFAULT__ONNATS")
        .await
        .expect("the NATS broker's stream");
    let info = stream.info().await.unwrap();
    assert_eq!(info.config.subjects, ["default.onnats._knative_broker"]);
    assert_eq!(info.config.max_age, Duration::from_secs(3600));
    assert_eq!(info.config.max_bytes, 1_048_576);
    assert_eq!(
        info.config.retention,
        async_nats::jetstream::stream::RetentionPolicy::Interest
    );
    // Interest retention: once the only trigger acknowledged it, the message is gone.
    let deadline = std::time::Instant::now() + common::DEADLINE;
    while stream.info().await.unwrap().state.messages != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "acknowledged messages stayed in an interest stream"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        js.get_stream("KN_BROKER_DEFAULT__ONSLED").await.is_err(),
        "the default broker stays on sled"
    );
    drop(herald);

    // Without --nats-url the NATS class cannot be served: refused before binding.
    let (status, stderr) = common::herald::run_invalid(&dirs.config_file(), dirs.data.path());
    assert!(!status.success());
    assert!(
        stderr.contains("Broker default/onnats")
            && stderr.contains("broker.class")
            && stderr.contains("--nats-url"),
        "{stderr}"
    );
}

/// NatsSource: core NATS and JetStream messages reach a broker's trigger; CloudEvents pass
/// through, other payloads are wrapped with Herald's NATS mapping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_source_maps_cloudevents_and_plain_messages() {
    if common::skip_without(&[Server::Nats]) {
        return;
    }
    use std::time::Duration;

    use scenarios::{broker_yaml, trigger_yaml, NS};

    let nats = Nats::start();
    let url = nats.server.url();
    let client = async_nats::connect(url.as_str()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: "ORDERS".into(),
        subjects: vec!["js.orders.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    // Published before Herald runs: the durable consumer picks it up later.
    js.publish("js.orders.early", "kept while Herald was down".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let sub = common::Subscriber::start().await;
    let sources = format!(
        "apiVersion: sources.herald.dev/v1alpha1\nkind: NatsSource\nmetadata: {{name: core, namespace: {NS}}}\nspec:\n  url: {url}\n  subjects: [orders.>]\n  sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: b}}}}\n  ceOverrides: {{extensions: {{team: payments}}}}\n---\napiVersion: sources.herald.dev/v1alpha1\nkind: NatsSource\nmetadata: {{name: durable, namespace: {NS}}}\nspec:\n  url: {url}\n  subjects: [js.orders.>]\n  jetstream: {{stream: ORDERS}}\n  sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: b}}}}\n"
    );
    let config = broker_yaml("b", None) + &trigger_yaml("t", "b", &sub.url(), "") + &sources;
    let dirs = common::HeraldDirs::new(&config);
    let _herald = common::Herald::start(&common::herald::Sled, &dirs, &[]).await;

    // Core NATS is at most once: publish probes until the subscription is up.
    let deadline = std::time::Instant::now() + common::DEADLINE;
    while !sub
        .received()
        .iter()
        .any(|r| r.ce("subject") == Some("orders.probe"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the core NATS source never delivered"
        );
        client
            .publish("orders.probe", "probe".into())
            .await
            .unwrap();
        client.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ce = r#"{"specversion":"1.0","id":"ce-1","source":"/shop","type":"order.created","datacontenttype":"application/json","data":{"n":1}}"#;
    client.publish("orders.ce", ce.into()).await.unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Content-Type", "text/plain");
    client
        .publish_with_headers("orders.plain", headers, "plain text".into())
        .await
        .unwrap();
    client.flush().await.unwrap();

    sub.wait_for_id("ce-1").await;
    let got = common::wait_for(&sub, |r| r.ce("subject") == Some("orders.plain")).await;
    let passed = got.iter().find(|r| r.ce("id") == Some("ce-1")).unwrap();
    assert_eq!(
        (passed.ce("type"), passed.ce("source")),
        (Some("order.created"), Some("/shop"))
    );
    assert_eq!(passed.body.as_ref(), br#"{"n":1}"#);
    assert_eq!(
        passed.ce("team"),
        Some("payments"),
        "ceOverrides apply to every event"
    );
    let plain = got
        .iter()
        .find(|r| r.ce("subject") == Some("orders.plain"))
        .unwrap();
    assert_eq!(plain.ce("type"), Some("dev.herald.nats.message"));
    let host = url.trim_start_matches("nats://");
    assert_eq!(
        plain.ce("source"),
        Some(format!("nats://{host}/orders.plain").as_str())
    );
    assert_eq!(plain.header("content-type"), Some("text/plain"));
    assert_eq!(plain.body.as_ref(), b"plain text");

    let got = common::wait_for(&sub, |r| r.ce("subject") == Some("js.orders.early")).await;
    let early = got
        .iter()
        .find(|r| r.ce("subject") == Some("js.orders.early"))
        .unwrap();
    assert_eq!(
        early.ce("id"),
        Some("ORDERS-1"),
        "JetStream messages get stream-sequence ids"
    );
    assert_eq!(early.body.as_ref(), b"kept while Herald was down");
}

/// Two Herald processes with `--nats-shared-reader` on one NATS (issue 16): the holder of the
/// broker's lease reads it and the other stands by, so each event reaches the subscriber once
/// whichever process accepted it; after a SIGKILL of the reader the other takes the lease over
/// and delivers what comes next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_heralds_with_the_shared_reader_deliver_each_event_once_and_take_over() {
    if common::skip_without(&[Server::Nats]) {
        return;
    }
    use scenarios::{accept_on, broker_yaml, trigger_yaml};

    const READS: &str = "this Herald reads the broker's stream for its triggers";
    let nats = Nats::shared_reader();
    let sub = common::Subscriber::start().await;
    let config = broker_yaml("b", None) + &trigger_yaml("t", "b", &sub.url(), "");
    let (dirs_a, dirs_b) = (
        common::HeraldDirs::new(&config),
        common::HeraldDirs::new(&config),
    );
    let a = common::Herald::start(&nats, &dirs_a, &[]).await;
    let b = common::Herald::start(&nats, &dirs_b, &[]).await;
    common::wait_until("one Herald takes the broker's lease", || {
        a.log_contains(READS) || b.log_contains(READS)
    })
    .await;

    for i in 0..20 {
        let accepting = if i % 2 == 0 { &a } else { &b };
        accept_on(accepting, "b", &format!("e{i}")).await;
    }
    let got = sub.wait_for(20).await;
    let distinct: std::collections::HashSet<_> = got.iter().filter_map(|r| r.ce("id")).collect();
    assert_eq!(
        distinct.len(),
        20,
        "every event, each once: {:?}",
        sub.ids()
    );
    assert!(
        !(a.log_contains(READS) && b.log_contains(READS)),
        "one reader at a time"
    );

    let (reader, standby) = match a.log_contains(READS) {
        true => (a, b),
        false => (b, a),
    };
    reader.kill();
    for i in 20..25 {
        accept_on(&standby, "b", &format!("e{i}")).await;
    }
    for i in 20..25 {
        sub.wait_for_id(&format!("e{i}")).await;
    }
    assert!(standby.log_contains(READS), "the other Herald took over");
}
