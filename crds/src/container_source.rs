//! `sources.knative.dev/v1` ContainerSource: a program that sends events to `K_SINK`.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::source::{CloudEventOverrides, SourceStatus};
use crate::Destination;

/// Runs the template's first container with `K_SINK` and `K_CE_OVERRIDES` set (outside
/// Kubernetes: as a child process of Herald, its `command` + `args` with its `env`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "sources.knative.dev",
    version = "v1",
    kind = "ContainerSource",
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
pub struct ContainerSourceSpec {
    /// Kept as an open object in the CRD, as Knative does: the full pod schema would make
    /// the CRD too large for a client-side `kubectl apply`; Herald checks it on load.
    #[schemars(schema_with = "pod_template")]
    pub template: PodTemplateSpec,
    pub sink: Destination,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_overrides: Option<CloudEventOverrides>,
}

fn pod_template(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}
