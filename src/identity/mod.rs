//! Sender identity (Knative's `authentication-oidc`): who a sender is ([`naming`]), Herald as
//! its own issuer ([`keys`], [`issuer`]), senders' tokens on deliveries ([`tokens`]), and
//! authentication at ingress ([`verify`], with external issuers from [`trusted`]); other
//! issuers' keys by discovery and JWKS ([`remote_keys`]); on a cluster, TokenRequest and the
//! API server's issuer ([`cluster`]).

pub mod cluster;
pub mod issuer;
pub mod keys;
pub mod naming;
pub mod remote_keys;
pub mod tokens;
pub mod trusted;
pub mod verify;

use std::path::Path;
use std::sync::Arc;

use herald_broker::access::Authenticator;
use herald_triggers::auth::TokenSource;

/// Sender identity as one running Herald has it: its issuer, the keys the ingress trusts,
/// and the cache of senders' tokens.
pub struct Identity {
    pub issuer: Arc<issuer::Issuer>,
    pub keys: Arc<verify::KeySet>,
    pub tokens: Arc<dyn TokenSource>,
    pub verifier: Arc<verify::Verifier>,
    /// The trusted external issuers (`--oidc-trusted-issuer`), when any.
    pub trusted: Option<Arc<trusted::TrustedIssuers>>,
    /// On a cluster: the API server's service-account issuer, trusted at ingress.
    pub cluster_issuer: Option<Arc<remote_keys::RemoteIssuer>>,
}

impl Identity {
    /// Reads (or makes) the signing key under `data_dir` and sets up the issuer at
    /// `issuer_url`.
    pub fn open(data_dir: &Path, issuer_url: &str) -> Result<Self, keys::KeyError> {
        Self::open_trusting(data_dir, issuer_url, None)
    }

    /// [`Identity::open`], also accepting tokens of the issuers `trusted` names (checked by
    /// [`trusted::parse_urls`]), whose keys are fetched over HTTPS with the trust bundles'
    /// roots once [`Identity::start`] runs.
    pub fn open_trusting(
        data_dir: &Path,
        issuer_url: &str,
        trusted: Option<(Vec<String>, Arc<herald_tls::TrustBundles>)>,
    ) -> Result<Self, keys::KeyError> {
        let keys = keys::KeyRing::load_or_create(data_dir)?;
        let issuer = Arc::new(issuer::Issuer::new(issuer_url, keys));
        let key_set = Arc::new(verify::KeySet::of_issuer(&issuer));
        let trusted = trusted
            .filter(|(urls, _)| !urls.is_empty())
            .map(|(urls, trust)| {
                Arc::new(trusted::TrustedIssuers::new(urls, key_set.clone(), trust))
            });
        let mut verifier = verify::Verifier::new(key_set.clone());
        for remote in trusted.iter().flat_map(|t| t.issuers()) {
            verifier = verifier.with_remote(remote.clone());
        }
        Ok(Self {
            tokens: Arc::new(tokens::TokenCache::new(issuer.clone())),
            verifier: Arc::new(verifier),
            keys: key_set,
            issuer,
            trusted,
            cluster_issuer: None,
        })
    }

    /// Starts fetching the trusted issuers' keys (at once, then periodically), when any.
    pub fn start(&self) {
        if let Some(trusted) = &self.trusted {
            trusted.start();
        }
    }

    /// As [`Identity::open`], on a cluster (`herald controller`): senders' tokens come from
    /// TokenRequest, and the ingress also trusts the API server's service-account issuer
    /// (its keys fetched through `client`; the caller starts [`remote_keys::RemoteIssuer::keep_fresh`]).
    /// Herald's own tokens still verify.
    pub fn open_on_cluster(
        data_dir: &Path,
        issuer_url: &str,
        trusted: Option<(Vec<String>, Arc<herald_tls::TrustBundles>)>,
        client: kube::Client,
        api_server_url: &str,
    ) -> Result<Self, keys::KeyError> {
        let mut identity = Self::open_trusting(data_dir, issuer_url, trusted)?;
        let fetch: Arc<dyn remote_keys::Fetch> = Arc::new(cluster::KubeFetch::new(client.clone()));
        let remote = Arc::new(remote_keys::RemoteIssuer::new(
            api_server_url,
            fetch,
            identity.keys.clone(),
        ));
        let mut verifier = verify::Verifier::new(identity.keys.clone()).with_remote(remote.clone());
        for trusted in identity.trusted.iter().flat_map(|t| t.issuers()) {
            verifier = verifier.with_remote(trusted.clone());
        }
        identity.verifier = Arc::new(verifier);
        identity.tokens = Arc::new(tokens::TokenCache::new(cluster::TokenRequester::new(
            client,
        )));
        identity.cluster_issuer = Some(remote);
        Ok(identity)
    }

    /// The ingress's authentication step.
    pub fn authenticator(&self) -> Arc<dyn Authenticator> {
        self.verifier.clone()
    }

    /// Where deliveries get their tokens.
    pub fn token_source(&self) -> Arc<dyn TokenSource> {
        self.tokens.clone()
    }
}
