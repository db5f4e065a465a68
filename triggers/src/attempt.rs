//! One HTTP attempt: encode the event, send it, read a bounded answer.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use bytes::{Bytes, BytesMut};
use herald_broker::binding::{encode_binary, encode_structured};
use herald_broker::CloudEvent;
use herald_crds::DeliveryFormat;
use herald_tls::{CaCerts, Clients, TlsError, TrustBundles};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

/// Where and how one attempt is sent.
pub struct Target<'a> {
    pub url: &'a str,
    pub format: DeliveryFormat,
    /// `Prefer: reply` goes to subscribers only, not to dead-letter sinks.
    pub prefer_reply: bool,
    pub namespace: &'a str,
    /// Pass-through headers stored with the event.
    pub headers: &'a [(String, String)],
    pub timeout: Duration,
    /// The sender's token for the target's audience, when both exist.
    pub credentials: Option<crate::auth::Credentials<'a>>,
    /// The destination's `CACerts`, trusted besides the system roots and trust bundles.
    pub ca_certs: Option<&'a CaCerts>,
}

/// What came back.
#[derive(Debug)]
pub enum Answer {
    Http {
        status: u16,
        headers: HeaderMap,
        body: Bytes,
        truncated: bool,
    },
    /// No HTTP answer: connection refused, reset, timeout.
    Transport(String),
}

/// Sends events over a shared connection pool.
#[derive(Clone)]
pub struct Sender {
    transport: Transport,
    max_body_bytes: usize,
    /// Requests in flight across all triggers: many triggers times their windows must not
    /// exhaust sockets or file descriptors.
    outbound: Arc<Semaphore>,
    urls: Arc<ParsedUrls>,
}

/// How attempts reach their targets.
#[derive(Clone)]
enum Transport {
    /// One client per trust set (`CACerts`), cached.
    Http(Arc<Clients>),
    /// Unit tests: answers from a script, on paused time (see `process::tests`).
    #[cfg(test)]
    Scripted(Arc<Script>),
}

/// An attempt's answer made by a test from the target and the event.
#[cfg(test)]
pub(crate) type Script = dyn Fn(
        &Target<'_>,
        &CloudEvent,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Answer> + Send>>
    + Send
    + Sync;

/// Most parsed target URLs kept; when full the cache starts again (targets are few: one
/// subscriber and one dead-letter sink per trigger).
const MAX_PARSED_URLS: usize = 4096;

/// Targets' URLs, parsed once: reqwest parses a `&str` URL on every request, which was
/// about 8 % of the instructions of a delivery.
#[derive(Default)]
struct ParsedUrls(std::sync::Mutex<std::collections::HashMap<String, reqwest::Url>>);

impl ParsedUrls {
    /// The parsed URL, or `None` when it does not parse (the request then reports why).
    fn get(&self, url: &str) -> Option<reqwest::Url> {
        let mut urls = self.0.lock().ok()?;
        if let Some(parsed) = urls.get(url) {
            return Some(parsed.clone());
        }
        let parsed = reqwest::Url::parse(url).ok()?;
        if urls.len() >= MAX_PARSED_URLS {
            urls.clear();
        }
        urls.insert(url.to_owned(), parsed.clone());
        Some(parsed)
    }
}

/// Default bound of outbound requests in flight, all triggers together.
pub const DEFAULT_MAX_OUTBOUND: usize = 1024;

impl Sender {
    /// `max_body_bytes` bounds how much of any answer is read (replies beyond it are refused).
    /// HTTPS targets are verified against the system roots only.
    pub fn new(max_body_bytes: usize, max_outbound: usize) -> Result<Self, TlsError> {
        let trust = Arc::new(TrustBundles::load(Vec::new())?);
        Ok(Self::with_trust(max_body_bytes, max_outbound, trust))
    }

    /// [`Sender::new`], HTTPS targets verified against the system roots, `trust`'s bundles
    /// and each target's `CACerts`.
    pub fn with_trust(
        max_body_bytes: usize,
        max_outbound: usize,
        trust: Arc<TrustBundles>,
    ) -> Self {
        let clients = Clients::new(
            trust,
            Box::new(|builder| {
                builder
                    .pool_idle_timeout(Duration::from_secs(30))
                    .pool_max_idle_per_host(256)
                    .redirect(reqwest::redirect::Policy::none())
            }),
        );
        Self {
            transport: Transport::Http(Arc::new(clients)),
            max_body_bytes,
            outbound: Arc::new(Semaphore::new(max_outbound.max(1))),
            urls: Arc::default(),
        }
    }

    /// A sender whose attempts are answered by `script` (each still bounded by its timeout).
    #[cfg(test)]
    pub(crate) fn scripted(script: Arc<Script>) -> Self {
        Self {
            transport: Transport::Scripted(script),
            max_body_bytes: 1024,
            outbound: Arc::new(Semaphore::new(16)),
            urls: Arc::default(),
        }
    }

    pub async fn send(&self, target: &Target<'_>, event: &CloudEvent) -> Answer {
        // Waiting for a slot is not part of the attempt's timeout.
        let Ok(_slot) = self.outbound.acquire().await else {
            return Answer::Transport("the sender is closed".into());
        };
        #[allow(
            clippy::infallible_destructuring_match,
            reason = "the scripted transport exists in unit tests only"
        )]
        let clients = match &self.transport {
            Transport::Http(clients) => clients,
            #[cfg(test)]
            Transport::Scripted(script) => {
                return timed(target.timeout, script(target, event)).await
            }
        };
        let client = match clients.get(target.ca_certs) {
            Ok(client) => client,
            Err(error) => return Answer::Transport(error.to_string()),
        };
        let encoded = match target.format {
            DeliveryFormat::Json => encode_structured(event),
            DeliveryFormat::Binary => encode_binary(event),
        };
        let mut headers =
            HeaderMap::with_capacity(encoded.headers.len() + target.headers.len() + 2);
        for (name, value) in target.headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::try_from(name.as_str()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(n, v);
            }
        }
        for (name, value) in encoded.headers {
            headers.insert(name, value);
        }
        // Each attempt is a span of the producer's trace (header, or the CloudEvents
        // distributed-tracing extension), or of a new trace.
        let parent = producer_traceparent(target.headers, event);
        let outgoing = herald_broker::trace::outgoing(&tracing::Span::current(), parent.as_deref());
        if let Ok(value) = HeaderValue::from_str(&outgoing.to_string()) {
            headers.insert("traceparent", value);
        }
        if target.prefer_reply {
            headers.insert("prefer", HeaderValue::from_static("reply"));
        }
        if let Ok(ns) = HeaderValue::from_str(target.namespace) {
            headers.insert("kn-namespace", ns);
        }
        // A stored `Authorization` is never forwarded: only the sender's own token goes out.
        headers.remove(reqwest::header::AUTHORIZATION);
        if let Some(credentials) = &target.credentials {
            let token = credentials
                .tokens
                .token(credentials.sender, credentials.audience)
                .await;
            match token.map(|t| HeaderValue::from_str(&format!("Bearer {t}"))) {
                Ok(Ok(mut value)) => {
                    value.set_sensitive(true);
                    headers.insert(reqwest::header::AUTHORIZATION, value);
                }
                Ok(Err(_)) => {
                    return Answer::Transport("the sender's token is no header value".into())
                }
                Err(error) => return Answer::Transport(error.to_string()),
            }
        }
        let request = match self.urls.get(target.url) {
            Some(url) => client.post(url),
            None => client.post(target.url),
        };
        let request = request.headers(headers).body(encoded.body);
        let exchange = async {
            let mut response = request.send().await?;
            let status = response.status().as_u16();
            let headers = std::mem::take(response.headers_mut());
            let mut body = BytesMut::new();
            let mut truncated = false;
            while let Some(chunk) = response.chunk().await? {
                let room = self.max_body_bytes.saturating_sub(body.len());
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    truncated = true;
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, reqwest::Error>(Answer::Http {
                status,
                headers,
                body: body.freeze(),
                truncated,
            })
        };
        let answer = async {
            match exchange.await {
                Err(error) => Answer::Transport(describe(&error)),
                Ok(answer) => answer,
            }
        };
        timed(target.timeout, answer).await
    }
}

/// The answer, or a transport failure once `timeout` has passed without one.
async fn timed(timeout: Duration, answer: impl std::future::Future<Output = Answer>) -> Answer {
    match tokio::time::timeout(timeout, answer).await {
        Err(_) => Answer::Transport(format!("timed out after {timeout:?}")),
        Ok(answer) => answer,
    }
}

/// A reqwest error with its causes: the top-level message hides them ("error sending
/// request" for a refused connection or an unknown CA). Every HTTP client of Herald reports
/// its failures with this.
pub fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The `traceparent` an event arrived with: the HTTP header, else the CloudEvents
/// distributed-tracing extension.
pub(crate) fn producer_traceparent(
    headers: &[(String, String)],
    event: &CloudEvent,
) -> Option<String> {
    headers
        .iter()
        .find(|(name, _)| name == "traceparent")
        .map(|(_, value)| value.clone())
        .or_else(|| event.text("traceparent").map(|t| t.into_owned()))
}
