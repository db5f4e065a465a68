//! Knative's own YAML off the cluster, through the real binary: triggers that wait for their
//! broker, files that also hold Kubernetes objects, refs mapped to URLs with `--resolve`,
//! Secrets read from `--secrets-dir`.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "test code"
)]

use crate::common;

use std::time::Duration;

use common::admin::{AdminClient, BROKERS, TRIGGERS};
use common::herald::Sled;
use common::kube::KubeApiServer;
use common::Server;
use common::{wait_for_async, wait_for_value, Herald, HeraldDirs, Subscriber};
use herald_broker::testing::{KafkaServer, KAFKA_SASL_PASSWORD, KAFKA_SASL_USER};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

const BROKER_B: &str = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b}\n";

fn trigger(name: &str, broker: &str, subscriber: &str) -> String {
    format!("apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: {name}}}\nspec: {{broker: {broker}, subscriber: {{uri: '{subscriber}'}}}}\n")
}

fn condition(object: &Value, kind: &str) -> Value {
    object["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == kind).cloned())
        .unwrap_or(Value::Null)
}

/// Sends one binary-mode event and returns the status code.
async fn send(url: &str, id: &str) -> u16 {
    reqwest::Client::new()
        .post(url)
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "/s")
        .header("ce-type", "t")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Waits until the object's `Ready` condition has `status`.
async fn wait_ready(admin: &AdminClient, path: &str, status: &str) -> Value {
    wait_for_value(&format!("{path} Ready={status}"), || async {
        let (_, object) = admin.get(path).await;
        match condition(&object, "Ready")["status"] == status {
            true => Ok(object),
            false => Err(object.to_string()),
        }
    })
    .await
}

/// Knative accepts a Trigger whose Broker does not exist (`Ready=False BrokerDoesNotExist`)
/// and runs it once the Broker appears: from a file, through the admin API, on a reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_waits_for_its_broker_everywhere() {
    let subscriber = Subscriber::start().await;
    let dirs = HeraldDirs::new(&trigger("from-file", "b", &subscriber.url()));
    let herald = Herald::start(&Sled, &dirs, &[]).await;
    let admin = AdminClient::new(&herald.admin);
    // One log line says the trigger waits.
    herald
        .wait_for_log("the trigger's broker does not exist")
        .await;

    // From a file: accepted, waiting.
    let (status, waiting) = admin.get(&format!("{TRIGGERS}/from-file")).await;
    assert_eq!(status, 200);
    assert_eq!(
        waiting["metadata"]["namespace"], "default",
        "the namespace a file left out is filled, as Kubernetes does"
    );
    let (_, list) = admin.get(TRIGGERS).await;
    assert_eq!(list["items"][0]["metadata"]["namespace"], "default");
    for kind in ["Ready", "BrokerReady"] {
        let c = condition(&waiting, kind);
        assert_eq!(
            (c["status"].as_str(), c["reason"].as_str()),
            (Some("False"), Some("BrokerDoesNotExist")),
            "{waiting}"
        );
    }
    // Through the admin API: created, waiting.
    let (status, created) = admin
        .post_yaml(TRIGGERS, &trigger("from-api", "b", &subscriber.url()))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(condition(&created, "Ready")["reason"], "BrokerDoesNotExist");

    // The broker appears (through the API): both run and receive.
    admin.create(BROKERS, BROKER_B).await;
    for name in ["from-file", "from-api"] {
        wait_ready(&admin, &format!("{TRIGGERS}/{name}"), "True").await;
    }
    assert_eq!(send(&herald.broker_url("default", "b"), "e1").await, 202);
    let got = subscriber.wait_for(2).await;
    assert!(got.iter().all(|r| r.ce("id") == Some("e1")));

    // Deleting the broker is allowed: its triggers wait again.
    let (status, _) = admin.delete(&format!("{BROKERS}/b")).await;
    assert_eq!(status, 200);
    let (_, again) = admin.get(&format!("{TRIGGERS}/from-api")).await;
    assert_eq!(condition(&again, "Ready")["reason"], "BrokerDoesNotExist");

    // On a reload: the file now declares the broker too.
    let with_broker = format!(
        "{BROKER_B}---\n{}",
        trigger("from-file", "b", &subscriber.url())
    );
    std::fs::write(dirs.config_file(), with_broker).unwrap();
    herald.hangup();
    for name in ["from-file", "from-api"] {
        wait_ready(&admin, &format!("{TRIGGERS}/{name}"), "True").await;
    }
    assert_eq!(send(&herald.broker_url("default", "b"), "e2").await, 202);
    subscriber.wait_for_id("e2").await;
    wait_for_async("both triggers deliver e2", || async {
        subscriber.ids().iter().filter(|id| *id == "e2").count() == 2
    })
    .await;
}

/// Knative's samples ship a Namespace, a Deployment, a Service and RBAC next to the Broker and
/// Trigger: Herald runs the file, skipping each object it does not serve with one log line,
/// and still refuses an unknown field in a kind it serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_skip_kubernetes_objects_and_keep_refusing_typos() {
    let subscriber = Subscriber::start().await;
    let kubernetes = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: display, namespace: default}\nspec: {replicas: 1, selector: {matchLabels: {app: display}}, template: {metadata: {labels: {app: display}}, spec: {containers: [{name: c, image: example/display}]}}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: reader}\nrules: []\n---\n";
    let config = format!(
        "{kubernetes}{BROKER_B}---\n{}",
        trigger("t", "b", &subscriber.url())
    );
    let dirs = HeraldDirs::new(&config);
    let herald = Herald::start(&Sled, &dirs, &[]).await;
    for skipped in [
        "skipping v1 Namespace shop:",
        "skipping apps/v1 Deployment default/display:",
        "skipping rbac.authorization.k8s.io/v1 ClusterRole reader:",
    ] {
        assert_eq!(herald.log_count(skipped), 1, "{skipped}\n{}", herald.logs());
    }
    assert_eq!(send(&herald.broker_url("default", "b"), "e1").await, 202);
    subscriber.wait_for_id("e1").await;
    herald.terminate().await;

    let typo = format!("{kubernetes}apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: b}}\nspec: {{delivry: {{}}}}\n");
    std::fs::write(dirs.config_file(), typo).unwrap();
    let (status, output) = common::herald::run_invalid(&dirs.config_file(), dirs.data.path());
    assert!(!status.success());
    assert!(output.contains("spec.delivry"), "{output}");
}

/// Knative's YAML names Services, not URLs: `--resolve` (or `HERALD_RESOLVE`) maps each to a
/// URL, the same way for a trigger's subscriber and dead-letter sink, a broker's dead-letter
/// sink and a source's sink, from files and the admin API alike, with a `uri` beside the
/// `ref` resolved against it. An unmapped ref says how to map it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refs_to_services_resolve_through_the_mapping() {
    let display = Subscriber::start().await;
    let dead = Subscriber::start().await;
    dead.set_default(common::Reply::status(200));
    display.set_default(common::Reply::status(500));
    let service = |name: &str, extra: &str| {
        format!("{{ref: {{apiVersion: v1, kind: Service, name: {name}}}{extra}}}")
    };
    let config = format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: b}}\nspec: {{delivery: {{deadLetterSink: {}}}}}\n---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: t}}\nspec: {{broker: b, subscriber: {}, delivery: {{retry: 0, deadLetterSink: {}}}}}\n---\napiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {{name: p}}\nspec: {{schedule: '@every 1s', data: '{{}}', sink: {}}}\n",
        service("dead", ""),
        service("event-display", ", uri: /events"),
        service("dead", ""),
        service("dead", ", uri: pings"),
    );
    let dirs = HeraldDirs::new(&config);
    let mapping = format!(
        "v1/Service/default/event-display={},v1/Service/dead={}in/",
        display.url(),
        dead.url()
    );
    let herald = Herald::start_with(&Sled, &dirs, &[], |command| {
        command.env("HERALD_RESOLVE", &mapping);
    })
    .await;
    let admin = AdminClient::new(&herald.admin);
    let (_, trigger) = admin.get(&format!("{TRIGGERS}/t")).await;
    assert_eq!(
        trigger["status"]["subscriberUri"],
        format!("{}events", display.url()),
        "a uri beside the ref replaces the path, as Knative resolves it"
    );
    assert_eq!(
        trigger["status"]["deadLetterSinkUri"],
        format!("{}in/", dead.url())
    );
    assert_eq!(
        trigger["spec"]["subscriber"]["ref"]["name"], "event-display",
        "the object is kept as written"
    );
    let (_, broker) = admin.get(&format!("{BROKERS}/b")).await;
    assert_eq!(
        broker["status"]["deadLetterSinkUri"],
        format!("{}in/", dead.url())
    );
    let pings = "/apis/sources.knative.dev/v1/namespaces/default/pingsources/p";
    let (_, ping) = admin.get(pings).await;
    assert_eq!(
        ping["status"]["sinkUri"],
        format!("{}in/pings", dead.url()),
        "a relative uri without a slash is relative to the mapped path"
    );

    // Events reach the mapped subscriber, then the mapped dead-letter sink.
    assert_eq!(send(&herald.broker_url("default", "b"), "e1").await, 202);
    display.wait_for_id("e1").await;
    dead.wait_for_id("e1").await;

    // The admin API resolves the same way; an unmapped ref is refused with the way out.
    let unmapped = format!("apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: u}}\nspec: {{broker: b, subscriber: {}}}\n", service("elsewhere", ""));
    let (status, refused) = admin.post_yaml(TRIGGERS, &unmapped).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(
        refused["details"]["causes"][0]["field"],
        "spec.subscriber.ref"
    );
    assert!(
        common::admin::message(&refused)
            .contains("--resolve 'v1/Service/default/elsewhere=http://HOST:PORT'"),
        "{refused}"
    );
    let mapped = admin
        .create(
            TRIGGERS,
            &unmapped
                .replace("name: u", "name: m")
                .replace("elsewhere", "event-display"),
        )
        .await;
    assert_eq!(mapped["status"]["subscriberUri"], display.url());
}

/// A `--resolve` value that cannot be read stops Herald before it starts, saying why.
#[tokio::test]
async fn a_bad_mapping_is_refused_at_start() {
    let dirs = HeraldDirs::new(BROKER_B);
    let (status, stderr) = common::herald::run_invalid_with(
        &dirs.config_file(),
        dirs.data.path(),
        &["--resolve", "v1/service/display=http://127.0.0.1:9"],
    );
    assert!(!status.success());
    assert!(
        stderr.contains("--resolve \"v1/service/display=http://127.0.0.1:9\": no kind"),
        "{stderr}"
    );
}

/// `examples/knative-docs/` (Knative's documented shapes, Kubernetes objects included) loads
/// unchanged with one `--resolve`, and each example delivers an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_knative_docs_examples_run_unchanged() {
    let display = Subscriber::start().await;
    let dirs = HeraldDirs::new("");
    let examples = format!("{}/examples/knative-docs", env!("CARGO_MANIFEST_DIR"));
    let mapping = format!("v1/Service/event-example/event-display={}", display.url());
    // kafkasource.yaml names a Secret: the whole folder loads only if it can be read.
    let secrets = kafka_sasl_secret("SCRAM-SHA-512");
    let herald = Herald::start(
        &Sled,
        &dirs,
        &[
            "--config",
            &examples,
            "--resolve",
            &mapping,
            "--secrets-dir",
            secrets.path().to_str().unwrap(),
        ],
    )
    .await;
    for skipped in [
        "v1 Namespace event-example",
        "apps/v1 Deployment",
        "v1 Service",
        "v1 ServiceAccount event-example/events-sa",
        "rbac.authorization.k8s.io/v1 Role",
        "rbac.authorization.k8s.io/v1 RoleBinding",
    ] {
        herald.wait_for_log(&format!("skipping {skipped}")).await;
    }
    // broker-trigger.yaml: a greeting reaches event-display through the Trigger.
    let status = reqwest::Client::new()
        .post(herald.broker_url("event-example", "default"))
        .header("ce-specversion", "1.0")
        .header("ce-id", "hello-1")
        .header("ce-source", "/docs")
        .header("ce-type", "greeting")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 202);
    display.wait_for_id("hello-1").await;
    // pingsource.yaml: ticks reach event-display directly.
    common::wait_for(&display, |r| {
        r.ce("type") == Some("dev.knative.sources.ping")
            && r.ce("source")
                == Some("/apis/v1/namespaces/event-example/pingsources/test-ping-source")
    })
    .await;
}

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/knative-docs");

/// A `--secrets-dir` holding kafkasource.yaml's Secret `event-example/kafka-sasl` with the
/// test Kafka's SASL user, as a mounted Secret's files (the user with a line break, as
/// `echo` writes it).
fn kafka_sasl_secret(mechanism: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("event-example/kafka-sasl");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("user"), format!("{KAFKA_SASL_USER}\n")).unwrap();
    std::fs::write(secret.join("password"), KAFKA_SASL_PASSWORD).unwrap();
    std::fs::write(secret.join("saslType"), mechanism).unwrap();
    dir
}

/// apiserversource.yaml as it is: Events of `event-example` reach event-display, and its
/// `filters` keep only additions. One watch sends in the API server's order, so the update
/// of the first Event (made once its addition arrived) would arrive before the addition of
/// the second if it were not dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_knative_docs_api_server_source_filters_what_it_sends() {
    if common::skip_without(&[Server::KubeApiServer]) {
        return;
    }
    let server = KubeApiServer::start().await;
    let (status, answer) = server
        .post(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "event-example"}}),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    let display = Subscriber::start().await;
    let dirs = HeraldDirs::new("");
    let mapping = format!("v1/Service/event-example/event-display={}", display.url());
    let kubeconfig = server.kubeconfig();
    let herald = Herald::start(
        &Sled,
        &dirs,
        &[
            "--config",
            &format!("{EXAMPLES}/apiserversource.yaml"),
            "--resolve",
            &mapping,
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
        ],
    )
    .await;
    let admin = AdminClient::new(&herald.admin);
    let (_, source) = admin
        .get("/apis/sources.knative.dev/v1/namespaces/event-example/apiserversources/k8s-events")
        .await;
    assert_eq!(
        source["spec"]["filters"],
        json!([{"exact": {"type": "dev.knative.apiserver.resource.add"}}])
    );
    wait_ready(
        &admin,
        "/apis/sources.knative.dev/v1/namespaces/event-example/apiserversources/k8s-events",
        "True",
    )
    .await;
    let events = "/api/v1/namespaces/event-example/events";
    let event = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": name},
               "involvedObject": {"kind": "ConfigMap", "name": "demo", "namespace": "event-example"},
               "reason": "Tested", "message": "first", "type": "Normal"})
    };
    let subject = |name: &str| format!("/apis/v1/namespaces/event-example/events/{name}");
    let (status, answer) = server.post(events, &event("first")).await;
    assert_eq!(status, 201, "{answer}");
    // Its addition arrives through the watch: the update below is a change the watch sees.
    common::wait_for(&display, |r| {
        r.ce("subject") == Some(subject("first").as_str())
    })
    .await;
    let (status, answer) = server
        .patch(&format!("{events}/first"), &json!({"message": "second"}))
        .await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = server.post(events, &event("second")).await;
    assert_eq!(status, 201, "{answer}");
    let got = common::wait_for(&display, |r| {
        r.ce("subject") == Some(subject("second").as_str())
    })
    .await;
    let seen: Vec<(&str, &str)> = got
        .iter()
        .map(|r| (r.ce("type").unwrap(), r.ce("subject").unwrap()))
        .collect();
    let add = "dev.knative.apiserver.resource.add";
    assert_eq!(
        seen,
        [
            (add, subject("first").as_str()),
            (add, subject("second").as_str())
        ]
    );
    let data: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(data["message"], "first", "Resource mode sends the object");
}

/// kafkasource.yaml with only its bootstrap server changed (to the test Kafka's SASL
/// listener): the source authenticates with SCRAM-SHA-512 from the Secret's files and a
/// record reaches event-display as `dev.knative.kafka.event`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_knative_docs_kafka_source_reads_with_sasl() {
    if common::skip_without(&[Server::Kafka]) {
        return;
    }
    let plaintext = KafkaServer::shared();
    let example = std::fs::read_to_string(format!("{EXAMPLES}/kafkasource.yaml")).unwrap();
    let yaml = example.replace(
        "my-cluster-kafka-bootstrap.kafka:9092",
        &KafkaServer::shared_sasl(),
    );
    assert_ne!(yaml, example);
    let topic = "knative-demo-topic";
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &plaintext);
    herald_broker::testing::create_kafka_topic(&plaintext, topic, 1).await;
    let producer: FutureProducer = config.create().unwrap();
    let display = Subscriber::start().await;
    let dirs = HeraldDirs::new(&yaml);
    let secrets = kafka_sasl_secret("SCRAM-SHA-512");
    let mapping = format!("v1/Service/event-example/event-display={}", display.url());
    let herald = Herald::start(
        &Sled,
        &dirs,
        &[
            "--resolve",
            &mapping,
            "--secrets-dir",
            secrets.path().to_str().unwrap(),
        ],
    )
    .await;
    // The source starts at the latest offset once it has joined its group: records sent
    // before are not for it, so send one every half second until one arrives.
    let deadline = tokio::time::Instant::now() + common::DEADLINE;
    let mut sent = 0;
    while display.received().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no record reached event-display: {}",
            herald.logs()
        );
        producer
            .send(
                FutureRecord::to(topic)
                    .key("k")
                    .payload(r#"{"hello": "sasl"}"#),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        sent += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(sent > 0);
    let got = display.received();
    assert_eq!(got[0].ce("type"), Some("dev.knative.kafka.event"));
    assert_eq!(
        got[0].ce("source"),
        Some("/apis/v1/namespaces/event-example/kafkasources/kafka-source#knative-demo-topic")
    );
    assert_eq!(&got[0].body[..], br#"{"hello": "sasl"}"#);
    assert!(
        !herald.logs().contains(KAFKA_SASL_PASSWORD),
        "the password is never logged"
    );
}

/// A Secret that cannot be read refuses the KafkaSource, naming the field, the Secret and
/// the key, never a value: at start, and through the admin API (nothing is stored).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_source_whose_secret_is_missing_is_refused() {
    let example = std::fs::read_to_string(format!("{EXAMPLES}/kafkasource.yaml")).unwrap();
    let secrets = kafka_sasl_secret("SCRAM-SHA-512");
    std::fs::remove_file(secrets.path().join("event-example/kafka-sasl/password")).unwrap();
    let dirs = HeraldDirs::new(&example);
    let (status, stderr) = common::herald::run_invalid_with(
        &dirs.config_file(),
        dirs.data.path(),
        &[
            "--resolve",
            "v1/Service/event-example/event-display=http://127.0.0.1:9",
            "--secrets-dir",
            secrets.path().to_str().unwrap(),
        ],
    );
    assert!(!status.success());
    for needle in [
        "KafkaSource event-example/kafka-source",
        "field spec.net.sasl.password.secretKeyRef",
        "key \"password\" of Secret event-example/kafka-sasl does not exist",
        "event-example/kafka-sasl/password",
        "$HERALD_SECRET_EVENT_EXAMPLE_KAFKA_SASL_PASSWORD",
    ] {
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
    // Through the admin API: refused, and nothing stored.
    let dirs = HeraldDirs::new("");
    let herald = Herald::start(
        &Sled,
        &dirs,
        &[
            "--resolve",
            "v1/Service/event-example/event-display=http://127.0.0.1:9",
            "--secrets-dir",
            secrets.path().to_str().unwrap(),
        ],
    )
    .await;
    let admin = AdminClient::new(&herald.admin);
    let path = "/apis/sources.knative.dev/v1/namespaces/event-example/kafkasources";
    let (status, answer) = admin.post_yaml(path, &example).await;
    assert_eq!(status, 422, "{answer}");
    let message = common::admin::message(&answer);
    assert!(
        message.contains("spec.net.sasl.password.secretKeyRef")
            && message.contains("Secret event-example/kafka-sasl"),
        "{message}"
    );
    let (status, _) = admin.get(&format!("{path}/kafka-source")).await;
    assert_eq!(status, 404);
    herald.terminate().await;
}
