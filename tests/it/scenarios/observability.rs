//! `/metrics` after known traffic, trace context reaching subscribers, and OTLP span export.

use super::*;
use crate::common::otlp::{ExportedSpan, OtlpReceiver};
use crate::common::{wait_until, Backend, Herald, HeraldDirs, Reply};

/// The value of the series `name` whose labels include all of `labels`, if exposed.
fn series(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            let all = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            (metric == name && all)
                .then(|| value.parse().ok())
                .flatten()
        })
}

#[allow(
    clippy::disallowed_methods,
    reason = "a test reading its own server's answer"
)]
async fn scrape(herald: &Herald) -> String {
    client()
        .get(format!("{}/metrics", herald.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits until `/metrics` shows `name{labels}` at exactly `want`.
pub async fn wait_for_series(herald: &Herald, name: &str, labels: &[(&str, &str)], want: f64) {
    let deadline = tokio::time::Instant::now() + crate::common::DEADLINE;
    loop {
        let text = scrape(herald).await;
        let got = series(&text, name, labels);
        if got == Some(want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}{labels:?} is {got:?}, want {want}\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

pub async fn metrics_count_exactly_the_traffic(backend: &dyn Backend) {
    let ok = Subscriber::start().await;
    ok.script([Reply::status(503)]);
    let refusing = Subscriber::start().await;
    refusing.set_default(Reply::status(400));
    let config = broker_yaml("b", None)
        + &trigger_yaml("t", "b", &ok.url(), "delivery: {retry: 2}")
        + &trigger_yaml("p", "b", &refusing.url(), "delivery: {retry: 0}");
    let dirs = HeraldDirs::new(&config);
    let herald = Herald::start(backend, &dirs, &[]).await;
    for i in 0..3 {
        accept(&herald, &format!("m{i}"), "m.a", &[]).await;
    }
    let bad = client()
        .post(herald.broker_url(NS, "b"))
        .header("ce-specversion", "1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    ok.wait_for(4).await;

    let b = [("namespace", NS), ("broker", "b")];
    wait_for_series(
        &herald,
        "herald_events_received_total",
        &[b[0], b[1], ("event_type", "m.a"), ("response_code", "202")],
        3.0,
    )
    .await;
    wait_for_series(
        &herald,
        "herald_events_received_total",
        &[b[0], b[1], ("response_code", "400")],
        1.0,
    )
    .await;
    let t = [("namespace", NS), ("trigger", "t")];
    let subscriber = ("destination", "subscriber");
    wait_for_series(
        &herald,
        "herald_dispatch_attempts_total",
        &[t[0], t[1], subscriber, ("response_code", "503")],
        1.0,
    )
    .await;
    wait_for_series(
        &herald,
        "herald_dispatch_attempts_total",
        &[t[0], t[1], subscriber, ("response_code", "200")],
        3.0,
    )
    .await;
    wait_for_series(
        &herald,
        "herald_dispatch_latency_seconds_count",
        &[t[0], t[1], ("response_code", "200")],
        3.0,
    )
    .await;
    wait_for_series(&herald, "herald_retries_total", &t, 1.0).await;
    wait_for_series(&herald, "herald_events_delivered_total", &t, 3.0).await;
    wait_for_series(&herald, "herald_event_latency_seconds_count", &t, 3.0).await;
    let p = [("namespace", NS), ("trigger", "p")];
    wait_for_series(&herald, "herald_events_parked_total", &p, 3.0).await;
    wait_for_series(&herald, "herald_trigger_lag_seconds", &t, 0.0).await;
    wait_for_series(&herald, "herald_log_records", &b, 3.0).await;
    let text = scrape(&herald).await;
    assert!(
        series(&text, "herald_events_dead_lettered_total", &t).is_none(),
        "nothing was dead-lettered"
    );
    assert!(
        text.contains("process_resident_memory_bytes"),
        "process metrics are exposed"
    );
}

pub async fn trace_context_reaches_subscribers(backend: &dyn Backend) {
    let sub = Subscriber::start().await;
    let dirs = one_trigger(&sub.url(), "");
    let herald = Herald::start(backend, &dirs, &[]).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = format!("00-{trace}-00f067aa0ba902b7-01");
    accept(
        &herald,
        "traced",
        "t",
        &[("traceparent", parent.as_str()), ("tracestate", "vendor=1")],
    )
    .await;
    // The CloudEvents distributed-tracing extension counts too.
    let from_extension = format!("00-{trace}-1111111111111111-00");
    accept(
        &herald,
        "traced-ext",
        "t",
        &[("ce-traceparent", from_extension.as_str())],
    )
    .await;
    let got = sub.wait_for(2).await;
    for received in &got {
        let header = received
            .header("traceparent")
            .expect("traceparent reaches the subscriber");
        let parts: Vec<&str> = header.split('-').collect();
        assert_eq!(parts.len(), 4, "{header}");
        assert_eq!(parts[1], trace, "the trace continues: {header}");
        assert_eq!(parts[2].len(), 16);
        assert!(
            parts[2] != "00f067aa0ba902b7" && parts[2] != "1111111111111111",
            "each attempt is a new span: {header}"
        );
    }
    let traced = got.iter().find(|r| r.ce("id") == Some("traced")).unwrap();
    assert_eq!(traced.header("tracestate"), Some("vendor=1"));
    assert!(
        traced.header("traceparent").unwrap().ends_with("-01"),
        "sampled flag kept"
    );
}

/// With `--otlp-endpoint`, Herald's spans reach a real OTLP/HTTP receiver as one trace: the
/// producer's span → ingress → append, and ingress → delivery attempt, whose id is the
/// `traceparent` the subscriber received. Shutdown flushes what is still queued.
pub async fn spans_are_exported_over_otlp(backend: &dyn Backend) {
    let receiver = OtlpReceiver::start().await;
    let sub = Subscriber::start().await;
    let dirs = one_trigger(&sub.url(), "");
    let herald = Herald::start(backend, &dirs, &["--otlp-endpoint", &receiver.endpoint]).await;
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let producer_span = "b7ad6b7169203331";
    let parent = format!("00-{trace}-{producer_span}-01");
    accept(
        &herald,
        "exported",
        "t",
        &[("traceparent", parent.as_str())],
    )
    .await;
    let got = sub.wait_for(1).await;
    let sent = got[0]
        .header("traceparent")
        .expect("traceparent")
        .to_owned();
    let delivered_span = sent.split('-').nth(2).unwrap().to_owned();
    assert!(herald.terminate().await.success());

    let find = |spans: &[ExportedSpan], name: &str| {
        spans
            .iter()
            .find(|s| s.name == name && s.trace_id == trace)
            .cloned()
    };
    wait_until("ingress, append and delivery spans exported", || {
        let spans = receiver.spans();
        ["ingress", "append", "delivery attempt"]
            .iter()
            .all(|name| find(&spans, name).is_some())
    })
    .await;
    let spans = receiver.spans();
    let ingress = find(&spans, "ingress").unwrap();
    let append = find(&spans, "append").unwrap();
    let attempt = find(&spans, "delivery attempt").unwrap();
    assert_eq!(ingress.parent_span_id, producer_span, "{spans:#?}");
    assert_eq!(append.parent_span_id, ingress.span_id, "{spans:#?}");
    assert_eq!(attempt.parent_span_id, ingress.span_id, "{spans:#?}");
    assert_eq!(
        attempt.span_id, delivered_span,
        "the subscriber's parent span is the exported attempt: {sent} {spans:#?}"
    );
    assert!(
        ingress
            .service_name
            .as_deref()
            .is_some_and(|name| name.contains("herald")),
        "{ingress:?}"
    );
}

/// Producers choose event types: past `--metrics-max-event-types` per broker they share one
/// `_other` label, so `/metrics` and memory stay bounded.
pub async fn event_type_labels_are_bounded(backend: &dyn Backend) {
    let dirs = HeraldDirs::new(&broker_yaml("b", None));
    let herald = Herald::start(backend, &dirs, &["--metrics-max-event-types", "3"]).await;
    for i in 0..8 {
        accept(&herald, &format!("e{i}"), &format!("type.{i}"), &[]).await;
    }
    accept(&herald, "again", "type.0", &[]).await;
    let b = [("namespace", NS), ("broker", "b"), ("response_code", "202")];
    let received = "herald_events_received_total";
    wait_for_series(
        &herald,
        received,
        &[b[0], b[1], b[2], ("event_type", "_other")],
        5.0,
    )
    .await;
    let text = scrape(&herald).await;
    let labelled: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with(received) && line.contains("response_code=\"202\""))
        .collect();
    assert_eq!(labelled.len(), 4, "three types and _other: {labelled:#?}");
    assert_eq!(
        series(
            &text,
            received,
            &[b[0], b[1], b[2], ("event_type", "type.0")]
        ),
        Some(2.0),
        "a type seen first keeps its own label"
    );
}
