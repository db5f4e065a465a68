//! Who may send to a broker or channel: the ingress's access hook.
//!
//! The ingress asks in two steps, so that an unauthenticated request is refused before its
//! body is read: [`Authenticator::authenticate`] with the headers (401, sender identity), then
//! [`Authorizer::authorize`] with the verified caller and the decoded events (403,
//! EventPolicy). [`IngressAccess`] composes the two; its default checks nothing and keeps the
//! open ingress Herald had before. Replies and sources publish in process
//! ([`crate::Ingress::publish`]) and are not asked.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};

use crate::event::CloudEvent;
use crate::log::BrokerKey;

/// The verified sender of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The token's `sub`, e.g. `system:serviceaccount:{ns}:{sa}`.
    pub subject: String,
    /// The token's `iss`.
    pub issuer: String,
}

/// Why a request is refused, with its HTTP answer.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccessDenied {
    /// 401 with `WWW-Authenticate: Bearer error="{error}", error_description="{description}"`
    /// (RFC 6750): `error` is `invalid_request` (no token) or `invalid_token`.
    #[error("authentication failed: {description}")]
    Unauthenticated {
        error: &'static str,
        description: String,
    },
    /// 403: the caller is known but may not send this.
    #[error("forbidden: {reason}")]
    Forbidden { reason: String },
    /// 500: the decision could not be made (e.g. the broker has no audience).
    #[error("the access check failed: {reason}")]
    Internal { reason: String },
}

impl AccessDenied {
    /// A request without a bearer token.
    pub fn missing_token() -> Self {
        AccessDenied::Unauthenticated {
            error: "invalid_request",
            description: "a bearer token is required (Authorization: Bearer <token>)".into(),
        }
    }

    /// A token that does not verify, for the reason given.
    pub fn invalid_token(description: impl Into<String>) -> Self {
        AccessDenied::Unauthenticated {
            error: "invalid_token",
            description: description.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AccessDenied::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            AccessDenied::Forbidden { .. } => StatusCode::FORBIDDEN,
            AccessDenied::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Step one: who sent the request. `Ok(None)` lets an anonymous request through (the
/// feature is off for this broker).
#[async_trait::async_trait]
pub trait Authenticator: Send + Sync + 'static {
    async fn authenticate(
        &self,
        broker: &BrokerKey,
        headers: &HeaderMap,
    ) -> Result<Option<Caller>, AccessDenied>;
}

/// What the authorization step sees.
#[derive(Debug)]
pub struct AccessRequest<'a> {
    pub broker: &'a BrokerKey,
    pub headers: &'a HeaderMap,
    /// The authenticated sender; `None` when authentication is off.
    pub caller: Option<&'a Caller>,
    /// The request's events, decoded (a batch has several).
    pub events: &'a [CloudEvent],
}

/// Step two: may this caller send these events to this broker.
#[async_trait::async_trait]
pub trait Authorizer: Send + Sync + 'static {
    async fn authorize(&self, request: &AccessRequest<'_>) -> Result<(), AccessDenied>;
}

/// The ingress's access check: an optional authenticator and an optional authorizer; each
/// absent step costs nothing and allows.
#[derive(Clone, Default)]
pub struct IngressAccess {
    authenticator: Option<Arc<dyn Authenticator>>,
    authorizer: Option<Arc<dyn Authorizer>>,
}

impl std::fmt::Debug for IngressAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngressAccess")
            .field("authenticator", &self.authenticator.is_some())
            .field("authorizer", &self.authorizer.is_some())
            .finish()
    }
}

impl IngressAccess {
    /// No checks: every request is let in, as before.
    pub fn open() -> Self {
        Self::default()
    }

    pub fn with_authenticator(mut self, authenticator: Arc<dyn Authenticator>) -> Self {
        self.authenticator = Some(authenticator);
        self
    }

    pub fn with_authorizer(mut self, authorizer: Arc<dyn Authorizer>) -> Self {
        self.authorizer = Some(authorizer);
        self
    }

    /// Step one, before the body is read.
    pub async fn authenticate(
        &self,
        broker: &BrokerKey,
        headers: &HeaderMap,
    ) -> Result<Option<Caller>, AccessDenied> {
        match &self.authenticator {
            Some(authenticator) => authenticator.authenticate(broker, headers).await,
            None => Ok(None),
        }
    }

    /// Step two, after the events are decoded and before they are appended.
    pub async fn authorize(&self, request: &AccessRequest<'_>) -> Result<(), AccessDenied> {
        match &self.authorizer {
            Some(authorizer) => authorizer.authorize(request).await,
            None => Ok(()),
        }
    }

    /// Both steps at once, for callers that have the events already.
    pub async fn check(
        &self,
        broker: &BrokerKey,
        headers: &HeaderMap,
        events: &[CloudEvent],
    ) -> Result<Option<Caller>, AccessDenied> {
        let caller = self.authenticate(broker, headers).await?;
        self.authorize(&AccessRequest {
            broker,
            headers,
            caller: caller.as_ref(),
            events,
        })
        .await?;
        Ok(caller)
    }
}
