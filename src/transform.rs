//! EventTransform, served in process at `/eventtransforms/{namespace}/{name}` on the ingress
//! listener: each event, in structured JSON form, goes through a JSONata expression
//! (`jsonata-rs`); the result is the answer, or is posted to the sink (see README "Channels
//! and flows").

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bumpalo::Bump;
use bytes::Bytes;
use herald_crds::OwnAddressable;
use jsonata_rs::JsonAta;

use crate::policy::in_process::{refusal, InProcessAccess};

/// Deepest evaluation (JSONata frames) an expression may reach.
pub const MAX_DEPTH: usize = 200;
/// Longest one evaluation may run.
pub const TIME_LIMIT: Duration = Duration::from_millis(500);
/// Longest a sink may take to answer (Knative sets none).
pub const SINK_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest sink response Herald reads.
pub const MAX_SINK_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

pub use crate::config::transform_plan::{compile, ReplyPlan, TransformPlan};

/// Runs `expression` on `input`, bounded by [`MAX_DEPTH`] and [`TIME_LIMIT`]; the result
/// must be an object, as Knative's transform requires.
pub fn evaluate(expression: &str, input: &serde_json::Value) -> Result<serde_json::Value, String> {
    let arena = Bump::new();
    let jsonata = JsonAta::new(expression, &arena).map_err(|e| e.to_string())?;
    let input = input.to_string();
    let result = jsonata
        .evaluate_timeboxed(
            Some(&input),
            Some(MAX_DEPTH),
            Some(TIME_LIMIT.as_millis() as usize),
        )
        .map_err(|e| format!("JSONata evaluation failed: {e}"))?;
    if result.is_undefined() {
        return Err("the transformation's result is undefined".to_owned());
    }
    if !result.is_object() {
        return Err("the transformation's result is not an object".to_owned());
    }
    serde_json::from_str(&result.serialize(false))
        .map_err(|e| format!("the transformation's result is not JSON: {e}"))
}

/// The Content-Type of a result: its `contenttype` field, else a CloudEvent if it has
/// `specversion`, else JSON (Knative's rule).
pub fn content_type(result: &serde_json::Value) -> String {
    if let Some(ct) = result.get("contenttype").and_then(|v| v.as_str()) {
        return ct.to_owned();
    }
    match result.get("specversion") {
        Some(_) => "application/cloudevents+json".to_owned(),
        None => "application/json".to_owned(),
    }
}

/// The transforms to serve, as the runtime last set them, with their sinks' URLs.
#[derive(Default)]
pub struct Transforms {
    running: RwLock<HashMap<(String, String), Arc<RunningTransform>>>,
}

/// A plan with its sink resolved to a URL.
pub struct RunningTransform {
    pub plan: Arc<TransformPlan>,
    pub sink_url: Option<String>,
    /// With sender identity on and a sink with an audience: the token its requests carry.
    pub sink_auth: Option<SinkAuth>,
}

/// Who an EventTransform's requests to its sink come from, and for which audience.
pub struct SinkAuth {
    pub tokens: Arc<dyn herald_triggers::auth::TokenSource>,
    pub sender: herald_triggers::auth::SenderIdentity,
    pub audience: String,
}

/// The identity an EventTransform sends to its sink as: Knative binds its sink through a
/// SinkBinding `{name}-jsonata`, whose ServiceAccount is
/// `{name}-jsonata-oidc-sources.knative.dev-sinkbinding`.
pub fn sink_service_account(name: &str) -> String {
    crate::identity::naming::service_account_name(
        "sources.knative.dev",
        "SinkBinding",
        &format!("{name}-jsonata"),
    )
}

impl Transforms {
    pub fn set(&self, running: HashMap<(String, String), Arc<RunningTransform>>) {
        if let Ok(mut current) = self.running.write() {
            *current = running;
        }
    }

    fn get(&self, namespace: &str, name: &str) -> Option<Arc<RunningTransform>> {
        self.running
            .read()
            .ok()?
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }
}

/// What the handler shares.
#[derive(Clone)]
struct Served {
    transforms: Arc<Transforms>,
    client: reqwest::Client,
    max_event_bytes: usize,
    access: InProcessAccess,
}

/// The routes of every EventTransform, to merge into the ingress router; `access` guards
/// them with sender identity on.
pub fn router(
    transforms: Arc<Transforms>,
    max_event_bytes: usize,
    access: InProcessAccess,
) -> Router {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(SINK_TIMEOUT)
        .build()
        .unwrap_or_default();
    Router::new()
        .route("/eventtransforms/{namespace}/{name}", post(handle))
        .with_state(Served {
            transforms,
            client,
            max_event_bytes,
            access,
        })
}

/// A failure: its status and the `Reason` header Knative's transform sets.
fn failure(status: StatusCode, reason: impl Into<String>) -> Response {
    let reason = reason.into();
    tracing::debug!(%reason, "event transform failed");
    let mut response = (status, reason.clone()).into_response();
    if let Ok(value) = HeaderValue::from_str(&reason.replace(['\r', '\n'], " ")) {
        response.headers_mut().insert("reason", value);
    }
    response
}

async fn handle(
    State(served): State<Served>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(transform) = served.transforms.get(&namespace, &name) else {
        return failure(
            StatusCode::NOT_FOUND,
            format!("no EventTransform {namespace}/{name}"),
        );
    };
    // Authentication first: an unknown sender's body is not read.
    let caller = match served
        .access
        .authenticate(OwnAddressable::EventTransform, &namespace, &name, &headers)
        .await
    {
        Ok(caller) => caller,
        Err(denied) => return refusal(denied),
    };
    let body = match axum::body::to_bytes(body, served.max_event_bytes).await {
        Ok(body) => body,
        Err(_) => {
            return failure(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body exceeds {} bytes", served.max_event_bytes),
            )
        }
    };
    let event = match decode_one(&headers, body) {
        Ok(event) => event,
        Err(reason) => return failure(StatusCode::BAD_REQUEST, reason),
    };
    if let Err(denied) = served.access.authorize_transform(
        &namespace,
        &name,
        caller.as_ref(),
        std::slice::from_ref(&event),
    ) {
        return refusal(denied);
    }
    let input = match event_document(&event) {
        Ok(input) => input,
        Err(reason) => return failure(StatusCode::BAD_REQUEST, reason),
    };
    let expression = transform.plan.expression.clone();
    let result = match run(expression, input).await {
        Ok(result) => result,
        Err(reason) => return failure(StatusCode::INTERNAL_SERVER_ERROR, reason),
    };
    let Some(sink) = &transform.sink_url else {
        return answer(StatusCode::OK, &result);
    };
    let mut request = served.client.post(sink);
    if let Some(auth) = &transform.sink_auth {
        match auth.tokens.token(&auth.sender, &auth.audience).await {
            Ok(token) => request = request.bearer_auth(token),
            Err(error) => return failure(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
        }
    }
    let sent = request
        .header(reqwest::header::CONTENT_TYPE, content_type(&result))
        .body(result.to_string())
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(error) => {
            return failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the sink {sink} cannot be reached: {error}"),
            )
        }
    };
    let status = StatusCode::from_u16(response.status().as_u16())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_redirection() {
        return failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the sink {sink} answered a redirect ({status})"),
        );
    }
    let mut response_headers = HeaderMap::new();
    for (name, value) in response.headers() {
        let name = name.as_str();
        if name == "content-type" || name.starts_with("ce-") {
            if let (Ok(name), Ok(value)) = (
                axum::http::HeaderName::try_from(name),
                HeaderValue::from_bytes(value.as_bytes()),
            ) {
                response_headers.insert(name, value);
            }
        }
    }
    let body = match read_limited(response).await {
        Ok(body) => body,
        Err(reason) => return failure(StatusCode::INTERNAL_SERVER_ERROR, reason),
    };
    match &transform.plan.reply {
        ReplyPlan::Discard => status.into_response(),
        ReplyPlan::PassBack => (status, response_headers, body).into_response(),
        ReplyPlan::Transform(expression) => {
            let input = sink_response_document(&response_headers, body);
            match run(expression.clone(), input).await {
                Ok(result) => answer(status, &result),
                Err(reason) => failure(StatusCode::INTERNAL_SERVER_ERROR, reason),
            }
        }
    }
}

/// Evaluates off the async threads: an evaluation may take up to [`TIME_LIMIT`].
async fn run(expression: String, input: serde_json::Value) -> Result<serde_json::Value, String> {
    tokio::task::spawn_blocking(move || evaluate(&expression, &input))
        .await
        .map_err(|e| format!("the transformation did not finish: {e}"))?
}

fn answer(status: StatusCode, result: &serde_json::Value) -> Response {
    let mut response = (status, result.to_string()).into_response();
    if let Ok(value) = HeaderValue::from_str(&content_type(result)) {
        response
            .headers_mut()
            .insert(axum::http::header::CONTENT_TYPE, value);
    }
    response
}

/// The request's one CloudEvent (a batch is refused, as Knative's transform does).
fn decode_one(headers: &HeaderMap, body: Bytes) -> Result<herald_broker::CloudEvent, String> {
    let mut events = herald_broker::binding::decode_request(headers, body)
        .map_err(|e| format!("not a CloudEvent: {e}"))?;
    if events.len() != 1 {
        return Err("batches of events are not supported by EventTransform".to_owned());
    }
    Ok(events.remove(0))
}

/// The event in structured JSON form: attributes at the top level, `data` or `data_base64`.
fn event_document(event: &herald_broker::CloudEvent) -> Result<serde_json::Value, String> {
    serde_json::from_slice(&herald_broker::json::to_json(event))
        .map_err(|e| format!("the event cannot be read as JSON: {e}"))
}

/// A request's (or a sink response's) CloudEvent in structured JSON form.
fn input_document(headers: &HeaderMap, body: Bytes) -> Result<serde_json::Value, String> {
    event_document(&decode_one(headers, body)?)
}

/// A sink's response as the reply expression sees it: a CloudEvent in structured form,
/// else its JSON, else its text.
fn sink_response_document(headers: &HeaderMap, body: Bytes) -> serde_json::Value {
    if let Ok(document) = input_document(headers, body.clone()) {
        return document;
    }
    serde_json::from_slice(&body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into_owned()))
}

async fn read_limited(mut response: reqwest::Response) -> Result<Bytes, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("the sink's response cannot be read: {e}"))?
    {
        if body.len() + chunk.len() > MAX_SINK_RESPONSE_BYTES {
            return Err(format!(
                "the sink's response exceeds {MAX_SINK_RESPONSE_BYTES} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> serde_json::Value {
        json!({
            "specversion": "1.0", "id": "e1", "type": "order.created", "source": "/shop",
            "datacontenttype": "application/json",
            "data": {"order": {"id": 7, "price": 12.5, "customer": {"first": "Ada", "last": "Lovelace"}}, "priority": "high"}
        })
    }

    /// The cases Knative's transforms documentation uses.
    #[test]
    fn knative_documented_cases() {
        // Field mapping.
        let r = evaluate(
            r#"{"orderId": data.order.id, "price": data.order.price}"#,
            &event(),
        )
        .unwrap();
        assert_eq!(r, json!({"orderId": 7, "price": 12.5}));
        // String concatenation.
        let r = evaluate(
            r#"{"name": data.order.customer.first & " " & data.order.customer.last}"#,
            &event(),
        )
        .unwrap();
        assert_eq!(r, json!({"name": "Ada Lovelace"}));
        // $merge: keep every attribute, change some.
        let r = evaluate(
            r#"$merge([$, {"type": "order.processed", "processed": "yes"}])"#,
            &event(),
        )
        .unwrap();
        assert_eq!(r["type"], "order.processed");
        assert_eq!(r["processed"], "yes");
        assert_eq!(r["id"], "e1");
        assert_eq!(r["data"]["order"]["id"], 7);
        // Conditional.
        let r = evaluate(
            r#"{"type": data.priority = "high" ? "order.urgent" : "order.normal"}"#,
            &event(),
        )
        .unwrap();
        assert_eq!(r["type"], "order.urgent");
        // A new CloudEvent.
        let r = evaluate(
            r#"{"specversion": "1.0", "id": id, "type": "order.summary", "source": "/transform/" & source, "data": {"total": data.order.price * 2}}"#,
            &event(),
        )
        .unwrap();
        assert_eq!(
            r,
            json!({"specversion": "1.0", "id": "e1", "type": "order.summary", "source": "/transform//shop", "data": {"total": 25}})
        );
        assert_eq!(content_type(&r), "application/cloudevents+json");
        // Extensions at the top level, and `data_base64` for binary data.
        let r = evaluate(
            r#"{"ext": myext, "b": data_base64}"#,
            &json!({"myext": "x", "data_base64": "AAE="}),
        )
        .unwrap();
        assert_eq!(r, json!({"ext": "x", "b": "AAE="}));
    }

    #[test]
    fn content_type_rule() {
        assert_eq!(content_type(&json!({"a": 1})), "application/json");
        assert_eq!(
            content_type(&json!({"contenttype": "text/plain", "specversion": "1.0"})),
            "text/plain"
        );
    }

    #[test]
    fn errors_and_non_objects_are_failures() {
        assert!(compile("{").is_err());
        assert!(compile(r#"{"a": data.x}"#).is_ok());
        let undefined = evaluate("nothing", &event()).unwrap_err();
        assert!(undefined.contains("undefined"), "{undefined}");
        let not_object = evaluate("id", &event()).unwrap_err();
        assert!(not_object.contains("not an object"), "{not_object}");
    }

    #[test]
    fn evaluation_is_bounded() {
        // Deeper than MAX_DEPTH frames (not a tail call, so the depth bound stops it).
        let deep = "($f := function($n) { $n = 0 ? 0 : 1 + $f($n - 1) }; {'n': $f(100000)})";
        assert!(evaluate(deep, &event()).is_err());
        // Endless: only the time limit stops it, whatever the machine's speed.
        let endless = "($f := function($n) { $f($n + 1) }; {'n': $f(0)})";
        assert!(evaluate(endless, &event()).is_err());
    }
}
