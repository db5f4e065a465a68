//! Herald's `sources.herald.dev/v1alpha1` NatsSource: NATS subjects (core or JetStream) as
//! CloudEvents into a sink.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::source::{CloudEventOverrides, SourceStatus};
use crate::Destination;

/// Consumes NATS subjects and sends each message to `sink` as a CloudEvent: messages that are
/// CloudEvents in the NATS structured format pass through, others are wrapped as
/// `dev.herald.nats.message`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "sources.herald.dev",
    version = "v1alpha1",
    kind = "NatsSource",
    namespaced,
    status = "SourceStatus",
    category = "all",
    category = "sources",
    printcolumn = r#"{"name":"Sink","type":"string","jsonPath":".status.sinkUri"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NatsSourceSpec {
    /// The NATS server, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// Subjects to subscribe to (wildcards allowed); with `jetstream`, the consumer's filter.
    pub subjects: Vec<String>,
    /// Core NATS queue group, so that several Herald processes share the messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_group: Option<String>,
    /// Consume a JetStream stream with a durable consumer instead of core NATS: messages are
    /// acknowledged only once the sink accepted them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jetstream: Option<JetStreamSourceSpec>,
    pub sink: Destination,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_overrides: Option<CloudEventOverrides>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JetStreamSourceSpec {
    /// The stream to read.
    pub stream: String,
    /// The durable consumer's name (default: `herald-{namespace}-{name}`, with a hash suffix
    /// when that is not unique or not a legal consumer name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durable: Option<String>,
}
