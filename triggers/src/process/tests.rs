//! Delivery and retry behaviour on paused tokio time: the subscriber and the dead-letter
//! sink are scripts answering each attempt, so every wait is exact and no test waits for
//! real. What HTTP does is covered end to end (tests/it/scenarios/delivery.rs).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use herald_broker::log::testsuite::sample;
use herald_broker::log::{BrokerSettings, LogConsumer, ParkedRecord, StartFrom};
use herald_broker::{
    BrokerKey, BrokerRegistry, CloudEvent, EventLog, Ingress, IngressConfig, LogError, LogRecord,
    Record, RecordId,
};
use herald_crds::BackoffPolicy;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{process, Deps, Outcome};
use crate::attempt::{Answer, Sender, Target};
use crate::stats::TriggerStats;
use crate::{RetryPolicy, TriggerPlan};

const SUBSCRIBER: &str = "http://subscriber.test/";
const SINK: &str = "http://sink.test/";

/// A log that keeps what is appended and parked.
#[derive(Default)]
struct KeepingLog {
    appended: Mutex<Vec<Record>>,
    parked: Mutex<Vec<ParkedRecord>>,
}

#[async_trait]
impl EventLog for KeepingLog {
    async fn ensure_broker(&self, _: &BrokerKey, _: &BrokerSettings) -> Result<(), LogError> {
        Ok(())
    }
    async fn append(&self, _: &BrokerKey, records: Vec<Record>) -> Result<(), LogError> {
        self.appended.lock().unwrap().extend(records);
        Ok(())
    }
    async fn consumer(
        &self,
        _: &BrokerKey,
        _: &str,
        _: StartFrom,
    ) -> Result<Box<dyn LogConsumer>, LogError> {
        Err(LogError::unavailable("no consumers in these tests"))
    }
    async fn park(&self, _: &BrokerKey, _: &str, parked: ParkedRecord) -> Result<(), LogError> {
        self.parked.lock().unwrap().push(parked);
        Ok(())
    }
    async fn parked(&self, _: &BrokerKey, _: &str) -> Result<Vec<ParkedRecord>, LogError> {
        Ok(self.parked.lock().unwrap().clone())
    }
    async fn unpark(&self, _: &BrokerKey, _: &str, _: &[RecordId]) -> Result<usize, LogError> {
        Ok(0)
    }
    async fn delete_consumer(&self, _: &BrokerKey, _: &str) -> Result<(), LogError> {
        Ok(())
    }
    async fn delete_broker(&self, _: &BrokerKey) -> Result<(), LogError> {
        Ok(())
    }
    async fn close(&self) -> Result<(), LogError> {
        Ok(())
    }
}

/// What a scripted target answers.
#[derive(Clone)]
enum Scripted {
    Status(u16, Vec<(&'static str, &'static str)>, &'static str),
    /// No answer at all: the attempt times out.
    Silence,
}

fn status(code: u16) -> Scripted {
    Scripted::Status(code, Vec::new(), "")
}

/// One attempt as a target saw it.
#[derive(Clone, Debug)]
struct Seen {
    url: String,
    /// Since the test started, on paused time.
    at: Duration,
    event: CloudEvent,
    prefer_reply: bool,
}

/// The subscriber's and the sink's scripts (the last answer repeats), and what they saw.
struct Targets {
    subscriber: Mutex<VecDeque<Scripted>>,
    sink: Mutex<VecDeque<Scripted>>,
    seen: Mutex<Vec<Seen>>,
    start: Instant,
}

impl Targets {
    fn new(subscriber: Vec<Scripted>, sink: Vec<Scripted>) -> Arc<Self> {
        Arc::new(Self {
            subscriber: Mutex::new(subscriber.into()),
            sink: Mutex::new(sink.into()),
            seen: Mutex::default(),
            start: Instant::now(),
        })
    }

    fn answer(&self, target: &Target<'_>, event: &CloudEvent) -> Scripted {
        self.seen.lock().unwrap().push(Seen {
            url: target.url.to_owned(),
            at: self.start.elapsed(),
            event: event.clone(),
            prefer_reply: target.prefer_reply,
        });
        let mut script = match target.url {
            SUBSCRIBER => self.subscriber.lock().unwrap(),
            _ => self.sink.lock().unwrap(),
        };
        match script.len() {
            0 => status(200),
            1 => script[0].clone(),
            _ => script.pop_front().unwrap_or_else(|| status(200)),
        }
    }

    /// When `url` was tried, in milliseconds since the start.
    fn times(&self, url: &str) -> Vec<u128> {
        self.seen_by(url).iter().map(|s| s.at.as_millis()).collect()
    }

    fn seen_by(&self, url: &str) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|s| s.url == url).cloned().collect()
    }
}

fn sender(targets: Arc<Targets>) -> Sender {
    Sender::scripted(Arc::new(move |target, event| {
        let answer = targets.answer(target, event);
        Box::pin(async move {
            match answer {
                Scripted::Silence => std::future::pending().await,
                Scripted::Status(status, headers, body) => {
                    let mut map = HeaderMap::new();
                    for (name, value) in headers {
                        map.insert(
                            HeaderName::from_static(name),
                            HeaderValue::from_static(value),
                        );
                    }
                    Answer::Http {
                        status,
                        headers: map,
                        body: Bytes::from_static(body.as_bytes()),
                        truncated: false,
                    }
                }
            }
        })
    }))
}

fn policy(retry: u32, backoff: Option<BackoffPolicy>, delay_ms: u64) -> RetryPolicy {
    RetryPolicy {
        retry,
        backoff_policy: backoff,
        backoff_delay: Duration::from_millis(delay_ms),
        retry_after_max: None,
        timeout: Duration::from_secs(60),
    }
}

fn plan(policy: RetryPolicy, dead_letter_sink: Option<&str>) -> TriggerPlan {
    let spec = "broker: b\nsubscriber: {uri: 'http://subscriber.test/'}\n";
    TriggerPlan {
        trust: Default::default(),
        namespace: "ns".into(),
        name: "t".into(),
        broker: BrokerKey::new("ns", "b"),
        filter: crate::filter::compile(&serde_yaml_ng::from_str(spec).unwrap()).unwrap(),
        subscriber: SUBSCRIBER.into(),
        dead_letter_sink: dead_letter_sink.map(str::to_owned),
        policy,
        format: herald_crds::DeliveryFormat::Binary,
        max_in_flight: 10,
        ordered: false,
        reply: crate::ReplyTarget::Log(BrokerKey::new("ns", "b")),
        auth: Default::default(),
    }
}

struct Run {
    outcome: Outcome,
    log: Arc<KeepingLog>,
}

/// Delivers one record for `plan` to the scripted targets.
async fn deliver(plan: &TriggerPlan, targets: &Arc<Targets>, record: Record) -> Run {
    deliver_until(plan, targets, record, &CancellationToken::new()).await
}

async fn deliver_until(
    plan: &TriggerPlan,
    targets: &Arc<Targets>,
    record: Record,
    abort: &CancellationToken,
) -> Run {
    let log = Arc::new(KeepingLog::default());
    let registry = Arc::new(BrokerRegistry::default());
    registry.insert(plan.broker.clone());
    let ingress = Arc::new(Ingress::new(
        log.clone(),
        registry,
        IngressConfig::default(),
    ));
    let deps = Deps {
        sender: sender(targets.clone()),
        log: log.clone(),
        ingress,
        tokens: None,
    };
    let record = LogRecord {
        id: RecordId {
            partition: 0,
            offset: 7,
        },
        record,
    };
    let outcome = process(plan, &deps, &record, &TriggerStats::default(), abort).await;
    Run { outcome, log }
}

/// Linear backoff waits `backoffDelay × k` before retry k; after `retry` retries the event
/// is parked (no dead-letter sink) with its attempts and last answer.
#[tokio::test(start_paused = true)]
async fn linear_backoff_waits_the_delay_times_the_retry_number() {
    let targets = Targets::new(vec![status(503)], vec![]);
    let plan = plan(policy(3, Some(BackoffPolicy::Linear), 200), None);
    let run = deliver(&plan, &targets, sample("e1")).await;
    assert_eq!(targets.times(SUBSCRIBER), [0, 200, 600, 1200]);
    assert_eq!(run.outcome, Outcome::Parked);
    let parked = run.log.parked.lock().unwrap().clone();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].failure.attempts, 4);
    assert_eq!(parked[0].failure.last_status, Some(503));
    assert_eq!(
        parked[0].failure.reason,
        "the trigger has no dead-letter sink"
    );
}

/// Exponential backoff waits `backoffDelay × 2^(k-1)` before retry k.
#[tokio::test(start_paused = true)]
async fn exponential_backoff_doubles_the_wait() {
    let targets = Targets::new(vec![status(500)], vec![]);
    let plan = plan(policy(4, Some(BackoffPolicy::Exponential), 200), None);
    deliver(&plan, &targets, sample("e1")).await;
    assert_eq!(targets.times(SUBSCRIBER), [0, 200, 600, 1400, 3000]);
}

/// Without a backoff policy retries come at once; success ends the retries.
#[tokio::test(start_paused = true)]
async fn without_a_policy_retries_at_once_until_success() {
    let targets = Targets::new(vec![status(404), status(408), status(202)], vec![]);
    let plan = plan(policy(5, None, 200), None);
    let run = deliver(&plan, &targets, sample("e1")).await;
    assert_eq!(targets.times(SUBSCRIBER), [0, 0, 0]);
    assert_eq!(run.outcome, Outcome::Delivered);
}

/// `Retry-After` on 429 and 503 is waited for when longer than the backoff; on other
/// statuses it is ignored.
#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_on_429_and_503_only() {
    let answers = vec![
        Scripted::Status(429, vec![("retry-after", "2")], ""),
        Scripted::Status(503, vec![("retry-after", "3")], ""),
        Scripted::Status(500, vec![("retry-after", "7")], ""),
        status(200),
    ];
    let targets = Targets::new(answers, vec![]);
    let plan = plan(policy(5, Some(BackoffPolicy::Linear), 100), None);
    let run = deliver(&plan, &targets, sample("e1")).await;
    // 2 s, 3 s, then the third retry's own backoff: 300 ms.
    assert_eq!(targets.times(SUBSCRIBER), [0, 2000, 5000, 5300]);
    assert_eq!(run.outcome, Outcome::Delivered);
}

/// `retryAfterMax` caps the header; zero ignores it; unset honours it whole.
#[tokio::test(start_paused = true)]
async fn retry_after_max_caps_or_disables_the_header() {
    for (max, want) in [(Some(500), 500), (Some(0), 100), (None, 30_000)] {
        let targets = Targets::new(
            vec![
                Scripted::Status(503, vec![("retry-after", "30")], ""),
                status(200),
            ],
            vec![],
        );
        let mut policy = policy(1, Some(BackoffPolicy::Linear), 100);
        policy.retry_after_max = max.map(Duration::from_millis);
        deliver(&plan(policy, None), &targets, sample("e1")).await;
        assert_eq!(
            targets.times(SUBSCRIBER),
            [0, want],
            "retryAfterMax {max:?}"
        );
    }
}

/// An attempt without an answer fails after `timeout` and counts as status 500 for the
/// dead-letter sink, which gets the event without `Prefer: reply`.
#[tokio::test(start_paused = true)]
async fn a_timed_out_attempt_is_retried_then_dead_lettered() {
    let targets = Targets::new(vec![Scripted::Silence], vec![status(202)]);
    let mut policy = policy(1, Some(BackoffPolicy::Linear), 100);
    policy.timeout = Duration::from_secs(1);
    let plan = plan(policy, Some(SINK));
    let run = deliver(&plan, &targets, sample("e1")).await;
    assert_eq!(targets.times(SUBSCRIBER), [0, 1100]);
    assert_eq!(targets.times(SINK), [2100]);
    assert_eq!(run.outcome, Outcome::DeadLettered);
    let dead = &targets.seen_by(SINK)[0];
    assert!(
        !dead.prefer_reply,
        "dead-letter sinks are not asked for replies"
    );
    assert!(targets.seen_by(SUBSCRIBER)[0].prefer_reply);
    assert_eq!(dead.event.text("knativeerrorcode").as_deref(), Some("500"));
    let data = base64::engine::general_purpose::STANDARD
        .decode(dead.event.text("knativeerrordata").unwrap().as_bytes())
        .unwrap();
    assert_eq!(data, b"dispatch error: timed out after 1s");
}

/// A permanent failure (a 4xx other than 404, 408, 409 and 429) is not retried: the sink
/// gets the event with Knative's error extensions.
#[tokio::test(start_paused = true)]
async fn a_permanent_failure_goes_to_the_dead_letter_sink_at_once() {
    let targets = Targets::new(
        vec![Scripted::Status(400, vec![], "bad thing")],
        vec![status(200)],
    );
    let plan = plan(policy(5, Some(BackoffPolicy::Linear), 100), Some(SINK));
    let run = deliver(&plan, &targets, sample("e1")).await;
    assert_eq!(targets.times(SUBSCRIBER), [0]);
    assert_eq!(targets.times(SINK), [0]);
    assert_eq!(run.outcome, Outcome::DeadLettered);
    let dead = &targets.seen_by(SINK)[0].event;
    assert_eq!(dead.id(), "e1");
    assert_eq!(dead.text("knativeerrorcode").as_deref(), Some("400"));
    assert_eq!(dead.text("knativeerrordest").as_deref(), Some(SUBSCRIBER));
    let data = base64::engine::general_purpose::STANDARD.encode("bad thing");
    assert_eq!(
        dead.text("knativeerrordata").as_deref(),
        Some(data.as_str())
    );
}

/// The sink is retried with the trigger's policy; when it fails too, the event is parked
/// with the subscriber's failure and why.
#[tokio::test(start_paused = true)]
async fn a_failing_dead_letter_sink_parks_the_event() {
    let targets = Targets::new(vec![status(500)], vec![status(503)]);
    let plan = plan(policy(2, Some(BackoffPolicy::Linear), 100), Some(SINK));
    let run = deliver(&plan, &targets, sample("e1")).await;
    assert_eq!(targets.times(SUBSCRIBER), [0, 100, 300]);
    assert_eq!(targets.times(SINK), [300, 400, 600]);
    assert_eq!(run.outcome, Outcome::Parked);
    let parked = run.log.parked.lock().unwrap().clone();
    assert_eq!(parked[0].failure.attempts, 3);
    assert_eq!(parked[0].failure.last_status, Some(500));
    assert!(
        parked[0]
            .failure
            .reason
            .starts_with("the dead-letter sink http://sink.test/ failed (status 503)"),
        "{:?}",
        parked[0].failure
    );
}

/// A 200 with an event in binary mode is a reply: it is published to the trigger's broker
/// with the original event's time to live, less one.
#[tokio::test(start_paused = true)]
async fn a_reply_is_published_to_the_broker_with_the_ttl() {
    let reply = Scripted::Status(
        200,
        vec![
            ("ce-specversion", "1.0"),
            ("ce-id", "r1"),
            ("ce-source", "/replier"),
            ("ce-type", "reply.type"),
            ("content-type", "text/plain"),
        ],
        "the answer",
    );
    let targets = Targets::new(vec![reply], vec![]);
    let plan = plan(policy(0, None, 0), None);
    let mut record = sample("e1");
    record.event.set("knativebrokerttl", "5");
    let run = deliver(&plan, &targets, record).await;
    assert_eq!(run.outcome, Outcome::Delivered);
    let sent = &targets.seen_by(SUBSCRIBER)[0].event;
    assert_eq!(
        sent.text("knativebrokerttl"),
        None,
        "the TTL is not delivered"
    );
    let appended = run.log.appended.lock().unwrap().clone();
    assert_eq!(appended.len(), 1);
    let stored = &appended[0].event;
    assert_eq!(stored.id(), "r1");
    assert_eq!(stored.text("type").as_deref(), Some("reply.type"));
    assert_eq!(stored.data().map(|d| &d[..]), Some(&b"the answer"[..]));
    assert_eq!(stored.text("knativebrokerttl").as_deref(), Some("4"));
}

/// A 202, or a 200 without an event, is a plain success: nothing is published.
#[tokio::test(start_paused = true)]
async fn an_answer_without_an_event_is_no_reply() {
    let event_headers = vec![
        ("ce-specversion", "1.0"),
        ("ce-id", "r1"),
        ("ce-source", "/replier"),
        ("ce-type", "reply.type"),
    ];
    for answer in [
        Scripted::Status(202, event_headers, "x"),
        Scripted::Status(200, vec![], "{}"),
    ] {
        let targets = Targets::new(vec![answer], vec![]);
        let run = deliver(&plan(policy(0, None, 0), None), &targets, sample("e1")).await;
        assert_eq!(run.outcome, Outcome::Delivered);
        assert!(run.log.appended.lock().unwrap().is_empty());
    }
}

/// Shutdown during a backoff ends the work at once, without parking: the record is
/// redelivered after the restart.
#[tokio::test(start_paused = true)]
async fn an_abort_during_a_backoff_ends_the_work() {
    let targets = Targets::new(vec![status(503)], vec![]);
    let plan = plan(policy(3, Some(BackoffPolicy::Linear), 10_000), None);
    let abort = CancellationToken::new();
    let cancel = abort.clone();
    let started = Instant::now();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        cancel.cancel();
    });
    let run = deliver_until(&plan, &targets, sample("e1"), &abort).await;
    assert_eq!(run.outcome, Outcome::Aborted);
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    assert_eq!(targets.times(SUBSCRIBER), [0]);
    assert!(run.log.parked.lock().unwrap().is_empty());
}

/// The subscriber's answer carrying an event, for the reply tests.
fn replying() -> Scripted {
    Scripted::Status(
        200,
        vec![
            ("ce-specversion", "1.0"),
            ("ce-id", "r1"),
            ("ce-source", "/replier"),
            ("ce-type", "reply.type"),
        ],
        "",
    )
}

/// A Subscription without `spec.reply` drops its subscriber's reply (Knative's rule): the
/// delivery succeeds and nothing is stored.
#[tokio::test(start_paused = true)]
async fn a_reply_without_a_reply_target_is_dropped() {
    let targets = Targets::new(vec![replying()], vec![]);
    let plan = TriggerPlan {
        trust: Default::default(),
        reply: crate::ReplyTarget::Drop,
        auth: Default::default(),
        ..plan(policy(0, None, 0), None)
    };
    let run = deliver(&plan, &targets, sample("e1")).await;
    assert_eq!(run.outcome, Outcome::Delivered);
    assert!(run.log.appended.lock().unwrap().is_empty());
    assert_eq!(targets.seen_by(SUBSCRIBER).len(), 1);
}

/// A Subscription's reply goes to its reply URL; when that fails, the whole delivery is
/// retried, then the original event goes to the dead-letter sink with `knativeerrordest`
/// naming the reply URL.
#[tokio::test(start_paused = true)]
async fn a_failing_reply_url_fails_the_delivery_and_names_itself() {
    const REPLY: &str = "http://reply.test/";
    // The reply URL and the sink share the non-subscriber script: two failed replies, then
    // the sink takes the event.
    let targets = Targets::new(
        vec![replying()],
        vec![status(500), status(500), status(200)],
    );
    let plan = TriggerPlan {
        trust: Default::default(),
        reply: crate::ReplyTarget::Http(REPLY.to_owned()),
        auth: Default::default(),
        ..plan(policy(1, None, 0), Some(SINK))
    };
    let run = deliver(&plan, &targets, sample("e1")).await;
    assert_eq!(run.outcome, Outcome::DeadLettered);
    assert_eq!(targets.seen_by(SUBSCRIBER).len(), 2, "retried as a whole");
    let replies = targets.seen_by(REPLY);
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[0].event.id(), "r1");
    assert!(!replies[0].prefer_reply);
    let dead = &targets.seen_by(SINK)[0].event;
    assert_eq!(dead.id(), "e1", "the original event, not the reply");
    assert_eq!(dead.text("knativeerrordest").as_deref(), Some(REPLY));
    assert_eq!(dead.text("knativeerrorcode").as_deref(), Some("500"));
    assert!(run.log.appended.lock().unwrap().is_empty());
}
