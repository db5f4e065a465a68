//! WebhookSource (`sources.herald.dev/v1alpha1`): `POST /webhooks/{namespace}/{name}` on the
//! ingress listener. A request is verified (GitHub's `X-Hub-Signature-256` HMAC, or a bearer
//! token), turned into a CloudEvent whose data is the body unchanged, and answered 202 only
//! once the sink accepted the event (503 otherwise, so the sender retries). A bad signature is
//! answered 401 and sends nothing.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use herald_broker::CloudEvent;
use herald_crds::{FieldError, SecretFrom, WebhookScheme, WebhookSourceSpec};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::{SinkClient, Source, SourceError};

/// The `type` of events when neither `eventType` nor `typeFromHeader` gives one.
pub const DEFAULT_EVENT_TYPE: &str = "dev.herald.webhook";
/// GitHub's signature header.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// The webhook sources running now, by namespace and name; the ingress listener serves them.
#[derive(Default)]
pub struct WebhookRegistry {
    endpoints: RwLock<HashMap<(String, String), Arc<Endpoint>>>,
}

/// A running webhook: how to verify and map a request, and where to send the event.
struct Endpoint {
    spec: WebhookSourceSpec,
    secret: Vec<u8>,
    source: String,
    sink: SinkClient,
}

impl WebhookRegistry {
    /// `POST /webhooks/{namespace}/{name}`, with bodies up to `max_body_bytes`.
    pub fn router(self: Arc<Self>, max_body_bytes: usize) -> Router {
        Router::new()
            .route("/webhooks/{namespace}/{name}", post(receive))
            .layer(DefaultBodyLimit::max(max_body_bytes))
            .with_state(self)
    }

    fn get(&self, namespace: &str, name: &str) -> Option<Arc<Endpoint>> {
        self.endpoints
            .read()
            .ok()?
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }
}

fn answer(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn receive(
    State(registry): State<Arc<WebhookRegistry>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(endpoint) = registry.get(&namespace, &name) else {
        return answer(
            StatusCode::NOT_FOUND,
            &format!("no webhook source {namespace}/{name} is running"),
        );
    };
    if let Err(reason) = endpoint.verify(&headers, &body) {
        tracing::warn!(source = %endpoint.source, reason, "webhook request refused");
        return answer(StatusCode::UNAUTHORIZED, reason);
    }
    let event = match endpoint.event(&headers, body) {
        Ok(event) => event,
        Err(error) => return answer(StatusCode::BAD_REQUEST, &error.to_string()),
    };
    match endpoint.sink.send(event).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(error) => {
            tracing::warn!(source = %endpoint.source, %error, "webhook event not accepted by the sink");
            let mut response = answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "the event could not be delivered to the sink; retry later",
            );
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("5"));
            response
        }
    }
}

impl Endpoint {
    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), &'static str> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        match self.spec.auth.scheme {
            WebhookScheme::HmacSha256 => {
                let signature =
                    header(SIGNATURE_HEADER).ok_or("the X-Hub-Signature-256 header is missing")?;
                let tag = signature
                    .strip_prefix("sha256=")
                    .and_then(decode_hex)
                    .ok_or("X-Hub-Signature-256 is not sha256=<hex>")?;
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.secret);
                ring::hmac::verify(&key, body, &tag).map_err(|_| "the signature does not match")
            }
            WebhookScheme::Bearer => {
                let token = header("authorization")
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .ok_or("an Authorization: Bearer token is required")?;
                // Compared as HMACs of both, so the comparison takes the same time either way.
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"herald-webhook-bearer");
                let expected = ring::hmac::sign(&key, &self.secret);
                ring::hmac::verify(&key, token.as_bytes(), expected.as_ref())
                    .map_err(|_| "the token does not match")
            }
        }
    }

    fn event(&self, headers: &HeaderMap, body: Bytes) -> Result<CloudEvent, RequestError> {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
        };
        let from_header = self
            .spec
            .type_from_header
            .as_ref()
            .and_then(|t| header(&t.header).map(|value| format!("{}{value}", t.prefix)));
        let event_type = match (
            from_header,
            &self.spec.event_type,
            &self.spec.type_from_header,
        ) {
            (Some(event_type), _, _) => event_type,
            (None, Some(event_type), _) => event_type.clone(),
            (None, None, Some(t)) => return Err(RequestError::MissingType(t.header.clone())),
            (None, None, None) => DEFAULT_EVENT_TYPE.to_owned(),
        };
        let id = self
            .spec
            .id_from_header
            .as_deref()
            .and_then(header)
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut event = CloudEvent::new();
        event.set("specversion", "1.0");
        event.set("id", id);
        event.set("type", event_type);
        event.set("source", self.source.as_str());
        if !body.is_empty() {
            if let Some(content_type) = header("content-type") {
                event.set("datacontenttype", content_type);
            }
            event.set_data(Some(body));
        }
        event.validate().map_err(RequestError::Invalid)?;
        Ok(event)
    }
}

/// Why a verified request makes no event (answered with 400).
#[derive(Debug, thiserror::Error)]
enum RequestError {
    /// `typeFromHeader` names a header the request does not have (and no `eventType`).
    #[error("the {0} header is missing")]
    MissingType(String),
    #[error("the request does not make a valid CloudEvent: {0}")]
    Invalid(#[source] herald_broker::InvalidEvent),
}

/// Why a webhook's secret cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set")]
    NoVariable(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("set exactly one of secret.env and secret.file")]
    NotOne,
    #[error("the secret is empty")]
    Empty,
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Reads a secret from Herald's environment or a file (trailing newline dropped).
pub fn read_secret(from: &SecretFrom) -> Result<Vec<u8>, SecretError> {
    let secret = match (&from.env, &from.file) {
        (Some(name), None) => std::env::var(name)
            .map_err(|_| SecretError::NoVariable(name.clone()))?
            .into_bytes(),
        (None, Some(path)) => std::fs::read(path).map_err(|source| SecretError::Read {
            path: path.clone(),
            source,
        })?,
        _ => return Err(SecretError::NotOne),
    };
    let secret = secret
        .strip_suffix(b"\n")
        .map(<[u8]>::to_vec)
        .unwrap_or(secret);
    if secret.is_empty() {
        return Err(SecretError::Empty);
    }
    Ok(secret)
}

pub fn validate(spec: &WebhookSourceSpec) -> Result<(), FieldError> {
    let secret = &spec.auth.secret;
    if secret.env.is_some() == secret.file.is_some() {
        return Err(FieldError::new(
            "spec.auth.secret",
            "set exactly one of env (an environment variable of Herald) and file",
        ));
    }
    if let Some(t) = &spec.type_from_header {
        if axum::http::HeaderName::try_from(t.header.as_str()).is_err() {
            return Err(FieldError::new(
                "spec.typeFromHeader.header",
                format!("{:?} is not a header name", t.header),
            ));
        }
    }
    if matches!(&spec.event_type, Some(t) if t.is_empty()) {
        return Err(FieldError::new("spec.eventType", "must not be empty"));
    }
    Ok(())
}

/// A WebhookSource: while it runs, its endpoint is in the registry.
pub struct WebhookSource {
    pub namespace: String,
    pub name: String,
    pub spec: WebhookSourceSpec,
    pub registry: Arc<WebhookRegistry>,
}

#[async_trait::async_trait]
impl Source for WebhookSource {
    fn describe(&self) -> String {
        format!("WebhookSource {}/{}", self.namespace, self.name)
    }

    async fn run(&self, sink: SinkClient, shutdown: CancellationToken) -> Result<(), SourceError> {
        let secret = read_secret(&self.spec.auth.secret)
            .map_err(|e| SourceError::Input(format!("spec.auth.secret: {e}")))?;
        let source = self.spec.event_source.clone().unwrap_or_else(|| {
            format!(
                "/apis/v1alpha1/namespaces/{}/webhooksources/{}",
                self.namespace, self.name
            )
        });
        let key = (self.namespace.clone(), self.name.clone());
        let endpoint = Arc::new(Endpoint {
            spec: self.spec.clone(),
            secret,
            source,
            sink,
        });
        if let Ok(mut endpoints) = self.registry.endpoints.write() {
            endpoints.insert(key.clone(), endpoint);
        }
        tracing::info!(source = %self.describe(), path = %format!("/webhooks/{}/{}", key.0, key.1), "webhook listening");
        shutdown.cancelled().await;
        if let Ok(mut endpoints) = self.registry.endpoints.write() {
            endpoints.remove(&key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_secrets() {
        assert_eq!(decode_hex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(decode_hex("0g"), None);
        assert_eq!(decode_hex("abc"), None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\n").unwrap();
        let from_file = SecretFrom {
            file: Some(path.display().to_string()),
            env: None,
        };
        assert_eq!(read_secret(&from_file).unwrap(), b"s3cret");
        let both = SecretFrom {
            file: Some("x".into()),
            env: Some("Y".into()),
        };
        assert!(read_secret(&both).is_err());
        let spec = WebhookSourceSpec {
            auth: herald_crds::WebhookAuth {
                secret: both,
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(validate(&spec).unwrap_err().path, "spec.auth.secret");
    }
}
