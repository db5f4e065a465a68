//! EventTransform and RequestReply through the binary (embedded log): `examples/transforms`
//! run unchanged with real HTTP subscribers; a bad expression is refused at load; a
//! RequestReply's round trip, its timeout and a forged reply.

use crate::common;
use crate::scenarios::flows::wait_ready;
use common::herald::Sled;
use common::{Herald, HeraldDirs, Reply, Subscriber};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/transforms");
const TRANSFORMS: &str = "/apis/eventing.knative.dev/v1alpha1/namespaces/default/eventtransforms";
const REQUEST_REPLIES: &str =
    "/apis/eventing.knative.dev/v1alpha1/namespaces/default/requestreplies";

fn service(name: &str, url: &str) -> String {
    format!("serving.knative.dev/v1/Service/{name}={url}")
}

async fn start_examples(services: &[(&str, String)]) -> Herald {
    let mut args = vec!["--config".to_owned(), EXAMPLES.to_owned()];
    for (name, url) in services {
        args.extend(["--resolve".to_owned(), service(name, url)]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Herald::start(&Sled, &HeraldDirs::new(""), &args).await
}

/// A response body, read up to 1 MiB.
async fn body_text(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        body.extend_from_slice(&chunk);
        assert!(body.len() <= 1 << 20, "a response body above 1 MiB");
    }
    String::from_utf8(body).unwrap()
}

/// A structured-mode order event.
fn order(id: &str) -> serde_json::Value {
    serde_json::json!({
        "specversion": "1.0", "id": id, "type": "order.created", "source": "/shop",
        "datacontenttype": "application/json",
        "data": {"order": {"id": 42, "total": 250, "customer": {"first": "Ada", "last": "Lovelace"}}}
    })
}

async fn post_structured(url: &str, event: &serde_json::Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/cloudevents+json")
        .body(event.to_string())
        .send()
        .await
        .unwrap()
}

/// A Trigger's subscriber is an EventTransform (a `ref`): its answer, a new CloudEvent, is
/// the Trigger's reply, and a second Trigger takes it to its sink reshaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_transform_as_a_trigger_subscriber_reshapes_events() {
    let display = Subscriber::start().await;
    let audit = Subscriber::start().await;
    let responder = Subscriber::start().await;
    let herald = start_examples(&[
        ("event-display", display.url()),
        ("audit", audit.url()),
        ("responder", responder.url()),
    ])
    .await;
    let status = wait_ready(&herald, &format!("{TRANSFORMS}/order-summary")).await;
    assert_eq!(
        status["status"]["address"]["url"],
        format!("{}/eventtransforms/default/order-summary", herald.ingress)
    );
    let response = post_structured(&herald.broker_url("default", "shop"), &order("o-1")).await;
    assert_eq!(response.status(), 202);

    let got = display.wait_for(1).await;
    assert_eq!(got[0].ce("type"), Some("order.summary"));
    assert_eq!(got[0].ce("id"), Some("o-1"));
    assert_eq!(got[0].ce("source"), Some("/transforms/order-summary"));
    let data: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(
        data,
        serde_json::json!({"orderId": 42, "customer": "Ada Lovelace", "priority": "high"})
    );
}

/// An EventTransform with a sink posts its result there and passes the sink's answer back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_transform_with_a_sink_posts_the_result_and_passes_the_answer_back() {
    let display = Subscriber::start().await;
    let audit = Subscriber::start().await;
    audit.set_default(Reply::status(201).body("noted"));
    let responder = Subscriber::start().await;
    let herald = start_examples(&[
        ("event-display", display.url()),
        ("audit", audit.url()),
        ("responder", responder.url()),
    ])
    .await;
    let status = wait_ready(&herald, &format!("{TRANSFORMS}/audit-tag")).await;
    assert_eq!(status["status"]["sinkUri"], audit.url());

    let url = format!("{}/eventtransforms/default/audit-tag", herald.ingress);
    let response = post_structured(&url, &order("o-2")).await;
    assert_eq!(response.status(), 201, "the sink's status");
    assert_eq!(body_text(response).await, "noted", "the sink's body");
    let got = audit.wait_for(1).await;
    assert_eq!(
        got[0].header("content-type"),
        Some("application/cloudevents+json")
    );
    let sent: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(sent["type"], "audit.order.created");
    assert_eq!(sent["audited"], "true");
    assert_eq!(sent["id"], "o-2");
    assert_eq!(sent["data"]["order"]["id"], 42);
}

/// A JSONata expression that does not parse is refused at load, naming the field: Herald
/// exits (a Herald that starts anyway is killed at the deadline and the test fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_expression_is_refused_at_load() {
    let dirs = HeraldDirs::new(
        r#"
apiVersion: eventing.knative.dev/v1alpha1
kind: EventTransform
metadata:
  name: broken
spec:
  jsonata:
    expression: '{"type": "x" & }'
"#,
    );
    let child = tokio::process::Command::new(common::herald::herald_binary())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--config")
        .arg(dirs.config_file())
        .arg("--data-dir")
        .arg(dirs.data.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("herald started with a bad JSONata expression")
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("spec.jsonata.expression") && stderr.contains("invalid JSONata expression"),
        "{stderr}"
    );
}

/// The request reaches the responder with its correlation value; the responder publishes
/// the reply into the broker; the request is answered 200 with that reply in binary mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_reply_round_trip_answers_with_the_correlated_reply() {
    let display = Subscriber::start().await;
    let audit = Subscriber::start().await;
    let responder = Subscriber::start().await;
    let herald = start_examples(&[
        ("event-display", display.url()),
        ("audit", audit.url()),
        ("responder", responder.url()),
    ])
    .await;
    wait_ready(&herald, &format!("{REQUEST_REPLIES}/request-reply")).await;

    let url = format!("{}/requestreplies/default/request-reply", herald.ingress);
    let request = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .header("ce-specversion", "1.0")
            .header("ce-id", "req-1")
            .header("ce-source", "/client")
            .header("ce-type", "com.example.request")
            .header("content-type", "text/plain")
            .body("question")
            .send()
            .await
            .unwrap()
    });
    let got = responder.wait_for(1).await;
    let correlation = got[0].ce("correlationid").unwrap().to_owned();
    assert!(correlation.starts_with("req-1:"), "{correlation}");
    let reply = reqwest::Client::new()
        .post(herald.broker_url("default", "requests"))
        .header("ce-specversion", "1.0")
        .header("ce-id", "reply-1")
        .header("ce-source", "/responder")
        .header("ce-type", "com.example.reply")
        .header("ce-replyid", &correlation)
        .header("content-type", "text/plain")
        .body("answer")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 202);

    let response = request.await.unwrap();
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(header("ce-id").as_deref(), Some("reply-1"));
    assert_eq!(header("ce-type").as_deref(), Some("com.example.reply"));
    assert_eq!(body_text(response).await, "answer");
}

/// A reply whose attribute does not verify (the right id, a forged token) is dropped: the
/// request gets no answer and ends 504 at `spec.timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_reply_is_ignored_and_the_request_times_out_with_504() {
    let responder = Subscriber::start().await;
    let dirs = HeraldDirs::new(&format!(
        r#"
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: requests}}
---
apiVersion: eventing.knative.dev/v1alpha1
kind: RequestReply
metadata: {{name: quick}}
spec:
  brokerRef: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: requests}}
  timeout: PT3S
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: responder}}
spec:
  broker: requests
  filter: {{attributes: {{type: com.example.request}}}}
  subscriber: {{uri: "{}"}}
"#,
        responder.url()
    ));
    let herald = Herald::start(&Sled, &dirs, &[]).await;
    wait_ready(&herald, &format!("{REQUEST_REPLIES}/quick")).await;

    let url = format!("{}/requestreplies/default/quick", herald.ingress);
    let request = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .header("ce-specversion", "1.0")
            .header("ce-id", "req-2")
            .header("ce-source", "/client")
            .header("ce-type", "com.example.request")
            .send()
            .await
            .unwrap()
    });
    let got = responder.wait_for(1).await;
    let correlation = got[0].ce("correlationid").unwrap().to_owned();
    let parts: Vec<&str> = correlation.rsplitn(3, ':').collect();
    // Flip one character of the token: AES-GCM's tag no longer verifies.
    let token = parts[1];
    let flipped = if token.starts_with('A') { "B" } else { "A" };
    let forged = format!("req-2:{flipped}{}:0", &token[1..]);
    for value in [forged.as_str(), "req-2:AAAA:0", "req-2"] {
        let reply = reqwest::Client::new()
            .post(herald.broker_url("default", "requests"))
            .header("ce-specversion", "1.0")
            .header("ce-id", "forged")
            .header("ce-source", "/attacker")
            .header("ce-type", "com.example.reply")
            .header("ce-replyid", value)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 202);
    }
    let response = request.await.unwrap();
    assert_eq!(response.status(), 504);
}

/// Through the admin API: an EventTransform created there is Ready at its address and
/// transforms what it is sent; a bad expression is refused (422) and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_transform_through_the_admin_api() {
    let herald = Herald::start(&Sled, &HeraldDirs::new(""), &[]).await;
    let admin = common::admin::AdminClient::new(&herald.admin);
    let (status, body) = admin
        .post_yaml(
            TRANSFORMS,
            "apiVersion: eventing.knative.dev/v1alpha1\nkind: EventTransform\nmetadata: {name: bad}\nspec:\n  jsonata: {expression: '{'}\n",
        )
        .await;
    assert_eq!(status, 422, "{body}");
    admin
        .create(
            TRANSFORMS,
            "apiVersion: eventing.knative.dev/v1alpha1\nkind: EventTransform\nmetadata: {name: via-admin}\nspec:\n  jsonata:\n    expression: |\n      { \"specversion\": \"1.0\", \"id\": id, \"type\": \"order.summary\", \"source\": source, \"data\": { \"total\": data.order.total } }\n",
        )
        .await;
    let ready = wait_ready(&herald, &format!("{TRANSFORMS}/via-admin")).await;
    let url = ready["status"]["address"]["url"].as_str().unwrap();
    assert_eq!(
        url,
        format!("{}/eventtransforms/default/via-admin", herald.ingress)
    );
    let response = post_structured(url, &order("a1")).await;
    assert_eq!(response.status(), 200);
    let result: serde_json::Value = serde_json::from_str(&body_text(response).await).unwrap();
    assert_eq!(result["type"], "order.summary", "{result}");
    assert_eq!(result["data"]["total"], 250, "{result}");
    let (status, _) = admin.get(&format!("{TRANSFORMS}/bad")).await;
    assert_eq!(status, 404);
}
