//! RequestReply, served in process at `/requestreplies/{namespace}/{name}` on the ingress
//! listener: a request's event gets a correlation value, goes into the broker through the
//! ingress's durable path, and the request waits for the broker's event whose reply
//! attribute verifies. Replies reach it through an internal trigger on the broker
//! ([`reply_trigger`]) that posts to `/requestreplies/{namespace}/{name}/reply`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use herald_broker::{CloudEvent, Ingress};
use herald_crds::OwnAddressable;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::oneshot;

use crate::policy::in_process::{refusal, InProcessAccess};

/// Requests waiting for their reply, over every RequestReply; one more is answered 503.
pub const MAX_PENDING: usize = 10_000;

pub use crate::config::request_reply_plan::{
    reply_trigger, trigger_plan, RequestReplyPlan, REPLY_TRIGGER_PREFIX,
};

/// One RequestReply's plan and AES-256-GCM key. The key lives in memory only: what it
/// protects (the waiting requests) does not survive a restart either.
struct Running {
    plan: RequestReplyPlan,
    key: [u8; 32],
}

type Waiting = HashMap<(String, String, String), oneshot::Sender<CloudEvent>>;

/// Every RequestReply served, and the requests waiting for replies.
pub struct RequestReplies {
    running: RwLock<HashMap<(String, String), Arc<Running>>>,
    waiting: Mutex<Waiting>,
    random: SystemRandom,
    ingress: Arc<Ingress>,
    max_event_bytes: usize,
}

impl RequestReplies {
    pub fn new(ingress: Arc<Ingress>, max_event_bytes: usize) -> Self {
        Self {
            running: RwLock::default(),
            waiting: Mutex::default(),
            random: SystemRandom::new(),
            ingress,
            max_event_bytes,
        }
    }

    /// Serves exactly `plans`; one that already ran keeps its key.
    pub fn set(&self, plans: &std::collections::BTreeMap<(String, String), RequestReplyPlan>) {
        let Ok(mut running) = self.running.write() else {
            return;
        };
        let mut next = HashMap::new();
        for (name, plan) in plans {
            let key = match running.get(name) {
                Some(old) => old.key,
                None => {
                    let mut key = [0u8; 32];
                    if self.random.fill(&mut key).is_err() {
                        tracing::error!(requestreply = ?name, "no random bytes for its key");
                        continue;
                    }
                    key
                }
            };
            let plan = plan.clone();
            next.insert(name.clone(), Arc::new(Running { plan, key }));
        }
        *running = next;
    }

    fn get(&self, namespace: &str, name: &str) -> Option<Arc<Running>> {
        self.running
            .read()
            .ok()?
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }
}

/// `{id}:{base64url(nonce ‖ AES-256-GCM(id))}:0`, Knative's correlation value (Herald
/// runs one instance: the index is always 0).
fn correlation_value(key: &[u8; 32], random: &SystemRandom, id: &str) -> Option<String> {
    let mut nonce = [0u8; NONCE_LEN];
    random.fill(&mut nonce).ok()?;
    let sealing = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).ok()?);
    let mut sealed = id.as_bytes().to_vec();
    sealing
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::empty(),
            &mut sealed,
        )
        .ok()?;
    let mut token = nonce.to_vec();
    token.extend_from_slice(&sealed);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token);
    Some(format!("{id}:{token}:0"))
}

/// The request id a correlation value was made for, if `key` made it.
fn verify(key: &[u8; 32], value: &str) -> Option<String> {
    let mut parts = value.rsplitn(3, ':');
    let (_index, token, id) = (parts.next()?, parts.next()?, parts.next()?);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    if token.len() < NONCE_LEN {
        return None;
    }
    let (nonce, sealed) = token.split_at(NONCE_LEN);
    let opening = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).ok()?);
    let mut sealed = sealed.to_vec();
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let opened = opening
        .open_in_place(nonce, Aad::empty(), &mut sealed)
        .ok()?;
    (opened == id.as_bytes()).then(|| id.to_owned())
}

/// The routes of every RequestReply, to merge into the ingress router. `access` guards
/// requests with sender identity on; replies need no token: only a correlation value made
/// with the RequestReply's key is taken.
pub fn router(replies: Arc<RequestReplies>, access: InProcessAccess) -> Router {
    Router::new()
        .route(
            "/requestreplies/{namespace}/{name}",
            post(
                move |state: State<Arc<RequestReplies>>,
                      path: Path<(String, String)>,
                      headers: HeaderMap,
                      body: Body| {
                    request(state, access.clone(), path, headers, body)
                },
            ),
        )
        .route("/requestreplies/{namespace}/{name}/reply", post(reply))
        .with_state(replies)
}

fn failure(status: StatusCode, reason: impl Into<String>) -> Response {
    (status, reason.into()).into_response()
}

async fn read_event(
    replies: &RequestReplies,
    headers: &HeaderMap,
    body: Body,
) -> Result<CloudEvent, Response> {
    let body = axum::body::to_bytes(body, replies.max_event_bytes)
        .await
        .map_err(|_| {
            failure(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body exceeds {} bytes", replies.max_event_bytes),
            )
        })?;
    let mut events = herald_broker::binding::decode_request(headers, body)
        .map_err(|e| failure(StatusCode::BAD_REQUEST, format!("not a CloudEvent: {e}")))?;
    if events.len() != 1 {
        return Err(failure(
            StatusCode::BAD_REQUEST,
            "a request is one CloudEvent, not a batch",
        ));
    }
    Ok(events.remove(0))
}

/// Takes a waiting request's place out of the table when the request ends, however it ends.
struct WaitingGuard<'a> {
    replies: &'a RequestReplies,
    key: (String, String, String),
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut waiting) = self.replies.waiting.lock() {
            waiting.remove(&self.key);
        }
    }
}

async fn request(
    State(replies): State<Arc<RequestReplies>>,
    access: InProcessAccess,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(running) = replies.get(&namespace, &name) else {
        return failure(
            StatusCode::NOT_FOUND,
            format!("no RequestReply {namespace}/{name}"),
        );
    };
    // Authentication first: an unknown sender's body is not read.
    let caller = match access
        .authenticate(OwnAddressable::RequestReply, &namespace, &name, &headers)
        .await
    {
        Ok(caller) => caller,
        Err(denied) => return refusal(denied),
    };
    let mut event = match read_event(&replies, &headers, body).await {
        Ok(event) => event,
        Err(response) => return response,
    };
    // The event enters the broker: that broker's EventPolicies decide.
    if let Err(denied) = access.authorize_into(
        &running.plan.broker,
        caller.as_ref(),
        std::slice::from_ref(&event),
    ) {
        return refusal(denied);
    }
    let id = event.id().into_owned();
    let Some(value) = correlation_value(&running.key, &replies.random, &id) else {
        return failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the correlation value cannot be made",
        );
    };
    event.set(running.plan.correlation_attribute.clone(), value);
    let key = (namespace.clone(), name.clone(), id.clone());
    let (sender, receiver) = oneshot::channel();
    {
        let Ok(mut waiting) = replies.waiting.lock() else {
            return failure(StatusCode::INTERNAL_SERVER_ERROR, "poisoned");
        };
        if waiting.contains_key(&key) {
            return failure(
                StatusCode::CONFLICT,
                format!("a request with id {id} is already waiting for its reply"),
            );
        }
        if waiting.len() >= MAX_PENDING {
            return failure(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{MAX_PENDING} requests are waiting for replies already"),
            );
        }
        waiting.insert(key.clone(), sender);
    }
    let _guard = WaitingGuard {
        replies: &replies,
        key,
    };
    let forwarded = herald_broker::ingress::pass_through_headers(&headers);
    if let Err(error) = replies
        .ingress
        .publish(&running.plan.broker, vec![event], forwarded)
        .await
    {
        return error.into_response();
    }
    match tokio::time::timeout(running.plan.timeout, receiver).await {
        Ok(Ok(reply)) => {
            let encoded = herald_broker::binding::encode_binary(&reply);
            let mut response = (StatusCode::OK, encoded.body).into_response();
            for (name, value) in encoded.headers {
                response.headers_mut().insert(name, value);
            }
            response
        }
        Ok(Err(_)) => failure(StatusCode::SERVICE_UNAVAILABLE, "Herald is stopping"),
        Err(_) => failure(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "no reply within {}",
                humantime::format_duration(running.plan.timeout)
            ),
        ),
    }
}

/// A reply candidate from the internal trigger: 202 whatever happens to it (an event that
/// does not verify, or that no request waits for, is dropped, never retried).
async fn reply(
    State(replies): State<Arc<RequestReplies>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(running) = replies.get(&namespace, &name) else {
        return StatusCode::ACCEPTED.into_response();
    };
    let Ok(event) = read_event(&replies, &headers, body).await else {
        return StatusCode::ACCEPTED.into_response();
    };
    let value = event
        .text(&running.plan.reply_attribute)
        .map(|v| v.into_owned());
    let Some(id) = value.as_deref().and_then(|v| verify(&running.key, v)) else {
        tracing::debug!(requestreply = %format!("{namespace}/{name}"), "a reply that does not verify is dropped");
        return StatusCode::ACCEPTED.into_response();
    };
    let sender = replies
        .waiting
        .lock()
        .ok()
        .and_then(|mut w| w.remove(&(namespace, name, id)));
    if let Some(sender) = sender {
        let _ = sender.send(event);
    }
    StatusCode::ACCEPTED.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_values_verify_only_with_their_key() {
        let random = SystemRandom::new();
        let key = [7u8; 32];
        let value = correlation_value(&key, &random, "a:b").unwrap();
        assert!(
            value.starts_with("a:b:") && value.ends_with(":0"),
            "{value}"
        );
        assert_eq!(verify(&key, &value).as_deref(), Some("a:b"));
        assert_eq!(verify(&[8u8; 32], &value), None);
        // Another id with the same token: refused.
        let forged = value.replacen("a:b", "c:d", 1);
        assert_eq!(verify(&key, &forged), None);
        assert_eq!(verify(&key, "x:y:0"), None);
        assert_eq!(verify(&key, "nothing"), None);
    }
}
