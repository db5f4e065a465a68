//! The end-to-end scenario list on NATS JetStream, each scenario with its own nats-server.

mod common;
mod scenarios;

use common::herald::Nats;

macro_rules! on_backend {
    ($backend:expr => $($path:ident :: $scenario:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() {
                scenarios::$path::$scenario(&$backend).await;
            }
        )+
    };
}

on_backend!(Nats::start() =>
    ingress::status_codes,
    ingress::content_modes_preserve_everything,
    ingress::exact_filters,
    delivery::linear_backoff,
    delivery::exponential_backoff,
    delivery::retry_after_is_honoured,
    delivery::timeout_then_dead_letter,
    delivery::dead_letter_extensions,
    delivery::parked_when_dead_letter_sink_is_down,
    delivery::replies_are_published_to_the_broker,
    delivery::ttl_stops_reply_loops,
    delivery::dead_subscriber_does_not_hold_back_others,
    delivery::ordered_per_partition_key,
    durability::accepted_events_survive_sigkill,
    durability::readiness_and_health,
    durability::sigterm_finishes_in_flight_deliveries,
    filters::every_dialect,
);

/// nats-server dies while producers send: ingress answers 503 within a bounded time, and after
/// the server is back every event that got a 202 is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_killed_during_ingest_loses_nothing_accepted() {
    use std::collections::BTreeSet;
    use std::time::{Duration, Instant};

    use scenarios::{ids, one_trigger, NS};

    let mut nats = Nats::start();
    let subscriber = common::Subscriber::start().await;
    let dirs = one_trigger(
        &subscriber.url(),
        "delivery: {retry: 100, backoffPolicy: linear, backoffDelay: PT0.05S}",
    );
    let herald = common::Herald::start(&nats, &dirs, &[]).await;
    let url = herald.broker_url(NS, "b");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let send = |id: String| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let started = Instant::now();
            let status = client
                .post(&url)
                .header("ce-specversion", "1.0")
                .header("ce-id", &id)
                .header("ce-source", "/chaos")
                .header("ce-type", "t")
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            (id, status, started.elapsed())
        }
    };
    let mut accepted = BTreeSet::new();
    let mut refused = 0;
    for i in 0..20 {
        let (id, status, _) = send(format!("before-{i}")).await;
        assert_eq!(status, 202);
        accepted.insert(id);
    }
    nats.server.kill();
    for i in 0..5 {
        let (id, status, took) = send(format!("down-{i}")).await;
        assert!(
            took < Duration::from_secs(12),
            "ingress must answer within a bounded time, took {took:?}"
        );
        match status {
            202 => {
                accepted.insert(id);
            }
            503 => refused += 1,
            other => panic!("unexpected status {other} while NATS is down"),
        }
    }
    assert!(refused > 0, "with NATS down, ingress must refuse with 503");
    nats.server.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut i = 0;
    while i < 20 {
        let (id, status, _) = send(format!("after-{i}")).await;
        if status == 202 {
            accepted.insert(id);
            i += 1;
        } else {
            assert!(
                Instant::now() < deadline,
                "ingress did not recover after NATS came back: {status}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    common::wait_until("every accepted event to be delivered", || {
        let got: BTreeSet<String> = ids(&subscriber).into_iter().collect();
        accepted.is_subset(&got)
    })
    .await;
}
