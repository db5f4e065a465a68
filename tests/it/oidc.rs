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
