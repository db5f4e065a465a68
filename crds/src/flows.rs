//! `flows.knative.dev/v1` Sequence and Parallel: compositions of channels and
//! subscriptions, wired as Knative wires them (see `herald::flows`).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::channel::ChannelTemplateSpec;
use crate::status::{Addressable, Condition};
use crate::{DeliverySpec, Destination, KReference};

/// One step of a Sequence: a destination (Knative inlines its fields: `ref`, `uri`,
/// `CACerts`, `audience`) and its delivery.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(from = "SequenceStepFields", into = "SequenceStepFields")]
pub struct SequenceStep {
    pub destination: Destination,
    pub delivery: Option<DeliverySpec>,
}

/// A step as written: the destination's fields inline.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SequenceStepFields {
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    reference: Option<KReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uri: Option<String>,
    #[serde(rename = "CACerts", default, skip_serializing_if = "Option::is_none")]
    ca_certs: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    audience: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delivery: Option<DeliverySpec>,
}

impl From<SequenceStepFields> for SequenceStep {
    fn from(fields: SequenceStepFields) -> Self {
        Self {
            destination: Destination {
                reference: fields.reference,
                uri: fields.uri,
                ca_certs: fields.ca_certs,
                audience: fields.audience,
            },
            delivery: fields.delivery,
        }
    }
}

impl From<SequenceStep> for SequenceStepFields {
    fn from(step: SequenceStep) -> Self {
        let Destination {
            reference,
            uri,
            ca_certs,
            audience,
        } = step.destination;
        Self {
            reference,
            uri,
            ca_certs,
            audience,
            delivery: step.delivery,
        }
    }
}

impl JsonSchema for SequenceStep {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SequenceStep".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        SequenceStepFields::json_schema(generator)
    }
}

impl SequenceStep {
    /// The step's destination.
    pub fn destination(&self) -> Destination {
        self.destination.clone()
    }
}

/// A Sequence: each step's reply is the next step's input, the last one's goes to `reply`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "flows.knative.dev",
    version = "v1",
    kind = "Sequence",
    namespaced,
    status = "SequenceStatus",
    label("duck.knative.dev/addressable", "true"),
    category = "all",
    category = "knative",
    category = "flows",
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".status.address.url"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SequenceSpec {
    /// At least one.
    pub steps: Vec<SequenceStep>,
    /// The channels' kind (default `InMemoryChannel`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_template: Option<ChannelTemplateSpec>,
    /// Where the last step's reply goes; without it, it is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<Destination>,
}

/// A child channel's readiness, as Sequence and Parallel report it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelStatusEntry {
    pub channel: KReference,
    pub ready: Condition,
}

/// A child subscription's readiness, as Sequence and Parallel report it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionStatusEntry {
    pub subscription: KReference,
    pub ready: Condition,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SequenceStatus {
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
    pub channel_statuses: Vec<ChannelStatusEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscription_statuses: Vec<SubscriptionStatusEntry>,
}

/// One branch of a Parallel.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ParallelBranch {
    /// A service that answers with the event (possibly changed) to let it into the branch,
    /// and with no event to keep it out. Without a filter every event enters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Destination>,
    pub subscriber: Destination,
    /// Where the subscriber's reply goes (else the Parallel's `reply`, else dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<Destination>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
}

/// A Parallel: every event goes to every branch.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "flows.knative.dev",
    version = "v1",
    kind = "Parallel",
    namespaced,
    status = "ParallelStatus",
    label("duck.knative.dev/addressable", "true"),
    category = "all",
    category = "knative",
    category = "flows",
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".status.address.url"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ParallelSpec {
    /// At least one.
    pub branches: Vec<ParallelBranch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_template: Option<ChannelTemplateSpec>,
    /// The reply of branches without their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<Destination>,
}

/// One branch's children, as Parallel reports them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParallelBranchStatus {
    pub filter_subscription_status: SubscriptionStatusEntry,
    pub filter_channel_status: ChannelStatusEntry,
    pub subscriber_subscription_status: SubscriptionStatusEntry,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParallelStatus {
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_channel_status: Option<ChannelStatusEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub branch_statuses: Vec<ParallelBranchStatus>,
}
