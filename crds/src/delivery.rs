//! Knative's `DeliverySpec`: retries, backoff, timeouts and the dead-letter sink.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Destination;

/// How events are delivered to a subscriber (Knative duck v1 `DeliverySpec`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeliverySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_sink: Option<Destination>,
    /// Retries after the first attempt; total attempts are `retry + 1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub retry: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_policy: Option<BackoffPolicy>,
    /// ISO-8601 duration, e.g. `PT0.2S`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^P([0-9]+([.,][0-9]+)?[YMWD])*(T([0-9]+([.,][0-9]+)?[HMS])+)?$"
    ))]
    pub backoff_delay: Option<String>,
    /// Per-attempt timeout, ISO-8601.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^P([0-9]+([.,][0-9]+)?[YMWD])*(T([0-9]+([.,][0-9]+)?[HMS])+)?$"
    ))]
    pub timeout: Option<String>,
    /// Upper bound for a subscriber's `Retry-After`; `PT0S` ignores the header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^P([0-9]+([.,][0-9]+)?[YMWD])*(T([0-9]+([.,][0-9]+)?[HMS])+)?$"
    ))]
    pub retry_after_max: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<DeliveryFormat>,
}

impl DeliverySpec {
    /// Knative's default broker delivery (`config-br-defaults`): 10 retries, exponential from 200 ms.
    pub fn broker_default() -> Self {
        Self {
            retry: Some(10),
            backoff_policy: Some(BackoffPolicy::Exponential),
            backoff_delay: Some("PT0.2S".to_owned()),
            ..Self::default()
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackoffPolicy {
    Linear,
    Exponential,
}

/// The content mode used toward the subscriber.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryFormat {
    /// Structured mode (`application/cloudevents+json`).
    Json,
    /// Binary mode (`ce-*` headers), the default.
    Binary,
}
