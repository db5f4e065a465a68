//! `--admin-token`: every admin call but the probes and `/metrics` needs `Authorization: Bearer`.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Paths open without a token: what orchestrators and Prometheus call.
const OPEN_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// Whether `token` may be omitted for an admin listener on `addr`.
pub fn check_exposure(addr: std::net::SocketAddr, token: Option<&str>) -> Result<(), String> {
    if token.is_none() && !addr.ip().is_loopback() {
        return Err(format!(
            "refusing to serve the admin API on {addr} without --admin-token (HERALD_ADMIN_TOKEN): anyone who can reach it could change Herald; bind it to 127.0.0.1 or set a token"
        ));
    }
    Ok(())
}

pub async fn require_token(
    State(token): State<Option<std::sync::Arc<str>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = token else {
        return next.run(request).await;
    };
    if OPEN_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(presented) if same(presented.as_bytes(), token.as_bytes()) => next.run(request).await,
        _ => (
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
            .into_response(),
    }
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }
}
