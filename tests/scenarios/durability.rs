//! Nothing accepted is lost: SIGKILL, restart, and clean restarts that redeliver nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use super::*;
use crate::common::{free_port, Backend, Herald, HeraldDirs};

pub async fn accepted_events_survive_sigkill(backend: &dyn Backend) {
    let port = free_port();
    let subscriber_url = format!("http://127.0.0.1:{port}/");
    // The subscriber is down at first: retries keep the events in flight, never dropped.
    let delivery = "delivery: {retry: 60, backoffPolicy: linear, backoffDelay: PT0.02S}";
    let dirs = one_trigger(&subscriber_url, delivery);
    let herald = Herald::start(backend, &dirs, &[]).await;
    let url = herald.broker_url(NS, "b");
    let mut accepted = BTreeSet::new();
    let sends: Vec<_> = (0..60)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move { (i, send_binary(&url, &format!("ev-{i}"), "t", &[]).await) })
        })
        .collect();
    for send in sends {
        let (i, status) = send.await.unwrap();
        assert_eq!(status, 202);
        accepted.insert(format!("ev-{i}"));
    }
    herald.kill();

    let herald = Herald::start(backend, &dirs, &[]).await;
    let subscriber = Subscriber::start_on(port).await;
    crate::common::wait_until("every accepted event to arrive after the restart", || {
        let got: BTreeSet<String> = ids(&subscriber).into_iter().collect();
        accepted.is_subset(&got)
    })
    .await;

    // A clean stop commits; the next start must not redeliver finished events.
    assert_eq!(herald.terminate().await.code(), Some(0), "SIGTERM exits 0");
    let before = subscriber.received().len();
    let herald = Herald::start(backend, &dirs, &[]).await;
    accept(&herald, "after-restart", "t", &[]).await;
    subscriber.wait_for_id("after-restart").await;
    let after: Vec<String> = ids(&subscriber).split_off(before);
    assert_eq!(
        after,
        ["after-restart"],
        "finished events were redelivered after a clean restart"
    );
}

pub async fn readiness_and_health(backend: &dyn Backend) {
    let dirs = HeraldDirs::new(&broker_yaml("b", None));
    let herald = Herald::start(backend, &dirs, &[]).await;
    for probe in ["healthz", "readyz"] {
        let url = format!("{}/{probe}", herald.admin);
        let status = client().get(url).send().await.unwrap().status();
        assert_eq!(status, 200, "/{probe}");
    }
    assert_eq!(herald.terminate().await.code(), Some(0));
}

pub async fn sigterm_finishes_in_flight_deliveries(backend: &dyn Backend) {
    let subscriber = Subscriber::start().await;
    subscriber
        .script([crate::common::Reply::status(200).delay(std::time::Duration::from_millis(1500))]);
    let dirs = one_trigger(&subscriber.url(), "");
    let herald = Herald::start(backend, &dirs, &[]).await;
    accept(&herald, "in-flight", "t", &[]).await;
    subscriber.wait_for_id("in-flight").await;
    // The subscriber is still answering: shutdown must wait for it, then commit.
    assert_eq!(herald.terminate().await.code(), Some(0));

    let herald = Herald::start(backend, &dirs, &[]).await;
    accept(&herald, "next", "t", &[]).await;
    subscriber.wait_for_id("next").await;
    assert_eq!(
        ids(&subscriber),
        ["in-flight", "next"],
        "the finished delivery was repeated"
    );
}

/// The log's server dies while producers send: ingress answers 503 within `answer_within`,
/// and once the server is back every event that got a 202 is delivered. For backends with a
/// server of the test's own; `kill` and `restart` act on it.
pub async fn log_server_killed_during_ingest<B: Backend>(
    backend: &mut B,
    kill: impl Fn(&mut B),
    restart: impl Fn(&mut B),
    answer_within: Duration,
) {
    let subscriber = Subscriber::start().await;
    let dirs = one_trigger(
        &subscriber.url(),
        "delivery: {retry: 100, backoffPolicy: linear, backoffDelay: PT0.05S}",
    );
    let herald = Herald::start(&*backend, &dirs, &[]).await;
    let url = herald.broker_url(NS, "b");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let send = |id: String| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let started = std::time::Instant::now();
            let status = http
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
    for i in 0..20 {
        let (id, status, _) = send(format!("before-{i}")).await;
        assert_eq!(status, 202);
        accepted.insert(id);
    }
    kill(backend);
    let down: Vec<_> = (0..3)
        .map(|i| tokio::spawn(send(format!("down-{i}"))))
        .collect();
    let mut refused = 0;
    for sent in down {
        let (id, status, took) = sent.await.unwrap();
        assert!(
            took < answer_within,
            "ingress must answer within a bounded time, took {took:?}"
        );
        match status {
            202 => {
                accepted.insert(id);
            }
            503 => refused += 1,
            other => panic!("unexpected status {other} while the log's server is down"),
        }
    }
    assert!(
        refused > 0,
        "with the log down, ingress must refuse with 503"
    );
    restart(backend);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    while i < 20 {
        let (id, status, _) = send(format!("after-{i}")).await;
        if status == 202 {
            accepted.insert(id);
            i += 1;
        } else {
            assert!(
                std::time::Instant::now() < deadline,
                "ingress did not recover after the log came back: {status}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let got: BTreeSet<String> = ids(&subscriber).into_iter().collect();
        if accepted.is_subset(&got) {
            break;
        }
        let missing: Vec<_> = accepted.difference(&got).take(5).collect();
        assert!(
            std::time::Instant::now() < deadline,
            "never delivered: {missing:?}\n{}",
            herald.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
