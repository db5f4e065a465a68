//! Sender identity (Knative's `authentication-oidc`): who a sender is ([`naming`]), Herald as
//! its own issuer ([`keys`], [`issuer`]), senders' tokens on deliveries ([`tokens`]), and
//! authentication at ingress ([`verify`], with external issuers from [`trusted`]).

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
    pub tokens: Arc<tokens::TokenCache<Arc<issuer::Issuer>>>,
    pub verifier: Arc<verify::Verifier>,
    /// The trusted external issuers (`--oidc-trusted-issuer`), when any.
    pub trusted: Option<Arc<trusted::TrustedIssuers>>,
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
        })
    }

    /// Starts fetching the trusted issuers' keys (at once, then periodically), when any.
    pub fn start(&self) {
        if let Some(trusted) = &self.trusted {
            trusted.start();
        }
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
