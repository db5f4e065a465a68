//! The audit of the admin API: one log line, under the tracing target [`TARGET`], for every
//! request that may change something (POST, PUT, PATCH, DELETE), refused or not: who (the
//! caller's identity), what (verb, kind, namespace, name, sub-resource), when, and the
//! outcome (the HTTP status).

use axum::extract::Request;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

/// The tracing target of audit lines: `RUST_LOG=warn,herald::audit=info` keeps only them.
pub const TARGET: &str = "herald::audit";

/// Who made a request, as the admin API's authentication found it (a request extension).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal(pub String);

impl Principal {
    /// The `--admin-token` holder.
    pub fn admin_token() -> Self {
        Principal("admin-token".into())
    }

    /// No token configured: anyone who reaches the (loopback) listener.
    pub fn anonymous() -> Self {
        Principal("anonymous".into())
    }

    /// A request that did not authenticate.
    pub fn unauthenticated() -> Self {
        Principal("unauthenticated".into())
    }
}

/// Whether a request with this method may change something.
pub fn is_change(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// What an admin path names: `/apis/{group}/{version}/namespaces/{ns}/{plural}[/{name}[/rest]]`.
struct Object<'a> {
    resource: &'a str,
    namespace: &'a str,
    name: &'a str,
    subresource: String,
}

fn object(path: &str) -> Option<Object<'_>> {
    let mut parts = path.trim_start_matches('/').split('/');
    let (Some("apis"), Some(_group), Some(_version), Some("namespaces"), Some(namespace)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let resource = parts.next()?;
    let name = parts.next().unwrap_or("");
    Some(Object {
        resource,
        namespace,
        name,
        subresource: parts.collect::<Vec<_>>().join("/"),
    })
}

/// Logs `request` (a change) once answered. `principal` is who it was; the path's parts
/// are logged as sent (bounded by the listener's header limit).
pub async fn record(principal: Principal, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    log(&principal, &method, &path, response.status().as_u16());
    response
}

/// The audit line itself.
pub fn log(principal: &Principal, method: &Method, path: &str, status: u16) {
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let outcome = if (200..300).contains(&status) {
        "allowed"
    } else {
        "refused"
    };
    match object(path) {
        Some(o) => tracing::info!(
            target: TARGET,
            who = %principal.0,
            verb = %method,
            resource = o.resource,
            namespace = o.namespace,
            name = o.name,
            subresource = %o.subresource,
            at = %at,
            status,
            outcome,
            "admin change"
        ),
        None => tracing::info!(
            target: TARGET,
            who = %principal.0,
            verb = %method,
            path = %path,
            at = %at,
            status,
            outcome,
            "admin change"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let o =
            object("/apis/eventing.knative.dev/v1/namespaces/ns/triggers/t/deadletters/redrive")
                .unwrap();
        assert_eq!((o.resource, o.namespace, o.name), ("triggers", "ns", "t"));
        assert_eq!(o.subresource, "deadletters/redrive");
        let o = object("/apis/eventing.knative.dev/v1/namespaces/ns/brokers").unwrap();
        assert_eq!((o.resource, o.name), ("brokers", ""));
        assert!(object("/healthz").is_none());
    }
}
