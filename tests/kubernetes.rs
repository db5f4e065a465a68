//! The generated CRDs on a real kube-apiserver: they are accepted, and the API server then
//! accepts Knative YAML and rejects invalid objects by their schema.
#![allow(unused_imports)]

mod common;

use common::kube::KubeApiServer;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crds_apply_and_reject_invalid_objects() {
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

    let invalid: [(Value, &str); 2] = [
        (
            json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger", "metadata": {"name": "no-subscriber"}, "spec": {"broker": "b"}}),
            "spec.subscriber",
        ),
        (
            json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger", "metadata": {"name": "bad-policy"},
                   "spec": {"broker": "b", "subscriber": {"uri": "http://x/"}, "delivery": {"backoffPolicy": "sometimes"}}}),
            "spec.delivery.backoffPolicy",
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
}
