//! `sources.knative.dev/v1` PingSource: a CloudEvent on a cron schedule.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::source::{CloudEventOverrides, SourceStatus};
use crate::Destination;

/// Sends `dev.knative.sources.ping` events to `sink` on `schedule`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "sources.knative.dev",
    version = "v1",
    kind = "PingSource",
    namespaced,
    status = "SourceStatus",
    category = "all",
    category = "knative",
    category = "sources",
    printcolumn = r#"{"name":"Sink","type":"string","jsonPath":".status.sinkUri"}"#,
    printcolumn = r#"{"name":"Schedule","type":"string","jsonPath":".spec.schedule"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PingSourceSpec {
    /// Cron: 5 fields, or 6 with seconds first; `@hourly`-style descriptors; a
    /// `CRON_TZ=Area/City ` prefix; Herald also takes `@every <duration>` (e.g. `@every 10s`).
    /// Default `* * * * *`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// IANA time zone the schedule is read in (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// The events' `datacontenttype`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The events' data as text (not with `dataBase64`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The events' data, base64-encoded (not with `data`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
    pub sink: Destination,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_overrides: Option<CloudEventOverrides>,
}
