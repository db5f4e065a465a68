//! `sources.knative.dev/v1` KafkaSource: records of Kafka topics as CloudEvents.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::source::{CloudEventOverrides, SourceStatus};
use crate::Destination;

/// Consumes `topics` with a consumer group and sends each record to `sink`: records that are
/// CloudEvents (binary or structured) unchanged, others as `dev.knative.kafka.event`.
/// Knative's KafkaSource is `v1beta1`, so Knative users' YAML says that; Herald serves the
/// same schema as `v1` (stored) and `v1beta1`.
pub const ALSO_SERVED_VERSION: &str = "v1beta1";

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "sources.knative.dev",
    version = "v1",
    kind = "KafkaSource",
    namespaced,
    status = "SourceStatus",
    category = "all",
    category = "knative",
    category = "eventing",
    category = "sources",
    printcolumn = r#"{"name":"Topics","type":"string","jsonPath":".spec.topics"}"#,
    printcolumn = r#"{"name":"BootstrapServers","type":"string","jsonPath":".spec.bootstrapServers"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaSourceSpec {
    pub bootstrap_servers: Vec<String>,
    pub topics: Vec<String>,
    /// Default `knative-kafka-source-{namespace}-{name}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_group: Option<String>,
    /// Accepted for compatibility; Herald runs one consumer per source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub consumers: Option<i32>,
    /// `earliest` or `latest` (default): where a new consumer group starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(earliest|latest)$"))]
    pub initial_offset: Option<String>,
    /// `ordered` (default) or `unordered`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(ordered|unordered)$"))]
    pub ordering: Option<String>,
    pub sink: Destination,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_overrides: Option<CloudEventOverrides>,
}
