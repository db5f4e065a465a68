//! Sender identity on a Kubernetes cluster, as Knative has it: senders' tokens come from the
//! API server's TokenRequest for their ServiceAccount, and the ingress trusts the API server's
//! service-account issuer, whose keys it reads through the API client (Knative's verifier
//! does the same for its default `oidc-discovery-base-url`).

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use herald_triggers::auth::{SenderIdentity, TokenError};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use kube::Client;

use super::issuer::{Minted, TOKEN_LIFETIME};
use super::naming;
use super::remote_keys::{Fetch, RemoteKeyError, ACCEPT, FETCH_TIMEOUT};
use super::tokens::Mint;

/// Tokens by TokenRequest (`POST .../serviceaccounts/{name}/token`), for one hour, with the
/// target's audience (Knative's `OIDCTokenProvider`); the [`super::tokens::TokenCache`] in
/// front keeps them until five minutes before they expire.
pub struct TokenRequester {
    client: Client,
}

impl TokenRequester {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

#[async_trait::async_trait]
impl Mint for TokenRequester {
    async fn mint(&self, sender: &SenderIdentity, audience: &str) -> Result<Minted, TokenError> {
        let failed = |reason: String| TokenError {
            subject: naming::subject(&sender.namespace, &sender.service_account),
            audience: audience.to_owned(),
            reason,
        };
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &sender.namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![audience.to_owned()],
                expiration_seconds: Some(TOKEN_LIFETIME.as_secs() as i64),
                bound_object_ref: None,
            },
            ..TokenRequest::default()
        };
        let answer = tokio::time::timeout(
            FETCH_TIMEOUT,
            api.create_token_request(&sender.service_account, &PostParams::default(), &request),
        )
        .await
        .map_err(|_| failed(format!("TokenRequest took longer than {FETCH_TIMEOUT:?}")))?
        .map_err(|e| failed(format!("TokenRequest failed: {e}")))?;
        let status = answer
            .status
            .ok_or_else(|| failed("the TokenRequest answer has no status".into()))?;
        if status.token.is_empty() {
            return Err(failed("the TokenRequest answer has no token".into()));
        }
        let seconds = status.expiration_timestamp.0.as_second();
        let expires = SystemTime::UNIX_EPOCH + Duration::from_secs(seconds.max(0) as u64);
        Ok(Minted {
            token: status.token.into(),
            expires,
        })
    }
}

/// Documents read from the API server with the controller's client (its CA, its
/// credentials): a URL's path and query are asked of the API server whatever its host, so the
/// discovery document's `jwks_uri` (`https://kubernetes.default.svc/openid/v1/jwks` on most
/// clusters) resolves outside the cluster too.
pub struct KubeFetch {
    client: Client,
}

impl KubeFetch {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

/// The path and query of `url` (`url` itself when it is already a path).
fn path_of(url: &str) -> &str {
    let Some((_, rest)) = url.split_once("://") else {
        return url;
    };
    rest.find('/').map_or("/", |at| &rest[at..])
}

#[async_trait::async_trait]
impl Fetch for KubeFetch {
    async fn get(&self, url: &str, limit: usize) -> Result<Bytes, RemoteKeyError> {
        let failed = |reason: String| RemoteKeyError::Fetch {
            url: url.to_owned(),
            reason,
        };
        let request = axum::http::Request::get(path_of(url))
            .header("accept", ACCEPT)
            .body(kube::client::Body::empty())
            .map_err(|e| failed(e.to_string()))?;
        let response = tokio::time::timeout(FETCH_TIMEOUT, self.client.send(request))
            .await
            .map_err(|_| failed(format!("no answer within {FETCH_TIMEOUT:?}")))?
            .map_err(|e| failed(e.to_string()))?;
        if !response.status().is_success() {
            return Err(failed(format!("answered {}", response.status())));
        }
        let body = axum::body::Body::new(response.into_body());
        axum::body::to_bytes(body, limit).await.map_err(|e| {
            failed(format!(
                "cannot read the answer (at most {limit} bytes): {e}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::path_of;

    #[test]
    fn urls_become_paths_on_the_api_server() {
        assert_eq!(
            path_of("https://kubernetes.default.svc/openid/v1/jwks"),
            "/openid/v1/jwks"
        );
        assert_eq!(path_of("https://host:6443"), "/");
        assert_eq!(path_of("/openid/v1/jwks"), "/openid/v1/jwks");
        assert_eq!(path_of("https://h/a?b=c"), "/a?b=c");
    }
}
