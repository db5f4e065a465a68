//! Event sources through the real binary: PingSource, ContainerSource, `herald run`
//! (SinkBinding), WebhookSource, and a source waiting for its sink broker.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "test code"
)]

use crate::common;
use crate::scenarios;

use std::collections::BTreeSet;

use common::admin::{AdminClient, BROKERS, TRIGGERS};
use common::herald::{herald_binary, run_invalid, Sled};
use common::{wait_until, Herald, HeraldDirs, Subscriber, DEADLINE};
use scenarios::{broker_yaml, trigger_yaml};
use serde_json::Value;

const BROKER_REF: &str = "{ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: b}}";

fn ping_yaml(name: &str, schedule: &str, extra: &str) -> String {
    format!(
        "apiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {{name: {name}}}\nspec:\n  schedule: '{schedule}'\n  sink: {BROKER_REF}\n{extra}---\n"
    )
}

/// Every second, a Knative-shaped ping event reaches the trigger's subscriber.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_source_every_second() {
    let subscriber = Subscriber::start().await;
    let extra = "  contentType: application/json\n  data: '{\"message\": \"hi\"}'\n  ceOverrides: {extensions: {team: core}}\n";
    let config = broker_yaml("b", None)
        + &trigger_yaml("t", "b", &subscriber.url(), "")
        + &ping_yaml("p", "* * * * * *", extra);
    let dirs = HeraldDirs::new(&config);
    let herald = Herald::start(&Sled, &dirs, &[]).await;
    let got = subscriber.wait_for(2).await;
    let mut ids = BTreeSet::new();
    for event in &got[..2] {
        assert_eq!(event.ce("type"), Some("dev.knative.sources.ping"));
        assert_eq!(
            event.ce("source"),
            Some("/apis/v1/namespaces/default/pingsources/p")
        );
        assert_eq!(event.ce("team"), Some("core"));
        assert_eq!(event.header("content-type"), Some("application/json"));
        assert_eq!(&event.body[..], br#"{"message": "hi"}"#);
        assert!(
            chrono::DateTime::parse_from_rfc3339(event.ce("time").unwrap()).is_ok(),
            "time is RFC 3339"
        );
        ids.insert(event.ce("id").unwrap().to_owned());
    }
    assert_eq!(ids.len(), 2, "a new id per tick");
    let admin = AdminClient::new(&herald.admin);
    let (status, source) = admin
        .get("/apis/sources.knative.dev/v1/namespaces/default/pingsources/p")
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        source["status"]["sinkUri"],
        herald.broker_url("default", "b")
    );
    let conditions = source["status"]["conditions"].as_array().unwrap();
    assert!(conditions.iter().all(|c| c["status"] == "True"), "{source}");
}

/// Schedules, time zones and data are checked at load, naming the field; the API says 422.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_source_errors_name_the_field() {
    let cases = [
        (ping_yaml("p", "61 * * * *", ""), "spec.schedule"),
        (ping_yaml("p", "@every soon", ""), "spec.schedule"),
        (
            ping_yaml("p", "0 9 * * *", "  timezone: Mars/Olympus\n"),
            "spec.timezone",
        ),
        (
            ping_yaml("p", "* * * * *", "  data: x\n  dataBase64: eA==\n"),
            "spec.dataBase64",
        ),
    ];
    for (yaml, field) in &cases {
        let dirs = HeraldDirs::new(&(broker_yaml("b", None) + yaml));
        let (status, stderr) = run_invalid(&dirs.config_file(), dirs.data.path());
        assert!(!status.success());
        assert!(stderr.contains("PingSource default/p"), "{stderr}");
        assert!(
            stderr.contains(&format!("field {field}")),
            "{field}: {stderr}"
        );
    }
    let dirs = HeraldDirs::new(&broker_yaml("b", None));
    let herald = Herald::start(&Sled, &dirs, &[]).await;
    let admin = AdminClient::new(&herald.admin);
    let (status, body) = admin
        .post_yaml(
            "/apis/sources.knative.dev/v1/namespaces/default/pingsources",
            &ping_yaml("p", "0 9 * * *", "  timezone: Nowhere/Special\n"),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["details"]["causes"][0]["field"], "spec.timezone");
}

/// A program that posts one CloudEvent to `K_SINK` (with the `K_CE_OVERRIDES` extensions, as
/// Knative adapters do), prints a line, and exits with `code`.
fn adapter_script(dir: &std::path::Path, code: i32) -> String {
    let path = dir.join("adapter.py");
    let script = format!(
        r#"import json, os, urllib.request, uuid
sink = os.environ["K_SINK"]
overrides = json.loads(os.environ.get("K_CE_OVERRIDES") or "{{}}").get("extensions", {{}})
headers = {{"ce-specversion": "1.0", "ce-id": str(uuid.uuid4()), "ce-source": "/adapter",
           "ce-type": "com.example.adapter", "ce-component": os.environ.get("K_COMPONENT", ""),
           "content-type": "text/plain"}}
for name, value in overrides.items():
    headers["ce-" + name] = value
request = urllib.request.Request(sink, data=b"from " + str(os.getpid()).encode(), headers=headers, method="POST")
print("posted", urllib.request.urlopen(request).status, flush=True)
raise SystemExit({code})
"#
    );
    std::fs::write(&path, script).unwrap();
    path.display().to_string()
}

/// A ContainerSource's program gets `K_SINK` and `K_CE_OVERRIDES`, its events arrive, its
/// output is logged, and it is started again after it exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_source_runs_and_restarts() {
    let subscriber = Subscriber::start().await;
    let scripts = tempfile::tempdir().unwrap();
    let script = adapter_script(scripts.path(), 0);
    let source = format!(
        "apiVersion: sources.knative.dev/v1\nkind: ContainerSource\nmetadata: {{name: c}}\nspec:\n  template:\n    spec:\n      containers:\n        - image: ghcr.io/example/adapter\n          command: [python3]\n          args: ['{script}']\n  sink: {BROKER_REF}\n  ceOverrides: {{extensions: {{team: ops}}}}\n"
    );
    let config = broker_yaml("b", None) + &trigger_yaml("t", "b", &subscriber.url(), "") + &source;
    let dirs = HeraldDirs::new(&config);
    let herald = Herald::start(&Sled, &dirs, &[]).await;
    let got = subscriber.wait_for(2).await;
    let bodies: BTreeSet<&[u8]> = got.iter().map(|r| &r.body[..]).collect();
    assert_eq!(bodies.len(), 2, "two runs of the program (two pids)");
    for event in &got {
        assert_eq!(event.ce("type"), Some("com.example.adapter"));
        assert_eq!(
            event.ce("team"),
            Some("ops"),
            "K_CE_OVERRIDES reached the program"
        );
        assert_eq!(event.ce("component"), Some("containersource"));
    }
    herald.wait_for_log("posted 202").await;
    herald
        .wait_for_log("the image is ignored outside Kubernetes")
        .await;
    let (status, logs) = herald.stop().await;
    assert!(status.success(), "{logs}");
}

/// `herald run --sink broker:b -- CMD`: the program gets the SinkBinding environment; its exit
/// code is `herald run`'s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_run_binds_a_program_to_a_sink() {
    let subscriber = Subscriber::start().await;
    let config = broker_yaml("b", None) + &trigger_yaml("t", "b", &subscriber.url(), "");
    let dirs = HeraldDirs::new(&config);
    let herald = Herald::start(&Sled, &dirs, &[]).await;
    let scripts = tempfile::tempdir().unwrap();
    let script = adapter_script(scripts.path(), 3);
    let output = tokio::process::Command::new(herald_binary())
        .args([
            "run",
            "--sink",
            "broker:b",
            "--ce-override",
            "team=cli",
            "--server",
            &herald.admin,
        ])
        .args(["--", "python3", &script])
        .output()
        .await
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("posted 202"));
    let got = subscriber.wait_for(1).await;
    assert_eq!(got[0].ce("team"), Some("cli"));
    assert_eq!(got[0].ce("component"), Some("herald-run"));
    let direct = tokio::process::Command::new(herald_binary())
        .args([
            "run",
            "--sink",
            &herald.broker_url("default", "b"),
            "--",
            "python3",
            &script,
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(direct.status.code(), Some(3));
    subscriber.wait_for(2).await;
    let bad = tokio::process::Command::new(herald_binary())
        .args(["run", "--sink", "nowhere", "--", "true"])
        .output()
        .await
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

fn hmac_hex(secret: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::sign(&key, body)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Signed requests become events and get 202 once the sink took them; bad signatures get 401
/// and send nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_source_verifies_signatures() {
    let subscriber = Subscriber::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("github");
    std::fs::write(&secret_file, "It's a Secret to Everybody\n").unwrap();
    let token_file = secrets.path().join("token");
    std::fs::write(&token_file, "t0ken").unwrap();
    let sources = format!(
        "apiVersion: sources.herald.dev/v1alpha1\nkind: WebhookSource\nmetadata: {{name: github}}\nspec:\n  auth: {{secret: {{file: '{}'}}}}\n  typeFromHeader: {{header: X-GitHub-Event, prefix: dev.knative.source.github.}}\n  idFromHeader: X-GitHub-Delivery\n  sink: {BROKER_REF}\n---\napiVersion: sources.herald.dev/v1alpha1\nkind: WebhookSource\nmetadata: {{name: plain}}\nspec:\n  auth: {{scheme: bearer, secret: {{file: '{}'}}}}\n  eventType: com.example.hook\n  sink: {BROKER_REF}\n",
        secret_file.display(),
        token_file.display()
    );
    let config = broker_yaml("b", None) + &trigger_yaml("t", "b", &subscriber.url(), "") + &sources;
    let dirs = HeraldDirs::new(&config);
    let herald = Herald::start(&Sled, &dirs, &[]).await;
    let client = reqwest::Client::new();
    let github = format!("{}/webhooks/default/github", herald.ingress);
    let body = br#"{"ref":"refs/heads/main", "n": 1.50}"#;
    let post = |signature: Option<String>, delivery: &str| {
        let mut request = client
            .post(&github)
            .header("x-github-event", "push")
            .header("x-github-delivery", delivery)
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        request.send()
    };
    let good = format!("sha256={}", hmac_hex(b"It's a Secret to Everybody", body));
    let forged = format!("sha256={}", hmac_hex(b"wrong secret", body));
    assert_eq!(post(Some(forged), "bad-1").await.unwrap().status(), 401);
    assert_eq!(post(None, "bad-2").await.unwrap().status(), 401);
    assert_eq!(
        post(Some("sha256=zz".into()), "bad-3")
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(post(Some(good), "delivery-1").await.unwrap().status(), 202);

    let plain = format!("{}/webhooks/default/plain", herald.ingress);
    let bearer = |token: &str| {
        client
            .post(&plain)
            .bearer_auth(token)
            .header("content-type", "text/plain")
            .body("hello")
            .send()
    };
    assert_eq!(bearer("nope").await.unwrap().status(), 401);
    assert_eq!(bearer("t0ken").await.unwrap().status(), 202);
    let unknown = client
        .post(format!("{}/webhooks/default/missing", herald.ingress))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    let got = subscriber.wait_for(2).await;
    assert_eq!(got.len(), 2, "nothing from refused requests");
    let push = got
        .iter()
        .find(|r| r.ce("id") == Some("delivery-1"))
        .unwrap();
    assert_eq!(push.ce("type"), Some("dev.knative.source.github.push"));
    assert_eq!(
        push.ce("source"),
        Some("/apis/v1alpha1/namespaces/default/webhooksources/github")
    );
    assert_eq!(&push.body[..], body, "the body is unchanged");
    assert_eq!(push.header("content-type"), Some("application/json"));
    let hook = got
        .iter()
        .find(|r| r.ce("type") == Some("com.example.hook"))
        .unwrap();
    assert_eq!(&hook.body[..], b"hello");
}

/// A source whose sink broker goes away says `SinkProvided=False`, and sends again once the
/// broker is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_waits_for_its_sink_broker() {
    let dirs = HeraldDirs::new("");
    let herald = Herald::start(&Sled, &dirs, &[]).await;
    let admin = AdminClient::new(&herald.admin);
    let pings = "/apis/sources.knative.dev/v1/namespaces/default/pingsources";
    let broker = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b}\n";
    admin.create(BROKERS, broker).await;
    admin
        .create(pings, &ping_yaml("p", "* * * * * *", ""))
        .await;
    let condition = |source: &Value, kind: &str| {
        source["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == kind).cloned())
            .unwrap_or(Value::Null)
    };
    let (_, source) = admin.get(&format!("{pings}/p")).await;
    assert_eq!(condition(&source, "SinkProvided")["status"], "True");

    let (status, _) = admin.delete(&format!("{BROKERS}/b")).await;
    assert_eq!(status, 200, "a source does not pin its broker");
    let (_, source) = admin.get(&format!("{pings}/p")).await;
    let sink = condition(&source, "SinkProvided");
    assert_eq!(sink["status"], "False", "{source}");
    assert!(sink["message"]
        .as_str()
        .unwrap()
        .contains("broker default/b does not exist"));
    assert_eq!(condition(&source, "Ready")["status"], "False");
    assert!(source["status"]["sinkUri"].is_null());

    admin.create(BROKERS, broker).await;
    let subscriber = Subscriber::start().await;
    admin
        .create(
            TRIGGERS,
            &trigger_yaml("t", "b", &subscriber.url(), "").replace("---\n", ""),
        )
        .await;
    let (_, source) = admin.get(&format!("{pings}/p")).await;
    assert_eq!(condition(&source, "SinkProvided")["status"], "True");
    assert_eq!(
        source["status"]["sinkUri"],
        herald.broker_url("default", "b")
    );
    let got = subscriber.wait_for(1).await;
    assert_eq!(got[0].ce("type"), Some("dev.knative.sources.ping"));
    let mut ready = Value::Null;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while ready["status"] != "True" {
        assert!(tokio::time::Instant::now() < deadline, "not ready: {ready}");
        ready = condition(&admin.get(&format!("{pings}/p")).await.1, "Ready");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    wait_until("the source keeps sending", || {
        subscriber.received().len() >= 2
    })
    .await;
}

/// The examples in `examples/sources/` load and run as documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_examples_load() {
    let dirs = HeraldDirs::new("");
    let herald = Herald::start(
        &Sled,
        &dirs,
        &[
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/examples/sources"),
        ],
    )
    .await;
    let admin = AdminClient::new(&herald.admin);
    for path in [
        "/apis/sources.knative.dev/v1/namespaces/default/pingsources/heartbeat",
        "/apis/sources.knative.dev/v1/namespaces/default/containersources/counter",
        "/apis/sources.herald.dev/v1alpha1/namespaces/default/webhooksources/github",
    ] {
        let (status, source) = admin.get(path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            source["status"]["sinkUri"],
            herald.broker_url("default", "events")
        );
    }
}
