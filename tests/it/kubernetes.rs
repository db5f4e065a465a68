//! The generated CRDs on a real kube-apiserver: they are accepted, and the API server then
//! accepts Knative YAML and rejects invalid objects by their schema.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "test code"
)]
#![allow(unused_imports)]

use crate::common;

use common::kube::KubeApiServer;
use common::Server;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crds_apply_and_reject_invalid_objects() {
    if common::skip_without(&[Server::KubeApiServer]) {
        return;
    }
    let server = KubeApiServer::start().await;
    server.install_crds().await;
    let eventing = "/apis/eventing.knative.dev/v1/namespaces/default";
    let (status, answer) = server
        .post(
            &format!("{eventing}/brokers"),
            &json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "metadata": {"name": "b"}}),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    let trigger = json!({
        "apiVersion": "eventing.knative.dev/v1", "kind": "Trigger", "metadata": {"name": "t"},
        "spec": {"broker": "b", "subscriber": {"uri": "http://sub.default.svc/"},
                 "filters": [{"any": [{"exact": {"type": "a"}}, {"not": {"prefix": {"type": "b"}}}]}],
                 "delivery": {"retry": 3, "backoffPolicy": "exponential", "backoffDelay": "PT0.2S"}}
    });
    let (status, answer) = server.post(&format!("{eventing}/triggers"), &trigger).await;
    assert_eq!(status, 201, "{answer}");

    let invalid: [(Value, &str); 4] = [
        (
            json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger", "metadata": {"name": "no-subscriber"}, "spec": {"broker": "b"}}),
            "spec.subscriber",
        ),
        (
            json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger", "metadata": {"name": "bad-policy"},
                   "spec": {"broker": "b", "subscriber": {"uri": "http://x/"}, "delivery": {"backoffPolicy": "sometimes"}}}),
            "spec.delivery.backoffPolicy",
        ),
        (
            json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger", "metadata": {"name": "bad-delay"},
                   "spec": {"broker": "b", "subscriber": {"uri": "http://x/"}, "delivery": {"backoffDelay": "5s"}}}),
            "spec.delivery.backoffDelay",
        ),
        (
            json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger", "metadata": {"name": "bad-retry"},
                   "spec": {"broker": "b", "subscriber": {"uri": "http://x/"}, "delivery": {"retry": -1}}}),
            "spec.delivery.retry",
        ),
    ];
    for (object, field) in invalid {
        let (status, answer) = server.post(&format!("{eventing}/triggers"), &object).await;
        assert_eq!(status, 422, "{answer}");
        assert!(answer.to_string().contains(field), "{field}: {answer}");
    }

    let ping = json!({
        "apiVersion": "sources.knative.dev/v1", "kind": "PingSource", "metadata": {"name": "p"},
        "spec": {"schedule": "*/1 * * * *", "data": "{}", "contentType": "application/json",
                 "sink": {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "b"}}}
    });
    let (status, answer) = server
        .post(
            "/apis/sources.knative.dev/v1/namespaces/default/pingsources",
            &ping,
        )
        .await;
    assert_eq!(status, 201, "{answer}");

    // Knative's KafkaSource is v1beta1: that YAML applies as it is, and reads back as v1.
    let kafka = json!({
        "apiVersion": "sources.knative.dev/v1beta1", "kind": "KafkaSource", "metadata": {"name": "k"},
        "spec": {"bootstrapServers": ["kafka:9092"], "topics": ["orders"], "initialOffset": "earliest",
                 "sink": {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "b"}}}
    });
    let (status, answer) = server
        .post(
            "/apis/sources.knative.dev/v1beta1/namespaces/default/kafkasources",
            &kafka,
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    let (status, stored) = server
        .get("/apis/sources.knative.dev/v1/namespaces/default/kafkasources/k")
        .await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["spec"], kafka["spec"]);
    let mut bad_offset = kafka.clone();
    bad_offset["metadata"]["name"] = json!("bad-offset");
    bad_offset["spec"]["initialOffset"] = json!("oldest");
    let (status, answer) = server
        .post(
            "/apis/sources.knative.dev/v1beta1/namespaces/default/kafkasources",
            &bad_offset,
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer.to_string().contains("spec.initialOffset"),
        "{answer}"
    );
}
