//! `eventing.knative.dev/v1` Trigger.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::status::Condition;
use crate::{DeliverySpec, Destination};

/// A Trigger: a filtered subscription of one subscriber to one broker.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "eventing.knative.dev",
    version = "v1",
    kind = "Trigger",
    namespaced,
    status = "TriggerStatus",
    category = "all",
    category = "knative",
    category = "eventing",
    printcolumn = r#"{"name":"Broker","type":"string","jsonPath":".spec.broker"}"#,
    printcolumn = r#"{"name":"Subscriber_URI","type":"string","jsonPath":".status.subscriberUri"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TriggerSpec {
    /// Name of the broker in the trigger's namespace (immutable).
    pub broker: String,
    /// Legacy exact-match filter on attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<TriggerFilter>,
    /// CloudEvents Subscriptions API filters; when non-empty they replace `filter`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<SubscriptionsApiFilter>,
    pub subscriber: Destination,
    /// Replaces the broker's delivery wholly when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
}

/// `spec.filter`: every listed attribute must be present; a non-empty value must match exactly.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TriggerFilter {
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// One element of `spec.filters`: exactly one dialect must be set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscriptionsApiFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "nested_filters")]
    pub all: Option<Vec<SubscriptionsApiFilter>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "nested_filters")]
    pub any: Option<Vec<SubscriptionsApiFilter>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "nested_filter")]
    pub not: Option<Box<SubscriptionsApiFilter>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cesql: Option<String>,
    /// Herald addition (not in Knative): an RFC 9535 JSONPath evaluated against the event's
    /// data parsed as JSON; the element passes when the query selects at least one node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jsonpath: Option<String>,
}

/// A nested filter in the CRD schema. Kubernetes' structural schemas cannot refer to
/// themselves (`$ref`), so nested elements are left open there and checked by Herald on load.
fn nested_filter(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

fn nested_filters(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": nested_filter(generator)
    })
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriber_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_sink_uri: Option<String>,
    /// Herald: events in the trigger's dead-letter store (parked), waiting for a redrive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parked_events: Option<u64>,
    /// Herald: events of the broker the trigger has not finished, when the backend knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_events: Option<u64>,
    /// Herald: age in seconds of the oldest event the trigger has not finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    /// Its sender identity, with `authentication-oidc` on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<crate::status::AuthStatus>,
}
