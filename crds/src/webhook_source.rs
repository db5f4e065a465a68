//! Herald's `sources.herald.dev/v1alpha1` WebhookSource: signed HTTP requests (GitHub-style
//! webhooks) at `POST /webhooks/{namespace}/{name}` become CloudEvents.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::source::{CloudEventOverrides, SourceStatus};
use crate::Destination;

/// Verifies each request (HMAC-SHA256 like GitHub's `X-Hub-Signature-256`, or a bearer token),
/// turns it into a CloudEvent whose data is the body unchanged, and answers 202 once the sink
/// accepted it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "sources.herald.dev",
    version = "v1alpha1",
    kind = "WebhookSource",
    namespaced,
    status = "SourceStatus",
    category = "all",
    category = "sources",
    printcolumn = r#"{"name":"Sink","type":"string","jsonPath":".status.sinkUri"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookSourceSpec {
    /// How requests prove they come from the sender.
    pub auth: WebhookAuth,
    /// The events' `type` when no `typeFromHeader` applies (default `dev.herald.webhook`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// Take the `type` from a request header, e.g. GitHub's `X-GitHub-Event`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_from_header: Option<TypeFromHeader>,
    /// A request header whose value becomes the event `id` (e.g. `X-GitHub-Delivery`);
    /// otherwise a new UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_from_header: Option<String>,
    /// The events' `source` (default `/apis/v1alpha1/namespaces/{ns}/webhooksources/{name}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_source: Option<String>,
    pub sink: Destination,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_overrides: Option<CloudEventOverrides>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookAuth {
    /// `hmacSha256` (default): `X-Hub-Signature-256: sha256=<hex HMAC of the body>`;
    /// `bearer`: `Authorization: Bearer <secret>`.
    #[serde(default)]
    pub scheme: WebhookScheme,
    /// Where the secret is read from, when the source starts.
    pub secret: SecretFrom,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum WebhookScheme {
    #[default]
    HmacSha256,
    Bearer,
}

/// A secret from an environment variable of Herald's process or from a file (exactly one).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretFrom {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// `type` = `prefix` + the header's value (e.g. `dev.knative.source.github.` + `push`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TypeFromHeader {
    pub header: String,
    #[serde(default)]
    pub prefix: String,
}
