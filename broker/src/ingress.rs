//! Broker ingress: `POST /{namespace}/{broker}` turns requests into durable log records.
//!
//! The answers follow Herald's contract (README "Ingress"): 202 only after the
//! append is durable, 400 naming the bad attribute, 404, 405 with `Allow`, the OPTIONS webhook
//! handshake, 413 while the body is read, 503 with `Retry-After` when the log cannot take it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::broadcast;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;
use tracing::Instrument;

use crate::access::{AccessDenied, AccessRequest, IngressAccess};
use crate::binding::{decode_request, DecodeError};
use crate::catalog::{BrokerPolicy, TypeRefusal};
use crate::event::{AttrValue, CloudEvent, InvalidEvent};
use crate::log::{BrokerKey, EventLog, LogError};
use crate::record::Record;
use crate::type_labels::EventTypeLabels;

/// Default `--max-event-bytes`: 4 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;
/// Knative's default (and maximum) `knativebrokerttl`.
pub const DEFAULT_MAX_TTL: i64 = 255;
/// A client must send its whole body within this time.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
pub const TTL_EXTENSION: &str = "knativebrokerttl";
/// Counter of events received at ingress, by namespace, broker, event type and response code.
pub const EVENTS_RECEIVED: &str = "herald_events_received_total";
pub use crate::record::ARRIVAL_TIME_EXTENSION;
const ALLOW: &str = "POST, OPTIONS";

/// Ingress settings.
#[derive(Clone, Debug)]
pub struct IngressConfig {
    pub max_event_bytes: usize,
    pub max_ttl: i64,
    pub body_timeout: Duration,
    /// Distinct `event_type` labels per broker on ingress metrics (the rest share one).
    pub max_event_types: usize,
}

impl Default for IngressConfig {
    fn default() -> Self {
        Self {
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            max_ttl: DEFAULT_MAX_TTL,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_event_types: crate::type_labels::DEFAULT_MAX_EVENT_TYPES,
        }
    }
}

/// Everything that can go wrong between a request and the log, with its HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("invalid event: {0}")]
    InvalidEvent(#[from] DecodeError),
    #[error("no broker at /{0}")]
    UnknownBroker(BrokerKey),
    #[error("not found: brokers are addressed as /{{namespace}}/{{broker}}")]
    NotFound,
    /// `/channels/...`, `/sequences/...` or `/parallels/...` naming nothing that exists.
    #[error("nothing is served at {0}: no such channel, sequence or parallel")]
    UnknownAddress(String),
    /// Any path but `/` that is not `/{namespace}/{broker}`: 400, as Knative's ingress.
    #[error("malformed path: brokers are addressed as /{{namespace}}/{{broker}}")]
    MalformedPath,
    #[error("method {0} is not allowed; use POST")]
    MethodNotAllowed(Method),
    #[error("request body exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the request body was not received in time")]
    BodyTimeout,
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    #[error("the broker cannot accept events right now; retry later")]
    Unavailable(#[source] LogError),
    /// The access check refused the request: 401, 403 or 500 (see [`AccessDenied`]).
    #[error("{0}")]
    Denied(#[from] AccessDenied),
    /// The broker's EventTypes refuse the event (`herald.dev/schema-validation: enforce`).
    #[error("{}{refusal}", index.map(|i| format!("event {i}: ")).unwrap_or_default())]
    Refused {
        index: Option<usize>,
        refusal: TypeRefusal,
    },
}

impl IngressError {
    pub fn status(&self) -> StatusCode {
        match self {
            IngressError::InvalidEvent(_)
            | IngressError::Refused { .. }
            | IngressError::BodyRead(_)
            | IngressError::MalformedPath => StatusCode::BAD_REQUEST,
            IngressError::UnknownBroker(_)
            | IngressError::NotFound
            | IngressError::UnknownAddress(_) => StatusCode::NOT_FOUND,
            IngressError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            IngressError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            IngressError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            IngressError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            IngressError::Denied(denied) => denied.status(),
        }
    }
}

impl IntoResponse for IngressError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut body = json!({ "error": status.canonical_reason().unwrap_or("error"), "message": self.to_string() });
        if let IngressError::InvalidEvent(DecodeError { index, source }) = &self {
            body["attribute"] = json!(source.attribute);
            body["reason"] = json!(source.reason);
            if let Some(index) = index {
                body["index"] = json!(index);
            }
        }
        if let IngressError::Refused { index, refusal } = &self {
            if let Some(index) = index {
                body["index"] = json!(index);
            }
            match refusal {
                TypeRefusal::Unknown { event_type } => {
                    body["attribute"] = json!("type");
                    body["reason"] = json!(format!("event type {event_type:?} is not declared"));
                }
                TypeRefusal::Schema { violation, .. } => {
                    body["attribute"] = json!("data");
                    body["pointer"] = json!(violation.pointer);
                    body["rule"] = json!(violation.rule);
                }
            }
        }
        if let IngressError::Unavailable(error) = &self {
            tracing::warn!(%error, "ingress answered 503");
        }
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert("allow", HeaderValue::from_static(ALLOW));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert("retry-after", HeaderValue::from_static("1"));
        }
        if let IngressError::Denied(AccessDenied::Unauthenticated { error, description }) = &self {
            headers.insert("www-authenticate", bearer_challenge(error, description));
        }
        response
    }
}

/// The brokers that exist, each with its ingress policy; shared with the runtime that
/// creates and removes them.
#[derive(Default, Debug)]
pub struct BrokerRegistry {
    brokers: RwLock<HashMap<BrokerKey, Arc<BrokerPolicy>>>,
    /// Addresses of channels, sequences and parallels (`/channels/{ns}/{name}`, ...) and the
    /// channel stream each appends to.
    addresses: RwLock<HashMap<String, BrokerKey>>,
}

impl BrokerRegistry {
    /// Replaces every channel, sequence and parallel address: path → channel stream.
    pub fn set_addresses(&self, addresses: HashMap<String, BrokerKey>) {
        if let Ok(mut current) = self.addresses.write() {
            *current = addresses;
        }
    }

    /// The channel stream behind an address path (`/channels/{ns}/{name}`, ...).
    pub fn address(&self, path: &str) -> Option<BrokerKey> {
        self.addresses.read().ok()?.get(path).cloned()
    }

    /// Adds a broker with the default policy (nothing checked); one already there keeps its own.
    pub fn insert(&self, key: BrokerKey) {
        if let Ok(mut brokers) = self.brokers.write() {
            brokers.entry(key).or_default();
        }
    }

    /// Adds a broker, or replaces its policy.
    pub fn insert_with(&self, key: BrokerKey, policy: Arc<BrokerPolicy>) {
        if let Ok(mut brokers) = self.brokers.write() {
            brokers.insert(key, policy);
        }
    }

    pub fn remove(&self, key: &BrokerKey) {
        if let Ok(mut brokers) = self.brokers.write() {
            brokers.remove(key);
        }
    }

    /// Keeps only the brokers for which `keep` holds.
    pub fn retain(&self, keep: impl Fn(&BrokerKey) -> bool) {
        if let Ok(mut brokers) = self.brokers.write() {
            brokers.retain(|key, _| keep(key));
        }
    }

    pub fn contains(&self, key: &BrokerKey) -> bool {
        self.brokers
            .read()
            .map(|b| b.contains_key(key))
            .unwrap_or(false)
    }

    /// The broker's policy, or `None` when there is no such broker.
    pub fn policy(&self, key: &BrokerKey) -> Option<Arc<BrokerPolicy>> {
        self.brokers.read().ok()?.get(key).cloned()
    }

    /// Every broker with its policy.
    pub fn policies(&self) -> Vec<(BrokerKey, Arc<BrokerPolicy>)> {
        self.brokers
            .read()
            .map(|b| b.iter().map(|(k, p)| (k.clone(), p.clone())).collect())
            .unwrap_or_default()
    }
}

/// The ingress: validates events, stamps Knative's extensions and appends them to the log.
pub struct Ingress {
    log: Arc<dyn EventLog>,
    brokers: Arc<BrokerRegistry>,
    config: IngressConfig,
    /// Accepted events for live tails; costs nothing while nobody listens.
    tap: broadcast::Sender<Arc<TappedEvent>>,
    type_labels: EventTypeLabels,
    /// Who may send (authentication, then authorization); open by default.
    access: IngressAccess,
}

/// An event this process accepted (after its append was durable), as live tails see it.
#[derive(Debug)]
pub struct TappedEvent {
    pub broker: BrokerKey,
    pub event: CloudEvent,
}

/// Events a slow tail may fall behind by before it skips ahead.
pub const TAP_CAPACITY: usize = 1024;

impl Ingress {
    pub fn new(
        log: Arc<dyn EventLog>,
        brokers: Arc<BrokerRegistry>,
        config: IngressConfig,
    ) -> Self {
        Self {
            log,
            brokers,
            type_labels: EventTypeLabels::new(config.max_event_types),
            config,
            tap: broadcast::channel(TAP_CAPACITY).0,
            access: IngressAccess::default(),
        }
    }

    /// The access check every HTTP request passes before its events are appended.
    pub fn with_access(mut self, access: IngressAccess) -> Self {
        self.access = access;
        self
    }

    pub fn brokers(&self) -> &Arc<BrokerRegistry> {
        &self.brokers
    }

    /// Every event accepted from now on, by any broker; a receiver that falls more than
    /// [`TAP_CAPACITY`] events behind is told how many it missed.
    pub fn tap(&self) -> broadcast::Receiver<Arc<TappedEvent>> {
        self.tap.subscribe()
    }

    /// Publishes already-decoded events to a broker: TTL, arrival time, durable append.
    /// Replies and sources use this path as well as HTTP producers.
    pub async fn publish(
        &self,
        broker: &BrokerKey,
        events: Vec<CloudEvent>,
        mut headers: Vec<(String, String)>,
    ) -> Result<(), IngressError> {
        let Some(policy) = self.brokers.policy(broker) else {
            return Err(IngressError::UnknownBroker(broker.clone()));
        };
        // When spans are exported, deliveries become children of this (ingress or reply) span.
        if let Some(own) = crate::trace::current() {
            headers.retain(|(name, _)| name != "traceparent");
            headers.push(("traceparent".into(), own.to_string()));
        }
        let arrival = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let batch = events.len() > 1;
        let mut events = events;
        for (index, event) in events.iter_mut().enumerate() {
            self.apply_ttl(event).map_err(|source| DecodeError {
                index: batch.then_some(index),
                source,
            })?;
            if policy.checks_events() {
                policy
                    .check(broker, event)
                    .map_err(|refusal| IngressError::Refused {
                        index: batch.then_some(index),
                        refusal,
                    })?;
            }
            event.set(ARRIVAL_TIME_EXTENSION, arrival.as_str());
        }
        // Copies of what the window already holds are answered 202 and not appended.
        let admission = match &policy.duplicates {
            Some(window) => Some(window.admit(&events).await),
            None => None,
        };
        let mut records = Vec::with_capacity(events.len());
        for (index, event) in events.into_iter().enumerate() {
            if admission.as_ref().is_some_and(|a| !a.fresh[index]) {
                continue;
            }
            records.push(Record {
                event,
                headers: headers.clone(),
            });
        }
        if records.is_empty() {
            return Ok(());
        }
        let span = match crate::trace::spans_wanted() {
            true => tracing::info_span!("append", %broker, events = records.len()),
            false => tracing::Span::none(),
        };
        let tapped = (self.tap.receiver_count() > 0)
            .then(|| records.iter().map(|r| r.event.clone()).collect::<Vec<_>>());
        let noted: Vec<_> = match &policy.discovered {
            Some(discovered) => records.iter().map(|r| discovered.note(&r.event)).collect(),
            None => Vec::new(),
        };
        self.log
            .append(broker, records)
            .instrument(span)
            .await
            .map_err(|e| match e {
                LogError::UnknownBroker(key) => IngressError::UnknownBroker(key),
                other => IngressError::Unavailable(other),
            })?;
        if let Some(admission) = admission {
            admission.confirm();
        }
        if let Some(discovered) = &policy.discovered {
            let now = std::time::SystemTime::now();
            for noted in noted {
                discovered.confirm(noted, now);
            }
        }
        for event in tapped.into_iter().flatten() {
            let _ = self.tap.send(Arc::new(TappedEvent {
                broker: broker.clone(),
                event,
            }));
        }
        Ok(())
    }

    /// Knative's loop protection: absent or unparsable → the maximum; present → one less;
    /// reaching zero rejects the event.
    fn apply_ttl(&self, event: &mut CloudEvent) -> Result<(), InvalidEvent> {
        let ttl = match event.attribute(TTL_EXTENSION) {
            None => self.config.max_ttl,
            Some(value) => match value.as_text().trim().parse::<i64>() {
                Ok(ttl) => ttl.saturating_sub(1).max(0),
                Err(_) => self.config.max_ttl,
            },
        };
        if ttl <= 0 {
            return Err(InvalidEvent::new(
                TTL_EXTENSION,
                "the event's time to live is exhausted (a reply loop?); it was not accepted",
            ));
        }
        event.set(TTL_EXTENSION, AttrValue::Integer(ttl));
        Ok(())
    }

    async fn read_body(&self, headers: &HeaderMap, body: Body) -> Result<Bytes, IngressError> {
        let limit = self.config.max_event_bytes;
        let declared = headers
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|len| len > limit) {
            return Err(IngressError::TooLarge { limit });
        }
        let collect = Limited::new(body, limit).collect();
        match tokio::time::timeout(self.config.body_timeout, collect).await {
            Err(_) => Err(IngressError::BodyTimeout),
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
                Err(IngressError::TooLarge { limit })
            }
            Ok(Err(error)) => Err(IngressError::BodyRead(error.to_string())),
        }
    }

    async fn handle(
        &self,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Body,
    ) -> Result<Response, IngressError> {
        if method == Method::OPTIONS {
            let mut response = StatusCode::OK.into_response();
            let h = response.headers_mut();
            h.insert("allow", HeaderValue::from_static(ALLOW));
            h.insert("webhook-allowed-origin", HeaderValue::from_static("*"));
            h.insert("webhook-allowed-rate", HeaderValue::from_static("*"));
            return Ok(response);
        }
        if method != Method::POST {
            return Err(IngressError::MethodNotAllowed(method));
        }
        if uri.path() == "/" {
            return Err(IngressError::NotFound);
        }
        let broker = match address_path(uri.path()) {
            Some(path) => self
                .brokers
                .address(path)
                .ok_or_else(|| IngressError::UnknownAddress(path.to_owned()))?,
            None => broker_from_path(uri.path())
                .filter(|key| !key.is_channel())
                .ok_or(IngressError::MalformedPath)?,
        };
        if !self.brokers.contains(&broker) {
            // Unknown names are not used as labels: they would be unbounded.
            metrics::counter!(EVENTS_RECEIVED, "namespace" => "", "broker" => "", "event_type" => "", "response_code" => "404")
                .increment(1);
            return Err(IngressError::UnknownBroker(broker));
        }
        let span = match crate::trace::spans_wanted() {
            true => tracing::info_span!("ingress", %broker),
            false => tracing::Span::none(),
        };
        crate::trace::continue_trace(
            &span,
            headers
                .get("traceparent")
                .and_then(|value| value.to_str().ok()),
        );
        let result = self.ingest(&broker, &headers, body).instrument(span).await;
        let labels = |event_type: String, code: u16| {
            [
                ("namespace", broker.namespace.clone()),
                ("broker", broker.name.clone()),
                ("event_type", event_type),
                ("response_code", code.to_string()),
            ]
        };
        match result {
            Ok(types) => {
                for event_type in types {
                    self.type_labels
                        .counter(&broker, &event_type, |label| {
                            metrics::counter!(EVENTS_RECEIVED, &labels(label.to_owned(), 202))
                        })
                        .increment(1);
                }
                Ok(StatusCode::ACCEPTED.into_response())
            }
            Err(error) => {
                metrics::counter!(
                    EVENTS_RECEIVED,
                    &labels(String::new(), error.status().as_u16())
                )
                .increment(1);
                Err(error)
            }
        }
    }

    /// Reads, decodes and publishes a request's events; returns their types.
    async fn ingest(
        &self,
        broker: &BrokerKey,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Vec<String>, IngressError> {
        // Authentication first: an unknown sender's body is not read.
        let caller = self.access.authenticate(broker, headers).await?;
        let body = self.read_body(headers, body).await?;
        let events = decode_request(headers, body)?;
        self.access
            .authorize(&AccessRequest {
                broker,
                headers,
                caller: caller.as_ref(),
                events: &events,
            })
            .await?;
        let types = events.iter().map(|e| e.event_type().into_owned()).collect();
        self.publish(broker, events, pass_through_headers(headers))
            .await?;
        tracing::debug!(%broker, "accepted");
        Ok(types)
    }

    /// The axum router for the ingress listener; other routes (webhooks) can be merged in.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Body| {
                let ingress = self.clone();
                async move {
                    ingress
                        .handle(method, uri, headers, body)
                        .await
                        .unwrap_or_else(IntoResponse::into_response)
                }
            },
        )
    }
}

/// RFC 6750's challenge. The description is Herald's own text; quotes and backslashes are
/// dropped rather than escaped, and a value that still is no header falls back to the code.
fn bearer_challenge(error: &str, description: &str) -> HeaderValue {
    let description: String = description
        .chars()
        .filter(|c| *c != '"' && *c != '\\' && (' '..='~').contains(c))
        .collect();
    HeaderValue::from_str(&format!(
        "Bearer error=\"{error}\", error_description=\"{description}\""
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

/// `/{ns}/{name}` with an optional trailing slash: exactly two segments, as Knative's
/// ingress splits the path (an empty one names no broker, so it answers 404 there).
fn broker_from_path(path: &str) -> Option<BrokerKey> {
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    let mut parts = trimmed.strip_prefix('/')?.split('/');
    let (namespace, name) = (parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some(BrokerKey::new(namespace, name))
}

/// The path segments that address channels, sequences and parallels:
/// `/{segment}/{namespace}/{name}`, three segments where a broker's path has two.
pub const ADDRESS_SEGMENTS: [&str; 3] = ["channels", "sequences", "parallels"];

/// `/channels/{ns}/{name}` (and the sequence and parallel forms) without a trailing slash,
/// or `None` for any other path.
fn address_path(path: &str) -> Option<&str> {
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    let mut parts = trimmed.strip_prefix('/')?.split('/');
    let (segment, namespace, name) = (parts.next()?, parts.next()?, parts.next()?);
    let valid = ADDRESS_SEGMENTS.contains(&segment)
        && !namespace.is_empty()
        && !name.is_empty()
        && parts.next().is_none();
    valid.then_some(trimmed)
}

/// Headers forwarded along with the event, as Knative's broker does.
pub fn pass_through_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            matches!(name, "x-request-id" | "traceparent" | "tracestate")
                || name.starts_with("knative-")
                || name.starts_with("x-b3-")
        })
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{LogConsumer, ParkedRecord, RecordId};
    use tower::ServiceExt;

    /// A log that refuses every append the way a full queue or a failing disk does; the real
    /// backends cannot be made to fail on cue.
    struct RefusingLog(fn() -> LogError);

    #[async_trait::async_trait]
    impl EventLog for RefusingLog {
        async fn ensure_broker(
            &self,
            _: &BrokerKey,
            _: &crate::log::BrokerSettings,
        ) -> Result<(), LogError> {
            Ok(())
        }
        async fn append(&self, _: &BrokerKey, _: Vec<Record>) -> Result<(), LogError> {
            Err((self.0)())
        }
        async fn consumer(
            &self,
            _: &BrokerKey,
            _: &str,
            _: crate::StartFrom,
        ) -> Result<Box<dyn LogConsumer>, LogError> {
            Err((self.0)())
        }
        async fn park(&self, _: &BrokerKey, _: &str, _: ParkedRecord) -> Result<(), LogError> {
            Err((self.0)())
        }
        async fn parked(&self, _: &BrokerKey, _: &str) -> Result<Vec<ParkedRecord>, LogError> {
            Err((self.0)())
        }
        async fn unpark(&self, _: &BrokerKey, _: &str, _: &[RecordId]) -> Result<usize, LogError> {
            Err((self.0)())
        }
        async fn delete_consumer(&self, _: &BrokerKey, _: &str) -> Result<(), LogError> {
            Err((self.0)())
        }
        async fn delete_broker(&self, _: &BrokerKey) -> Result<(), LogError> {
            Err((self.0)())
        }
        async fn close(&self) -> Result<(), LogError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn log_failures_answer_503_with_retry_after() {
        let failures: [fn() -> LogError; 2] =
            [|| LogError::Overloaded, || LogError::storage("disk full")];
        for failure in failures {
            let registry = Arc::new(BrokerRegistry::default());
            registry.insert(BrokerKey::new("ns", "b"));
            let log = Arc::new(RefusingLog(failure));
            let ingress = Arc::new(Ingress::new(log, registry, IngressConfig::default()));
            let request = axum::http::Request::post("/ns/b")
                .header("ce-specversion", "1.0")
                .header("ce-id", "1")
                .header("ce-source", "/s")
                .header("ce-type", "t")
                .body(Body::empty())
                .unwrap();
            let response = ingress.router().oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()["retry-after"], "1");
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let message = body["message"].as_str().unwrap();
            assert!(
                !message.contains("disk full"),
                "internal details stay in logs: {body}"
            );
        }
    }

    #[test]
    fn broker_paths() {
        assert_eq!(broker_from_path("/ns/b"), Some(BrokerKey::new("ns", "b")));
        assert_eq!(broker_from_path("/ns/b/"), Some(BrokerKey::new("ns", "b")));
        for bad in ["/", "/ns", "/ns/", "/ns/b/c", "ns/b"] {
            assert_eq!(broker_from_path(bad), None, "{bad}");
        }
        // Two segments, one empty: no broker has that name (404), as in Knative.
        assert_eq!(broker_from_path("//b"), Some(BrokerKey::new("", "b")));
    }

    #[test]
    fn address_paths_have_three_segments() {
        assert_eq!(address_path("/channels/ns/c"), Some("/channels/ns/c"));
        assert_eq!(address_path("/sequences/ns/s/"), Some("/sequences/ns/s"));
        assert_eq!(address_path("/parallels/ns/p"), Some("/parallels/ns/p"));
        for other in [
            "/ns/b",
            "/channels/ns",
            "/channels//c",
            "/channels/ns/c/d",
            "/brokers/ns/b",
        ] {
            assert_eq!(address_path(other), None, "{other}");
        }
    }

    /// A channel's stream is reachable at its address only: the broker path of its internal
    /// name answers 400, and an address nobody registered 404.
    #[tokio::test]
    async fn channel_streams_are_reached_only_through_their_address() {
        let registry = Arc::new(BrokerRegistry::default());
        let stream = BrokerKey::channel("ns", "c");
        registry.insert(stream.clone());
        registry.set_addresses(HashMap::from([("/channels/ns/c".to_owned(), stream)]));
        let log = Arc::new(RefusingLog(|| LogError::Overloaded));
        let ingress = Arc::new(Ingress::new(log, registry, IngressConfig::default()));
        for (path, status) in [
            // Found: the refusing log answers 503.
            ("/channels/ns/c", StatusCode::SERVICE_UNAVAILABLE),
            ("/channels/ns/other", StatusCode::NOT_FOUND),
            ("/sequences/ns/c", StatusCode::NOT_FOUND),
            ("/ns/channel:c", StatusCode::BAD_REQUEST),
        ] {
            let request = axum::http::Request::post(path)
                .header("ce-specversion", "1.0")
                .header("ce-id", "1")
                .header("ce-source", "/s")
                .header("ce-type", "t")
                .body(Body::empty())
                .unwrap();
            let response = ingress.clone().router().oneshot(request).await.unwrap();
            assert_eq!(response.status(), status, "{path}");
        }
    }

    /// The access hook: the authenticator's 401 carries RFC 6750's challenge and the body is
    /// not read; the authorizer sees the caller and the decoded events and may answer 403.
    #[tokio::test]
    async fn access_hook_answers_401_and_403() {
        use crate::access::{AccessRequest, Authenticator, Authorizer, Caller};

        struct TokenIsSubject;
        #[async_trait::async_trait]
        impl Authenticator for TokenIsSubject {
            async fn authenticate(
                &self,
                _: &BrokerKey,
                headers: &HeaderMap,
            ) -> Result<Option<Caller>, AccessDenied> {
                let token = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .ok_or_else(AccessDenied::missing_token)?;
                Ok(Some(Caller {
                    subject: token.to_owned(),
                    issuer: "test".into(),
                }))
            }
        }
        struct OnlyAlice;
        #[async_trait::async_trait]
        impl Authorizer for OnlyAlice {
            async fn authorize(&self, request: &AccessRequest<'_>) -> Result<(), AccessDenied> {
                assert_eq!(request.events.len(), 1);
                match request.caller.map(|c| c.subject.as_str()) {
                    Some("alice") => Ok(()),
                    _ => Err(AccessDenied::Forbidden {
                        reason: "not alice".into(),
                    }),
                }
            }
        }
        let registry = Arc::new(BrokerRegistry::default());
        registry.insert(BrokerKey::new("ns", "b"));
        let log = Arc::new(RefusingLog(|| LogError::Overloaded));
        let access = IngressAccess::open()
            .with_authenticator(Arc::new(TokenIsSubject))
            .with_authorizer(Arc::new(OnlyAlice));
        let ingress = Arc::new(
            Ingress::new(log, registry, IngressConfig::default()).with_access(access),
        );
        for (token, status) in [
            (None, StatusCode::UNAUTHORIZED),
            (Some("bob"), StatusCode::FORBIDDEN),
            // Let in: the refusing log answers 503.
            (Some("alice"), StatusCode::SERVICE_UNAVAILABLE),
        ] {
            let mut request = axum::http::Request::post("/ns/b")
                .header("ce-specversion", "1.0")
                .header("ce-id", "1")
                .header("ce-source", "/s")
                .header("ce-type", "t");
            if let Some(token) = token {
                request = request.header("authorization", format!("Bearer {token}"));
            }
            let response = ingress
                .clone()
                .router()
                .oneshot(request.body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.status(), status, "{token:?}");
            if status == StatusCode::UNAUTHORIZED {
                let challenge = response.headers()["www-authenticate"].to_str().unwrap();
                assert!(
                    challenge.starts_with("Bearer error=\"invalid_request\", error_description="),
                    "{challenge}"
                );
            }
        }
    }
}
