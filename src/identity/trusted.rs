//! Trusted external issuers (`--oidc-trusted-issuer`): each is a
//! [`RemoteIssuer`](super::remote_keys::RemoteIssuer) whose documents are fetched over HTTPS
//! with the trust of every outgoing request (system roots and `--tls-trust-bundle`,
//! reloaded). Keys are fetched at start and every
//! [`REFRESH_EVERY`](super::remote_keys::REFRESH_EVERY), and on a token naming an unknown key
//! (rate-limited, in `remote_keys`). An issuer that cannot be reached is logged, Herald runs
//! on, and its tokens are refused with the reason until it answers; keys fetched before stay
//! in use while it is down.

use std::sync::Arc;

use bytes::Bytes;

use super::remote_keys::{Fetch, HttpFetch, RemoteIssuer, RemoteKeyError, REFRESH_EVERY};
use super::verify::KeySet;

/// Most trusted issuers one Herald takes.
pub const MAX_TRUSTED_ISSUERS: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrustedIssuerError {
    #[error("--oidc-trusted-issuer: at most {MAX_TRUSTED_ISSUERS} issuers, got {0}")]
    TooMany(usize),
    #[error("--oidc-trusted-issuer {url}: {reason}")]
    InvalidUrl { url: String, reason: &'static str },
}

/// Checks the issuers `--oidc-trusted-issuer` names: https URLs without query or fragment,
/// at most [`MAX_TRUSTED_ISSUERS`]; a trailing `/` is dropped and duplicates count once.
pub fn parse_urls(urls: &[String]) -> Result<Vec<String>, TrustedIssuerError> {
    let mut parsed: Vec<String> = Vec::new();
    for url in urls {
        let invalid = |reason| TrustedIssuerError::InvalidUrl {
            url: url.clone(),
            reason,
        };
        let parsed_url = reqwest::Url::parse(url).map_err(|_| invalid("not a URL"))?;
        if parsed_url.scheme() != "https" {
            return Err(invalid(
                "the issuer must be an https URL (its keys are fetched over HTTPS)",
            ));
        }
        if parsed_url.query().is_some() || parsed_url.fragment().is_some() {
            return Err(invalid("an issuer URL has no query or fragment"));
        }
        let normal = url.trim_end_matches('/').to_owned();
        if !parsed.contains(&normal) {
            parsed.push(normal);
        }
    }
    if parsed.len() > MAX_TRUSTED_ISSUERS {
        return Err(TrustedIssuerError::TooMany(parsed.len()));
    }
    Ok(parsed)
}

/// The trusted issuers of one Herald.
pub struct TrustedIssuers {
    issuers: Vec<Arc<RemoteIssuer>>,
}

impl TrustedIssuers {
    /// `urls` as [`parse_urls`] returns them; their keys go into `keys`.
    pub fn new(urls: Vec<String>, keys: Arc<KeySet>, trust: Arc<herald_tls::TrustBundles>) -> Self {
        let fetch: Arc<dyn Fetch> = Arc::new(TrustedFetch {
            clients: herald_tls::Clients::new(trust, Box::new(HttpFetch::configure)),
        });
        Self {
            issuers: urls
                .into_iter()
                .map(|url| {
                    Arc::new(
                        RemoteIssuer::new(url, fetch.clone(), keys.clone()).requiring_same_issuer(),
                    )
                })
                .collect(),
        }
    }

    /// The issuers, for the verifier.
    pub fn issuers(&self) -> &[Arc<RemoteIssuer>] {
        &self.issuers
    }

    /// Fetches every issuer's keys now (logging each outcome: an error says its tokens are
    /// refused meanwhile) and then every [`REFRESH_EVERY`], until the process ends.
    pub fn start(&self) {
        for issuer in &self.issuers {
            let issuer = issuer.clone();
            tokio::spawn(async move {
                loop {
                    match issuer.refresh().await {
                        Ok(keys) => tracing::info!(
                            issuer = %issuer.base_url(),
                            keys,
                            "fetched the keys of a trusted OIDC issuer"
                        ),
                        Err(error) => tracing::error!(
                            issuer = %issuer.base_url(),
                            %error,
                            "cannot fetch the keys of a trusted OIDC issuer: tokens with keys not fetched before are refused until it answers"
                        ),
                    }
                    tokio::time::sleep(REFRESH_EVERY).await;
                }
            });
        }
    }
}

/// GETs over HTTPS only, with the clients every outgoing request uses.
struct TrustedFetch {
    clients: herald_tls::Clients,
}

#[async_trait::async_trait]
impl Fetch for TrustedFetch {
    async fn get(&self, url: &str, limit: usize) -> Result<Bytes, RemoteKeyError> {
        if !url.starts_with("https://") {
            return Err(RemoteKeyError::Fetch {
                url: url.to_owned(),
                reason: "a trusted issuer's documents are fetched over https only".into(),
            });
        }
        let client = self
            .clients
            .get(None)
            .map_err(|error| RemoteKeyError::Fetch {
                url: url.to_owned(),
                reason: error.to_string(),
            })?;
        HttpFetch::with_client(client).get(url, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_urls_are_https_and_bounded() {
        let urls = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_urls(&urls(&[
                "https://a.example/",
                "https://a.example",
                "https://b.example/x"
            ]))
            .unwrap(),
            urls(&["https://a.example", "https://b.example/x"])
        );
        for bad in ["http://a.example", "a.example", "https://a.example/?x=1"] {
            assert!(
                matches!(
                    parse_urls(&urls(&[bad])),
                    Err(TrustedIssuerError::InvalidUrl { .. })
                ),
                "{bad}"
            );
        }
        let many: Vec<String> = (0..=MAX_TRUSTED_ISSUERS)
            .map(|i| format!("https://i{i}.example"))
            .collect();
        assert_eq!(
            parse_urls(&many),
            Err(TrustedIssuerError::TooMany(MAX_TRUSTED_ISSUERS + 1))
        );
    }
}
