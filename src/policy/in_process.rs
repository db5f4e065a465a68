//! The access check of the addressables Herald serves in process on the ingress listener
//! (EventTransform, RequestReply): the ingress's two steps for their own audience, so that
//! with sender identity on they are no way around authentication and EventPolicies.
//!
//! An EventTransform is checked against the policies applying to it (Knative's auth-proxy
//! does the same); a RequestReply, which appends to its broker, against that broker's.

use std::sync::Arc;

use axum::http::HeaderMap;
use herald_broker::{AccessDenied, BrokerKey, Caller, CloudEvent};
use herald_crds::OwnAddressable;

use super::Authorizer;
use crate::identity::verify::{bearer, Verifier};

/// Shared by the in-process routes.
#[derive(Clone, Default)]
pub struct InProcessAccess {
    /// With `--authentication-oidc enabled`; without, every request is let in as before.
    verifier: Option<Arc<Verifier>>,
    authorizer: Arc<Authorizer>,
}

impl InProcessAccess {
    pub fn new(verifier: Option<Arc<Verifier>>, authorizer: Arc<Authorizer>) -> Self {
        Self {
            verifier,
            authorizer,
        }
    }

    /// Step one, before the body is read: a bearer token for the addressable's audience
    /// (401 otherwise); `None` while sender identity is off.
    pub async fn authenticate(
        &self,
        kind: OwnAddressable,
        namespace: &str,
        name: &str,
        headers: &HeaderMap,
    ) -> Result<Option<Caller>, AccessDenied> {
        let Some(verifier) = &self.verifier else {
            return Ok(None);
        };
        let audience = crate::config::flows::audience_of(kind, namespace, name);
        verifier
            .verify_fetching(bearer(headers)?, &audience)
            .await
            .map(Some)
    }

    /// Step two for an EventTransform: its policies, else the default mode (403).
    pub fn authorize_transform(
        &self,
        namespace: &str,
        name: &str,
        caller: Option<&Caller>,
        events: &[CloudEvent],
    ) -> Result<(), AccessDenied> {
        self.authorizer
            .check_transform(
                namespace,
                name,
                caller.map(|caller| caller.subject.as_str()),
                events,
            )
            .map_err(forbidden)
    }

    /// Step two for a RequestReply: the policies of the broker it appends to (403).
    pub fn authorize_into(
        &self,
        broker: &BrokerKey,
        caller: Option<&Caller>,
        events: &[CloudEvent],
    ) -> Result<(), AccessDenied> {
        self.authorizer
            .check(broker, caller.map(|caller| caller.subject.as_str()), events)
            .map_err(forbidden)
    }
}

fn forbidden(denied: super::Denied) -> AccessDenied {
    AccessDenied::Forbidden {
        reason: denied.to_string(),
    }
}

/// The answer to a refused request: the ingress's (401 with RFC 6750's challenge, 403 with
/// the reason, in Herald's JSON error body).
pub fn refusal(denied: AccessDenied) -> axum::response::Response {
    use axum::response::IntoResponse;
    herald_broker::IngressError::Denied(denied).into_response()
}
