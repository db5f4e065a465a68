//! Another issuer's keys, found as any OIDC client finds them (OIDC Discovery 1.0, RFC 7517):
//! the discovery document names the issuer and its `jwks_uri`, the JWKS holds the keys. The
//! ingress's [`KeySet`] gets them as that issuer's; they are fetched again on a token with an
//! unknown `kid` (at most once per [`MIN_REFRESH_INTERVAL`]) and every [`REFRESH_EVERY`].
//!
//! How documents are fetched is a [`Fetch`]: plain HTTPS ([`HttpFetch`], with an optional CA
//! bundle), or through the Kubernetes API client (`identity::cluster`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use super::issuer::DISCOVERY_PATH;
use super::verify::{KeySet, TrustedKey};

/// A discovery document or JWKS larger than this is refused (a JWKS of a few keys is ~2 KiB).
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// At most this many keys are taken from one JWKS.
pub const MAX_KEYS: usize = 64;
/// An unknown `kid` fetches the keys again at most this often.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// The keys are fetched again this often even without an unknown `kid` (a removed key stops
/// verifying within this time).
pub const REFRESH_EVERY: Duration = Duration::from_secs(600);
/// What a fetch accepts: a kube-apiserver answers its JWKS only to a client that accepts
/// `application/jwk-set+json` (406 otherwise).
pub const ACCEPT: &str = "application/json, application/jwk-set+json";
/// One fetch gives up after this long.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RemoteKeyError {
    #[error("GET {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("GET {url}: the answer is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge { url: String },
    #[error("{url} is not an OIDC discovery document: {reason}")]
    Discovery { url: String, reason: String },
    #[error("{url} is not a JWKS: {reason}")]
    Jwks { url: String, reason: String },
    #[error("{url} holds no key Herald can verify with (RSA, or EC P-256/P-384)")]
    NoKeys { url: String },
    #[error("the CA bundle is not PEM certificates: {0}")]
    Ca(String),
}

/// Fetches one document: `GET url`, a 2xx answer, at most `limit` bytes.
#[async_trait::async_trait]
pub trait Fetch: Send + Sync + 'static {
    async fn get(&self, url: &str, limit: usize) -> Result<Bytes, RemoteKeyError>;
}

/// Plain HTTP(S) with reqwest; with a CA bundle, only that bundle is trusted.
pub struct HttpFetch {
    client: reqwest::Client,
}

impl HttpFetch {
    /// The client settings of every fetch: [`FETCH_TIMEOUT`], no redirects.
    pub fn configure(builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        builder
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
    }

    /// With a client built elsewhere (e.g. with Herald's trust bundles), shaped by
    /// [`HttpFetch::configure`].
    pub fn with_client(client: reqwest::Client) -> Self {
        Self { client }
    }

    pub fn new(ca_pem: Option<&[u8]>) -> Result<Self, RemoteKeyError> {
        let mut builder = Self::configure(reqwest::Client::builder());
        if let Some(pem) = ca_pem {
            let certificates = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| RemoteKeyError::Ca(e.to_string()))?;
            if certificates.is_empty() {
                return Err(RemoteKeyError::Ca("no certificate in it".into()));
            }
            builder = builder.tls_built_in_root_certs(false);
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let client = builder
            .build()
            .map_err(|e| RemoteKeyError::Ca(e.to_string()))?;
        Ok(Self { client })
    }
}

#[async_trait::async_trait]
impl Fetch for HttpFetch {
    async fn get(&self, url: &str, limit: usize) -> Result<Bytes, RemoteKeyError> {
        let failed = |reason: String| RemoteKeyError::Fetch {
            url: url.to_owned(),
            reason,
        };
        let mut response = self
            .client
            .get(url)
            .header("accept", ACCEPT)
            .send()
            .await
            .map_err(|e| failed(herald_triggers::attempt::describe(&e)))?;
        if !response.status().is_success() {
            return Err(failed(format!("answered {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| failed(e.to_string()))? {
            if body.len() + chunk.len() > limit {
                return Err(RemoteKeyError::TooLarge {
                    url: url.to_owned(),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.into())
    }
}

/// What Herald reads of a discovery document.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Discovery {
    pub issuer: String,
    pub jwks_uri: String,
}

/// The discovery document under `base_url` (`{base_url}/.well-known/openid-configuration`).
pub async fn discover(fetch: &dyn Fetch, base_url: &str) -> Result<Discovery, RemoteKeyError> {
    let url = format!("{}{DISCOVERY_PATH}", base_url.trim_end_matches('/'));
    let body = fetch.get(&url, MAX_DOCUMENT_BYTES).await?;
    let discovery: Discovery =
        serde_json::from_slice(&body).map_err(|e| RemoteKeyError::Discovery {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    if discovery.issuer.is_empty() || discovery.jwks_uri.is_empty() {
        return Err(RemoteKeyError::Discovery {
            url,
            reason: "issuer and jwks_uri must not be empty".into(),
        });
    }
    Ok(discovery)
}

/// The keys at `jwks_uri`, as keys of `issuer`.
pub async fn fetch_keys(
    fetch: &dyn Fetch,
    issuer: &str,
    jwks_uri: &str,
) -> Result<Vec<TrustedKey>, RemoteKeyError> {
    let body = fetch.get(jwks_uri, MAX_DOCUMENT_BYTES).await?;
    parse_jwks(issuer, jwks_uri, &body)
}

/// The usable signing keys of a JWKS (at most [`MAX_KEYS`]); keys for encryption, of other
/// types or curves are skipped. None usable is an error.
pub fn parse_jwks(issuer: &str, url: &str, body: &[u8]) -> Result<Vec<TrustedKey>, RemoteKeyError> {
    let set: JwkSet = serde_json::from_slice(body).map_err(|e| RemoteKeyError::Jwks {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    let keys: Vec<TrustedKey> = set
        .keys
        .iter()
        .filter(|jwk| !matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)))
        .filter_map(|jwk| {
            Some(TrustedKey {
                issuer: issuer.to_owned(),
                kid: jwk.common.key_id.clone(),
                algorithm: algorithm_of(jwk)?,
                key: DecodingKey::from_jwk(jwk).ok()?,
            })
        })
        .take(MAX_KEYS)
        .collect();
    if keys.is_empty() {
        return Err(RemoteKeyError::NoKeys {
            url: url.to_owned(),
        });
    }
    Ok(keys)
}

/// The JWK's `alg`, or the usual one of its key type (a kube-apiserver's JWKS names it).
fn algorithm_of(jwk: &Jwk) -> Option<Algorithm> {
    let named = match jwk.common.key_algorithm {
        Some(KeyAlgorithm::RS256) => Some(Algorithm::RS256),
        Some(KeyAlgorithm::RS384) => Some(Algorithm::RS384),
        Some(KeyAlgorithm::RS512) => Some(Algorithm::RS512),
        Some(KeyAlgorithm::PS256) => Some(Algorithm::PS256),
        Some(KeyAlgorithm::PS384) => Some(Algorithm::PS384),
        Some(KeyAlgorithm::PS512) => Some(Algorithm::PS512),
        Some(KeyAlgorithm::ES256) => Some(Algorithm::ES256),
        Some(KeyAlgorithm::ES384) => Some(Algorithm::ES384),
        Some(_) => return None,
        None => None,
    };
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        _ => return None,
    };
    Some(named.unwrap_or(by_type))
}

/// One remote issuer whose keys the ingress trusts: discovery under `base_url`, then its JWKS.
pub struct RemoteIssuer {
    base_url: String,
    fetch: Arc<dyn Fetch>,
    keys: Arc<KeySet>,
    /// The issuer the last discovery named (its keys are the ones replaced on refresh).
    issuer: Mutex<Option<String>>,
    /// When the keys were last fetched; held across a fetch so that concurrent unknown
    /// `kid`s wait for one fetch instead of each starting one.
    last_refresh: tokio::sync::Mutex<Option<Instant>>,
    /// Why the last fetch failed (`None` after a success): the reason given to callers
    /// whose token names a key not known while the issuer cannot be reached.
    last_error: Mutex<Option<String>>,
    /// Whether the discovery document must name `base_url` as its issuer (OIDC Discovery
    /// 1.0, 4.3); off for an API server, whose issuer is not the URL it is reached at.
    require_same_issuer: bool,
}

impl RemoteIssuer {
    pub fn new(base_url: impl Into<String>, fetch: Arc<dyn Fetch>, keys: Arc<KeySet>) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            fetch,
            keys,
            issuer: Mutex::default(),
            last_refresh: tokio::sync::Mutex::default(),
            last_error: Mutex::default(),
            require_same_issuer: false,
        }
    }

    /// Requires the discovery document's `issuer` to be `base_url` (a trailing `/` aside),
    /// as OIDC Discovery does: an issuer Herald trusts cannot speak for another one.
    pub fn requiring_same_issuer(mut self) -> Self {
        self.require_same_issuer = true;
        self
    }

    /// Why the last fetch failed, or `None` after a success (or before any fetch).
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok()?.clone()
    }

    /// Whether `iss` is this issuer: its URL or the issuer its discovery named.
    pub fn names(&self, iss: &str) -> bool {
        let iss = iss.trim_end_matches('/');
        self.base_url == iss
            || self
                .issuer()
                .is_some_and(|i| i.trim_end_matches('/') == iss)
    }

    /// Whether a token with this `iss` may be this issuer's: the issuer its discovery named,
    /// or, before any discovery succeeded, any.
    pub fn may_speak_for(&self, iss: &str) -> bool {
        let iss = iss.trim_end_matches('/');
        match self.issuer() {
            Some(issuer) => issuer.trim_end_matches('/') == iss,
            None => true,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The issuer the last discovery named.
    pub fn issuer(&self) -> Option<String> {
        self.issuer.lock().ok()?.clone()
    }

    /// Discovery, then the JWKS; the key set's keys of this issuer are replaced. Returns how
    /// many keys it has now. On an error the previous keys stay.
    pub async fn refresh(&self) -> Result<usize, RemoteKeyError> {
        let mut last = self.last_refresh.lock().await;
        *last = Some(Instant::now());
        self.fetch_and_replace().await
    }

    /// Refreshes unless that was done less than [`MIN_REFRESH_INTERVAL`] ago (waiting for a
    /// refresh under way); `true` when it refreshed successfully.
    pub async fn refresh_if_due(&self) -> bool {
        let mut last = self.last_refresh.lock().await;
        if last.is_some_and(|at| at.elapsed() < MIN_REFRESH_INTERVAL) {
            return false;
        }
        *last = Some(Instant::now());
        match self.fetch_and_replace().await {
            Ok(_) => true,
            Err(error) => {
                tracing::warn!(issuer = %self.base_url, %error, "cannot fetch the issuer's keys");
                false
            }
        }
    }

    /// Refreshes now and then every `every`, logging failures; runs until dropped.
    pub async fn keep_fresh(self: Arc<Self>, every: Duration) {
        loop {
            match self.refresh().await {
                Ok(keys) => {
                    tracing::debug!(issuer = %self.base_url, keys, "fetched the issuer's keys")
                }
                Err(error) => {
                    tracing::warn!(issuer = %self.base_url, %error, "cannot fetch the issuer's keys; retrying on an unknown key or in {}", humantime::format_duration(every))
                }
            }
            tokio::time::sleep(every).await;
        }
    }

    async fn fetch_and_replace(&self) -> Result<usize, RemoteKeyError> {
        let outcome = self.fetch_and_replace_keys().await;
        if let Ok(mut last_error) = self.last_error.lock() {
            *last_error = outcome.as_ref().err().map(ToString::to_string);
        }
        outcome
    }

    async fn fetch_and_replace_keys(&self) -> Result<usize, RemoteKeyError> {
        let discovery = discover(self.fetch.as_ref(), &self.base_url).await?;
        if self.require_same_issuer && discovery.issuer.trim_end_matches('/') != self.base_url {
            return Err(RemoteKeyError::Discovery {
                url: format!("{}{DISCOVERY_PATH}", self.base_url),
                reason: format!(
                    "it names the issuer {:?}, not {:?}",
                    discovery.issuer, self.base_url
                ),
            });
        }
        let keys = fetch_keys(self.fetch.as_ref(), &discovery.issuer, &discovery.jwks_uri).await?;
        let count = keys.len();
        let previous = self
            .issuer
            .lock()
            .ok()
            .and_then(|mut issuer| issuer.replace(discovery.issuer.clone()));
        if let Some(previous) = previous.filter(|p| *p != discovery.issuer) {
            self.keys.set_external(&previous, Vec::new());
        }
        self.keys.set_external(&discovery.issuer, keys);
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::issuer::{Issuer, JWKS_PATH};
    use crate::identity::keys::KeyRing;
    use crate::identity::verify::Verifier;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Documents by URL, counting fetches.
    #[derive(Default)]
    struct Documents {
        by_url: Mutex<HashMap<String, Bytes>>,
        fetches: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Fetch for Documents {
        async fn get(&self, url: &str, limit: usize) -> Result<Bytes, RemoteKeyError> {
            self.fetches.fetch_add(1, Ordering::Relaxed);
            let body = self.by_url.lock().unwrap().get(url).cloned();
            match body {
                Some(body) if body.len() > limit => {
                    Err(RemoteKeyError::TooLarge { url: url.into() })
                }
                Some(body) => Ok(body),
                None => Err(RemoteKeyError::Fetch {
                    url: url.into(),
                    reason: "404".into(),
                }),
            }
        }
    }

    fn publish(documents: &Documents, issuer: &Issuer) {
        let mut by_url = documents.by_url.lock().unwrap();
        by_url.insert(
            format!("http://remote{DISCOVERY_PATH}"),
            issuer.discovery().to_string().into(),
        );
        by_url.insert(
            format!("http://remote{JWKS_PATH}"),
            issuer.jwks().to_string().into(),
        );
    }

    #[tokio::test]
    async fn a_remote_issuers_tokens_verify_after_discovery_and_a_new_key_after_a_refresh() {
        let dir = tempfile::tempdir().unwrap();
        let remote = Issuer::new(
            "http://remote",
            KeyRing::load_or_create(dir.path()).unwrap(),
        );
        let documents = Arc::new(Documents::default());
        publish(&documents, &remote);
        let keys = Arc::new(KeySet::default());
        let issuer = RemoteIssuer::new("http://remote/", documents.clone(), keys.clone());
        let aud = "eventing.knative.dev/broker/ns/b";
        let token = remote
            .mint("system:serviceaccount:ns:sa", aud, Duration::from_secs(60))
            .unwrap();
        let verifier = Verifier::new(keys.clone());
        assert!(verifier.verify(&token.token, aud).is_err(), "no keys yet");
        assert_eq!(issuer.refresh().await.unwrap(), 1);
        assert_eq!(issuer.issuer().as_deref(), Some("http://remote"));
        let caller = verifier.verify(&token.token, aud).unwrap();
        assert_eq!(caller.issuer, "http://remote");

        // Rotated: the next refresh takes the new key, but not twice within the interval.
        let rotated_dir = tempfile::tempdir().unwrap();
        let rotated = Issuer::new(
            "http://remote",
            KeyRing::load_or_create(rotated_dir.path()).unwrap(),
        );
        publish(&documents, &rotated);
        let fetches = documents.fetches.load(Ordering::Relaxed);
        assert!(!issuer.refresh_if_due().await, "refreshed just now");
        assert_eq!(documents.fetches.load(Ordering::Relaxed), fetches);
        issuer.refresh().await.unwrap();
        let new_token = rotated
            .mint("system:serviceaccount:ns:sa", aud, Duration::from_secs(60))
            .unwrap();
        assert!(Verifier::new(keys).verify(&new_token.token, aud).is_ok());
    }

    #[tokio::test]
    async fn an_unknown_kid_fetches_the_keys_at_most_once_per_interval() {
        let dir = tempfile::tempdir().unwrap();
        let remote = Issuer::new(
            "http://remote",
            KeyRing::load_or_create(dir.path()).unwrap(),
        );
        let documents = Arc::new(Documents::default());
        publish(&documents, &remote);
        let keys = Arc::new(KeySet::default());
        let issuer = Arc::new(RemoteIssuer::new(
            "http://remote",
            documents.clone(),
            keys.clone(),
        ));
        let verifier = Verifier::new(keys).with_remote(issuer);
        let aud = "eventing.knative.dev/broker/ns/b";
        let token = remote
            .mint("system:serviceaccount:ns:sa", aud, Duration::from_secs(60))
            .unwrap();
        // Not fetched before: the unknown kid fetches discovery and JWKS, then it verifies.
        assert!(verifier.verify_fetching(&token.token, aud).await.is_ok());
        assert_eq!(documents.fetches.load(Ordering::Relaxed), 2);
        // Another unknown kid right after: no new fetch, refused.
        let stranger_dir = tempfile::tempdir().unwrap();
        let stranger = Issuer::new(
            "http://remote",
            KeyRing::load_or_create(stranger_dir.path()).unwrap(),
        );
        let forged = stranger
            .mint("system:serviceaccount:ns:sa", aud, Duration::from_secs(60))
            .unwrap();
        assert!(verifier.verify_fetching(&forged.token, aud).await.is_err());
        assert_eq!(documents.fetches.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn bad_documents_are_refused() {
        assert!(matches!(
            parse_jwks("i", "u", b"{\"keys\": []}"),
            Err(RemoteKeyError::NoKeys { .. })
        ));
        assert!(matches!(
            parse_jwks("i", "u", b"not json"),
            Err(RemoteKeyError::Jwks { .. })
        ));
        // A symmetric key is never trusted from a JWKS.
        assert!(matches!(
            parse_jwks(
                "i",
                "u",
                br#"{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "x"}]}"#
            ),
            Err(RemoteKeyError::NoKeys { .. })
        ));
    }

    #[tokio::test]
    async fn documents_over_the_bound_are_refused() {
        let documents = Documents::default();
        documents.by_url.lock().unwrap().insert(
            format!("http://remote{DISCOVERY_PATH}"),
            vec![b' '; MAX_DOCUMENT_BYTES + 1].into(),
        );
        assert!(matches!(
            discover(&documents, "http://remote").await,
            Err(RemoteKeyError::TooLarge { .. })
        ));
    }
}
