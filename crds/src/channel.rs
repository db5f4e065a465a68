//! `messaging.knative.dev` channels: `Channel` (v1, a template of the channel kind to run),
//! `InMemoryChannel` (v1) and `KafkaChannel` (v1beta1). In Herald every channel is a stream
//! of its own in the durable log (the name `InMemoryChannel` is kept so that Knative's YAML
//! works; Herald's is durable).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::status::{Addressable, Condition};
use crate::{DeliverySpec, KReference};

/// The API group of channels and subscriptions.
pub const MESSAGING_GROUP: &str = "messaging.knative.dev";
/// `apiVersion` of `InMemoryChannel`, the default channel template.
pub const IN_MEMORY_CHANNEL_API_VERSION: &str = "messaging.knative.dev/v1";
/// `apiVersion` of `KafkaChannel`.
pub const KAFKA_CHANNEL_API_VERSION: &str = "messaging.knative.dev/v1beta1";

/// `spec.channelTemplate`: the kind of channel a Channel, Sequence or Parallel runs on.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChannelTemplateSpec {
    pub api_version: String,
    pub kind: String,
    /// The spec of the channel created from the template (e.g. a KafkaChannel's
    /// `numPartitions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "open_object")]
    pub spec: Option<serde_json::Value>,
}

impl ChannelTemplateSpec {
    /// Knative's shipped default (`default-ch-webhook`): an `InMemoryChannel`.
    pub fn in_memory() -> Self {
        Self {
            api_version: IN_MEMORY_CHANNEL_API_VERSION.to_owned(),
            kind: "InMemoryChannel".to_owned(),
            spec: None,
        }
    }
}

/// Any object, kept as written (the CRD schema does not look inside).
fn open_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// One entry of a channel's `spec.subscribers` (Knative's `SubscriberSpec`). Knative's
/// controller writes these from Subscriptions; Herald refuses them from users (declare a
/// Subscription instead) and keeps the type so that exported objects parse.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscriberSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriber_uri: Option<String>,
    #[serde(
        rename = "subscriberCACerts",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub subscriber_ca_certs: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriber_audience: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_uri: Option<String>,
    #[serde(
        rename = "replyCACerts",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub reply_ca_certs: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_audience: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
}

/// A channel's status entry for one subscription (Knative's `SubscriberStatus`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriberStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `True`, `False` or `Unknown`.
    pub ready: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Herald: the Subscription's name (Knative keys entries by uid only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The status of every channel kind (Knative's Channelable status).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The Ready EventPolicies that apply to it (filled in with the `EventPoliciesReady`
    /// condition from the policies of its namespace).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<crate::AppliedEventPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Addressable>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Addressable>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscribers: Vec<SubscriberStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_sink_uri: Option<String>,
    /// A `Channel`'s backing channel (the template kind, same name and namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<KReference>,
}

/// A Channel: a channel of the kind its template names.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "messaging.knative.dev",
    version = "v1",
    kind = "Channel",
    namespaced,
    status = "ChannelStatus",
    shortname = "ch",
    label("duck.knative.dev/addressable", "true"),
    category = "all",
    category = "knative",
    category = "messaging",
    category = "channel",
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".status.address.url"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChannelSpec {
    /// The channel kind to run (default `InMemoryChannel`); immutable in Knative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_template: Option<ChannelTemplateSpec>,
    /// Written by Knative's controller; refused from users.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscribers: Vec<SubscriberSpec>,
    /// The delivery of Subscriptions that set none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
}

/// An InMemoryChannel: in Herald a durable stream in the log, whatever the name says.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "messaging.knative.dev",
    version = "v1",
    kind = "InMemoryChannel",
    namespaced,
    status = "ChannelStatus",
    shortname = "imc",
    label("duck.knative.dev/addressable", "true"),
    label("messaging.knative.dev/subscribable", "true"),
    category = "all",
    category = "knative",
    category = "messaging",
    category = "channel",
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".status.address.url"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InMemoryChannelSpec {
    /// Written by Knative's controller; refused from users.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscribers: Vec<SubscriberSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
}

/// A KafkaChannel (Knative's eventing-kafka-broker): a channel on the Kafka backend.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "messaging.knative.dev",
    version = "v1beta1",
    kind = "KafkaChannel",
    namespaced,
    status = "ChannelStatus",
    shortname = "kc",
    label("duck.knative.dev/addressable", "true"),
    label("messaging.knative.dev/subscribable", "true"),
    category = "all",
    category = "knative",
    category = "messaging",
    category = "channel",
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".status.address.url"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaChannelSpec {
    /// Partitions of the channel's topic (Knative's default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub num_partitions: Option<i32>,
    /// Replication factor of the topic (Knative's default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub replication_factor: Option<i16>,
    /// ISO-8601 retention of the topic (Knative's default `PT168H`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_duration: Option<String>,
    /// Written by Knative's controller; refused from users.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscribers: Vec<SubscriberSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
}
