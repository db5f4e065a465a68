//! Herald's issuer on the admin listener: the discovery document and JWKS (open, so that
//! subscribers can verify tokens), and tokens for external producers (behind the admin token).

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::identity::issuer::{DISCOVERY_PATH, JWKS_PATH, TOKEN_LIFETIME};
use crate::identity::Identity;

/// Where producers ask for a token.
pub const TOKEN_PATH: &str = "/apis/herald.dev/v1/oidc/token";
/// A subject or audience longer than this is refused.
const MAX_CLAIM_CHARS: usize = 512;

/// The discovery document and JWKS, open to anyone.
pub fn public_router(identity: Arc<Identity>) -> Router {
    Router::new()
        .route(
            DISCOVERY_PATH,
            get(|State(identity): State<Arc<Identity>>| async move {
                Json(identity.issuer.discovery())
            }),
        )
        .route(
            JWKS_PATH,
            get(
                |State(identity): State<Arc<Identity>>| async move { Json(identity.issuer.jwks()) },
            ),
        )
        .with_state(identity)
}

/// `POST /apis/herald.dev/v1/oidc/token`; the caller protects it with the admin token.
pub fn token_router(identity: Arc<Identity>) -> Router {
    Router::new()
        .route(TOKEN_PATH, post(mint))
        .with_state(identity)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TokenRequest {
    subject: String,
    audience: String,
    /// At most, and by default, one hour.
    expiration_seconds: Option<u64>,
}

async fn mint(State(identity): State<Arc<Identity>>, body: axum::body::Bytes) -> Response {
    let request: TokenRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => return invalid(format!("invalid token request: {error}")),
    };
    if request.subject.chars().count() > MAX_CLAIM_CHARS
        || request.audience.chars().count() > MAX_CLAIM_CHARS
    {
        return invalid(format!(
            "subject and audience are limited to {MAX_CLAIM_CHARS} characters"
        ));
    }
    let lifetime = match request.expiration_seconds {
        None => TOKEN_LIFETIME,
        Some(seconds) if (1..=TOKEN_LIFETIME.as_secs()).contains(&seconds) => {
            Duration::from_secs(seconds)
        }
        Some(_) => {
            return invalid(format!(
                "expirationSeconds must be between 1 and {}",
                TOKEN_LIFETIME.as_secs()
            ))
        }
    };
    match identity
        .issuer
        .mint(&request.subject, &request.audience, lifetime)
    {
        Ok(minted) => {
            tracing::info!(subject = %request.subject, audience = %request.audience, "issued a token through the admin API");
            let expires = minted
                .expires
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            Json(json!({ "token": &*minted.token, "expirationTimestamp": expires })).into_response()
        }
        Err(error) => invalid(error.to_string()),
    }
}

fn invalid(message: String) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({ "error": "Unprocessable Entity", "message": message })),
    )
        .into_response()
}
