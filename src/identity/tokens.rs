//! Senders' tokens for deliveries, cached per (subject, audience) until five minutes before
//! they expire (Knative's `OIDCTokenProvider`), from Herald's issuer or a Kubernetes
//! TokenRequest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use herald_triggers::auth::{SenderIdentity, TokenError, TokenSource};

use super::issuer::{Issuer, Minted, TOKEN_LIFETIME};
use super::naming;

/// A cached token is replaced this long before it expires.
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);
/// Most tokens kept; when full, expired ones go, and if none had expired, all of them
/// (senders times audiences are few: one subscriber, reply and dead-letter sink per trigger).
pub const MAX_CACHED_TOKENS: usize = 4096;

/// Makes a new token (the cache decides when).
#[async_trait::async_trait]
pub trait Mint: Send + Sync + 'static {
    async fn mint(&self, sender: &SenderIdentity, audience: &str) -> Result<Minted, TokenError>;
}

#[async_trait::async_trait]
impl Mint for Arc<Issuer> {
    async fn mint(&self, sender: &SenderIdentity, audience: &str) -> Result<Minted, TokenError> {
        let subject = naming::subject(&sender.namespace, &sender.service_account);
        Issuer::mint(self, &subject, audience, TOKEN_LIFETIME).map_err(|e| TokenError {
            subject,
            audience: audience.to_owned(),
            reason: e.to_string(),
        })
    }
}

/// A bounded cache in front of a [`Mint`].
pub struct TokenCache<M> {
    mint: M,
    cached: Mutex<HashMap<(SenderIdentity, String), Minted>>,
    minted: std::sync::atomic::AtomicU64,
}

impl<M: Mint> TokenCache<M> {
    pub fn new(mint: M) -> Self {
        Self {
            mint,
            cached: Mutex::default(),
            minted: Default::default(),
        }
    }

    /// Tokens made so far (cache misses), for tests and metrics.
    pub fn minted(&self) -> u64 {
        self.minted.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn fresh(&self, key: &(SenderIdentity, String)) -> Option<Arc<str>> {
        let cached = self.cached.lock().ok()?;
        let minted = cached.get(key)?;
        (minted.expires > SystemTime::now() + REFRESH_BEFORE_EXPIRY).then(|| minted.token.clone())
    }

    fn keep(&self, key: (SenderIdentity, String), minted: Minted) {
        let Ok(mut cached) = self.cached.lock() else {
            return;
        };
        if cached.len() >= MAX_CACHED_TOKENS && !cached.contains_key(&key) {
            let now = SystemTime::now();
            cached.retain(|_, m| m.expires > now + REFRESH_BEFORE_EXPIRY);
            if cached.len() >= MAX_CACHED_TOKENS {
                cached.clear();
            }
        }
        cached.insert(key, minted);
    }
}

#[async_trait::async_trait]
impl<M: Mint> TokenSource for TokenCache<M> {
    async fn token(&self, sender: &SenderIdentity, audience: &str) -> Result<Arc<str>, TokenError> {
        let key = (sender.clone(), audience.to_owned());
        if let Some(token) = self.fresh(&key) {
            return Ok(token);
        }
        // No lock is held while minting: two misses at once both mint, and the later wins.
        let minted = self.mint.mint(sender, audience).await?;
        self.minted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = minted.token.clone();
        self.keep(key, minted);
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::keys::KeyRing;

    #[tokio::test]
    async fn tokens_are_reused_per_sender_and_audience() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = Issuer::new(
            "http://issuer",
            KeyRing::load_or_create(dir.path()).unwrap(),
        );
        let cache = TokenCache::new(Arc::new(issuer));
        let sender = SenderIdentity {
            namespace: "ns".into(),
            service_account: "sa".into(),
        };
        let first = cache.token(&sender, "a").await.unwrap();
        assert_eq!(cache.token(&sender, "a").await.unwrap(), first);
        assert_eq!(cache.minted(), 1);
        assert_ne!(cache.token(&sender, "b").await.unwrap(), first);
        assert_eq!(cache.minted(), 2);
    }
}
