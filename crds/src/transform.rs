//! `eventing.knative.dev/v1alpha1` EventTransform (a JSONata transformation of events) and
//! RequestReply (a synchronous request answered by a correlated reply event), with Knative's
//! field names and validation vocabulary.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::parse_iso8601;
use crate::status::{Addressable, Condition};
use crate::validation::{validate_delivery, validate_destination};
use crate::{DeliverySpec, Destination, FieldError, KReference};

/// A JSONata transformation.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JsonataSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
}

/// What happens to the sink's response.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplySpec {
    /// Transforms the sink's response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jsonata: Option<JsonataSpec>,
    /// Answers with the sink's status and an empty body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discard: Option<bool>,
}

/// An EventTransform: its address answers each event with the transformed event, or sends
/// the transformed event to `sink`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "eventing.knative.dev",
    version = "v1alpha1",
    kind = "EventTransform",
    namespaced,
    status = "EventTransformStatus",
    label("duck.knative.dev/addressable", "true"),
    category = "all",
    category = "knative",
    category = "eventing",
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".status.address.url"}"#,
    printcolumn = r#"{"name":"Sink","type":"string","jsonPath":".status.sinkUri"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventTransformSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<Destination>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<ReplySpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jsonata: Option<JsonataSpec>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventTransformStatus {
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink_uri: Option<String>,
}

/// The largest JSONata expression Herald accepts (bytes).
pub const MAX_EXPRESSION_BYTES: usize = 64 * 1024;

fn validate_expression(path: &str, jsonata: &JsonataSpec) -> Result<(), FieldError> {
    match jsonata.expression.as_deref() {
        None | Some("") => Err(FieldError::new(
            format!("{path}.expression"),
            "missing field(s)",
        )),
        Some(e) if e.len() > MAX_EXPRESSION_BYTES => Err(FieldError::new(
            format!("{path}.expression"),
            format!(
                "invalid value: the expression has {} bytes, more than Herald's bound of {MAX_EXPRESSION_BYTES}",
                e.len()
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// Knative's rules (`eventtransform_validation.go`); the expressions' syntax is checked by
/// the caller, which compiles them.
pub fn validate_event_transform_spec(spec: &EventTransformSpec) -> Result<(), FieldError> {
    let Some(jsonata) = &spec.jsonata else {
        return Err(FieldError::new(
            "spec.jsonata",
            "expected exactly one, got neither",
        ));
    };
    validate_expression("spec.jsonata", jsonata)?;
    if let Some(sink) = &spec.sink {
        if sink.ca_certs.is_some() {
            return Err(FieldError::new(
                "spec.sink.CACerts",
                "must not set the field(s): CACerts for the sink is not supported for JSONata transformations, to propagate CA trust bundles use labeled ConfigMaps",
            ));
        }
        validate_destination("spec.sink", sink)?;
    }
    if let Some(reply) = &spec.reply {
        if spec.sink.is_none() {
            return Err(FieldError::new(
                "spec.reply",
                "reply is set without spec.sink: a reply is only valid with a sink",
            ));
        }
        match (&reply.jsonata, reply.discard == Some(true)) {
            (Some(_), true) => {
                return Err(FieldError::new(
                    "spec.reply",
                    "expected exactly one, got both: jsonata, discard",
                ))
            }
            (Some(jsonata), false) => validate_expression("spec.reply.jsonata", jsonata)?,
            (None, _) => {}
        }
    }
    Ok(())
}

/// A RequestReply: a synchronous request to a broker, answered by the reply event that
/// carries the request's correlation value.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "eventing.knative.dev",
    version = "v1alpha1",
    kind = "RequestReply",
    namespaced,
    status = "RequestReplyStatus",
    shortname = "rr",
    category = "all",
    category = "knative",
    category = "eventing",
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".status.address.url"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestReplySpec {
    pub broker_ref: KReference,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_attribute: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_attribute: Option<String>,
    /// ISO-8601 (`PT30S`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestReplyStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Addressable>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Addressable>,
}

pub const DEFAULT_CORRELATION_ATTRIBUTE: &str = "correlationid";
pub const DEFAULT_REPLY_ATTRIBUTE: &str = "replyid";
/// Knative's flag `requestreply-default-timeout`.
pub const DEFAULT_REQUEST_REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl RequestReplySpec {
    pub fn correlation_attribute(&self) -> &str {
        self.correlation_attribute
            .as_deref()
            .unwrap_or(DEFAULT_CORRELATION_ATTRIBUTE)
    }

    pub fn reply_attribute(&self) -> &str {
        self.reply_attribute
            .as_deref()
            .unwrap_or(DEFAULT_REPLY_ATTRIBUTE)
    }

    /// `spec.timeout`, or Knative's default; validation checked it parses.
    pub fn timeout(&self) -> std::time::Duration {
        self.timeout
            .as_deref()
            .and_then(|t| parse_iso8601(t).ok())
            .unwrap_or(DEFAULT_REQUEST_REPLY_TIMEOUT)
    }
}

fn validate_attribute(path: &str, value: Option<&str>) -> Result<(), FieldError> {
    let Some(value) = value else { return Ok(()) };
    // Knative's list says `course` where `source` was meant; Herald forbids `source` too.
    if value.is_empty() || ["id", "type", "specversion", "source"].contains(&value) {
        return Err(FieldError::new(path, format!("invalid value: {value}")));
    }
    let valid = value.len() <= 20
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !valid {
        return Err(FieldError::new(
            path,
            format!("invalid value: {value}: a CloudEvents attribute name is 1 to 20 lower-case letters or digits"),
        ));
    }
    Ok(())
}

/// Knative's rules (`requestreply_validation.go`).
pub fn validate_request_reply_spec(spec: &RequestReplySpec) -> Result<(), FieldError> {
    let broker = &spec.broker_ref;
    if !broker.kind.eq_ignore_ascii_case("Broker") {
        return Err(FieldError::new(
            "spec.brokerRef.kind",
            format!("invalid value: {}", broker.kind),
        ));
    }
    if broker.name.is_empty() {
        return Err(FieldError::new("spec.brokerRef.name", "missing field(s)"));
    }
    if broker.namespace.as_deref().is_some_and(|n| !n.is_empty()) {
        return Err(FieldError::new(
            "spec.brokerRef.namespace",
            "must not set the field(s)",
        ));
    }
    validate_attribute(
        "spec.correlationAttribute",
        spec.correlation_attribute.as_deref(),
    )?;
    validate_attribute("spec.replyAttribute", spec.reply_attribute.as_deref())?;
    if let Some(timeout) = &spec.timeout {
        match parse_iso8601(timeout) {
            Ok(d) if !d.is_zero() => {}
            _ => {
                return Err(FieldError::new(
                    "spec.timeout",
                    format!("invalid value: {timeout}"),
                ))
            }
        }
    }
    if let Some(delivery) = &spec.delivery {
        validate_delivery("spec.delivery", delivery)?;
    }
    Ok(())
}
