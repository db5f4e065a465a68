//! Herald as its own OIDC issuer (off the cluster): signs ES256 tokens for senders and
//! publishes the discovery document and JWKS on the admin listener, so that any subscriber
//! can verify them with a standard JWT library.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use super::keys::{KeyError, KeyRing};

/// Where the discovery document is served (OIDC Discovery 1.0).
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// Where the JWKS is served (the same path as a kube-apiserver's).
pub const JWKS_PATH: &str = "/openid/v1/jwks";
/// Knative's token lifetime (TokenRequest's `expirationSeconds`).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// A token's claims: the registered ones Knative's tokens carry.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    /// One audience, as a list (as TokenRequest writes it).
    pub aud: Vec<String>,
    pub exp: u64,
    pub iat: u64,
    pub nbf: u64,
}

/// A signed token and when it expires.
#[derive(Clone, Debug)]
pub struct Minted {
    pub token: Arc<str>,
    pub expires: SystemTime,
}

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("could not sign the token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
    #[error("the audience must not be empty")]
    EmptyAudience,
    #[error("the subject must not be empty")]
    EmptySubject,
}

/// The issuer: its URL (the `iss` of its tokens) and its keys.
#[derive(Debug)]
pub struct Issuer {
    url: String,
    keys: KeyRing,
}

impl Issuer {
    pub fn new(url: impl Into<String>, keys: KeyRing) -> Self {
        Self {
            url: url.into().trim_end_matches('/').to_owned(),
            keys,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// A token for `subject` with `audience`, valid for `lifetime` from now.
    pub fn mint(
        &self,
        subject: &str,
        audience: &str,
        lifetime: Duration,
    ) -> Result<Minted, IssueError> {
        if subject.is_empty() {
            return Err(IssueError::EmptySubject);
        }
        if audience.is_empty() {
            return Err(IssueError::EmptyAudience);
        }
        let now = SystemTime::now();
        let seconds = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let expires = now + lifetime;
        let claims = Claims {
            iss: self.url.clone(),
            sub: subject.to_owned(),
            aud: vec![audience.to_owned()],
            exp: seconds(expires),
            iat: seconds(now),
            nbf: seconds(now),
        };
        let token = sign(&self.keys.signing, &self.keys.current.kid, &claims)?;
        Ok(Minted {
            token: token.into(),
            expires,
        })
    }

    /// The discovery document: enough for standard clients to find the keys.
    pub fn discovery(&self) -> serde_json::Value {
        serde_json::json!({
            "issuer": self.url,
            "jwks_uri": format!("{}{JWKS_PATH}", self.url),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        })
    }

    pub fn jwks(&self) -> serde_json::Value {
        self.keys.jwks()
    }
}

fn sign(key: &EncodingKey, kid: &str, claims: &Claims) -> Result<String, IssueError> {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    Ok(jsonwebtoken::encode(&header, claims, key)?)
}
