//! `sources.knative.dev/v1` SinkBinding: tells existing workloads where to send events by
//! giving their containers `K_SINK` and `K_CE_OVERRIDES`.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::source::{CloudEventOverrides, SourceStatus};
use crate::{Destination, LabelSelector};

/// Binds the workloads `subject` names (or selects) to `sink`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "sources.knative.dev",
    version = "v1",
    kind = "SinkBinding",
    namespaced,
    status = "SourceStatus",
    label("duck.knative.dev/binding", "true"),
    category = "all",
    category = "knative",
    category = "sources",
    category = "bindings",
    printcolumn = r#"{"name":"Sink","type":"string","jsonPath":".status.sinkUri"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SinkBindingSpec {
    pub subject: BindingSubject,
    pub sink: Destination,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_overrides: Option<CloudEventOverrides>,
}

/// The workloads to bind: one by `name`, or all that `selector` matches.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BindingSubject {
    /// `apps/v1`, `batch/v1`, ...
    pub api_version: String,
    /// A kind with a pod template at `spec.template` (Deployment, StatefulSet, DaemonSet...).
    pub kind: String,
    /// Default: the SinkBinding's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}
