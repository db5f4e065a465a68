//! Sender identity on deliveries: a trigger or subscription that has an identity sends
//! `Authorization: Bearer <token>` to every target with an audience (Knative's
//! `authentication-oidc`). Where tokens come from (Herald's own issuer, or Kubernetes
//! TokenRequest) is the `herald` crate's business, behind [`TokenSource`].

use std::sync::Arc;

/// Who sends: a ServiceAccount (on a cluster, a real one; off it, a name).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SenderIdentity {
    pub namespace: String,
    pub service_account: String,
}

#[derive(Clone, Debug, thiserror::Error)]
#[error("no token for {subject} with audience {audience}: {reason}")]
pub struct TokenError {
    pub subject: String,
    pub audience: String,
    pub reason: String,
}

/// Gives a sender's token for an audience; implementations cache.
#[async_trait::async_trait]
pub trait TokenSource: Send + Sync + 'static {
    async fn token(&self, sender: &SenderIdentity, audience: &str) -> Result<Arc<str>, TokenError>;
}

/// What one request needs to carry a token.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    pub tokens: &'a dyn TokenSource,
    pub sender: &'a SenderIdentity,
    pub audience: &'a str,
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("sender", self.sender)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}
