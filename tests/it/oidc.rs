//! Sender identity (`--authentication-oidc enabled`), through the real binary: subscribers
//! verify Herald's tokens with a standard JWT library against the JWKS served on the admin
//! port, and the ingress refuses requests without a valid token for the broker (401).

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Value};

use crate::common;
use crate::scenarios::{self, broker_yaml, send_binary, NS};
use common::admin::{AdminClient, BROKERS, TRIGGERS};
use common::herald::{Herald, HeraldDirs, Sled};
use common::Subscriber;

const OIDC: [&str; 2] = ["--authentication-oidc", "enabled"];
const SUBSCRIBER_AUDIENCE: &str = "https://subscriber.example/events";

fn broker_audience(broker: &str) -> String {
    format!("eventing.knative.dev/broker/{NS}/{broker}")
}

/// A token from Herald's admin API, as an external producer gets one.
async fn producer_token(herald: &Herald, subject: &str, audience: &str) -> String {
    let response = scenarios::client()
        .post(format!("{}/apis/herald.dev/v1/oidc/token", herald.admin))
        .header("content-type", "application/json")
        .body(json!({ "subject": subject, "audience": audience }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = serde_json::from_slice(&bounded_body(response).await).unwrap();
    body["token"].as_str().unwrap().to_owned()
}

/// An answer's body, at most 64 KiB (discovery, JWKS and tokens are far smaller).
async fn bounded_body(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        body.extend_from_slice(&chunk);
        assert!(body.len() <= 64 * 1024, "answer too large");
    }
    body
}

/// The issuer and its keys, found the way any OIDC client finds them: discovery, then JWKS.
async fn discover(herald: &Herald) -> (String, JwkSet) {
    let client = scenarios::client();
    let get = |url: String| {
        let client = client.clone();
        async move {
            let response = client.get(url).send().await.unwrap();
            assert_eq!(response.status(), 200);
            bounded_body(response).await
        }
    };
    let discovery: Value = serde_json::from_slice(
        &get(format!("{}/.well-known/openid-configuration", herald.admin)).await,
    )
    .unwrap();
    let jwks: JwkSet =
        serde_json::from_slice(&get(discovery["jwks_uri"].as_str().unwrap().to_owned()).await)
            .unwrap();
    (discovery["issuer"].as_str().unwrap().to_owned(), jwks)
}

#[derive(serde::Deserialize, Debug)]
struct Claims {
    sub: String,
    iss: String,
    exp: u64,
    iat: u64,
}

/// Verifies `token` as a subscriber would: signature by the JWKS key its `kid` names, issuer,
/// audience, expiry.
fn verify(token: &str, issuer: &str, jwks: &JwkSet, audience: &str) -> Claims {
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("the token's kid is in the JWKS");
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[issuer]);
    jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .unwrap_or_else(|e| panic!("the token does not verify: {e}"))
        .claims
}

fn bearer(received: &common::subscriber::Received) -> Option<String> {
    received.header("authorization").map(|v| {
        v.strip_prefix("Bearer ")
            .expect("a Bearer token")
            .to_owned()
    })
}

/// Each delivery to a subscriber with an audience carries the trigger's token for that
/// audience, signed with a key of the JWKS the admin port serves; the token is reused (one
/// mint per sender and audience); a subscriber without an audience gets none, and the
/// producer's own token is never forwarded. Status shows the audience and the identity.
#[tokio::test]
async fn deliveries_carry_tokens_that_verify_against_the_jwks() {
    let with_audience = Subscriber::start().await;
    let without = Subscriber::start().await;
    let config = format!(
        "{}apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: t1\n  namespace: {NS}\nspec: {{broker: b, subscriber: {{uri: '{}', audience: '{SUBSCRIBER_AUDIENCE}'}}}}\n---\n{}",
        broker_yaml("b", None),
        with_audience.url(),
        scenarios::trigger_yaml("t2", "b", &without.url(), ""),
    );
    let dirs = HeraldDirs::new(&config);
    let herald = Herald::start(&Sled, &dirs, &OIDC).await;
    let producer = producer_token(
        &herald,
        "system:serviceaccount:default:producer",
        &broker_audience("b"),
    )
    .await;
    let authorization = format!("Bearer {producer}");
    for id in ["e1", "e2", "e3"] {
        let status = send_binary(
            &herald.broker_url(NS, "b"),
            id,
            "t",
            &[("authorization", &authorization)],
        )
        .await;
        assert_eq!(status, 202, "{}", herald.logs());
    }

    let (issuer, jwks) = discover(&herald).await;
    assert_eq!(
        issuer, herald.admin,
        "the default issuer is the admin listener's URL"
    );
    let received = with_audience.wait_for(3).await;
    let tokens: Vec<String> = received
        .iter()
        .map(|r| bearer(r).expect("a token"))
        .collect();
    for token in &tokens {
        assert_ne!(
            token, &producer,
            "the producer's token must not be forwarded"
        );
        let claims = verify(token, &issuer, &jwks, SUBSCRIBER_AUDIENCE);
        assert_eq!(
            claims.sub,
            "system:serviceaccount:default:t1-oidc-eventing.knative.dev-trigger"
        );
        assert_eq!(claims.iss, issuer);
        assert_eq!(claims.exp - claims.iat, 3600, "tokens live one hour");
    }
    // ES256 signatures are randomized: equal tokens are one cached token.
    assert!(
        tokens.iter().all(|t| t == &tokens[0]),
        "the token is reused"
    );

    for r in without.wait_for(3).await {
        assert_eq!(r.header("authorization"), None, "no audience, no token");
    }

    let admin = AdminClient::new(&herald.admin);
    let (_, broker) = admin.get(&format!("{BROKERS}/b")).await;
    assert_eq!(
        broker["status"]["address"]["audience"],
        json!(broker_audience("b"))
    );
    let (_, trigger) = admin.get(&format!("{TRIGGERS}/t1")).await;
    assert_eq!(
        trigger["status"]["auth"]["serviceAccountName"],
        json!("t1-oidc-eventing.knative.dev-trigger")
    );
    let identity = trigger["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "OIDCIdentityCreated")
        .expect("OIDCIdentityCreated");
    assert_eq!(identity["status"], "True");
}

fn seconds_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token signed with Herald's own key (read from its data directory) but with the claims
/// the test chooses: how an expired token is made.
fn signed_with_herald_key(dirs: &HeraldDirs, kid: &str, claims: Value) -> String {
    let pkcs8 = std::fs::read(dirs.data.path().join("oidc/signing-key.p8")).unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(&pkcs8)).unwrap()
}

/// With sender identity on, a broker's ingress takes only a token for its own audience,
/// signed by a trusted key and unexpired; every refusal is a 401 with RFC 6750's challenge.
#[tokio::test]
async fn the_ingress_requires_a_valid_token_for_the_broker() {
    let dirs = HeraldDirs::new(&format!(
        "{}{}",
        broker_yaml("b", None),
        broker_yaml("other", None)
    ));
    let herald = Herald::start(&Sled, &dirs, &OIDC).await;
    let url = herald.broker_url(NS, "b");
    let subject = "system:serviceaccount:default:producer";
    let (issuer, jwks) = discover(&herald).await;
    let kid = jwks.keys[0].common.key_id.clone().unwrap();

    let send = |authorization: Option<String>| {
        let url = url.clone();
        async move {
            let mut request = scenarios::client()
                .post(&url)
                .header("ce-specversion", "1.0")
                .header("ce-id", "1")
                .header("ce-source", "/e2e")
                .header("ce-type", "t");
            if let Some(authorization) = authorization {
                request = request.header("authorization", authorization);
            }
            let response = request.send().await.unwrap();
            let challenge = response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            (response.status().as_u16(), challenge)
        }
    };

    let (status, challenge) = send(None).await;
    assert_eq!(status, 401);
    assert!(
        challenge.starts_with("Bearer error=\"invalid_request\""),
        "{challenge}"
    );

    let wrong_audience = producer_token(&herald, subject, &broker_audience("other")).await;
    let (status, challenge) = send(Some(format!("Bearer {wrong_audience}"))).await;
    assert_eq!(status, 401);
    assert!(
        challenge.contains("invalid_token") && challenge.contains("audience"),
        "{challenge}"
    );

    let now = seconds_now();
    let expired = signed_with_herald_key(
        &dirs,
        &kid,
        json!({"iss": issuer, "sub": subject, "aud": [broker_audience("b")], "iat": now - 7200, "exp": now - 3600}),
    );
    let (status, challenge) = send(Some(format!("Bearer {expired}"))).await;
    assert_eq!(status, 401);
    assert!(challenge.contains("expired"), "{challenge}");

    // The right claims under a key Herald does not know.
    let rng = ring::rand::SystemRandom::new();
    let foreign = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.clone());
    let forged = jsonwebtoken::encode(
        &header,
        &json!({"iss": issuer, "sub": subject, "aud": [broker_audience("b")], "iat": now, "exp": now + 600}),
        &EncodingKey::from_ec_der(foreign.as_ref()),
    )
    .unwrap();
    let (status, challenge) = send(Some(format!("Bearer {forged}"))).await;
    assert_eq!(status, 401);
    assert!(challenge.contains("signature"), "{challenge}");

    let valid = producer_token(&herald, subject, &broker_audience("b")).await;
    let (status, _) = send(Some(format!("Bearer {valid}"))).await;
    assert_eq!(status, 202, "{}", herald.logs());
    // Remembered tokens are still checked against the broker's audience.
    let other = herald.broker_url(NS, "other");
    let status = send_binary(
        &other,
        "2",
        "t",
        &[("authorization", &format!("Bearer {valid}"))],
    )
    .await;
    assert_eq!(status, 401);
}

/// EventPolicy through the binary, with tokens from Herald's issuer (issue 21): on a broker a
/// policy applies to, a sender its `from` names gets in with events its filters pass and is
/// refused the others (403), a sender it does not name is refused; on a broker with no policy
/// the default mode (allow-same-namespace) lets the namespace's own accounts in and keeps
/// other namespaces' out.
#[tokio::test]
async fn an_event_policy_lets_one_sender_in_and_keeps_another_out() {
    let policy = format!(
        "apiVersion: eventing.knative.dev/v1alpha1
kind: EventPolicy
metadata: {{name: orders-only, namespace: {NS}}}
spec:
  to: [{{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: b}}}}]
  from: [{{sub: \"system:serviceaccount:{NS}:orders-*\"}}]
  filters: [{{prefix: {{type: order.}}}}]
---
"
    );
    let dirs = HeraldDirs::new(&format!(
        "{}{}{policy}",
        broker_yaml("b", None),
        broker_yaml("open", None)
    ));
    let herald = Herald::start(&Sled, &dirs, &OIDC).await;

    let send = |broker: &'static str, token: String, event_type: &'static str| {
        let url = herald.broker_url(NS, broker);
        async move {
            let response = scenarios::client()
                .post(&url)
                .header("ce-specversion", "1.0")
                .header("ce-id", "1")
                .header("ce-source", "/e2e")
                .header("ce-type", event_type)
                .header("authorization", format!("Bearer {token}"))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (
                status,
                String::from_utf8_lossy(&bounded_body(response).await).into_owned(),
            )
        }
    };
    let orders = format!("system:serviceaccount:{NS}:orders-api");
    let intruder = format!("system:serviceaccount:{NS}:intruder");
    let elsewhere = "system:serviceaccount:elsewhere:orders-api";

    let token = producer_token(&herald, &orders, &broker_audience("b")).await;
    assert_eq!(send("b", token.clone(), "order.created").await.0, 202);
    let (status, body) = send("b", token, "user.created").await;
    assert_eq!(status, 403, "the policy's filter refuses it: {body}");
    let token = producer_token(&herald, &intruder, &broker_audience("b")).await;
    let (status, body) = send("b", token, "order.created").await;
    assert_eq!(status, 403, "no policy names this sender: {body}");

    // No policy applies to `open`: allow-same-namespace decides.
    let token = producer_token(&herald, &intruder, &broker_audience("open")).await;
    assert_eq!(send("open", token, "user.created").await.0, 202);
    let token = producer_token(&herald, elsewhere, &broker_audience("open")).await;
    let (status, body) = send("open", token, "user.created").await;
    assert_eq!(status, 403, "another namespace's account: {body}");

    // The broker lists the policy that applies to it, and says the policies are ready.
    let admin = AdminClient::new(&herald.admin);
    let (_, broker) = admin.get(&format!("{BROKERS}/b")).await;
    assert_eq!(
        broker["status"]["policies"],
        json!([{"apiVersion": "eventing.knative.dev/v1alpha1", "name": "orders-only"}]),
        "{broker}"
    );
}

/// An OIDC issuer served by the test over HTTPS (a certificate of the test's own CA): its
/// discovery document and a JWKS the test can change, as an external identity provider.
struct ExternalIssuer {
    url: String,
    jwks: std::sync::Arc<std::sync::Mutex<Value>>,
    server: tokio::task::JoinHandle<()>,
}

/// An ES256 key of the external issuer, with its `kid`.
struct ExternalKey {
    kid: String,
    pkcs8: Vec<u8>,
    jwk: Value,
}

impl ExternalKey {
    fn new(kid: &str) -> Self {
        use base64::Engine;
        use ring::signature::KeyPair;
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .unwrap();
        let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .unwrap();
        let point = pair.public_key().as_ref();
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        Self {
            kid: kid.to_owned(),
            jwk: json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65]), "kid": kid, "use": "sig", "alg": "ES256"}),
            pkcs8: pkcs8.as_ref().to_vec(),
        }
    }

    /// A token for `subject` and `audience` from `issuer`, valid ten minutes.
    fn token(&self, issuer: &str, subject: &str, audience: &str) -> String {
        let now = seconds_now();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(
            &header,
            &json!({"iss": issuer, "sub": subject, "aud": [audience], "iat": now, "exp": now + 600}),
            &EncodingKey::from_ec_der(&self.pkcs8),
        )
        .unwrap()
    }
}

impl ExternalIssuer {
    async fn start(leaf: &common::certs::Leaf, key: &ExternalKey) -> Self {
        let tls = herald_tls::ServerTls::load(&leaf.cert, &leaf.key, herald_tls::MinVersion::Tls12)
            .unwrap();
        let acceptor = tls.acceptor();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "https://127.0.0.1:{}",
            listener.local_addr().unwrap().port()
        );
        let jwks = std::sync::Arc::new(std::sync::Mutex::new(json!({ "keys": [key.jwk] })));
        let discovery = json!({"issuer": url, "jwks_uri": format!("{url}/keys")});
        let served = jwks.clone();
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || {
                    let discovery = discovery.clone();
                    async move { axum::Json(discovery) }
                }),
            )
            .route(
                "/keys",
                axum::routing::get(move || {
                    let jwks = served.lock().unwrap().clone();
                    async move { axum::Json(jwks) }
                }),
            );
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request| {
                        let mut app = app.clone();
                        async move { tower_service::Service::call(&mut app, request).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { url, jwks, server }
    }

    /// Publishes only `key` from now on (a rotation).
    fn rotate_to(&self, key: &ExternalKey) {
        *self.jwks.lock().unwrap() = json!({ "keys": [key.jwk] });
    }
}

impl Drop for ExternalIssuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Sends one event with `token`: the status and the `WWW-Authenticate` challenge.
async fn send_with_token(url: &str, token: &str) -> (u16, String) {
    let response = scenarios::client()
        .post(url)
        .header("ce-specversion", "1.0")
        .header("ce-id", "1")
        .header("ce-source", "/e2e")
        .header("ce-type", "t")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (response.status().as_u16(), challenge)
}

/// `--oidc-trusted-issuer` (issue 21): tokens of an external issuer, whose discovery document
/// and JWKS Herald fetches over HTTPS trusting `--tls-trust-bundle`, are accepted at ingress
/// for the broker's audience only; after the issuer rotates its key, a token with the new
/// `kid` is accepted once Herald has fetched the keys again (on the unknown `kid`, not the
/// ten-minute refresh).
#[tokio::test]
async fn a_trusted_issuers_tokens_are_accepted_and_its_new_key_picked_up() {
    let ca = common::certs::Ca::new("issuer-ca");
    let first = ExternalKey::new("first");
    let issuer = ExternalIssuer::start(&ca.issue("issuer"), &first).await;
    let dirs = HeraldDirs::new(&broker_yaml("b", None));
    let ca_path = ca.cert.to_str().unwrap().to_owned();
    let herald = Herald::start(
        &Sled,
        &dirs,
        &[
            OIDC[0],
            OIDC[1],
            "--oidc-trusted-issuer",
            &issuer.url,
            "--tls-trust-bundle",
            &ca_path,
        ],
    )
    .await;
    herald
        .wait_for_log("fetched the keys of a trusted OIDC issuer")
        .await;
    let url = herald.broker_url(NS, "b");
    let subject = "system:serviceaccount:default:external-producer";

    let token = first.token(&issuer.url, subject, &broker_audience("b"));
    let (status, challenge) = send_with_token(&url, &token).await;
    assert_eq!(status, 202, "{challenge}\n{}", herald.logs());
    let other_audience = first.token(&issuer.url, subject, &broker_audience("other"));
    let (status, challenge) = send_with_token(&url, &other_audience).await;
    assert_eq!(status, 401);
    assert!(challenge.contains("audience"), "{challenge}");

    // Rotation: only the new key is published. Herald refetches on the unknown kid, at most
    // every 10 s per issuer, so the first tries may still be refused.
    let second = ExternalKey::new("second");
    issuer.rotate_to(&second);
    let rotated = second.token(&issuer.url, subject, &broker_audience("b"));
    let deadline = std::time::Instant::now() + common::DEADLINE;
    loop {
        let (status, challenge) = send_with_token(&url, &rotated).await;
        if status == 202 {
            break;
        }
        assert_eq!(status, 401, "{challenge}");
        assert!(
            std::time::Instant::now() < deadline,
            "the rotated key was never accepted: {challenge}\n{}",
            herald.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// A trusted issuer that cannot be reached does not stop Herald: the start logs why, its
/// tokens are refused with a 401 saying the issuer's keys are not available and why, and
/// Herald's own tokens still work.
#[tokio::test]
async fn an_unreachable_trusted_issuer_is_logged_and_its_tokens_refused_with_the_reason() {
    let unreachable = format!("https://127.0.0.1:{}", common::free_port());
    let dirs = HeraldDirs::new(&broker_yaml("b", None));
    let herald = Herald::start(
        &Sled,
        &dirs,
        &[OIDC[0], OIDC[1], "--oidc-trusted-issuer", &unreachable],
    )
    .await;
    herald
        .wait_for_log("cannot fetch the keys of a trusted OIDC issuer")
        .await;
    let url = herald.broker_url(NS, "b");
    let key = ExternalKey::new("k1");
    let token = key.token(
        &unreachable,
        "system:serviceaccount:default:external-producer",
        &broker_audience("b"),
    );
    let (status, challenge) = send_with_token(&url, &token).await;
    assert_eq!(status, 401);
    assert!(
        challenge.contains(&format!(
            "the keys of trusted issuer {unreachable} are not available"
        )) && challenge.contains("Connection refused"),
        "{challenge}"
    );
    let own = producer_token(
        &herald,
        "system:serviceaccount:default:producer",
        &broker_audience("b"),
    )
    .await;
    assert_eq!(send_with_token(&url, &own).await.0, 202);
}

/// The status of `path` on the admin API, once its `Ready` is True.
async fn ready_status(herald: &Herald, path: &str) -> Value {
    let admin = AdminClient::new(&herald.admin);
    let deadline = tokio::time::Instant::now() + common::DEADLINE;
    loop {
        let (code, object) = admin.get(path).await;
        let ready = code == 200
            && object["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
        if ready {
            return object["status"].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} is not Ready: {object}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Sources send their identity's token for their sink's audience (issue 21): a PingSource
/// whose sink is a broker gets past the broker's token check (without a token its events
/// were refused with 401), and one whose sink is a URL with `audience` sends a token the
/// sink verifies against the JWKS, naming the source's ServiceAccount as Knative names it,
/// which its status shows.
#[tokio::test]
async fn sources_send_their_token_for_the_sinks_audience() {
    let via_broker = Subscriber::start().await;
    let direct = Subscriber::start().await;
    let ping = |name: &str, sink: &str| {
        format!("apiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {{name: {name}, namespace: {NS}}}\nspec: {{schedule: '@every 1s', data: '{{}}', sink: {sink}}}\n---\n")
    };
    let config = format!(
        "{}{}{}{}",
        broker_yaml("b", None),
        scenarios::trigger_yaml("t", "b", &via_broker.url(), ""),
        ping(
            "to-broker",
            "{ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: b}}"
        ),
        ping(
            "to-url",
            &format!(
                "{{uri: '{}', audience: '{SUBSCRIBER_AUDIENCE}'}}",
                direct.url()
            )
        ),
    );
    let dirs = HeraldDirs::new(&config);
    let herald = Herald::start(&Sled, &dirs, &OIDC).await;

    let through = via_broker.wait_for(1).await;
    assert_eq!(
        through[0].ce("source"),
        Some("/apis/v1/namespaces/default/pingsources/to-broker"),
        "{}",
        herald.logs()
    );

    let (issuer, jwks) = discover(&herald).await;
    let received = direct.wait_for(1).await;
    let token = bearer(&received[0]).expect("the source's request carries a token");
    let claims = verify(&token, &issuer, &jwks, SUBSCRIBER_AUDIENCE);
    assert_eq!(
        claims.sub,
        format!("system:serviceaccount:{NS}:to-url-oidc-sources.knative.dev-pingsource")
    );

    let status = ready_status(
        &herald,
        "/apis/sources.knative.dev/v1/namespaces/default/pingsources/to-url",
    )
    .await;
    assert_eq!(
        status["auth"]["serviceAccountName"],
        json!("to-url-oidc-sources.knative.dev-pingsource"),
        "{status}"
    );
}

/// A ContainerSource's program under `herald serve` finds its token for the sink in the file
/// `K_OIDC_TOKEN_FILE` names (mode 0600, under the data directory): a broker that requires
/// OIDC takes its event with that token (202) and refuses it without (401).
#[tokio::test]
async fn a_container_sources_program_posts_with_the_token_from_its_file() {
    let subscriber = Subscriber::start().await;
    let scripts = tempfile::tempdir().unwrap();
    let script = scripts.path().join("adapter.sh");
    std::fs::write(
        &script,
        r#"post() {
  curl -s -o /dev/null -w "$1 %{http_code}\n" -H 'ce-specversion: 1.0' -H 'ce-id: 1' \
    -H "ce-type: $1" -H 'ce-source: /adapter' -H 'content-type: application/json' -d '{}' "$@" "$K_SINK"
}
echo "token file mode $(stat -c %a "$K_OIDC_TOKEN_FILE")"
post with-token -H "Authorization: Bearer $(cat "$K_OIDC_TOKEN_FILE")"
post without-token
exec sleep 3600
"#,
    )
    .unwrap();
    let config = format!(
        "{}{}apiVersion: sources.knative.dev/v1\nkind: ContainerSource\nmetadata: {{name: c, namespace: {NS}}}\nspec:\n  template: {{spec: {{containers: [{{command: [sh, '{}']}}]}}}}\n  sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: b}}}}\n",
        broker_yaml("b", None),
        scenarios::trigger_yaml("t", "b", &subscriber.url(), ""),
        script.display()
    );
    let dirs = HeraldDirs::new(&config);
    let herald = Herald::start(&Sled, &dirs, &OIDC).await;

    let got = subscriber.wait_for(1).await;
    assert_eq!(got[0].ce("type"), Some("with-token"), "{}", herald.logs());
    herald.wait_for_log("with-token 202").await;
    herald.wait_for_log("without-token 401").await;
    herald.wait_for_log("token file mode 600").await;
}

/// `herald run --service-account NS/NAME`: the program finds a token for the sink broker's
/// audience, as that ServiceAccount, in the file `K_OIDC_TOKEN_FILE` names (a private
/// directory, removed when the program exits); with it the broker takes the event (202),
/// without it refuses (401).
#[tokio::test]
async fn herald_run_gives_the_program_a_token_file() {
    let subscriber = Subscriber::start().await;
    let config = broker_yaml("b", None) + &scenarios::trigger_yaml("t", "b", &subscriber.url(), "");
    let dirs = HeraldDirs::new(&config);
    let herald = Herald::start(&Sled, &dirs, &OIDC).await;
    let scripts = tempfile::tempdir().unwrap();
    let script = scripts.path().join("adapter.sh");
    std::fs::write(
        &script,
        r#"post() {
  curl -s -o /dev/null -w "$1 %{http_code}\n" -H 'ce-specversion: 1.0' -H 'ce-id: 1' \
    -H "ce-type: $1" -H 'ce-source: /adapter' -H 'content-type: application/json' -d '{}' "$@" "$K_SINK"
}
echo "file $K_OIDC_TOKEN_FILE"
echo "modes $(stat -c %a "$(dirname "$K_OIDC_TOKEN_FILE")") $(stat -c %a "$K_OIDC_TOKEN_FILE")"
post with-token -H "Authorization: Bearer $(cat "$K_OIDC_TOKEN_FILE")"
post without-token
"#,
    )
    .unwrap();
    let output = tokio::process::Command::new(common::herald::herald_binary())
        .args([
            "run",
            "--sink",
            "broker:b",
            "--service-account",
            "default/producer",
        ])
        .args(["--server", &herald.admin, "--", "sh"])
        .arg(&script)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for line in ["modes 700 600", "with-token 202", "without-token 401"] {
        assert!(stdout.contains(line), "{line:?} in {stdout}");
    }
    let file = stdout
        .lines()
        .find_map(|l| l.strip_prefix("file "))
        .unwrap();
    assert!(
        !std::path::Path::new(file).parent().unwrap().exists(),
        "removed after the program exits"
    );
    let got = subscriber.wait_for(1).await;
    assert_eq!(got[0].ce("type"), Some("with-token"));
}

/// POSTs a binary-mode event to `url` with an optional bearer token: the status and body.
async fn post_event(url: &str, token: Option<&str>) -> (u16, String) {
    let mut request = scenarios::client()
        .post(url)
        .header("ce-specversion", "1.0")
        .header("ce-id", "1")
        .header("ce-source", "/e2e")
        .header("ce-type", "order.created")
        .header("content-type", "application/json")
        .body("{}");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (
        status,
        String::from_utf8_lossy(&bounded_body(response).await).into_owned(),
    )
}

/// Channels, flows, EventTransforms and RequestReplies with sender identity on (issue 21):
/// each advertises its audience in `status.address` and every `status.addresses` entry
/// (Knative's names: a Sequence or Parallel its first channel's, an EventTransform
/// `eventing.knative.dev/eventtransform/{ns}/{name}`), and its ingress takes only a token for
/// that audience (401). The EventTransform's endpoint, served in process, applies the
/// EventPolicies that name it (403 for a subject they do not admit), and a RequestReply
/// those of its broker, so neither is a way around the broker's checks.
#[tokio::test]
async fn channels_flows_and_in_process_addressables_advertise_and_require_their_audience() {
    let step = Subscriber::start().await;
    let url = step.url();
    let config = format!(
        "apiVersion: messaging.knative.dev/v1
kind: InMemoryChannel
metadata: {{name: c, namespace: {NS}}}
---
apiVersion: flows.knative.dev/v1
kind: Sequence
metadata: {{name: s, namespace: {NS}}}
spec: {{steps: [{{uri: '{url}'}}]}}
---
apiVersion: flows.knative.dev/v1
kind: Parallel
metadata: {{name: p, namespace: {NS}}}
spec: {{branches: [{{subscriber: {{uri: '{url}'}}}}]}}
---
apiVersion: eventing.knative.dev/v1alpha1
kind: EventTransform
metadata: {{name: et, namespace: {NS}}}
spec: {{jsonata: {{expression: '{{\"specversion\": \"1.0\", \"id\": id, \"type\": \"order.seen\", \"source\": source}}'}}}}
---
{}apiVersion: eventing.knative.dev/v1alpha1
kind: RequestReply
metadata: {{name: rr, namespace: {NS}}}
spec: {{brokerRef: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: rrb}}, timeout: PT1S}}
---
apiVersion: eventing.knative.dev/v1alpha1
kind: EventPolicy
metadata: {{name: guard, namespace: {NS}}}
spec:
  to:
    - {{ref: {{apiVersion: eventing.knative.dev/v1alpha1, kind: EventTransform, name: et}}}}
    - {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: rrb}}}}
  from: [{{sub: \"system:serviceaccount:{NS}:allowed\"}}]
---
",
        broker_yaml("rrb", None)
    );
    let dirs = HeraldDirs::new(&config);
    let herald = Herald::start(&Sled, &dirs, &OIDC).await;

    let channel_audience = |name: &str| format!("messaging.knative.dev/channel/{NS}/{name}");
    let transform_audience = format!("eventing.knative.dev/eventtransform/{NS}/et");
    let request_reply_audience = format!("eventing.knative.dev/requestreply/{NS}/rr");
    for (path, audience) in [
        (
            "/apis/messaging.knative.dev/v1/namespaces/default/inmemorychannels/c".to_owned(),
            channel_audience("c"),
        ),
        (
            "/apis/flows.knative.dev/v1/namespaces/default/sequences/s".to_owned(),
            channel_audience("s-kn-sequence-0"),
        ),
        (
            "/apis/flows.knative.dev/v1/namespaces/default/parallels/p".to_owned(),
            channel_audience("p-kn-parallel"),
        ),
        (
            "/apis/eventing.knative.dev/v1alpha1/namespaces/default/eventtransforms/et".to_owned(),
            transform_audience.clone(),
        ),
        (
            "/apis/eventing.knative.dev/v1alpha1/namespaces/default/requestreplies/rr".to_owned(),
            request_reply_audience.clone(),
        ),
    ] {
        let status = ready_status(&herald, &path).await;
        assert_eq!(
            status["address"]["audience"],
            json!(audience),
            "{path}: {status}"
        );
        for entry in status["addresses"].as_array().into_iter().flatten() {
            assert_eq!(entry["audience"], json!(audience), "{path}: {status}");
        }
    }

    // A Sequence's ingress takes a token for the audience it advertises, and only that.
    let sequence = format!("{}/sequences/{NS}/s", herald.ingress);
    let producer = format!("system:serviceaccount:{NS}:producer");
    assert_eq!(post_event(&sequence, None).await.0, 401);
    let wrong = producer_token(&herald, &producer, &channel_audience("c")).await;
    assert_eq!(post_event(&sequence, Some(&wrong)).await.0, 401);
    let right = producer_token(&herald, &producer, &channel_audience("s-kn-sequence-0")).await;
    assert_eq!(post_event(&sequence, Some(&right)).await.0, 202);

    // The EventTransform: a token for its audience, from a subject its policy admits.
    let transform = format!("{}/eventtransforms/{NS}/et", herald.ingress);
    let allowed = format!("system:serviceaccount:{NS}:allowed");
    let (status, body) = post_event(&transform, None).await;
    assert_eq!(status, 401, "{body}");
    let token = producer_token(&herald, &allowed, &channel_audience("c")).await;
    assert_eq!(post_event(&transform, Some(&token)).await.0, 401);
    let token = producer_token(&herald, &producer, &transform_audience).await;
    let (status, body) = post_event(&transform, Some(&token)).await;
    assert_eq!(status, 403, "the policy does not admit {producer}: {body}");
    assert!(body.contains("guard"), "{body}");
    let token = producer_token(&herald, &allowed, &transform_audience).await;
    let (status, body) = post_event(&transform, Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("order.seen"), "{body}");

    // The RequestReply: its own audience, and its broker's policy.
    let request_reply = format!("{}/requestreplies/{NS}/rr", herald.ingress);
    assert_eq!(post_event(&request_reply, None).await.0, 401);
    let token = producer_token(&herald, &producer, &request_reply_audience).await;
    let (status, body) = post_event(&request_reply, Some(&token)).await;
    assert_eq!(
        status, 403,
        "the broker's policy does not admit {producer}: {body}"
    );
    // Admitted, it waits for a reply nobody sends: 504 after `spec.timeout`.
    let token = producer_token(&herald, &allowed, &request_reply_audience).await;
    assert_eq!(post_event(&request_reply, Some(&token)).await.0, 504);
}

/// A Destination's `audience` is bounded (issue 21): through the admin API, a trigger whose
/// subscriber audience is longer than 512 characters, or holds a control character, is
/// refused with 422 naming the field, and nothing is created or changed.
#[tokio::test]
async fn a_bad_destination_audience_is_refused_and_changes_nothing() {
    let dirs = HeraldDirs::new(&broker_yaml("b", None));
    let herald = Herald::start(&Sled, &dirs, &OIDC).await;
    let admin = AdminClient::new(&herald.admin);
    let trigger = |name: &str, audience: &str| {
        json!({
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Trigger",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"broker": "b", "subscriber": {"uri": "http://127.0.0.1:9/", "audience": audience}},
        })
        .to_string()
    };
    admin.create(TRIGGERS, &trigger("kept", "fine")).await;
    for (audience, why) in [
        ("a".repeat(513), "at most 512"),
        ("line\nbreak".to_owned(), "control characters"),
    ] {
        let (status, body) = admin.post_yaml(TRIGGERS, &trigger("bad", &audience)).await;
        assert_eq!(status, 422, "{body}");
        let message = body.to_string();
        assert!(message.contains("spec.subscriber.audience"), "{message}");
        assert!(message.contains(why), "{message}");
        assert_eq!(admin.get(&format!("{TRIGGERS}/bad")).await.0, 404);
        // A change to an existing trigger is refused the same way, and leaves it as it was.
        let (status, body) = admin
            .put_json(
                &format!("{TRIGGERS}/kept"),
                &serde_json::from_str(&trigger("kept", &audience)).unwrap(),
            )
            .await;
        assert_eq!(status, 422, "{body}");
        let (_, kept) = admin.get(&format!("{TRIGGERS}/kept")).await;
        assert_eq!(kept["spec"]["subscriber"]["audience"], "fine", "{kept}");
    }
}

/// An EventTransform's requests to its sink carry a token for the sink's audience, as the
/// ServiceAccount of the SinkBinding Knative binds its sink with
/// (`{name}-jsonata-oidc-sources.knative.dev-sinkbinding`): a sink URL with `audience` can
/// verify it, and a Herald broker as the sink takes the transformed event (it answered 401
/// before).
#[tokio::test]
async fn an_event_transform_sends_its_token_to_its_sink() {
    let direct = Subscriber::start().await;
    let after_broker = Subscriber::start().await;
    let transform = |name: &str, sink: &str| {
        format!("apiVersion: eventing.knative.dev/v1alpha1\nkind: EventTransform\nmetadata: {{name: {name}, namespace: {NS}}}\nspec: {{sink: {sink}, jsonata: {{expression: '{{\"specversion\": \"1.0\", \"id\": id, \"type\": \"order.seen\", \"source\": source}}'}}}}\n---\n")
    };
    let config = format!(
        "{}{}{}{}",
        broker_yaml("b", None),
        scenarios::trigger_yaml("t", "b", &after_broker.url(), ""),
        transform(
            "to-url",
            &format!(
                "{{uri: '{}', audience: '{SUBSCRIBER_AUDIENCE}'}}",
                direct.url()
            )
        ),
        transform(
            "to-broker",
            "{ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: b}}"
        ),
    );
    let dirs = HeraldDirs::new(&config);
    let herald = Herald::start(&Sled, &dirs, &OIDC).await;
    let producer = format!("system:serviceaccount:{NS}:producer");

    let url = format!("{}/eventtransforms/{NS}/to-url", herald.ingress);
    let token = producer_token(
        &herald,
        &producer,
        &format!("eventing.knative.dev/eventtransform/{NS}/to-url"),
    )
    .await;
    let (status, body) = post_event(&url, Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    let (issuer, jwks) = discover(&herald).await;
    let received = direct.wait_for(1).await;
    let sent = bearer(&received[0]).expect("the transform's request carries a token");
    assert_ne!(sent, token, "the producer's token must not be forwarded");
    let claims = verify(&sent, &issuer, &jwks, SUBSCRIBER_AUDIENCE);
    assert_eq!(
        claims.sub,
        format!("system:serviceaccount:{NS}:to-url-jsonata-oidc-sources.knative.dev-sinkbinding")
    );

    let url = format!("{}/eventtransforms/{NS}/to-broker", herald.ingress);
    let token = producer_token(
        &herald,
        &producer,
        &format!("eventing.knative.dev/eventtransform/{NS}/to-broker"),
    )
    .await;
    let (status, body) = post_event(&url, Some(&token)).await;
    assert_eq!(status, 202, "the broker's answer, passed back: {body}");
    let got = after_broker.wait_for(1).await;
    assert_eq!(got[0].ce("type"), Some("order.seen"));
}
