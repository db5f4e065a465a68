//! `--admin-token`: every admin call but the probes and `/metrics` needs `Authorization: Bearer`
//! (the scheme in any case, as kube-apiserver takes it).

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Paths open without a token: what orchestrators and Prometheus call.
const OPEN_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// Whether `token` (as given, before [`crate::cli::token`]) may be omitted for an admin
/// listener on `addr`.
pub fn check_exposure(addr: std::net::SocketAddr, token: Option<&str>) -> Result<(), String> {
    if addr.ip().is_loopback() || crate::cli::token(token).is_some() {
        return Ok(());
    }
    let missing = match token {
        Some(_) => "with a blank --admin-token (HERALD_ADMIN_TOKEN), which counts as none",
        None => "without --admin-token (HERALD_ADMIN_TOKEN)",
    };
    Err(format!(
        "refusing to serve the admin API on {addr} {missing}: anyone who can reach it could change Herald; bind it to 127.0.0.1 or set a token"
    ))
}

/// Authenticates every request but the open paths (when a token is set), then records each
/// change in the audit log (`super::audit`), refused ones included.
pub async fn require_token(
    State(token): State<Option<std::sync::Arc<str>>>,
    request: Request,
    next: Next,
) -> Response {
    let change = super::audit::is_change(request.method());
    let Some(token) = token else {
        return match change {
            true => super::audit::record(super::audit::Principal::anonymous(), request, next).await,
            false => next.run(request).await,
        };
    };
    if OPEN_PATHS.contains(&request.uri().path()) || is_console_asset(request.uri().path()) {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    match presented {
        Some(presented) if same(presented.as_bytes(), token.as_bytes()) => match change {
            true => {
                super::audit::record(super::audit::Principal::admin_token(), request, next).await
            }
            false => next.run(request).await,
        },
        _ => {
            if change {
                super::audit::log(
                    &super::audit::Principal::unauthenticated(),
                    request.method(),
                    request.uri().path(),
                    StatusCode::UNAUTHORIZED.as_u16(),
                );
            }
            unauthorized()
        }
    }
}

/// The console's page, script and style hold no data: the browser loads them without a token,
/// and the page then asks for one and sends it with every API call.
fn is_console_asset(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

/// 401 in the Kubernetes API's `Status` shape.
fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [("www-authenticate", "Bearer")],
        Json(json!({
            "apiVersion": "v1",
            "kind": "Status",
            "status": "Failure",
            "message": "a valid Authorization: Bearer token is required (see --admin-token)",
            "reason": "Unauthorized",
            "code": 401,
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
        assert!(check_exposure(local, None).is_ok());
        assert!(check_exposure(public, Some("t")).is_ok());
        assert!(check_exposure(public, None)
            .unwrap_err()
            .contains("--admin-token"));
        for blank in ["", "  ", "\n"] {
            let error = check_exposure(public, Some(blank)).unwrap_err();
            assert!(error.contains("blank --admin-token"), "{error}");
        }
        assert!(check_exposure(local, Some("")).is_ok());
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
