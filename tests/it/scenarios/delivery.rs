//! Delivery semantics: retries, backoff, Retry-After, timeouts, dead letters, parking, replies.

use std::time::Duration;

use base64::Engine;

use super::*;
use crate::common::{Backend, Herald, HeraldDirs, Reply};

fn gaps(subscriber: &Subscriber) -> Vec<Duration> {
    subscriber
        .received()
        .windows(2)
        .map(|w| w[1].at - w[0].at)
        .collect()
}

/// Each gap is at least the expected wait and not absurdly more.
fn assert_spacing(actual: &[Duration], expected_ms: &[u64]) {
    assert_eq!(
        actual.len(),
        expected_ms.len(),
        "attempt count: gaps {actual:?}"
    );
    for (gap, want) in actual.iter().zip(expected_ms) {
        let want = Duration::from_millis(*want);
        assert!(
            *gap + Duration::from_millis(15) >= want,
            "gap {gap:?} shorter than backoff {want:?} (all: {actual:?})"
        );
        assert!(
            *gap < want + Duration::from_millis(1500),
            "gap {gap:?} far above backoff {want:?} (all: {actual:?})"
        );
    }
}

async fn backoff_case(backend: &dyn Backend, policy: &str, expected_ms: &[u64]) {
    let sub = Subscriber::start().await;
    sub.script([Reply::status(503), Reply::status(500), Reply::status(404)]);
    let delivery = format!("delivery: {{retry: 3, backoffPolicy: {policy}, backoffDelay: PT0.2S}}");
    let dirs = one_trigger(&sub.url(), &delivery);
    let herald = Herald::start(backend, &dirs, &[]).await;
    accept(&herald, "e1", "t", &[]).await;
    sub.wait_for(4).await;
    assert_spacing(&gaps(&sub), expected_ms);
    let failed_lines = herald
        .logs()
        .lines()
        .filter(|l| l.contains("delivery attempt failed") && l.contains("e1"))
        .count();
    assert_eq!(
        failed_lines,
        3,
        "one log line per failed attempt:\n{}",
        herald.logs()
    );
}

pub async fn linear_backoff(backend: &dyn Backend) {
    backoff_case(backend, "linear", &[200, 400, 600]).await;
}

pub async fn exponential_backoff(backend: &dyn Backend) {
    backoff_case(backend, "exponential", &[200, 400, 800]).await;
}

pub async fn retry_after_is_honoured(backend: &dyn Backend) {
    let sub = Subscriber::start().await;
    sub.script([
        Reply::status(429).header("retry-after", "1"),
        Reply::status(503).header("retry-after", "1"),
    ]);
    let capped = Subscriber::start().await;
    capped.script([Reply::status(503).header("retry-after", "30")]);
    let config = broker_yaml("b", None)
        + &trigger_yaml("t", "b", &sub.url(), "filter: {attributes: {type: plain}}, delivery: {retry: 3, backoffPolicy: linear, backoffDelay: PT0.05S}")
        + &trigger_yaml("capped", "b", &capped.url(), "filter: {attributes: {type: capped}}, delivery: {retry: 1, backoffPolicy: linear, backoffDelay: PT0.05S, retryAfterMax: PT0.3S}");
    let dirs = HeraldDirs::new(&config);
    let herald = Herald::start(backend, &dirs, &[]).await;
    accept(&herald, "e1", "plain", &[]).await;
    accept(&herald, "e2", "capped", &[]).await;
    sub.wait_for(3).await;
    assert_spacing(&gaps(&sub), &[1000, 1000]);
    capped.wait_for(2).await;
    assert_spacing(&gaps(&capped), &[300]);
}

pub async fn timeout_then_dead_letter(backend: &dyn Backend) {
    let sub = Subscriber::start().await;
    sub.set_default(Reply::status(200).delay(Duration::from_secs(3)));
    let dls = Subscriber::start().await;
    let delivery = format!(
        "delivery: {{retry: 1, timeout: PT0.3S, deadLetterSink: {{uri: '{}'}}}}",
        dls.url()
    );
    let dirs = one_trigger(&sub.url(), &delivery);
    let herald = Herald::start(backend, &dirs, &[]).await;
    accept(&herald, "slow", "t", &[]).await;
    let got = dls.wait_for(1).await;
    assert_eq!(sub.received().len(), 2, "one attempt and one retry");
    let dead = &got[0];
    assert_eq!(dead.ce("id"), Some("slow"));
    assert_eq!(
        dead.ce("knativeerrorcode"),
        Some("500"),
        "timeouts count as 500"
    );
    assert_eq!(dead.ce("knativeerrordest"), Some(sub.url().as_str()));
    let data = base64::engine::general_purpose::STANDARD
        .decode(dead.ce("knativeerrordata").unwrap())
        .unwrap();
    assert!(
        String::from_utf8_lossy(&data).contains("timed out"),
        "{}",
        String::from_utf8_lossy(&data)
    );
    assert_eq!(
        dead.header("prefer"),
        None,
        "dead-letter sinks are not asked for replies"
    );
}

pub async fn dead_letter_extensions(backend: &dyn Backend) {
    let sub = Subscriber::start().await;
    let long_body = "x".repeat(3000);
    sub.set_default(Reply::status(422).body(format!("bad thing {long_body}")));
    let dls = Subscriber::start().await;
    let delivery = format!(
        "delivery: {{retry: 5, deadLetterSink: {{uri: '{}'}}}}",
        dls.url()
    );
    let dirs = one_trigger(&sub.url(), &delivery);
    let herald = Herald::start(backend, &dirs, &[]).await;
    accept(&herald, "d1", "t", &[("ce-myext", "kept")]).await;
    let dead = dls.wait_for(1).await.remove(0);
    assert_eq!(sub.received().len(), 1, "422 is not retried");
    assert_eq!(dead.ce("knativeerrorcode"), Some("422"));
    assert_eq!(dead.ce("knativeerrordest"), Some(sub.url().as_str()));
    assert_eq!(dead.ce("myext"), Some("kept"));
    assert_eq!(
        dead.body.as_ref(),
        b"data of d1",
        "the original data goes to the dead-letter sink"
    );
    let text = dead.ce("knativeerrordata").unwrap();
    assert_eq!(
        text.len(),
        1024,
        "knativeerrordata is the base64 text cut to 1024 characters, as Knative's MT broker"
    );
    let data = base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap();
    assert_eq!(data.len(), 768);
    assert!(data.starts_with(b"bad thing "));

    // An answer without a body: knativeerrordata is set, and empty.
    sub.set_default(Reply::status(422));
    accept(&herald, "d2", "t", &[]).await;
    let got = dls.wait_for_id("d2").await;
    let dead = got.iter().find(|r| r.ce("id") == Some("d2")).unwrap();
    assert_eq!(dead.ce("knativeerrordata"), Some(""));
}

pub async fn parked_when_dead_letter_sink_is_down(backend: &dyn Backend) {
    let sub = Subscriber::start().await;
    sub.set_default(Reply::status(500).body("subscriber broke"));
    let dead_port = crate::common::free_port();
    let config = broker_yaml("b", None)
        + &trigger_yaml(
            "withdls",
            "b",
            &sub.url(),
            &format!(
                "delivery: {{retry: 1, deadLetterSink: {{uri: 'http://127.0.0.1:{dead_port}/'}}}}"
            ),
        )
        + &trigger_yaml("nodls", "b", &sub.url(), "delivery: {retry: 0}");
    let dirs = HeraldDirs::new(&config);
    let herald = Herald::start(backend, &dirs, &[]).await;
    accept(&herald, "p1", "t", &[]).await;
    crate::common::wait_until("both triggers to park p1", || {
        herald
            .logs()
            .lines()
            .filter(|l| l.contains("event parked") && l.contains("p1"))
            .count()
            == 2
    })
    .await;
    assert_eq!(herald.terminate().await.code(), Some(0));

    // The parked events are in the log's dead-letter store, with their failure history.
    let log = backend.open_log(&dirs).await;
    let broker = herald_broker::BrokerKey::new(NS, "b");
    log.ensure_broker(&broker, &Default::default())
        .await
        .unwrap();
    let with_dls = log.parked(&broker, "trigger-withdls").await.unwrap();
    assert_eq!(with_dls.len(), 1);
    assert_eq!(with_dls[0].record.event.id(), "p1");
    assert_eq!(with_dls[0].failure.attempts, 2);
    assert_eq!(with_dls[0].failure.last_status, Some(500));
    assert!(with_dls[0].failure.last_error.contains("subscriber broke"));
    assert!(
        with_dls[0].failure.reason.contains("dead-letter sink"),
        "{:?}",
        with_dls[0].failure
    );
    let without = log.parked(&broker, "trigger-nodls").await.unwrap();
    assert_eq!(without.len(), 1);
    assert!(without[0].failure.reason.contains("no dead-letter sink"));
    log.close().await.unwrap();
}

pub async fn replies_are_published_to_the_broker(backend: &dyn Backend) {
    let responder = Subscriber::start().await;
    responder.script([
        // A binary-mode reply event.
        Reply::status(200)
            .header("ce-specversion", "1.0")
            .header("ce-id", "reply-1")
            .header("ce-source", "/responder")
            .header("ce-type", "response")
            .header("content-type", "application/json")
            .body(r#"{"answer":42}"#),
        // 202 is never a reply, even with an event in it.
        Reply::status(202)
            .header("ce-specversion", "1.0")
            .header("ce-id", "not-a-reply")
            .header("ce-source", "/responder")
            .header("ce-type", "response"),
        // A structured reply.
        Reply::status(200)
            .header("content-type", "application/cloudevents+json")
            .body(r#"{"specversion":"1.0","id":"reply-2","source":"/responder","type":"response","data":{"n":2}}"#),
        // A plain body without CloudEvent markers: success, no reply.
        Reply::status(200).header("content-type", "application/json").body(r#"{"ok":true}"#),
    ]);
    let replies = Subscriber::start().await;
    let config = broker_yaml("b", None)
        + &trigger_yaml(
            "responder",
            "b",
            &responder.url(),
            "filter: {attributes: {type: request}}, delivery: {retry: 0}",
        )
        + &trigger_yaml(
            "replies",
            "b",
            &replies.url(),
            "filter: {attributes: {type: response}}",
        );
    let dirs = HeraldDirs::new(&config);
    let herald = Herald::start(backend, &dirs, &["--max-in-flight", "1"]).await;
    let url = herald.broker_url(NS, "b");
    for id in ["q1", "q2", "q3", "q4"] {
        assert_eq!(send_binary(&url, id, "request", &[]).await, 202);
    }
    responder.wait_for(4).await;
    assert_eq!(send_binary(&url, "end", "response", &[]).await, 202);
    // On a partitioned log the sentinel may overtake the replies: wait for all three.
    replies.wait_for(3).await;
    assert_eq!(sorted_ids(&replies), ["end", "reply-1", "reply-2"]);
    let got = replies.received();
    let first = got.iter().find(|r| r.ce("id") == Some("reply-1")).unwrap();
    assert_eq!(first.body.as_ref(), br#"{"answer":42}"#);
    assert!(
        first.ce("knativearrivaltime").is_some(),
        "replies go through ingress"
    );
    let second = got.iter().find(|r| r.ce("id") == Some("reply-2")).unwrap();
    assert_eq!(second.body.as_ref(), br#"{"n":2}"#);
}

pub async fn ttl_stops_reply_loops(backend: &dyn Backend) {
    let looper = Subscriber::start().await;
    let dls = Subscriber::start().await;
    // Each reply is a new event (distinct ids: a log may drop a repeated source+id as a
    // duplicate, which the spec allows).
    looper.script((1..=5).map(|hop| {
        Reply::status(200)
            .header("ce-specversion", "1.0")
            .header("ce-id", &format!("again-{hop}"))
            .header("ce-source", "/loop")
            .header("ce-type", "loop")
    }));
    let delivery = format!("filter: {{attributes: {{type: loop}}}}, delivery: {{retry: 2, deadLetterSink: {{uri: '{}'}}}}", dls.url());
    let dirs = one_trigger(&looper.url(), &delivery);
    let herald = Herald::start(backend, &dirs, &[]).await;
    // TTL 4 arrives as 3; the replies carry 3, 2, 1; the third reply would reach 0 and is refused.
    accept(&herald, "start", "loop", &[("ce-knativebrokerttl", "4")]).await;
    let dead = dls.wait_for(1).await.remove(0);
    assert_eq!(
        looper.received().len(),
        3,
        "three hops, then the loop is cut"
    );
    assert_eq!(
        dead.ce("id"),
        Some("again-2"),
        "the event whose reply was refused"
    );
    assert!(looper
        .received()
        .iter()
        .all(|r| r.ce("knativebrokerttl").is_none()));
}

pub async fn dead_subscriber_does_not_hold_back_others(backend: &dyn Backend) {
    let live = Subscriber::start().await;
    let dead = format!("http://127.0.0.1:{}/", crate::common::free_port());
    let config = broker_yaml("b", None)
        + &trigger_yaml(
            "dead",
            "b",
            &dead,
            "delivery: {retry: 100, backoffPolicy: linear, backoffDelay: PT0.1S}",
        )
        + &trigger_yaml("live", "b", &live.url(), "");
    let dirs = HeraldDirs::new(&config);
    // A window of 2: the dead trigger's window is full at once.
    let herald = Herald::start(backend, &dirs, &["--max-in-flight", "2"]).await;
    for i in 0..20 {
        accept(&herald, &format!("e{i}"), "t", &[]).await;
    }
    live.wait_for(20).await;
    let mut want: Vec<String> = (0..20).map(|i| format!("e{i}")).collect();
    want.sort();
    assert_eq!(sorted_ids(&live), want);
}

pub async fn ordered_per_partition_key(backend: &dyn Backend) {
    let sub = Subscriber::start().await;
    sub.script([Reply::status(503)]);
    sub.set_default(Reply::status(200).delay(Duration::from_millis(20)));
    let trigger = format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: t\n  namespace: {NS}\n  annotations:\n    kafka.eventing.knative.dev/delivery.order: ordered\nspec: {{broker: b, subscriber: {{uri: '{}'}}, delivery: {{retry: 5, backoffPolicy: linear, backoffDelay: PT0.1S}}}}\n",
        sub.url()
    );
    let dirs = HeraldDirs::new(&(broker_yaml("b", None) + &trigger));
    let herald = Herald::start(backend, &dirs, &[]).await;
    for i in 0..5 {
        for key in ["k1", "k2"] {
            accept(
                &herald,
                &format!("{key}-{i}"),
                "t",
                &[("ce-partitionkey", key)],
            )
            .await;
        }
    }
    // Ten deliveries plus the one refused attempt.
    let got = sub.wait_for(11).await;
    for key in ["k1", "k2"] {
        let order: Vec<&str> = got[1..]
            .iter()
            .filter(|r| r.ce("partitionkey") == Some(key))
            .filter_map(|r| r.ce("id"))
            .collect();
        let want: Vec<String> = (0..5).map(|i| format!("{key}-{i}")).collect();
        assert_eq!(
            order,
            want,
            "deliveries of {key} out of order (first attempt was {:?})",
            got[0].ce("id")
        );
    }
}

pub async fn outbound_requests_are_bounded_across_triggers(backend: &dyn Backend) {
    let sub = Subscriber::start().await;
    sub.set_default(Reply::status(200).delay(Duration::from_millis(200)));
    let config = broker_yaml("b", None)
        + &trigger_yaml("one", "b", &sub.url(), "")
        + &trigger_yaml("two", "b", &sub.url(), "");
    let dirs = HeraldDirs::new(&config);
    let herald = Herald::start(backend, &dirs, &["--max-outbound", "3"]).await;
    for i in 0..6 {
        accept(&herald, &format!("e{i}"), "t", &[]).await;
    }
    sub.wait_for(12).await;
    assert!(
        sub.max_concurrent() <= 3,
        "{} requests at once",
        sub.max_concurrent()
    );
    assert_eq!(sub.max_concurrent(), 3, "the bound is used, not undershot");
}
