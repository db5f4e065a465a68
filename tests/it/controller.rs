//! `herald controller` against a real kube-apiserver: Knative resources applied to the API
//! server run, get Knative-shaped status, and are cleaned up through their finalizer;
//! ApiServerSource turns ConfigMap changes into events, in the controller and in `serve`;
//! the Lease decides which replica writes status; the example manifests are accepted.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "test code"
)]
#![allow(unused_imports)]

use crate::common;

use std::time::Duration;

use common::herald::Sled;
use common::kube::KubeApiServer;
use common::Server;
use common::{wait_for_async, wait_until, Herald, HeraldDirs, Subscriber};
use serde_json::{json, Value};

pub(crate) const EVENTING: &str = "/apis/eventing.knative.dev/v1/namespaces/default";
pub(crate) const SOURCES: &str = "/apis/sources.knative.dev/v1/namespaces/default";
pub(crate) const CORE: &str = "/api/v1/namespaces/default";
/// The `--external-url` the tests give the controller, as the example deployment does.
pub(crate) const EXTERNAL_URL: &str = "http://herald-ingress.herald.svc.cluster.local";

pub(crate) fn broker(name: &str) -> Value {
    json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "metadata": {"name": name}})
}

pub(crate) fn trigger(name: &str, broker: &str, subscriber: Value) -> Value {
    json!({
        "apiVersion": "eventing.knative.dev/v1", "kind": "Trigger", "metadata": {"name": name},
        "spec": {"broker": broker, "subscriber": subscriber}
    })
}

pub(crate) fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// Waits until the object's condition has `status` (and `reason`, when given); returns it.
pub(crate) async fn wait_condition(
    server: &KubeApiServer,
    herald: &Herald,
    path: &str,
    type_: &str,
    status: &str,
    reason: Option<&str>,
) -> Value {
    let what = format!("{path}: {type_}={status} {reason:?}");
    common::wait_for_value(&what, || async move {
        let (_, object) = server.get(path).await;
        let matched = condition(&object, type_)
            .is_some_and(|c| c["status"] == status && reason.is_none_or(|r| c["reason"] == r));
        if matched {
            Ok(object)
        } else {
            Err(format!("{object}\nHerald's log:\n{}", herald.logs()))
        }
    })
    .await
}

/// Waits until the object is `Ready=True`; returns it.
pub(crate) async fn wait_ready(server: &KubeApiServer, herald: &Herald, path: &str) -> Value {
    wait_condition(server, herald, path, "Ready", "True", None).await
}

pub(crate) async fn create(server: &KubeApiServer, collection: &str, object: &Value) {
    let (status, answer) = server.post(collection, object).await;
    assert_eq!(status, 201, "{answer}");
}

async fn start_controller(
    server: &KubeApiServer,
    data: &tempfile::TempDir,
    identity: &str,
) -> Herald {
    Herald::start_controller(
        &Sled,
        data.path(),
        &server.kubeconfig(),
        &[
            "--external-url",
            EXTERNAL_URL,
            "--identity",
            identity,
            "--lease-duration",
            "3s",
        ],
    )
    .await
}

async fn post_event(herald: &Herald, broker: &str, id: &str) -> u16 {
    reqwest::Client::new()
        .post(herald.broker_url("default", broker))
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-type", "com.example.test")
        .header("ce-source", "/tests")
        .body("{}")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_and_triggers_run_with_knative_status_and_finalizers() {
    if common::skip_without(&[Server::KubeApiServer]) {
        return;
    }
    let server = KubeApiServer::start().await;
    server.install_crds().await;
    let subscriber = Subscriber::start().await;
    let data = tempfile::tempdir().unwrap();
    let herald = start_controller(&server, &data, "only").await;

    // A trigger before its broker: not ready, the way Knative says it.
    create(
        &server,
        &format!("{EVENTING}/triggers"),
        &trigger("t", "b", json!({"uri": subscriber.url()})),
    )
    .await;
    let t = format!("{EVENTING}/triggers/t");
    let waiting = wait_condition(
        &server,
        &herald,
        &t,
        "Ready",
        "False",
        Some("BrokerDoesNotExist"),
    )
    .await;
    let broker_ready = condition(&waiting, "BrokerReady").unwrap();
    assert_eq!(broker_ready["status"], "False", "{waiting}");
    assert_eq!(broker_ready["reason"], "BrokerDoesNotExist", "{waiting}");
    assert!(
        broker_ready["message"].as_str().unwrap().contains("\"b\""),
        "{waiting}"
    );

    // The broker appears: both become ready, with the fields Knative sets.
    create(&server, &format!("{EVENTING}/brokers"), &broker("b")).await;
    let b = wait_ready(&server, &herald, &format!("{EVENTING}/brokers/b")).await;
    assert_eq!(
        b["status"]["address"]["url"],
        format!("{EXTERNAL_URL}/default/b"),
        "{b}"
    );
    assert_eq!(
        b["status"]["observedGeneration"], b["metadata"]["generation"],
        "{b}"
    );
    let ready = wait_ready(&server, &herald, &t).await;
    assert_eq!(
        ready["status"]["subscriberUri"],
        subscriber.url(),
        "{ready}"
    );
    assert_eq!(condition(&ready, "BrokerReady").unwrap()["status"], "True");
    assert_eq!(
        condition(&ready, "SubscriberResolved").unwrap()["status"],
        "True"
    );
    assert!(
        condition(&ready, "Ready").unwrap()["lastTransitionTime"].is_string(),
        "{ready}"
    );
    assert_eq!(
        ready["metadata"]["finalizers"],
        json!(["herald.dev/finalizer"]),
        "{ready}"
    );

    // Ready for traffic once the resources run.
    let readyz = reqwest::get(format!("{}/readyz", herald.admin))
        .await
        .unwrap();
    assert_eq!(readyz.status(), 200);

    // Events posted to the broker reach the subscriber.
    assert_eq!(post_event(&herald, "b", "first").await, 202);
    let received = subscriber.wait_for_id("first").await;
    assert_eq!(received[0].ce("type"), Some("com.example.test"));

    // A ref to a Service resolves to its cluster DNS name; a missing one is reported.
    create(
        &server,
        &format!("{CORE}/services"),
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "display"},
                "spec": {"ports": [{"port": 80}]}}),
    )
    .await;
    let service_ref = |name: &str| json!({"ref": {"apiVersion": "v1", "kind": "Service", "name": name}, "uri": "/events"});
    let mut to_service = trigger("to-service", "b", service_ref("display"));
    to_service["spec"]["delivery"] = json!({"deadLetterSink": {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "b"}}});
    create(&server, &format!("{EVENTING}/triggers"), &to_service).await;
    create(
        &server,
        &format!("{EVENTING}/triggers"),
        &trigger("to-nothing", "b", service_ref("missing")),
    )
    .await;
    let resolved = wait_ready(&server, &herald, &format!("{EVENTING}/triggers/to-service")).await;
    assert_eq!(
        resolved["status"]["subscriberUri"], "http://display.default.svc.cluster.local/events",
        "{resolved}"
    );
    // The dead-letter sink is the broker's address as the cluster knows it.
    assert_eq!(
        resolved["status"]["deadLetterSinkUri"],
        format!("{EXTERNAL_URL}/default/b"),
        "{resolved}"
    );
    assert_eq!(
        condition(&resolved, "DeadLetterSinkResolved").unwrap()["status"],
        "True"
    );
    let unresolved = wait_condition(
        &server,
        &herald,
        &format!("{EVENTING}/triggers/to-nothing"),
        "SubscriberResolved",
        "False",
        None,
    )
    .await;
    assert!(
        condition(&unresolved, "Ready").unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("Service default/missing does not exist"),
        "{unresolved}"
    );
    // ...and it resolves as soon as the Service appears.
    create(
        &server,
        &format!("{EVENTING}/triggers"),
        &trigger("to-late", "b", service_ref("late")),
    )
    .await;
    let late = format!("{EVENTING}/triggers/to-late");
    wait_condition(&server, &herald, &late, "SubscriberResolved", "False", None).await;
    create(
        &server,
        &format!("{CORE}/services"),
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "late"},
                "spec": {"ports": [{"port": 80}]}}),
    )
    .await;
    let resolved = wait_ready(&server, &herald, &late).await;
    assert_eq!(
        resolved["status"]["subscriberUri"],
        "http://late.default.svc.cluster.local/events"
    );

    // A trigger that stops running for a while (its subscriber does not resolve) keeps its
    // position: what arrives meanwhile is delivered once it runs again.
    let (status, answer) = server
        .patch(&t, &json!({"spec": {"subscriber": service_ref("missing")}}))
        .await;
    assert_eq!(status, 200, "{answer}");
    wait_condition(&server, &herald, &t, "SubscriberResolved", "False", None).await;
    assert_eq!(post_event(&herald, "b", "meanwhile").await, 202);
    let (status, answer) = server
        .patch(
            &t,
            &json!({"spec": {"subscriber": {"uri": subscriber.url(), "ref": null}}}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    subscriber.wait_for_id("meanwhile").await;

    // Deleting the trigger runs its finalizer: the object goes only once Herald let it go.
    let (status, deleting) = server.delete(&t).await;
    assert_eq!(status, 200, "{deleting}");
    assert!(
        deleting["metadata"]["deletionTimestamp"].is_string(),
        "the finalizer holds it: {deleting}"
    );
    wait_for_async("the deleted trigger is gone", || async {
        server.get(&t).await.0 == 404
    })
    .await;
    // ...and its position went with it: a new trigger of the same name starts at the end,
    // it does not resume where the deleted one was (delivered in order, so an event the
    // old position still held would arrive first).
    assert_eq!(post_event(&herald, "b", "while-deleted").await, 202);
    let mut again = trigger("t", "b", json!({"uri": subscriber.url()}));
    again["metadata"]["annotations"] =
        json!({"kafka.eventing.knative.dev/delivery.order": "ordered"});
    create(&server, &format!("{EVENTING}/triggers"), &again).await;
    wait_ready(&server, &herald, &t).await;
    assert_eq!(post_event(&herald, "b", "after").await, 202);
    subscriber.wait_for_id("after").await;
    let ids = subscriber.ids();
    assert!(!ids.contains(&"while-deleted".to_owned()), "{ids:?}");

    // An invalid spec the CRD schema lets through (nested filters) is reported, not run.
    create(
        &server,
        &format!("{EVENTING}/triggers"),
        &json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger", "metadata": {"name": "bad-filter"},
                "spec": {"broker": "b", "subscriber": {"uri": subscriber.url()},
                         "filters": [{"all": [{"exact": {"type": "a"}, "prefix": {"source": "b"}}]}]}}),
    )
    .await;
    let invalid = wait_condition(
        &server,
        &herald,
        &format!("{EVENTING}/triggers/bad-filter"),
        "Ready",
        "False",
        Some("InvalidSpec"),
    )
    .await;
    assert!(
        condition(&invalid, "Ready").unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("spec.filters[0].all[0]: multiple dialects found"),
        "{invalid}"
    );
    herald.terminate().await;
}

/// The ConfigMap events of one mode, as the subscriber got them.
fn of_mode<'a>(
    subscriber: &'a [common::subscriber::Received],
    prefix: &str,
) -> Vec<&'a common::subscriber::Received> {
    subscriber
        .iter()
        .filter(|r| r.ce("type").is_some_and(|t| t.starts_with(prefix)))
        .collect()
}

/// Creates a ConfigMap with label `app=demo` (and one without), updates it, deletes it;
/// each step waits for the `per_step` events it causes, so that every change is seen by an
/// established watch.
async fn change_config_maps(server: &KubeApiServer, subscriber: &Subscriber, per_step: usize) {
    for (name, labels) in [("other", json!({})), ("demo", json!({"app": "demo"}))] {
        create(
            server,
            &format!("{CORE}/configmaps"),
            &json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name, "labels": labels}, "data": {"v": "1"}}),
        )
        .await;
    }
    subscriber.wait_for(per_step).await;
    let (status, answer) = server
        .patch(
            &format!("{CORE}/configmaps/demo"),
            &json!({"data": {"v": "2"}}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    subscriber.wait_for(2 * per_step).await;
    let (status, answer) = server.delete(&format!("{CORE}/configmaps/demo")).await;
    assert_eq!(status, 200, "{answer}");
    subscriber.wait_for(3 * per_step).await;
}

fn api_server_source(name: &str, mode: &str) -> Value {
    json!({
        "apiVersion": "sources.knative.dev/v1", "kind": "ApiServerSource", "metadata": {"name": name},
        "spec": {"mode": mode,
                 "resources": [{"apiVersion": "v1", "kind": "ConfigMap", "selector": {"matchLabels": {"app": "demo"}}}],
                 "ceOverrides": {"extensions": {"origin": name}},
                 "sink": {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "b"}}}
    })
}

/// Checks one mode's three events against what the API server holds.
fn check_config_map_events(
    events: &[&common::subscriber::Received],
    server: &KubeApiServer,
    prefix: &str,
    origin: &str,
) {
    let types: Vec<&str> = events.iter().map(|r| r.ce("type").unwrap()).collect();
    assert_eq!(
        types,
        [
            format!("{prefix}add"),
            format!("{prefix}update"),
            format!("{prefix}delete")
        ],
        "{origin}"
    );
    for event in events {
        assert_eq!(event.ce("source"), Some(server.url.as_str()));
        assert_eq!(
            event.ce("subject"),
            Some("/apis/v1/namespaces/default/configmaps/demo")
        );
        assert_eq!(event.ce("kind"), Some("ConfigMap"));
        assert_eq!(event.ce("name"), Some("demo"));
        assert_eq!(event.ce("namespace"), Some("default"));
        assert_eq!(event.ce("apiversion"), Some("v1"));
        assert_eq!(event.ce("origin"), Some(origin));
        assert_eq!(event.header("content-type"), Some("application/json"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_source_sends_config_map_changes_in_both_modes() {
    if common::skip_without(&[Server::KubeApiServer]) {
        return;
    }
    let server = KubeApiServer::start().await;
    server.install_crds().await;
    let subscriber = Subscriber::start().await;
    let data = tempfile::tempdir().unwrap();
    let _herald = start_controller(&server, &data, "only").await;
    create(&server, &format!("{EVENTING}/brokers"), &broker("b")).await;
    create(
        &server,
        &format!("{EVENTING}/triggers"),
        &trigger("all", "b", json!({"uri": subscriber.url()})),
    )
    .await;
    wait_ready(&server, &_herald, &format!("{EVENTING}/triggers/all")).await;
    for (name, mode) in [("resources", "Resource"), ("references", "Reference")] {
        create(
            &server,
            &format!("{SOURCES}/apiserversources"),
            &api_server_source(name, mode),
        )
        .await;
        let ready = wait_ready(
            &server,
            &_herald,
            &format!("{SOURCES}/apiserversources/{name}"),
        )
        .await;
        // The cluster's address of the broker, not Herald's own listener.
        assert_eq!(
            ready["status"]["sinkUri"],
            format!("{EXTERNAL_URL}/default/b"),
            "{ready}"
        );
    }
    change_config_maps(&server, &subscriber, 2).await;
    let received = subscriber.received();
    let resources = of_mode(&received, "dev.knative.apiserver.resource.");
    let references = of_mode(&received, "dev.knative.apiserver.ref.");
    check_config_map_events(
        &resources,
        &server,
        "dev.knative.apiserver.resource.",
        "resources",
    );
    check_config_map_events(
        &references,
        &server,
        "dev.knative.apiserver.ref.",
        "references",
    );
    // Resource mode carries the object as it was at each change; Reference mode a reference.
    let data: Vec<Value> = resources
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(data[0]["data"]["v"], "1");
    assert_eq!(data[1]["data"]["v"], "2");
    assert_eq!(data[0]["kind"], "ConfigMap");
    assert_eq!(data[0]["metadata"]["labels"]["app"], "demo");
    for reference in &references {
        let body: Value = serde_json::from_slice(&reference.body).unwrap();
        assert_eq!(
            body,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "demo", "namespace": "default"})
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_an_api_server_source_given_a_kubeconfig() {
    if common::skip_without(&[Server::KubeApiServer]) {
        return;
    }
    let server = KubeApiServer::start().await;
    let subscriber = Subscriber::start().await;
    let source = serde_yaml_ng::to_string(&api_server_source("files", "Reference")).unwrap();
    let dirs = HeraldDirs::new(&format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: b}}\n---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: all}}\n\
         spec: {{broker: b, subscriber: {{uri: \"{}\"}}}}\n---\n{source}",
        subscriber.url()
    ));
    let kubeconfig = server.kubeconfig();
    let herald = Herald::start(
        &Sled,
        &dirs,
        &["--kubeconfig", kubeconfig.to_str().unwrap()],
    )
    .await;
    let admin = common::admin::AdminClient::new(&herald.admin);
    wait_for_async("the source watches", || async {
        let (_, source) = admin
            .get("/apis/sources.knative.dev/v1/namespaces/default/apiserversources/files")
            .await;
        condition(&source, "Ready").is_some_and(|c| c["status"] == "True")
    })
    .await;
    change_config_maps(&server, &subscriber, 1).await;
    let received = subscriber.received();
    let references = of_mode(&received, "dev.knative.apiserver.ref.");
    check_config_map_events(&references, &server, "dev.knative.apiserver.ref.", "files");
    herald.terminate().await;
}

/// The replica that last wrote an object's status, from `managedFields`.
fn status_writer(object: &Value) -> Option<String> {
    object["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|f| f["subresource"] == "status")
        .and_then(|f| f["manager"].as_str())
        .map(str::to_owned)
}

async fn lease_holder(server: &KubeApiServer) -> Option<String> {
    let (_, lease) = server
        .get("/apis/coordination.k8s.io/v1/namespaces/default/leases/herald-controller")
        .await;
    lease["spec"]["holderIdentity"].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lease_holder_writes_status_and_another_takes_over() {
    if common::skip_without(&[Server::KubeApiServer]) {
        return;
    }
    let server = KubeApiServer::start().await;
    server.install_crds().await;
    let (data_a, data_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut replicas = vec![
        ("a", start_controller(&server, &data_a, "a").await),
        ("b", start_controller(&server, &data_b, "b").await),
    ];
    let leader = common::wait_for_value("a replica holds the Lease", || async {
        lease_holder(&server)
            .await
            .ok_or_else(|| "no holder".to_owned())
    })
    .await;
    // Sources run on the leader only: one ping per tick, not one per replica.
    let subscriber = Subscriber::start().await;
    create(
        &server,
        &format!("{SOURCES}/pingsources"),
        &json!({"apiVersion": "sources.knative.dev/v1", "kind": "PingSource", "metadata": {"name": "tick"},
                "spec": {"schedule": "@every 1s", "sink": {"uri": subscriber.url()}}}),
    )
    .await;
    subscriber.wait_for(1).await;
    let started = "source started source=PingSource default/tick";
    for (id, replica) in &replicas {
        assert_eq!(
            replica.log_contains(started),
            *id == leader,
            "{id}: {}",
            replica.logs()
        );
    }
    // With a spec: the API server tracks managed fields only of objects created with some.
    let with_spec = |name: &str| {
        let mut object = broker(name);
        object["spec"] = json!({"delivery": {"retry": 1}});
        object
    };
    create(&server, &format!("{EVENTING}/brokers"), &with_spec("first")).await;
    let first = wait_ready(
        &server,
        &replicas[0].1,
        &format!("{EVENTING}/brokers/first"),
    )
    .await;
    assert_eq!(
        status_writer(&first),
        Some(format!("herald-{leader}")),
        "{first}"
    );

    // SIGKILL the leader: it cannot release the Lease; the other takes over once it expires.
    let position = replicas.iter().position(|(id, _)| *id == leader).unwrap();
    let (_, killed) = replicas.remove(position);
    killed.kill();
    let follower = replicas[0].0.to_owned();
    wait_for_async("the other replica holds the Lease", || async {
        lease_holder(&server).await.as_deref() == Some(follower.as_str())
    })
    .await;
    wait_until("the new leader runs the source", || {
        replicas[0].1.log_contains(started)
    })
    .await;
    create(
        &server,
        &format!("{EVENTING}/brokers"),
        &with_spec("second"),
    )
    .await;
    let second = wait_ready(
        &server,
        &replicas[0].1,
        &format!("{EVENTING}/brokers/second"),
    )
    .await;
    assert_eq!(
        status_writer(&second),
        Some(format!("herald-{follower}")),
        "{second}"
    );
}

/// Every object of the multi-document YAML file, created through the API as the admin.
pub(crate) async fn apply_file(server: &KubeApiServer, file: &str) {
    let path = format!("{}/examples/kubernetes/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let object: Value = serde::Deserialize::deserialize(document).unwrap();
        if object.is_null() {
            continue;
        }
        let api_version = object["apiVersion"].as_str().unwrap();
        let kind = object["kind"].as_str().unwrap();
        let prefix = if api_version.contains('/') {
            "/apis"
        } else {
            "/api"
        };
        let plural = format!("{}s", kind.to_ascii_lowercase());
        let cluster_scoped = ["Namespace", "ClusterRole", "ClusterRoleBinding"].contains(&kind);
        let collection = match object["metadata"]["namespace"].as_str() {
            _ if cluster_scoped => format!("{prefix}/{api_version}/{plural}"),
            Some(namespace) => format!("{prefix}/{api_version}/namespaces/{namespace}/{plural}"),
            None => format!("{prefix}/{api_version}/namespaces/default/{plural}"),
        };
        let (status, answer) = server.post(&collection, &object).await;
        assert_eq!(status, 201, "{file}: {kind}: {answer}");
    }
}

/// An API server that enforces RBAC, with the CRDs and the example deployment's namespace,
/// RBAC, Deployment and Services applied.
pub(crate) async fn install_example_deployment() -> KubeApiServer {
    let server = KubeApiServer::start_with_rbac().await;
    server.install_crds().await;
    for file in [
        "00-namespace.yaml",
        "10-rbac.yaml",
        "20-deployment.yaml",
        "30-service.yaml",
    ] {
        apply_file(&server, file).await;
    }
    server
}

/// `herald controller` authenticated as the example's ServiceAccount, as the example's
/// Deployment runs it.
pub(crate) async fn start_as_example_service_account(
    server: &KubeApiServer,
    data: &tempfile::TempDir,
    extra: &[&str],
) -> Herald {
    let kubeconfig = server.kubeconfig_with(common::kube::SERVICE_ACCOUNT_TOKEN);
    let mut args = vec![
        "--external-url",
        EXTERNAL_URL,
        "--lease-namespace",
        "herald",
    ];
    args.extend_from_slice(extra);
    Herald::start_controller(&Sled, data.path(), &kubeconfig, &args).await
}

/// The example deployment on an API server that enforces RBAC: Herald, running as the
/// example's ServiceAccount with only the example's roles, runs the example resources.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_example_runs_with_its_least_privilege_rbac() {
    if common::skip_without(&[Server::KubeApiServer]) {
        return;
    }
    let server = install_example_deployment().await;
    let data = tempfile::tempdir().unwrap();
    let herald = start_as_example_service_account(&server, &data, &[]).await;
    apply_file(&server, "40-example.yaml").await;
    let broker = wait_ready(&server, &herald, &format!("{EVENTING}/brokers/default")).await;
    assert_eq!(
        broker["status"]["address"]["url"],
        format!("{EXTERNAL_URL}/default/default")
    );
    let trigger = wait_ready(
        &server,
        &herald,
        &format!("{EVENTING}/triggers/display-all"),
    )
    .await;
    assert_eq!(
        trigger["status"]["subscriberUri"],
        "http://event-display.default.svc.cluster.local"
    );
    let source = wait_ready(
        &server,
        &herald,
        &format!("{SOURCES}/apiserversources/configmap-events"),
    )
    .await;
    assert_eq!(
        condition(&source, "SufficientPermissions").unwrap()["status"],
        "True"
    );
    let logs = herald.logs();
    assert!(!logs.contains("forbidden"), "{logs}");

    // Herald may read every ConfigMap, but a source whose ServiceAccount may not does not run:
    // nobody gets more than their own account allows through Herald.
    let mut sneaky = api_server_source("sneaky", "Resource");
    sneaky["spec"]["serviceAccountName"] = json!("no-rights");
    sneaky["spec"]["sink"] = json!({"uri": "http://127.0.0.1:9/"});
    create(&server, &format!("{SOURCES}/apiserversources"), &sneaky).await;
    let refused = wait_condition(
        &server,
        &herald,
        &format!("{SOURCES}/apiserversources/sneaky"),
        "Ready",
        "False",
        Some("InsufficientPermission"),
    )
    .await;
    let denied = condition(&refused, "SufficientPermissions").unwrap();
    assert_eq!(denied["status"], "False");
    let message = denied["message"].as_str().unwrap();
    assert!(
        message.contains(
            "ServiceAccount default/no-rights may not get configmaps in namespace default"
        ),
        "{message}"
    );
    herald.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_sources_and_sink_bindings_run_as_workloads() {
    if common::skip_without(&[Server::KubeApiServer]) {
        return;
    }
    let server = KubeApiServer::start().await;
    server.install_crds().await;
    let data = tempfile::tempdir().unwrap();
    let herald = start_controller(&server, &data, "only").await;
    create(&server, &format!("{EVENTING}/brokers"), &broker("b")).await;
    let sink = format!("{EXTERNAL_URL}/default/b");
    let broker_ref =
        json!({"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "b"}});
    let env_of = |deployment: &Value, container: usize| -> Vec<(String, String)> {
        deployment["spec"]["template"]["spec"]["containers"][container]["env"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|v| {
                (
                    v["name"].as_str().unwrap().to_owned(),
                    v["value"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    let overrides = r#"{"extensions":{"team":"a"}}"#.to_owned();

    // A ContainerSource becomes a Deployment whose containers get K_SINK and K_CE_OVERRIDES.
    create(
        &server,
        &format!("{SOURCES}/containersources"),
        &json!({"apiVersion": "sources.knative.dev/v1", "kind": "ContainerSource", "metadata": {"name": "beats"},
                "spec": {"template": {"spec": {"containers": [{"name": "adapter", "image": "example/heartbeats",
                                                                 "env": [{"name": "PERIOD", "value": "1"}]}]}},
                         "ceOverrides": {"extensions": {"team": "a"}}, "sink": broker_ref}}),
    )
    .await;
    let apps = "/apis/apps/v1/namespaces/default/deployments";
    let deployment = common::wait_for_value("the ContainerSource's Deployment", || async {
        match server.get(&format!("{apps}/beats-deployment")).await {
            (200, deployment) => Ok(deployment),
            (status, answer) => Err(format!("{status} {answer}")),
        }
    })
    .await;
    assert_eq!(
        env_of(&deployment, 0),
        [
            ("PERIOD".to_owned(), "1".to_owned()),
            ("K_SINK".to_owned(), sink.to_owned()),
            ("K_CE_OVERRIDES".to_owned(), overrides.clone())
        ]
    );
    let owner = &deployment["metadata"]["ownerReferences"][0];
    assert_eq!(
        (
            owner["kind"].as_str(),
            owner["name"].as_str(),
            owner["controller"].as_bool()
        ),
        (Some("ContainerSource"), Some("beats"), Some(true))
    );
    let source_path = format!("{SOURCES}/containersources/beats");
    let waiting = wait_condition(
        &server,
        &herald,
        &source_path,
        "Ready",
        "False",
        Some("DeploymentUnavailable"),
    )
    .await;
    assert_eq!(waiting["status"]["sinkUri"], sink);
    // No kubelet runs here: report the replica available as the Deployment controller would.
    let (status, answer) = server
        .patch(
            &format!("{apps}/beats-deployment/status"),
            &json!({"status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1}}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    wait_ready(&server, &herald, &source_path).await;

    // A SinkBinding puts the variables into its subject, and takes them out when deleted.
    create(
        &server,
        apps,
        &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app"},
                "spec": {"selector": {"matchLabels": {"app": "x"}},
                         "template": {"metadata": {"labels": {"app": "x"}},
                                      "spec": {"containers": [{"name": "main", "image": "example/app",
                                                               "env": [{"name": "KEEP", "value": "yes"}]}]}}}}),
    )
    .await;
    create(
        &server,
        &format!("{SOURCES}/sinkbindings"),
        &json!({"apiVersion": "sources.knative.dev/v1", "kind": "SinkBinding", "metadata": {"name": "bind"},
                "spec": {"subject": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"},
                         "ceOverrides": {"extensions": {"team": "a"}}, "sink": broker_ref}}),
    )
    .await;
    let binding_path = format!("{SOURCES}/sinkbindings/bind");
    let bound = wait_ready(&server, &herald, &binding_path).await;
    assert_eq!(bound["status"]["sinkUri"], sink);
    assert_eq!(
        bound["metadata"]["finalizers"],
        json!(["herald.dev/finalizer"])
    );
    let app = server.get(&format!("{apps}/app")).await.1;
    assert_eq!(
        env_of(&app, 0),
        [
            ("KEEP".to_owned(), "yes".to_owned()),
            ("K_SINK".to_owned(), sink.to_owned()),
            ("K_CE_OVERRIDES".to_owned(), overrides)
        ]
    );
    let (status, answer) = server.delete(&binding_path).await;
    assert_eq!(status, 200, "{answer}");
    wait_for_async("the binding is gone", || async {
        server.get(&binding_path).await.0 == 404
    })
    .await;
    let app = server.get(&format!("{apps}/app")).await.1;
    assert_eq!(env_of(&app, 0), [("KEEP".to_owned(), "yes".to_owned())]);

    // A binding cannot reach into another namespace's workloads (Knative refuses it too).
    create(
        &server,
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}}),
    )
    .await;
    let other_apps = "/apis/apps/v1/namespaces/other/deployments";
    let mut other_app = server.get(&format!("{apps}/app")).await.1;
    other_app["metadata"] = json!({"name": "app"});
    other_app.as_object_mut().unwrap().remove("status");
    create(&server, other_apps, &other_app).await;
    create(
        &server,
        &format!("{SOURCES}/sinkbindings"),
        &json!({"apiVersion": "sources.knative.dev/v1", "kind": "SinkBinding", "metadata": {"name": "reach"},
                "spec": {"subject": {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "other", "name": "app"},
                         "sink": broker_ref}}),
    )
    .await;
    let refused = wait_condition(
        &server,
        &herald,
        &format!("{SOURCES}/sinkbindings/reach"),
        "Ready",
        "False",
        Some("InvalidSpec"),
    )
    .await;
    let message = condition(&refused, "Ready").unwrap()["message"].to_string();
    assert!(message.contains("spec.subject.namespace"), "{message}");
    let other_app = server.get(&format!("{other_apps}/app")).await.1;
    assert_eq!(
        env_of(&other_app, 0),
        [("KEEP".to_owned(), "yes".to_owned())]
    );
    herald.terminate().await;
}

#[test]
fn serve_refuses_a_sink_binding_and_says_what_to_use() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("binding.yaml");
    std::fs::write(
        &config,
        "apiVersion: sources.knative.dev/v1\nkind: SinkBinding\nmetadata: {name: bind}\n\
         spec: {subject: {apiVersion: apps/v1, kind: Deployment, name: app}, sink: {uri: http://x/}}\n",
    )
    .unwrap();
    let (status, stderr) = common::herald::run_invalid(&config, &dir.path().join("data"));
    assert!(!status.success());
    assert!(stderr.contains("SinkBinding default/bind"), "{stderr}");
    assert!(stderr.contains("herald controller"), "{stderr}");
    assert!(stderr.contains("herald run"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_broker_deletes_its_log_when_asked() {
    if common::skip_without(&[Server::KubeApiServer]) {
        return;
    }
    let server = KubeApiServer::start().await;
    server.install_crds().await;
    let subscriber = Subscriber::start().await;
    let data = tempfile::tempdir().unwrap();
    let herald = Herald::start_controller(
        &Sled,
        data.path(),
        &server.kubeconfig(),
        &[
            "--external-url",
            "http://herald.test",
            "--delete-broker-logs",
        ],
    )
    .await;
    let b = format!("{EVENTING}/brokers/b");
    create(&server, &format!("{EVENTING}/brokers"), &broker("b")).await;
    let ready = wait_ready(&server, &herald, &b).await;
    assert_eq!(
        ready["metadata"]["finalizers"],
        json!(["herald.dev/finalizer"])
    );
    assert_eq!(post_event(&herald, "b", "before").await, 202);
    let (status, answer) = server.delete(&b).await;
    assert_eq!(status, 200, "{answer}");
    wait_for_async("the deleted broker is gone", || async {
        server.get(&b).await.0 == 404
    })
    .await;
    // The line is written before the finalizer goes, but read from Herald's stderr by another
    // thread: wait for it rather than race that thread.
    herald.wait_for_log("deleted the broker's log").await;

    // A new broker of the same name starts empty: a trigger reading from the earliest event
    // gets only what was sent after.
    create(&server, &format!("{EVENTING}/brokers"), &broker("b")).await;
    let mut replay = trigger("replay", "b", json!({"uri": subscriber.url()}));
    replay["metadata"]["annotations"] = json!({"herald.dev/start-from": "earliest",
                                                "kafka.eventing.knative.dev/delivery.order": "ordered"});
    create(&server, &format!("{EVENTING}/triggers"), &replay).await;
    wait_ready(&server, &herald, &format!("{EVENTING}/triggers/replay")).await;
    assert_eq!(post_event(&herald, "b", "after").await, 202);
    subscriber.wait_for_id("after").await;
    let ids = subscriber.ids();
    assert_eq!(ids, ["after"]);
}

/// A broker that cannot run (its backend refuses its stream; its dead-letter sink does not
/// resolve) is `Ready=False` saying why, its triggers say `BrokerNotReady`, and the other
/// brokers and triggers run meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_cannot_run_does_not_stop_the_others() {
    if common::skip_without(&[Server::KubeApiServer, Server::Nats]) {
        return;
    }
    let server = KubeApiServer::start().await;
    server.install_crds().await;
    let nats = common::herald::Nats::start();
    let subscriber = Subscriber::start().await;
    let data = tempfile::tempdir().unwrap();
    let herald = Herald::start_controller(
        &nats,
        data.path(),
        &server.kubeconfig(),
        &["--external-url", EXTERNAL_URL],
    )
    .await;
    let brokers = format!("{EVENTING}/brokers");
    let triggers = format!("{EVENTING}/triggers");
    // A single NATS server cannot keep three replicas of a stream.
    let mut replicated = broker("replicated");
    replicated["metadata"]["annotations"] = json!({"herald.dev/replicas": "3"});
    create(&server, &brokers, &replicated).await;
    let mut unresolved = broker("unresolved");
    unresolved["spec"] = json!({"delivery": {"deadLetterSink": {"ref": {"apiVersion": "v1", "kind": "Service", "name": "nowhere"}}}});
    create(&server, &brokers, &unresolved).await;
    create(&server, &brokers, &broker("fine")).await;
    for (name, broker) in [
        ("on-replicated", "replicated"),
        ("on-unresolved", "unresolved"),
        ("on-fine", "fine"),
    ] {
        create(
            &server,
            &triggers,
            &trigger(name, broker, json!({"uri": subscriber.url()})),
        )
        .await;
    }

    wait_ready(&server, &herald, &format!("{triggers}/on-fine")).await;
    assert_eq!(post_event(&herald, "fine", "fine-1").await, 202);
    subscriber.wait_for_id("fine-1").await;

    let failed = wait_condition(
        &server,
        &herald,
        &format!("{brokers}/replicated"),
        "Ready",
        "False",
        Some("LogUnavailable"),
    )
    .await;
    let message = condition(&failed, "Ready").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("replicas"), "{message}");
    wait_condition(
        &server,
        &herald,
        &format!("{brokers}/unresolved"),
        "DeadLetterSinkResolved",
        "False",
        None,
    )
    .await;
    for (trigger, broker) in [
        ("on-replicated", "replicated"),
        ("on-unresolved", "unresolved"),
    ] {
        let waiting = wait_condition(
            &server,
            &herald,
            &format!("{triggers}/{trigger}"),
            "BrokerReady",
            "False",
            Some("BrokerNotReady"),
        )
        .await;
        let message = condition(&waiting, "Ready").unwrap()["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            message.starts_with(&format!("Broker \"{broker}\" is not ready: ")),
            "{message}"
        );
        // A broker that does not run accepts nothing (nothing is taken that could not be kept).
        assert_eq!(post_event(&herald, broker, "refused").await, 404);
    }

    // Fixed, the broker runs and so does its trigger.
    let (status, answer) = server
        .patch(
            &format!("{brokers}/replicated"),
            &json!({"metadata": {"annotations": {"herald.dev/replicas": "1"}}}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    wait_ready(&server, &herald, &format!("{triggers}/on-replicated")).await;
    assert_eq!(post_event(&herald, "replicated", "replicated-1").await, 202);
    subscriber.wait_for_id("replicated-1").await;
    herald.terminate().await;
}

/// Two replicas on one NATS JetStream: both accept events for the broker, and the trigger's
/// durable consumer is shared, so every event is delivered whichever replica took it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_data_plane_on_nats() {
    if common::skip_without(&[Server::KubeApiServer, Server::Nats]) {
        return;
    }
    let server = KubeApiServer::start().await;
    server.install_crds().await;
    let nats = common::herald::Nats::start();
    let subscriber = Subscriber::start().await;
    let (data_a, data_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut replicas = Vec::new();
    for (id, data) in [("a", &data_a), ("b", &data_b)] {
        let herald = Herald::start_controller(
            &nats,
            data.path(),
            &server.kubeconfig(),
            &["--external-url", "http://herald.test", "--identity", id],
        )
        .await;
        replicas.push(herald);
    }
    create(&server, &format!("{EVENTING}/brokers"), &broker("b")).await;
    create(
        &server,
        &format!("{EVENTING}/triggers"),
        &trigger("t", "b", json!({"uri": subscriber.url()})),
    )
    .await;
    wait_ready(&server, &replicas[0], &format!("{EVENTING}/triggers/t")).await;
    // Every replica runs the broker once it has reconciled (readiness says so).
    for replica in &replicas {
        wait_for_async("the replica accepts events", || async {
            post_event(replica, "b", "probe").await == 202
        })
        .await;
    }
    let mut sent = Vec::new();
    for i in 0..20 {
        let id = format!("e{i}");
        assert_eq!(post_event(&replicas[i % 2], "b", &id).await, 202);
        sent.push(id);
    }
    common::wait_for_value("every event delivered", || async {
        let got: std::collections::BTreeSet<String> = subscriber.ids().into_iter().collect();
        match sent.iter().filter(|id| !got.contains(*id)).count() {
            0 => Ok(()),
            missing => Err(format!("{missing} missing")),
        }
    })
    .await;
}

/// A controller that starts before its API server answers (a pod starting with its cluster)
/// waits for it instead of exiting, then runs what it finds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_started_before_its_api_server_waits_for_it() {
    if common::skip_without(&[Server::KubeApiServer]) {
        return;
    }
    let port = common::free_port();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = KubeApiServer::kubeconfig_for_port(dir.path(), port);
    let data = tempfile::tempdir().unwrap();
    // Both start at once: the API server needs about a second (etcd first), the controller
    // reaches it within milliseconds, so its first attempts find nothing listening.
    let (herald, server) = tokio::join!(
        Herald::start_controller(
            &Sled,
            data.path(),
            &kubeconfig,
            &["--external-url", "http://herald.test"]
        ),
        async {
            let server = KubeApiServer::start_on(port).await;
            server.install_crds().await;
            server
        }
    );
    create(&server, &format!("{EVENTING}/brokers"), &broker("b")).await;
    wait_ready(&server, &herald, &format!("{EVENTING}/brokers/b")).await;
}

/// `--namespace`: a controller that may act only in `default` (the example's ClusterRole
/// bound there by a RoleBinding, no ClusterRoleBinding) runs what is in `default` and leaves
/// other namespaces alone; a Service ref into an unwatched namespace says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_scoped_to_a_namespace_needs_permissions_only_there() {
    if common::skip_without(&[Server::KubeApiServer]) {
        return;
    }
    let server = install_example_deployment().await;
    for binding in ["herald-controller", "herald-addressable-resolver"] {
        let (status, answer) = server
            .delete(&format!(
                "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{binding}"
            ))
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    apply_file(&server, "15-rbac-one-namespace.yaml").await;
    create(
        &server,
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}}),
    )
    .await;
    let other_broker = "/apis/eventing.knative.dev/v1/namespaces/other/brokers/elsewhere";
    create(
        &server,
        "/apis/eventing.knative.dev/v1/namespaces/other/brokers",
        &json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Broker",
                "metadata": {"name": "elsewhere"}, "spec": {}}),
    )
    .await;

    let data = tempfile::tempdir().unwrap();
    let herald =
        start_as_example_service_account(&server, &data, &["--namespace", "default"]).await;
    apply_file(&server, "40-example.yaml").await;
    wait_ready(&server, &herald, &format!("{EVENTING}/brokers/default")).await;
    wait_ready(
        &server,
        &herald,
        &format!("{EVENTING}/triggers/display-all"),
    )
    .await;
    wait_ready(
        &server,
        &herald,
        &format!("{SOURCES}/apiserversources/configmap-events"),
    )
    .await;

    create(
        &server,
        &format!("{EVENTING}/triggers"),
        &json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger",
                "metadata": {"name": "to-other"},
                "spec": {"broker": "default", "subscriber": {"ref":
                    {"apiVersion": "v1", "kind": "Service", "name": "x", "namespace": "other"}}}}),
    )
    .await;
    let trigger = wait_condition(
        &server,
        &herald,
        &format!("{EVENTING}/triggers/to-other"),
        "SubscriberResolved",
        "False",
        None,
    )
    .await;
    let message = condition(&trigger, "SubscriberResolved").unwrap()["message"].to_string();
    assert!(message.contains("not watched"), "{message}");

    // That status was written by a later pass than any that could have seen `other`.
    let (_, elsewhere) = server.get(other_broker).await;
    assert!(
        elsewhere
            .get("status")
            .is_none_or(|s| s.get("conditions").is_none()),
        "{elsewhere}"
    );
    let logs = herald.logs();
    assert!(!logs.contains("forbidden"), "{logs}");
    herald.terminate().await;
}

/// On the cluster a KafkaSource's `spec.net` Secret is read through the API server: while it
/// is missing the source is `Ready=False SecretUnavailable` naming the Secret and key; once
/// it exists the source authenticates (SCRAM-SHA-256, the test Kafka's SASL listener) and
/// records reach the sink.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_source_reads_its_secret_from_the_cluster() {
    if common::skip_without(&[Server::KubeApiServer, Server::Kafka]) {
        return;
    }
    use herald_broker::testing::{KafkaServer, KAFKA_SASL_PASSWORD, KAFKA_SASL_USER};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let topic = "cluster-sasl";
    herald_broker::testing::create_kafka_topic(&KafkaServer::shared(), topic, 1).await;
    let server = KubeApiServer::start().await;
    server.install_crds().await;
    let subscriber = Subscriber::start().await;
    let data = tempfile::tempdir().unwrap();
    let herald = start_controller(&server, &data, "only").await;
    let secret_ref = |key: &str| json!({"secretKeyRef": {"name": "kafka-sasl", "key": key}});
    create(
        &server,
        &format!("{SOURCES}/kafkasources"),
        &json!({
            "apiVersion": "sources.knative.dev/v1", "kind": "KafkaSource", "metadata": {"name": "sasl"},
            "spec": {"bootstrapServers": [KafkaServer::shared_sasl()], "topics": [topic],
                     "net": {"sasl": {"enable": true, "user": secret_ref("user"),
                                      "password": secret_ref("password"), "type": secret_ref("saslType")},
                             "tls": {"enable": false}},
                     "sink": {"uri": subscriber.url()}}
        }),
    )
    .await;
    let path = format!("{SOURCES}/kafkasources/sasl");
    let waiting = wait_condition(
        &server,
        &herald,
        &path,
        "Ready",
        "False",
        Some("SecretUnavailable"),
    )
    .await;
    let message = condition(&waiting, "Ready").unwrap()["message"].to_string();
    assert!(
        message.contains("spec.net.sasl.user.secretKeyRef")
            && message.contains(r#"key \"user\" of Secret default/kafka-sasl does not exist"#),
        "{message}"
    );
    create(
        &server,
        &format!("{CORE}/secrets"),
        &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "kafka-sasl"},
                "stringData": {"user": KAFKA_SASL_USER, "password": KAFKA_SASL_PASSWORD,
                               "saslType": "SCRAM-SHA-256"}}),
    )
    .await;
    // The failed source is retried with backoff (up to 30 s), then joins its group at the
    // latest offset: send a record every half second until one arrives.
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", KafkaServer::shared())
        .create()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while subscriber.received().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no record reached the sink: {}",
            herald.logs()
        );
        producer
            .send(
                FutureRecord::<str, str>::to(topic).payload("on the cluster"),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        subscriber.received()[0].ce("type"),
        Some("dev.knative.kafka.event")
    );
    wait_ready(&server, &herald, &path).await;
    assert!(!herald.logs().contains(KAFKA_SASL_PASSWORD));
}

/// A Sequence and a Subscription applied to the API server run under the controller: the
/// Sequence's status has Knative's conditions, its own address under `--external-url` and
/// its children, and an event sent to it runs through the step to the reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequences_and_subscriptions_run_from_crds() {
    let server = KubeApiServer::start().await;
    server.install_crds().await;
    let sink = Subscriber::start().await;
    let step = Subscriber::start().await;
    // The step answers with an event of its own, which the Sequence sends to its reply.
    step.set_default(
        common::Reply::status(200)
            .header("ce-specversion", "1.0")
            .header("ce-id", "from-step")
            .header("ce-source", "/step")
            .header("ce-type", "stepped"),
    );
    let data = tempfile::tempdir().unwrap();
    let herald = start_controller(&server, &data, "only").await;
    let flows = "/apis/flows.knative.dev/v1/namespaces/default";
    let sequence = json!({
        "apiVersion": "flows.knative.dev/v1", "kind": "Sequence", "metadata": {"name": "seq"},
        "spec": {"steps": [{"uri": step.url()}], "reply": {"uri": sink.url()}}
    });
    create(&server, &format!("{flows}/sequences"), &sequence).await;
    let ready = wait_ready(&server, &herald, &format!("{flows}/sequences/seq")).await;
    assert_eq!(
        ready["status"]["address"]["url"],
        format!("{EXTERNAL_URL}/sequences/default/seq"),
        "{ready}"
    );
    for type_ in ["ChannelsReady", "SubscriptionsReady", "Addressable"] {
        assert_eq!(
            condition(&ready, type_).unwrap()["status"],
            "True",
            "{ready}"
        );
    }
    assert_eq!(
        ready["status"]["subscriptionStatuses"][0]["subscription"]["name"], "seq-kn-sequence-0",
        "{ready}"
    );

    let messaging = "/apis/messaging.knative.dev/v1/namespaces/default";
    create(
        &server,
        &format!("{messaging}/inmemorychannels"),
        &json!({"apiVersion": "messaging.knative.dev/v1", "kind": "InMemoryChannel", "metadata": {"name": "c"}}),
    )
    .await;
    let subscription = json!({
        "apiVersion": "messaging.knative.dev/v1", "kind": "Subscription", "metadata": {"name": "s"},
        "spec": {
            "channel": {"apiVersion": "messaging.knative.dev/v1", "kind": "InMemoryChannel", "name": "c"},
            "subscriber": {"ref": {"apiVersion": "flows.knative.dev/v1", "kind": "Sequence", "name": "seq"}}
        }
    });
    create(
        &server,
        &format!("{messaging}/subscriptions"),
        &subscription,
    )
    .await;
    let s = wait_ready(&server, &herald, &format!("{messaging}/subscriptions/s")).await;
    assert_eq!(
        s["status"]["physicalSubscription"]["subscriberUri"]
            .as_str()
            .map(|u| u.ends_with("/sequences/default/seq")),
        Some(true),
        "{s}"
    );
    wait_ready(&server, &herald, &format!("{messaging}/inmemorychannels/c")).await;

    // Into the channel, through the Subscription into the Sequence, its step, its reply.
    let status = reqwest::Client::new()
        .post(format!("{}/channels/default/c", herald.ingress))
        .header("ce-specversion", "1.0")
        .header("ce-id", "in")
        .header("ce-type", "t")
        .header("ce-source", "/tests")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 202);
    let got = sink.wait_for(1).await;
    assert_eq!(got[0].ce("id"), Some("from-step"));
    assert_eq!(step.ids(), ["in"]);
}

/// EventTransform and RequestReply from CRDs: the controller runs them and writes Knative's
/// status (Ready with the address under the external URL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_transforms_and_request_replies_run_from_crds() {
    let server = KubeApiServer::start().await;
    server.install_crds().await;
    let data = tempfile::tempdir().unwrap();
    let herald = start_controller(&server, &data, "only").await;
    let eventing = "/apis/eventing.knative.dev/v1alpha1/namespaces/default";
    create(
        &server,
        &format!("{eventing}/eventtransforms"),
        &json!({"apiVersion": "eventing.knative.dev/v1alpha1", "kind": "EventTransform",
                "metadata": {"name": "et"},
                "spec": {"jsonata": {"expression": "{\"specversion\": \"1.0\", \"id\": id, \"type\": \"t2\", \"source\": source}"}}}),
    )
    .await;
    let ready = wait_ready(&server, &herald, &format!("{eventing}/eventtransforms/et")).await;
    assert_eq!(
        ready["status"]["address"]["url"],
        format!("{EXTERNAL_URL}/eventtransforms/default/et"),
        "{ready}"
    );
    let mut response = reqwest::Client::new()
        .post(format!("{}/eventtransforms/default/et", herald.ingress))
        .header("ce-specversion", "1.0")
        .header("ce-id", "in")
        .header("ce-type", "t")
        .header("ce-source", "/tests")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        body.extend_from_slice(&chunk);
        assert!(body.len() <= 1 << 20, "a transform's answer above 1 MiB");
    }
    let result: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(result["type"], "t2", "{result}");

    create(
        &server,
        "/apis/eventing.knative.dev/v1/namespaces/default/brokers",
        &json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "metadata": {"name": "default"}}),
    )
    .await;
    create(
        &server,
        &format!("{eventing}/requestreplies"),
        &json!({"apiVersion": "eventing.knative.dev/v1alpha1", "kind": "RequestReply",
                "metadata": {"name": "rr"},
                "spec": {"brokerRef": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"}}}),
    )
    .await;
    let ready = wait_ready(&server, &herald, &format!("{eventing}/requestreplies/rr")).await;
    assert_eq!(
        ready["status"]["address"]["url"],
        format!("{EXTERNAL_URL}/requestreplies/default/rr"),
        "{ready}"
    );
    for type_ in ["BrokerReady", "Addressable"] {
        assert_eq!(
            condition(&ready, type_).unwrap()["status"],
            "True",
            "{ready}"
        );
    }
}

/// An EventType from its CRD: the controller writes Knative's status, `ReferenceExists`
/// and `Ready` once its Broker exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_types_run_from_crds() {
    let server = KubeApiServer::start().await;
    server.install_crds().await;
    let data = tempfile::tempdir().unwrap();
    let herald = start_controller(&server, &data, "only").await;
    create(
        &server,
        "/apis/eventing.knative.dev/v1/namespaces/default/brokers",
        &json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "metadata": {"name": "default"}}),
    )
    .await;
    create(
        &server,
        "/apis/eventing.knative.dev/v1beta3/namespaces/default/eventtypes",
        &json!({"apiVersion": "eventing.knative.dev/v1beta3", "kind": "EventType",
                "metadata": {"name": "order-created"},
                "spec": {
                    "reference": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"},
                    "attributes": [{"name": "type", "value": "order.created", "required": true}]
                }}),
    )
    .await;
    let ready = wait_ready(
        &server,
        &herald,
        "/apis/eventing.knative.dev/v1beta3/namespaces/default/eventtypes/order-created",
    )
    .await;
    assert_eq!(
        condition(&ready, "ReferenceExists").unwrap()["status"],
        "True",
        "{ready}"
    );
}
