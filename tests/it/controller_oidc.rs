//! Sender identity on a cluster (`herald controller --authentication-oidc enabled`) against a
//! real kube-apiserver: senders get owned ServiceAccounts, deliveries carry tokens from
//! TokenRequest that verify against the API server's JWKS, and the ingress takes
//! ServiceAccount tokens for its audience, with EventPolicies deciding by their subject.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{json, Value};

use crate::common;
use crate::controller::{
    apply_file, broker, condition, create, install_example_deployment,
    start_as_example_service_account, trigger, wait_condition, wait_ready, CORE, EVENTING,
    EXTERNAL_URL, SOURCES,
};
use common::herald::Sled;
use common::kube::KubeApiServer;
use common::{Herald, Server, Subscriber};

const OIDC: [&str; 2] = ["--authentication-oidc", "enabled"];
/// The `--service-account-issuer` of the test API server.
const CLUSTER_ISSUER: &str = "https://kubernetes.default.svc";
const SUBSCRIBER_AUDIENCE: &str = "https://subscriber.example/events";
const POLICIES: &str = "/apis/eventing.knative.dev/v1alpha1/namespaces/default/eventpolicies";

fn broker_audience(name: &str) -> String {
    format!("eventing.knative.dev/broker/default/{name}")
}

async fn start_controller(server: &KubeApiServer, data: &tempfile::TempDir) -> Herald {
    let mut args = vec!["--external-url", EXTERNAL_URL, "--lease-duration", "3s"];
    args.extend(OIDC);
    Herald::start_controller(&Sled, data.path(), &server.kubeconfig(), &args).await
}

/// A ServiceAccount in `default`, created as the admin.
async fn service_account(server: &KubeApiServer, name: &str) {
    create(
        server,
        &format!("{CORE}/serviceaccounts"),
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}),
    )
    .await;
}

/// A token for ServiceAccount `default/{account}` from the API server's TokenRequest.
async fn token_request(server: &KubeApiServer, account: &str, audience: &str) -> String {
    let (status, answer) = server
        .post(
            &format!("{CORE}/serviceaccounts/{account}/token"),
            &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                    "spec": {"audiences": [audience], "expirationSeconds": 3600}}),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    answer["status"]["token"].as_str().unwrap().to_owned()
}

/// Posts one event to broker `default/{name}`, with `token` if given; the status and body.
async fn post(herald: &Herald, name: &str, token: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .post(herald.broker_url("default", name))
        .header("ce-specversion", "1.0")
        .header("ce-id", "1")
        .header("ce-type", "com.example.test")
        .header("ce-source", "/tests")
        .body("{}");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let mut response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        body.extend_from_slice(&chunk);
        assert!(body.len() < 64 * 1024);
    }
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
}

/// Verifies `token` as a subscriber on the cluster would: with the API server's JWKS, its
/// issuer and the subscriber's audience; the subject.
async fn verify_with_cluster_jwks(server: &KubeApiServer, token: &str, audience: &str) -> String {
    let (status, jwks) = server.get("/openid/v1/jwks").await;
    assert_eq!(status, 200, "{jwks}");
    let jwks: JwkSet = serde_json::from_value(jwks).unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().expect("a kid"))
        .expect("the token's kid is in the API server's JWKS");
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[CLUSTER_ISSUER]);
    jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .unwrap_or_else(|e| panic!("the token does not verify against the API server's JWKS: {e}"))
        .claims
        .sub
}

/// A Trigger gets its ServiceAccount `{name}-oidc-eventing.knative.dev-trigger`, labelled and
/// owned by it, named in its status; its delivery carries a token the API server issued
/// (TokenRequest) for the subscriber's audience and that account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_triggers_deliveries_carry_token_request_tokens_of_its_own_service_account() {
    if common::skip_without(&[Server::KubeApiServer]) {
        return;
    }
    let server = KubeApiServer::start().await;
    server.install_crds().await;
    let subscriber = Subscriber::start().await;
    let data = tempfile::tempdir().unwrap();
    let herald = start_controller(&server, &data).await;
    create(&server, &format!("{EVENTING}/brokers"), &broker("b")).await;
    create(
        &server,
        &format!("{EVENTING}/triggers"),
        &trigger(
            "t",
            "b",
            json!({"uri": subscriber.url(), "audience": SUBSCRIBER_AUDIENCE}),
        ),
    )
    .await;
    let account = "t-oidc-eventing.knative.dev-trigger";
    let status = wait_condition(
        &server,
        &herald,
        &format!("{EVENTING}/triggers/t"),
        "OIDCIdentityCreated",
        "True",
        None,
    )
    .await;
    assert_eq!(status["status"]["auth"]["serviceAccountName"], account);
    wait_ready(&server, &herald, &format!("{EVENTING}/triggers/t")).await;
    let (code, created) = server
        .get(&format!("{CORE}/serviceaccounts/{account}"))
        .await;
    assert_eq!(code, 200, "{created}");
    assert_eq!(
        created["metadata"]["labels"]["eventing.knative.dev/oidc"],
        "enabled"
    );
    let owner = &created["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Trigger", "{created}");
    assert_eq!(owner["apiVersion"], "eventing.knative.dev/v1");
    assert_eq!(owner["uid"], status["metadata"]["uid"]);
    assert_eq!(owner["controller"], true);

    service_account(&server, "producer").await;
    let producer = token_request(&server, "producer", &broker_audience("b")).await;
    let (code, body) = post(&herald, "b", Some(&producer)).await;
    assert_eq!(code, 202, "{body}\n{}", herald.logs());
    let received = subscriber.wait_for(1).await;
    let authorization = received[0]
        .header("authorization")
        .expect("the delivery carries a token");
    let token = authorization.strip_prefix("Bearer ").unwrap();
    assert_ne!(token, producer, "the producer's token is not forwarded");
    let subject = verify_with_cluster_jwks(&server, token, SUBSCRIBER_AUDIENCE).await;
    assert_eq!(subject, format!("system:serviceaccount:default:{account}"));
    herald.terminate().await;
}

/// The ingress takes tokens the API server issued to ServiceAccounts (its service-account
/// issuer's keys, found by discovery) for the broker's audience only; an EventPolicy's
/// `from.sub` and `from.ref` (a Trigger, by the ServiceAccount Herald made for it) let their
/// senders in and keep another out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingress_takes_service_account_tokens_and_event_policies_decide_by_their_subject() {
    if common::skip_without(&[Server::KubeApiServer]) {
        return;
    }
    let server = KubeApiServer::start().await;
    server.install_crds().await;
    let subscriber = Subscriber::start().await;
    let data = tempfile::tempdir().unwrap();
    let herald = start_controller(&server, &data).await;
    for name in ["open", "guarded"] {
        create(&server, &format!("{EVENTING}/brokers"), &broker(name)).await;
    }
    create(
        &server,
        &format!("{EVENTING}/triggers"),
        &trigger("relay", "open", json!({"uri": subscriber.url()})),
    )
    .await;
    create(
        &server,
        POLICIES,
        &json!({
            "apiVersion": "eventing.knative.dev/v1alpha1", "kind": "EventPolicy",
            "metadata": {"name": "alice-and-relay"},
            "spec": {
                "to": [{"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "guarded"}}],
                "from": [{"sub": "system:serviceaccount:default:alice"},
                         {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger", "name": "relay"}}]
            }
        }),
    )
    .await;
    for account in ["alice", "bob"] {
        service_account(&server, account).await;
    }
    wait_ready(&server, &herald, &format!("{POLICIES}/alice-and-relay")).await;
    wait_ready(&server, &herald, &format!("{EVENTING}/brokers/guarded")).await;
    wait_condition(
        &server,
        &herald,
        &format!("{EVENTING}/triggers/relay"),
        "OIDCIdentityCreated",
        "True",
        None,
    )
    .await;

    // Authentication: the broker's audience, from the cluster's issuer.
    let alice_open = token_request(&server, "alice", &broker_audience("open")).await;
    let (code, body) = post(&herald, "open", Some(&alice_open)).await;
    assert_eq!(code, 202, "{body}\n{}", herald.logs());
    let (code, body) = post(&herald, "guarded", Some(&alice_open)).await;
    assert_eq!(code, 401, "another broker's audience: {body}");
    assert!(body.contains("audience"), "{body}");
    let (code, _) = post(&herald, "open", None).await;
    assert_eq!(code, 401, "no token");

    // Authorization: the policy's subjects get in, another account does not.
    let alice = token_request(&server, "alice", &broker_audience("guarded")).await;
    let (code, body) = post(&herald, "guarded", Some(&alice)).await;
    assert_eq!(code, 202, "from.sub names alice: {body}");
    let bob = token_request(&server, "bob", &broker_audience("guarded")).await;
    let (code, body) = post(&herald, "guarded", Some(&bob)).await;
    assert_eq!(code, 403, "no policy names bob: {body}");
    let relay = token_request(
        &server,
        "relay-oidc-eventing.knative.dev-trigger",
        &broker_audience("guarded"),
    )
    .await;
    let (code, body) = post(&herald, "guarded", Some(&relay)).await;
    assert_eq!(code, 202, "from.ref names the trigger relay: {body}");
    herald.terminate().await;
}

/// The example's least-privilege RBAC suffices with sender identity on: ServiceAccounts are
/// created, TokenRequest is allowed, and the API server's keys can be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_rbac_suffices_for_sender_identity() {
    if common::skip_without(&[Server::KubeApiServer]) {
        return;
    }
    let server = install_example_deployment().await;
    let subscriber = Subscriber::start().await;
    let data = tempfile::tempdir().unwrap();
    let herald = start_as_example_service_account(&server, &data, &OIDC).await;
    apply_file(&server, "40-example.yaml").await;
    create(
        &server,
        &format!("{EVENTING}/triggers"),
        &trigger(
            "local",
            "default",
            json!({"uri": subscriber.url(), "audience": SUBSCRIBER_AUDIENCE}),
        ),
    )
    .await;
    for name in ["display-all", "local"] {
        let trigger = wait_ready(&server, &herald, &format!("{EVENTING}/triggers/{name}")).await;
        assert_eq!(
            condition(&trigger, "OIDCIdentityCreated").unwrap()["status"],
            "True",
            "{trigger}"
        );
    }
    service_account(&server, "producer").await;
    let token = token_request(&server, "producer", &broker_audience("default")).await;
    let (code, body) = post(&herald, "default", Some(&token)).await;
    assert_eq!(code, 202, "{body}\n{}", herald.logs());
    let received = subscriber.wait_for(1).await;
    let token = received[0]
        .header("authorization")
        .and_then(|value| value.strip_prefix("Bearer "))
        .expect("a token");
    let subject = verify_with_cluster_jwks(&server, token, SUBSCRIBER_AUDIENCE).await;
    assert_eq!(
        subject,
        "system:serviceaccount:default:local-oidc-eventing.knative.dev-trigger"
    );
    let logs = herald.logs();
    assert!(!logs.contains("forbidden"), "{logs}");
    herald.terminate().await;
}

/// The token volume a workload's pod spec should have: the sink's audience, one hour.
fn token_volume(audience: &str) -> Value {
    json!({"name": "oidc-token", "projected": {"defaultMode": 420, "sources": [{"serviceAccountToken": {
        "audience": audience, "expirationSeconds": 3600, "path": "token"}}]}})
}

/// As in Knative, workloads get their token at `/oidc/token`: a ContainerSource's Deployment
/// and a SinkBinding's subject run as the source's OIDC ServiceAccount (created and owned as
/// for other senders) with a projected token for the sink's audience mounted read-only at
/// `/oidc`; deleting the binding takes out the volume, the mounts and the account again and
/// leaves the subject's own. (No kubelet runs here: the pod specs are what is checked.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_get_their_token_at_oidc_token() {
    if common::skip_without(&[Server::KubeApiServer]) {
        return;
    }
    let server = KubeApiServer::start().await;
    server.install_crds().await;
    let data = tempfile::tempdir().unwrap();
    let herald = start_controller(&server, &data).await;
    create(&server, &format!("{EVENTING}/brokers"), &broker("b")).await;
    let broker_ref =
        json!({"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "b"}});
    let mount = json!({"name": "oidc-token", "mountPath": "/oidc", "readOnly": true});
    let apps = "/apis/apps/v1/namespaces/default/deployments";

    create(
        &server,
        &format!("{SOURCES}/containersources"),
        &json!({"apiVersion": "sources.knative.dev/v1", "kind": "ContainerSource", "metadata": {"name": "beats"},
                "spec": {"template": {"spec": {"containers": [{"name": "adapter", "image": "example/heartbeats"}]}},
                         "sink": broker_ref}}),
    )
    .await;
    let deployment = common::wait_for_value("the ContainerSource's Deployment", || async {
        match server.get(&format!("{apps}/beats-deployment")).await {
            (200, deployment) => Ok(deployment),
            (status, answer) => Err(format!("{status} {answer}")),
        }
    })
    .await;
    let pod = &deployment["spec"]["template"]["spec"];
    let account = "beats-oidc-sources.knative.dev-containersource";
    assert_eq!(pod["serviceAccountName"], account, "{pod}");
    assert_eq!(pod["volumes"], json!([token_volume(&broker_audience("b"))]));
    assert_eq!(pod["containers"][0]["volumeMounts"], json!([mount]));
    let status = wait_condition(
        &server,
        &herald,
        &format!("{SOURCES}/containersources/beats"),
        "OIDCIdentityCreated",
        "True",
        None,
    )
    .await;
    assert_eq!(status["status"]["auth"]["serviceAccountName"], account);
    let (code, created) = server
        .get(&format!("{CORE}/serviceaccounts/{account}"))
        .await;
    assert_eq!(code, 200, "{created}");
    assert_eq!(
        created["metadata"]["ownerReferences"][0]["kind"],
        "ContainerSource"
    );

    let app_spec = json!({"volumes": [{"name": "data", "emptyDir": {}}],
        "containers": [{"name": "main", "image": "example/app",
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]});
    create(
        &server,
        apps,
        &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app"},
                "spec": {"selector": {"matchLabels": {"app": "x"}},
                         "template": {"metadata": {"labels": {"app": "x"}}, "spec": app_spec}}}),
    )
    .await;
    create(
        &server,
        &format!("{SOURCES}/sinkbindings"),
        &json!({"apiVersion": "sources.knative.dev/v1", "kind": "SinkBinding", "metadata": {"name": "bind"},
                "spec": {"subject": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"},
                         "sink": broker_ref}}),
    )
    .await;
    let binding_path = format!("{SOURCES}/sinkbindings/bind");
    wait_ready(&server, &herald, &binding_path).await;
    let app = server.get(&format!("{apps}/app")).await.1;
    let pod = &app["spec"]["template"]["spec"];
    assert_eq!(
        pod["serviceAccountName"], "bind-oidc-sources.knative.dev-sinkbinding",
        "{pod}"
    );
    assert_eq!(
        pod["volumes"],
        json!([{"name": "data", "emptyDir": {}}, token_volume(&broker_audience("b"))])
    );
    assert_eq!(
        pod["containers"][0]["volumeMounts"],
        json!([{"name": "data", "mountPath": "/data"}, mount])
    );
    assert_eq!(
        server
            .get(&format!(
                "{CORE}/serviceaccounts/bind-oidc-sources.knative.dev-sinkbinding"
            ))
            .await
            .0,
        200
    );

    let (code, answer) = server.delete(&binding_path).await;
    assert_eq!(code, 200, "{answer}");
    common::wait_for_async("the binding is gone", || async {
        server.get(&binding_path).await.0 == 404
    })
    .await;
    let app = server.get(&format!("{apps}/app")).await.1;
    let pod = &app["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"], app_spec["volumes"], "{pod}");
    assert_eq!(
        pod["containers"][0]["volumeMounts"],
        app_spec["containers"][0]["volumeMounts"]
    );
    assert!(
        pod["serviceAccountName"].is_null() || pod["serviceAccountName"] == "default",
        "{pod}"
    );
    herald.terminate().await;
}

/// A sink `ref` to an addressable Herald does not serve resolves to its `status.address.url`,
/// and its `status.address.audience` becomes the sink's audience: a PingSource's requests
/// carry a TokenRequest token for that audience (Knative's resolver does the same).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_ref_takes_the_audience_the_addressable_advertises() {
    if common::skip_without(&[Server::KubeApiServer]) {
        return;
    }
    let server = KubeApiServer::start().await;
    server.install_crds().await;
    let receiver = Subscriber::start().await;
    // Some other controller's addressable: a CRD whose objects carry their own status.
    create(
        &server,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        &json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": "receivers.example.com"},
                "spec": {"group": "example.com", "scope": "Namespaced",
                         "names": {"plural": "receivers", "singular": "receiver", "kind": "Receiver"},
                         "versions": [{"name": "v1", "served": true, "storage": true,
                                       "schema": {"openAPIV3Schema": {"type": "object",
                                           "x-kubernetes-preserve-unknown-fields": true}}}]}}),
    )
    .await;
    let audience = "example.com/receiver/default/r";
    let object = json!({"apiVersion": "example.com/v1", "kind": "Receiver", "metadata": {"name": "r"},
        "status": {"address": {"url": receiver.url(), "audience": audience}}});
    common::wait_for_async("the Receiver CRD serves", || async {
        server
            .post("/apis/example.com/v1/namespaces/default/receivers", &object)
            .await
            .0
            == 201
    })
    .await;
    let data = tempfile::tempdir().unwrap();
    let herald = start_controller(&server, &data).await;
    create(
        &server,
        &format!("{SOURCES}/pingsources"),
        &json!({"apiVersion": "sources.knative.dev/v1", "kind": "PingSource", "metadata": {"name": "p"},
                "spec": {"schedule": "@every 1s", "data": "{}",
                         "sink": {"ref": {"apiVersion": "example.com/v1", "kind": "Receiver", "name": "r"}}}}),
    )
    .await;
    let received = receiver.wait_for(1).await;
    let authorization = received[0]
        .header("authorization")
        .unwrap_or_else(|| panic!("the request carries a token\n{}", herald.logs()));
    let token = authorization.strip_prefix("Bearer ").unwrap();
    let subject = verify_with_cluster_jwks(&server, token, audience).await;
    assert_eq!(
        subject,
        "system:serviceaccount:default:p-oidc-sources.knative.dev-pingsource"
    );
    herald.terminate().await;
}
