//! `sources.knative.dev/v1` ApiServerSource: Kubernetes API changes as CloudEvents.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::source::{CloudEventOverrides, SourceStatus};
use crate::{Destination, SubscriptionsApiFilter};

/// Watches `resources` and sends one event per add, update and delete to `sink`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "sources.knative.dev",
    version = "v1",
    kind = "ApiServerSource",
    namespaced,
    status = "SourceStatus",
    category = "all",
    category = "knative",
    category = "sources",
    printcolumn = r#"{"name":"Sink","type":"string","jsonPath":".status.sinkUri"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiServerSourceSpec {
    /// What to watch; at least one.
    #[schemars(length(min = 1))]
    pub resources: Vec<ApiServerResource>,
    /// Only objects controlled by an owner of this kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<ApiVersionKind>,
    /// `Reference` (default: the event carries a reference to the object) or `Resource`
    /// (the whole object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(Reference|Resource)$"))]
    pub mode: Option<String>,
    /// The ServiceAccount (default `default`) that must be allowed to get, list and watch
    /// the resources: `herald controller` runs the source only if it is (condition
    /// `SufficientPermissions`). `herald serve` reads with its kubeconfig's identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Watch the namespaces these labels select instead of the source's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// CloudEvents Subscriptions API filters, as on a Trigger: only the events they pass
    /// (all elements must) are sent to the sink.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<SubscriptionsApiFilter>,
    pub sink: Destination,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_overrides: Option<CloudEventOverrides>,
}

/// One kind to watch, optionally only objects with matching labels.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiServerResource {
    /// `v1`, `apps/v1`, ...
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// `apiVersion` and `kind` of an owner.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiVersionKind {
    pub api_version: String,
    pub kind: String,
}

/// Kubernetes' label selector.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// `key In (a, b)`, `key NotIn (...)`, `key Exists`, `key DoesNotExist`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    pub key: String,
    #[schemars(regex(pattern = r"^(In|NotIn|Exists|DoesNotExist)$"))]
    pub operator: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

impl LabelSelector {
    /// The selector in the API's query syntax (`a=b,c in (d,e),!f`).
    pub fn to_query(&self) -> String {
        let mut parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for requirement in &self.match_expressions {
            let key = &requirement.key;
            let values = requirement.values.join(",");
            parts.push(match requirement.operator.as_str() {
                "In" => format!("{key} in ({values})"),
                "NotIn" => format!("{key} notin ({values})"),
                "DoesNotExist" => format!("!{key}"),
                _ => key.clone(),
            });
        }
        parts.join(",")
    }
}

impl ApiServerSourceSpec {
    /// `true` for `Resource` mode.
    pub fn sends_resources(&self) -> bool {
        self.mode.as_deref() == Some("Resource")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_query_syntax() {
        let selector: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "env", "operator": "NotIn", "values": ["dev"]},
                {"key": "owner", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist"}
            ]
        }))
        .unwrap();
        assert_eq!(
            selector.to_query(),
            "app=web,tier in (a,b),env notin (dev),owner,!legacy"
        );
    }
}
