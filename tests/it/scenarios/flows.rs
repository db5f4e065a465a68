//! Channels, Subscriptions, Sequences and Parallels end to end: real step services that
//! answer with events, real sinks, the flow Knative documents.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpSocket;
use tokio::sync::Notify;

use super::*;
use crate::common::admin::AdminClient;
use crate::common::{free_port, wait_for_value, Backend, Herald, HeraldDirs, Reply};

type Answer = Arc<dyn Fn(&HeaderMap, &Bytes) -> Response + Send + Sync>;

/// A service in a flow: records what it gets (binary mode) and answers with `answer`.
pub struct FlowService {
    pub port: u16,
    seen: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    arrived: Arc<Notify>,
    server: tokio::task::JoinHandle<()>,
}

impl FlowService {
    async fn start_on(port: u16, answer: Answer) -> Self {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(([127, 0, 0, 1], port).into()).unwrap();
        let listener = socket.listen(1024).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let arrived = Arc::new(Notify::new());
        let (record, notify) = (seen.clone(), arrived.clone());
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let response = answer(&headers, &body);
            record.lock().unwrap().push((headers, body));
            notify.notify_waiters();
            async move { response }
        });
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            port,
            seen,
            arrived,
            server,
        }
    }

    /// A step that answers each event with the same event, `suffix` appended to its data.
    pub async fn appender(suffix: &'static str) -> Self {
        Self::appender_on(0, suffix).await
    }

    pub async fn appender_on(port: u16, suffix: &'static str) -> Self {
        Self::start_on(
            port,
            Arc::new(move |headers, body| {
                let mut data = body.to_vec();
                data.extend_from_slice(suffix.as_bytes());
                echo(headers, data)
            }),
        )
        .await
    }

    /// A Parallel filter: answers events of `event_type` with themselves (pass), others
    /// with nothing (skip).
    pub async fn filter(event_type: &'static str) -> Self {
        Self::start_on(
            0,
            Arc::new(move |headers, body| {
                match headers.get("ce-type").and_then(|v| v.to_str().ok()) == Some(event_type) {
                    true => echo(headers, body.to_vec()),
                    false => StatusCode::OK.into_response(),
                }
            }),
        )
        .await
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// The `ce-id`s received.
    pub fn ids(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(h, _)| Some(h.get("ce-id")?.to_str().ok()?.to_owned()))
            .collect()
    }

    /// Waits until `n` requests arrived.
    pub async fn wait_for(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + crate::common::DEADLINE;
        loop {
            let notified = self.arrived.notified();
            if self.seen.lock().unwrap().len() >= n {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("timed out waiting for {n} requests at {}", self.url());
            }
        }
    }

    pub fn stop(self) {
        self.server.abort();
    }
}

/// The same event back (binary mode), with `data` as its data.
fn echo(headers: &HeaderMap, data: Vec<u8>) -> Response {
    let mut response = (StatusCode::OK, data).into_response();
    for (name, value) in headers {
        let name_text = name.as_str();
        if name_text.starts_with("ce-") || name_text == "content-type" {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    response
        .headers_mut()
        .entry("content-type")
        .or_insert(HeaderValue::from_static("text/plain"));
    response
}

fn sequence_yaml(name: &str, steps: &[String], reply: &str) -> String {
    let steps: String = steps
        .iter()
        .map(|url| format!("    - uri: '{url}'\n      delivery: {{retry: 30, backoffPolicy: linear, backoffDelay: PT0.05S}}\n"))
        .collect();
    format!("apiVersion: flows.knative.dev/v1\nkind: Sequence\nmetadata:\n  name: {name}\n  namespace: {NS}\nspec:\n  steps:\n{steps}  reply:\n    uri: '{reply}'\n---\n")
}

fn data(received: &crate::common::subscriber::Received) -> String {
    String::from_utf8(received.body.to_vec()).unwrap()
}

/// Waits until the object at `path` on the admin API is `Ready=True`; returns it.
pub async fn wait_ready(herald: &Herald, path: &str) -> serde_json::Value {
    let admin = AdminClient::new(&herald.admin);
    wait_for_value(&format!("{path} Ready"), || async {
        let (_, object) = admin.get(path).await;
        let ready = object["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .is_some_and(|c| c["status"] == "True");
        match ready {
            true => Ok(object),
            false => Err(object.to_string()),
        }
    })
    .await
}

const SEQUENCES: &str = "/apis/flows.knative.dev/v1/namespaces/default/sequences";
const PARALLELS: &str = "/apis/flows.knative.dev/v1/namespaces/default/parallels";
const SUBSCRIPTIONS: &str = "/apis/messaging.knative.dev/v1/namespaces/default/subscriptions";

/// Knative's Sequence: three steps each append to the data, the last reply reaches the
/// sink; the Sequence answers at its own address and reports its children.
pub async fn sequence_of_three_steps(backend: &dyn Backend) {
    let steps = [
        FlowService::appender("-a").await,
        FlowService::appender("-b").await,
        FlowService::appender("-c").await,
    ];
    let sink = Subscriber::start().await;
    let urls: Vec<String> = steps.iter().map(FlowService::url).collect();
    let dirs = HeraldDirs::new(&sequence_yaml("seq", &urls, &sink.url()));
    let herald = Herald::start(backend, &dirs, &[]).await;
    let sequence = wait_ready(&herald, &format!("{SEQUENCES}/seq")).await;
    let address = sequence["status"]["address"]["url"].as_str().unwrap();
    assert_eq!(address, format!("{}/sequences/{NS}/seq", herald.ingress));
    assert_eq!(
        sequence["status"]["channelStatuses"][2]["channel"]["name"],
        "seq-kn-sequence-2"
    );

    for i in 0..3 {
        let status = send_binary(address, &format!("ev-{i}"), "t", &[]).await;
        assert_eq!(status, 202);
    }
    let got = sink.wait_for(3).await;
    let mut results: Vec<(String, String)> = got
        .iter()
        .map(|r| (r.ce("id").unwrap().to_owned(), data(r)))
        .collect();
    results.sort();
    assert_eq!(
        results,
        (0..3)
            .map(|i| (format!("ev-{i}"), format!("data of ev-{i}-a-b-c")))
            .collect::<Vec<_>>(),
        "each step appended to the data, in the Sequence's order"
    );
    for step in &steps {
        assert_eq!(step.ids().len(), 3, "each step saw each event once");
    }
}

/// Knative's Parallel: two branches behind filters and one catch-all; each filter decides
/// whether its branch's subscriber sees an event, and every branch's result reaches the
/// reply.
pub async fn parallel_with_filters_and_a_catch_all(backend: &dyn Backend) {
    let filters = [
        FlowService::filter("order").await,
        FlowService::filter("refund").await,
    ];
    let subscribers = [
        FlowService::appender("-orders").await,
        FlowService::appender("-refunds").await,
        FlowService::appender("-audit").await,
    ];
    let reply = Subscriber::start().await;
    let yaml = format!(
        "apiVersion: flows.knative.dev/v1\nkind: Parallel\nmetadata: {{name: p, namespace: {NS}}}\nspec:\n  branches:\n    - {{filter: {{uri: '{}'}}, subscriber: {{uri: '{}'}}}}\n    - {{filter: {{uri: '{}'}}, subscriber: {{uri: '{}'}}}}\n    - {{subscriber: {{uri: '{}'}}}}\n  reply: {{uri: '{}'}}\n",
        filters[0].url(),
        subscribers[0].url(),
        filters[1].url(),
        subscribers[1].url(),
        subscribers[2].url(),
        reply.url()
    );
    let dirs = HeraldDirs::new(&yaml);
    let herald = Herald::start(backend, &dirs, &[]).await;
    let parallel = wait_ready(&herald, &format!("{PARALLELS}/p")).await;
    let address = parallel["status"]["address"]["url"].as_str().unwrap();
    assert_eq!(address, format!("{}/parallels/{NS}/p", herald.ingress));

    assert_eq!(send_binary(address, "o-1", "order", &[]).await, 202);
    assert_eq!(send_binary(address, "r-1", "refund", &[]).await, 202);
    // Each event: the branch its filter passes, and the catch-all.
    let got = reply.wait_for(4).await;
    let mut results: Vec<String> = got.iter().map(data).collect();
    results.sort();
    assert_eq!(
        results,
        [
            "data of o-1-audit",
            "data of o-1-orders",
            "data of r-1-audit",
            "data of r-1-refunds"
        ]
    );
    // Both filters saw both events; a skipped event never enters its branch.
    filters[0].wait_for(2).await;
    filters[1].wait_for(2).await;
    assert_eq!(subscribers[0].ids(), ["o-1"]);
    assert_eq!(subscribers[1].ids(), ["r-1"]);
    let mut audit = subscribers[2].ids();
    audit.sort();
    assert_eq!(audit, ["o-1", "r-1"]);
}

/// A Trigger whose subscriber `ref` is a Sequence delivers into it (Knative YAML that could
/// not load before).
pub async fn trigger_into_a_sequence(backend: &dyn Backend) {
    let step = FlowService::appender("-step").await;
    let sink = Subscriber::start().await;
    let yaml = broker_yaml("b", None)
        + &sequence_yaml("seq", &[step.url()], &sink.url())
        + &format!("apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: into-seq, namespace: {NS}}}\nspec:\n  broker: b\n  subscriber:\n    ref: {{apiVersion: flows.knative.dev/v1, kind: Sequence, name: seq}}\n");
    let dirs = HeraldDirs::new(&yaml);
    let herald = Herald::start(backend, &dirs, &[]).await;
    let trigger = wait_ready(
        &herald,
        &format!("{}/into-seq", crate::common::admin::TRIGGERS),
    )
    .await;
    assert_eq!(
        trigger["status"]["subscriberUri"],
        format!("{}/sequences/{NS}/seq", herald.ingress)
    );
    wait_ready(&herald, &format!("{SEQUENCES}/seq")).await;
    accept(&herald, "through", "t", &[]).await;
    let got = sink.wait_for(1).await;
    assert_eq!(got[0].ce("id"), Some("through"));
    assert_eq!(data(&got[0]), "data of through-step");
}

/// A Subscription whose subscriber fails sends the event to its dead-letter sink with
/// Knative's extensions, after its retries.
pub async fn subscription_dead_letters(backend: &dyn Backend) {
    let failing = Subscriber::start().await;
    failing.set_default(Reply::status(500).body("down on purpose"));
    let dead_letters = Subscriber::start().await;
    let yaml = format!(
        "apiVersion: messaging.knative.dev/v1\nkind: InMemoryChannel\nmetadata: {{name: c, namespace: {NS}}}\n---\napiVersion: messaging.knative.dev/v1\nkind: Subscription\nmetadata: {{name: s, namespace: {NS}}}\nspec:\n  channel: {{apiVersion: messaging.knative.dev/v1, kind: InMemoryChannel, name: c}}\n  subscriber: {{uri: '{}'}}\n  delivery: {{retry: 2, deadLetterSink: {{uri: '{}'}}}}\n",
        failing.url(),
        dead_letters.url()
    );
    let dirs = HeraldDirs::new(&yaml);
    let herald = Herald::start(backend, &dirs, &[]).await;
    let subscription = wait_ready(&herald, &format!("{SUBSCRIPTIONS}/s")).await;
    assert_eq!(
        subscription["status"]["physicalSubscription"]["deadLetterSinkUri"],
        dead_letters.url()
    );
    let channel_url = format!("{}/channels/{NS}/c", herald.ingress);
    assert_eq!(send_binary(&channel_url, "doomed", "t", &[]).await, 202);
    let got = dead_letters.wait_for(1).await;
    assert_eq!(got[0].ce("id"), Some("doomed"));
    assert_eq!(got[0].ce("knativeerrordest"), Some(failing.url().as_str()));
    assert_eq!(got[0].ce("knativeerrorcode"), Some("500"));
    assert_eq!(failing.ids(), ["doomed", "doomed", "doomed"], "retry: 2");
}

/// SIGKILL of Herald while events are between the steps of a Sequence loses none: what a
/// channel accepted is in the log, and each hop finishes an event only once its reply is
/// stored in the next channel.
pub async fn sequence_survives_sigkill(backend: &dyn Backend) {
    let first = FlowService::appender("-1").await;
    // The second step is down: events wait in its channel, retried.
    let second_port = free_port();
    let second_url = format!("http://127.0.0.1:{second_port}/");
    let sink = Subscriber::start().await;
    let dirs = HeraldDirs::new(&sequence_yaml(
        "seq",
        &[first.url(), second_url],
        &sink.url(),
    ));
    let herald = Herald::start(backend, &dirs, &[]).await;
    let address = format!("{}/sequences/{NS}/seq", herald.ingress);
    let count = 20;
    for i in 0..count {
        assert_eq!(
            send_binary(&address, &format!("k-{i}"), "t", &[]).await,
            202
        );
    }
    // Every event passed the first step: its reply is in the second channel (or is being
    // stored: the kill may cut that short, then the first step runs again).
    first.wait_for(count).await;
    herald.kill();

    let herald = Herald::start(backend, &dirs, &[]).await;
    let second = FlowService::appender_on(second_port, "-2").await;
    crate::common::wait_until("every event to reach the sink after the restart", || {
        let got: std::collections::BTreeSet<String> = ids(&sink).into_iter().collect();
        (0..count).all(|i| got.contains(&format!("k-{i}")))
    })
    .await;
    for received in sink.received() {
        let id = received.ce("id").unwrap().to_owned();
        assert_eq!(data(&received), format!("data of {id}-1-2"));
    }
    drop(herald);
    second.stop();
}
