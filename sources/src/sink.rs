//! Sending a source's events to its sink, the way Knative's adapters do: `ceOverrides`
//! extensions applied, `id` and `time` added when missing, binary mode, and retries (5,
//! exponential from 50 ms) on 404, 413, 425, 429, 502, 503, 504 and network errors.

use std::collections::BTreeMap;
use std::time::Duration;

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
}

/// Where a source sends its events.
#[derive(Clone)]
pub struct SinkClient {
    url: String,
    overrides: BTreeMap<String, String>,
    client: reqwest::Client,
    retries: u32,
    backoff: Duration,
}

impl SinkClient {
    pub fn new(url: String, overrides: BTreeMap<String, String>) -> Self {
        Self {
            url,
            overrides,
            client: reqwest::Client::new(),
            retries: DEFAULT_RETRIES,
            backoff: DEFAULT_BACKOFF,
        }
    }

    /// The retry policy: `retries` after the first attempt, waits `backoff·2^(k-1)`.
    pub fn with_retries(mut self, retries: u32, backoff: Duration) -> Self {
        self.retries = retries;
        self.backoff = backoff;
        self
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
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut request = self.client.post(&self.url).timeout(Duration::from_secs(30));
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
            if !retryable || attempts > self.retries {
                return Err(error);
            }
            tokio::time::sleep(self.backoff * 2u32.pow(attempts - 1)).await;
        }
    }
}
