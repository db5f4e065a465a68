//! Sending a source's events to its sink, the way Knative's adapters do: `ceOverrides`
//! extensions applied, `id` and `time` added when missing, binary mode, and retries (5,
//! exponential from 50 ms) on 404, 413, 425, 429, 502, 503, 504 and network errors. With
//! sender identity on, each request carries the source's token for the sink's audience.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use herald_broker::binding::encode_binary;
use herald_broker::CloudEvent;

/// Knative's source defaults: 5 retries, exponential backoff from 50 ms.
pub const DEFAULT_RETRIES: u32 = 5;
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("the sink answered {status} after {attempts} attempt(s)")]
    Refused { status: u16, attempts: u32 },
    #[error("the sink could not be reached after {attempts} attempt(s): {message}")]
    Unreachable { message: String, attempts: u32 },
    /// The source's token for the sink could not be had; nothing was sent.
    #[error("no token for the sink: {0}")]
    NoToken(String),
}

/// Where a source's bearer token for its sink comes from (Knative's `authentication-oidc`):
/// the `herald` crate's token cache, for the source's identity and the sink's audience.
#[async_trait::async_trait]
pub trait SinkToken: Send + Sync + 'static {
    /// A token valid for a while yet; implementations cache.
    async fn token(&self) -> Result<Arc<str>, String>;
}

/// Where a source sends its events.
#[derive(Clone)]
pub struct SinkClient {
    url: String,
    overrides: BTreeMap<String, String>,
    client: reqwest::Client,
    retries: u32,
    backoff: Duration,
    /// Sender identity: `Authorization: Bearer` on every request.
    token: Option<Arc<dyn SinkToken>>,
}

impl SinkClient {
    pub fn new(url: String, overrides: BTreeMap<String, String>) -> Self {
        Self {
            url,
            overrides,
            client: reqwest::Client::new(),
            retries: DEFAULT_RETRIES,
            backoff: DEFAULT_BACKOFF,
            token: None,
        }
    }

    /// Sends `Authorization: Bearer <token>` from `token` with every request.
    pub fn with_token(mut self, token: Arc<dyn SinkToken>) -> Self {
        self.token = Some(token);
        self
    }

    /// The retry policy: `retries` after the first attempt, waits `backoff·2^(k-1)` before
    /// retry k (saturating: a large `retries` makes long waits, never an overflow).
    pub fn with_retries(mut self, retries: u32, backoff: Duration) -> Self {
        self.retries = retries;
        self.backoff = backoff;
        self
    }

    /// Sends with `client` (one that trusts the sink's CA, for an HTTPS sink).
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
        self.client = client;
        self
    }

    /// The token the sink gets now (`None` without sender identity, or for a sink without
    /// an audience): what a ContainerSource's program is given to send itself.
    pub async fn bearer_token(&self) -> Option<Result<Arc<str>, SinkError>> {
        let token = self.token.as_ref()?;
        Some(token.token().await.map_err(SinkError::NoToken))
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `ceOverrides` extensions applied to every event.
    pub fn overrides(&self) -> &BTreeMap<String, String> {
        &self.overrides
    }

    /// Applies overrides and defaults, then sends with retries.
    pub async fn send(&self, mut event: CloudEvent) -> Result<(), SinkError> {
        for (name, value) in &self.overrides {
            event.set(name.clone(), value.as_str());
        }
        if event.attribute("id").is_none() {
            event.set("id", uuid::Uuid::new_v4().to_string());
        }
        if event.attribute("time").is_none() {
            event.set(
                "time",
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            );
        }
        let encoded = encode_binary(&event);
        let mut delays = self.retry_delays();
        let mut attempts = 0u32;
        loop {
            attempts = attempts.saturating_add(1);
            let mut request = self.client.post(&self.url).timeout(Duration::from_secs(30));
            if let Some(token) = &self.token {
                // Asked per attempt: a retry after a long backoff gets a fresh one.
                let token = token.token().await.map_err(SinkError::NoToken)?;
                request = request.bearer_auth(token);
            }
            for (name, value) in &encoded.headers {
                request = request.header(name, value);
            }
            let result = request.body(encoded.body.clone()).send().await;
            let (retryable, error) = match result {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retryable = matches!(status, 404 | 413 | 425 | 429 | 502 | 503 | 504);
                    (retryable, SinkError::Refused { status, attempts })
                }
                Err(e) => (
                    true,
                    SinkError::Unreachable {
                        message: e.to_string(),
                        attempts,
                    },
                ),
            };
            match delays.next() {
                Some(delay) if retryable => tokio::time::sleep(delay).await,
                _ => return Err(error),
            }
        }
    }

    /// The waits before retries 1..=`retries`: `backoff·2^(k-1)`, saturating at
    /// `Duration::MAX` (which tokio's timer takes as "far in the future").
    fn retry_delays(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::new()
            .with_min_delay(self.backoff)
            .with_factor(2.0)
            .without_max_delay()
            .with_max_times(usize::try_from(self.retries).unwrap_or(usize::MAX))
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that never answers (nothing accepts on its listener): every attempt times out,
    /// a network error, which is retried.
    fn silent_sink() -> (std::net::TcpListener, String) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        (listener, format!("http://127.0.0.1:{port}/"))
    }

    fn event() -> CloudEvent {
        let mut event = CloudEvent::new();
        event.set("specversion", "1.0");
        event.set("id", "1");
        event.set("source", "test");
        event.set("type", "test");
        event
    }

    #[test]
    fn waits_double_from_the_backoff_delay() {
        let sink = SinkClient::new("http://127.0.0.1:1/".into(), BTreeMap::new())
            .with_retries(4, Duration::from_millis(50));
        let millis: Vec<u128> = sink.retry_delays().map(|d| d.as_millis()).collect();
        assert_eq!(millis, [50, 100, 200, 400]);
    }

    #[test]
    fn the_wait_before_retry_33_is_backoff_times_2_to_the_32() {
        let sink = SinkClient::new("http://127.0.0.1:1/".into(), BTreeMap::new())
            .with_retries(100, Duration::from_millis(50));
        let wait = sink.retry_delays().nth(32).unwrap();
        // backon computes in f32: exact to a millionth.
        let exact = 0.05 * 2f64.powi(32);
        assert!((wait.as_secs_f64() / exact - 1.0).abs() < 1e-6, "{wait:?}");
        assert_eq!(sink.retry_delays().count(), 100);
        assert_eq!(sink.retry_delays().last(), Some(Duration::MAX));
    }

    /// `--source-retry` of 32 or more: the wait before retry 33 is `backoff·2^32`, which
    /// overflowed a u32 (a panic in debug builds, no wait at all in release builds).
    #[tokio::test(start_paused = true)]
    async fn many_retries_wait_longer_instead_of_overflowing() {
        let (_listener, url) = silent_sink();
        let sink =
            SinkClient::new(url, BTreeMap::new()).with_retries(40, Duration::from_millis(50));
        let started = tokio::time::Instant::now();
        let error = sink.send(event()).await.unwrap_err();
        assert!(
            matches!(error, SinkError::Unreachable { attempts: 41, .. }),
            "{error}"
        );
        // The waits grew: the first 31 alone are 50 ms·(2^31 − 1) on tokio's paused clock
        // (whose timer caps each later one at about two years).
        assert!(started.elapsed() >= Duration::from_millis(50 * ((1 << 31) - 1)));
    }
}
