//! `--admin-token` and `--admin-roles`: every admin call but the probes and `/metrics` needs
//! `Authorization: Bearer` (the scheme in any case, as kube-apiserver takes it) with the admin
//! token (everything allowed) or, with `--admin-roles`, an OIDC token for the roles' audience
//! whose subject has the role the call needs ([`super::roles`]).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Paths open without a token: what orchestrators and Prometheus call.
const OPEN_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// How the admin API authenticates callers.
pub struct AdminAuth {
    /// `--admin-token` (blank ones already dropped).
    pub token: Option<Arc<str>>,
    /// `--admin-roles`, with the verifier of Herald's and the trusted issuers' tokens.
    pub oidc: Option<AdminOidc>,
}

pub struct AdminOidc {
    pub verifier: Arc<crate::identity::verify::Verifier>,
    pub roles: super::roles::AdminRoles,
}

/// Whether `token` (as given, before [`crate::cli::token`]) may be omitted for an admin
/// listener on `addr` (with `--admin-roles`, callers need a token anyway).
pub fn check_exposure(
    addr: std::net::SocketAddr,
    token: Option<&str>,
    roles: bool,
) -> Result<(), String> {
    if addr.ip().is_loopback() || crate::cli::token(token).is_some() || roles {
        return Ok(());
    }
    let missing = match token {
        Some(_) => "with a blank --admin-token (HERALD_ADMIN_TOKEN), which counts as none",
        None => "without --admin-token (HERALD_ADMIN_TOKEN)",
    };
    Err(format!(
        "refusing to serve the admin API on {addr} {missing}: anyone who can reach it could change Herald; bind it to 127.0.0.1, set a token or --admin-roles"
    ))
}

/// Authenticates every request but the open paths (when a token or roles are set), checks
/// an OIDC caller's role, then records each change in the audit log (`super::audit`), and
/// every refusal (401, 403).
pub async fn require_token(
    State(auth): State<Arc<AdminAuth>>,
    request: Request,
    next: Next,
) -> Response {
    use super::audit::{self, Principal};
    let change = audit::is_change(request.method());
    if auth.token.is_none() && auth.oidc.is_none() {
        return match change {
            true => audit::record(Principal::anonymous(), request, next).await,
            false => next.run(request).await,
        };
    }
    if OPEN_PATHS.contains(&request.uri().path()) || is_console_asset(request.uri().path()) {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .map(str::to_owned);
    let refuse_unauthenticated = |request: &Request, description: Option<String>| {
        audit::log(
            &Principal::unauthenticated(),
            request.method(),
            request.uri().path(),
            StatusCode::UNAUTHORIZED.as_u16(),
        );
        unauthorized(description)
    };
    let Some(presented) = presented else {
        return refuse_unauthenticated(&request, None);
    };
    if let Some(token) = &auth.token {
        if same(presented.as_bytes(), token.as_bytes()) {
            return match change {
                true => audit::record(Principal::admin_token(), request, next).await,
                false => next.run(request).await,
            };
        }
    }
    let Some(oidc) = &auth.oidc else {
        return refuse_unauthenticated(&request, None);
    };
    let caller = match oidc
        .verifier
        .verify_fetching(&presented, oidc.roles.audience())
        .await
    {
        Ok(caller) => caller,
        Err(denied) => {
            let description = match denied {
                herald_broker::access::AccessDenied::Unauthenticated { description, .. } => {
                    description
                }
                other => other.to_string(),
            };
            return refuse_unauthenticated(&request, Some(description));
        }
    };
    let principal = Principal(caller.subject.clone());
    match oidc.roles.authorize(
        &caller.subject,
        &caller.issuer,
        request.method(),
        request.uri().path(),
    ) {
        Ok(()) => match change {
            true => audit::record(principal, request, next).await,
            false => next.run(request).await,
        },
        Err(reason) => {
            audit::log(
                &principal,
                request.method(),
                request.uri().path(),
                StatusCode::FORBIDDEN.as_u16(),
            );
            forbidden(reason)
        }
    }
}

/// The console's page, script and style hold no data: the browser loads them without a token,
/// and the page then asks for one and sends it with every API call.
fn is_console_asset(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

/// 401 in the Kubernetes API's `Status` shape; `why` an OIDC token was not accepted.
fn unauthorized(why: Option<String>) -> Response {
    let message = match why {
        None => "a valid Authorization: Bearer token is required (see --admin-token)".to_owned(),
        Some(why) => format!("the bearer token is not accepted: {why}"),
    };
    (
        StatusCode::UNAUTHORIZED,
        [("www-authenticate", "Bearer")],
        Json(json!({
            "apiVersion": "v1",
            "kind": "Status",
            "status": "Failure",
            "message": message,
            "reason": "Unauthorized",
            "code": 401,
        })),
    )
        .into_response()
}

/// 403 in the Kubernetes API's `Status` shape, saying which role is missing where.
fn forbidden(message: String) -> Response {
    (
        StatusCode::FORBIDDEN,
        Json(json!({
            "apiVersion": "v1",
            "kind": "Status",
            "status": "Failure",
            "message": message,
            "reason": "Forbidden",
            "code": 403,
        })),
    )
        .into_response()
}

/// The credentials of an `Authorization: Bearer TOKEN` value; the scheme in any case.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim_start())
}

/// Compares in constant time for inputs of equal length (`subtle`: the compiler cannot turn
/// it into an early exit); only the length may show.
fn same(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposure_rule() {
        let public: std::net::SocketAddr = "0.0.0.0:8081".parse().unwrap();
        let local: std::net::SocketAddr = "127.0.0.1:8081".parse().unwrap();
        assert!(check_exposure(local, None, false).is_ok());
        assert!(check_exposure(public, Some("t"), false).is_ok());
        assert!(check_exposure(public, None, true).is_ok());
        assert!(check_exposure(public, None, false)
            .unwrap_err()
            .contains("--admin-token"));
        for blank in ["", "  ", "\n"] {
            let error = check_exposure(public, Some(blank), false).unwrap_err();
            assert!(error.contains("blank --admin-token"), "{error}");
        }
        assert!(check_exposure(local, Some(""), false).is_ok());
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        for value in ["Bearer t", "bearer t", "BEARER t", "  bEaReR   t "] {
            assert_eq!(bearer(value), Some("t"), "{value:?}");
        }
        for value in ["Basic t", "Bearert", "Bearer", "t"] {
            assert_eq!(bearer(value), None, "{value:?}");
        }
    }
}
