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
    /// How to reach the Kafka cluster: SASL and TLS, their values from Secrets.
    // Boxed: it is larger than the rest of the spec, and most sources have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<Box<KafkaNetSpec>>,
    pub sink: Destination,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_overrides: Option<CloudEventOverrides>,
}

/// `spec.net`: Knative's SASL and TLS settings of a Kafka client.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaNetSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<KafkaSaslSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<KafkaTlsSpec>,
}

/// `spec.net.sasl`: user and password, and the mechanism in `type` (default `PLAIN`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaSaslSpec {
    #[serde(default)]
    pub enable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<SecretValueFromSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretValueFromSource>,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<SecretValueFromSource>,
    /// Knative's OAUTHBEARER settings (AWS MSK): accepted in the schema, refused by Herald.
    #[serde(default, rename = "roleARN", skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<SecretValueFromSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_provider: Option<SecretValueFromSource>,
}

/// `spec.net.tls`: the server's CA and the client's certificate and key, PEM.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaTlsSpec {
    #[serde(default)]
    pub enable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<SecretValueFromSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<SecretValueFromSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<SecretValueFromSource>,
}

/// Where a value comes from: a key of a Secret in the source's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretValueFromSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeySelector>,
}

/// Kubernetes' `SecretKeySelector`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeySelector {
    /// The Secret's name.
    #[serde(default)]
    pub name: String,
    pub key: String,
    /// When true, a missing Secret or key leaves the value unset instead of failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}
