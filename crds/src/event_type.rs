//! `eventing.knative.dev/v1beta3` EventType: what events a broker carries, and (Herald's
//! addition) the JSON Schema their data must follow.
//!
//! Herald keeps v1beta3 natively (Knative stores v1beta2 and loses attributes); the older
//! v1beta2 shape is read and converted once, see [`EventTypeV1beta2`].

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::status::Condition;
use crate::validation::FieldError;
use crate::KReference;

/// The attributes Knative's v1beta3 validation asks for.
pub const REQUIRED_ATTRIBUTES: [&str; 4] = ["type", "source", "specversion", "id"];
/// The attribute whose value is the data's schema URL (Knative's name for `dataschema`).
pub const SCHEMA_ATTRIBUTE: &str = "schemadata";
/// Longest inline schema (`spec.schemaData`) accepted.
pub const MAX_SCHEMA_BYTES: usize = 256 * 1024;

/// An EventType: one kind of event a broker (its `reference`) receives.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "eventing.knative.dev",
    version = "v1beta3",
    kind = "EventType",
    namespaced,
    status = "EventTypeStatus",
    category = "all",
    category = "knative",
    category = "eventing",
    printcolumn = r#"{"name":"Reference Name","type":"string","jsonPath":".spec.reference.name"}"#,
    printcolumn = r#"{"name":"Reference Kind","type":"string","jsonPath":".spec.reference.kind"}"#,
    printcolumn = r#"{"name":"Description","type":"string","jsonPath":".spec.description"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventTypeSpec {
    /// The resource that receives these events (a Broker for Herald's ingress checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<KReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The CloudEvent attributes of this type; `type` must carry a value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<EventAttributeDefinition>,
    /// Herald's addition (v1beta2's field, kept): the JSON Schema (draft 2020-12) of the
    /// event's data, inline as JSON text. Without it, the `schemadata` attribute's URL is
    /// read once when the EventType is loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_data: Option<String>,
}

/// One attribute of an EventType.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventAttributeDefinition {
    pub name: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventTypeStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Herald's addition for auto-created types: what ingress saw of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen: Option<EventTypeSeen>,
}

/// When an auto-created type was first and last accepted, and how often.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventTypeSeen {
    /// RFC 3339.
    pub first: String,
    /// RFC 3339.
    pub last: String,
    pub count: u64,
}

impl EventTypeSpec {
    /// The value of an attribute, when set and non-empty.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| a.value.as_deref())
            .filter(|v| !v.is_empty())
    }

    /// The event type this EventType describes.
    pub fn event_type(&self) -> Option<&str> {
        self.attribute("type")
    }
}

/// Checks an EventType spec: `type` needs a value (as Knative's webhook does after conversion),
/// attribute names are unique and non-empty, an inline schema is bounded.
pub fn validate_event_type_spec(spec: &EventTypeSpec) -> Result<(), FieldError> {
    for (index, attribute) in spec.attributes.iter().enumerate() {
        if attribute.name.is_empty() {
            return Err(FieldError::new(
                format!("spec.attributes[{index}].name"),
                "missing field(s)",
            ));
        }
        if spec.attributes[..index]
            .iter()
            .any(|a| a.name == attribute.name)
        {
            return Err(FieldError::new(
                format!("spec.attributes[{index}].name"),
                format!("duplicate attribute {:?}", attribute.name),
            ));
        }
    }
    if spec.event_type().is_none() {
        return Err(FieldError::new(
            "spec.attributes",
            "missing field(s): an attribute named \"type\" with a value",
        ));
    }
    if let Some(reference) = &spec.reference {
        for (field, value) in [
            ("apiVersion", &reference.api_version),
            ("kind", &reference.kind),
            ("name", &reference.name),
        ] {
            if value.is_empty() {
                return Err(FieldError::new(
                    format!("spec.reference.{field}"),
                    "missing field(s)",
                ));
            }
        }
    }
    if let Some(schema) = &spec.schema_data {
        if schema.len() > MAX_SCHEMA_BYTES {
            return Err(FieldError::new(
                "spec.schemaData",
                format!(
                    "the schema has {} bytes, more than the limit of {MAX_SCHEMA_BYTES}",
                    schema.len()
                ),
            ));
        }
    }
    Ok(())
}

/// The `eventing.knative.dev/v1beta2` EventType as written; read and converted to v1beta3.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventTypeV1beta2 {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    #[serde(default)]
    pub spec: EventTypeV1beta2Spec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventTypeV1beta2Spec {
    #[serde(rename = "type", default)]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_data: Option<String>,
    /// Deprecated in Knative; Herald turns it into a Broker `reference` when none is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<KReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl EventTypeV1beta2 {
    /// Knative's v1beta2 → v1beta3 conversion (attributes `specversion`, `id`, `type`,
    /// `source`, all required, and `schemadata` when a schema URL is set), plus what Knative
    /// drops: `schemaData` is kept and a deprecated `broker` becomes the reference.
    pub fn into_v1beta3(self) -> Result<EventType, FieldError> {
        let spec = self.spec;
        if spec.type_.is_empty() {
            return Err(FieldError::new("spec.type", "missing field(s)"));
        }
        let required = |name: &str, value: Option<String>| EventAttributeDefinition {
            name: name.to_owned(),
            required: true,
            value,
        };
        let mut attributes = vec![
            required("specversion", None),
            required("id", None),
            required("type", Some(spec.type_)),
            required("source", spec.source.filter(|s| !s.is_empty())),
        ];
        if let Some(schema) = spec.schema.filter(|s| !s.is_empty()) {
            attributes.push(EventAttributeDefinition {
                name: SCHEMA_ATTRIBUTE.to_owned(),
                required: false,
                value: Some(schema),
            });
        }
        let reference = spec.reference.or_else(|| {
            spec.broker.map(|name| KReference {
                api_version: "eventing.knative.dev/v1".to_owned(),
                kind: "Broker".to_owned(),
                name,
                namespace: None,
            })
        });
        let mut converted = EventType::new(
            self.metadata.name.as_deref().unwrap_or_default(),
            EventTypeSpec {
                reference,
                description: spec.description,
                attributes,
                schema_data: spec.schema_data.filter(|s| !s.is_empty()),
            },
        );
        converted.metadata = self.metadata;
        Ok(converted)
    }
}

/// Knative's name for an auto-created EventType: `et-{refName}-{md5 hex of type, source,
/// namespace and refName}`, lowercased and cut to a DNS-1123 subdomain (`md5` is the hex
/// digest the caller computed, so this crate needs no hash).
pub fn auto_created_name(reference_name: &str, md5_hex: &str) -> String {
    let raw = format!("et-{reference_name}-{md5_hex}").to_ascii_lowercase();
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(253);
    let trimmed = name.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    trimmed.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1beta2_converts_as_knative_does_and_keeps_what_knative_drops() {
        let old: EventTypeV1beta2 = serde_yaml_ng::from_str(
            "apiVersion: eventing.knative.dev/v1beta2\nkind: EventType\nmetadata: {name: order, namespace: shop}\nspec:\n  type: com.shop.order\n  source: /shop\n  schema: https://schemas.example/order.json\n  schemaData: '{\"type\": \"object\"}'\n  broker: default\n  description: orders\n",
        )
        .unwrap();
        let new = old.into_v1beta3().unwrap();
        assert_eq!(new.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(new.spec.event_type(), Some("com.shop.order"));
        assert_eq!(new.spec.attribute("source"), Some("/shop"));
        assert_eq!(
            new.spec.attribute(SCHEMA_ATTRIBUTE),
            Some("https://schemas.example/order.json")
        );
        assert_eq!(
            new.spec.schema_data.as_deref(),
            Some("{\"type\": \"object\"}")
        );
        let reference = new.spec.reference.as_ref().unwrap();
        assert_eq!(
            (reference.kind.as_str(), reference.name.as_str()),
            ("Broker", "default")
        );
        let names: Vec<_> = new
            .spec
            .attributes
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        assert_eq!(names, ["specversion", "id", "type", "source", "schemadata"]);
        assert!(validate_event_type_spec(&new.spec).is_ok());
    }

    #[test]
    fn v1beta2_without_type_is_refused() {
        let old = EventTypeV1beta2::default();
        assert_eq!(old.into_v1beta3().unwrap_err().path, "spec.type");
    }

    #[test]
    fn validation_names_the_field() {
        let spec: EventTypeSpec =
            serde_yaml_ng::from_str("attributes: [{name: source, value: /s}]").unwrap();
        assert_eq!(
            validate_event_type_spec(&spec).unwrap_err().path,
            "spec.attributes"
        );
        let spec: EventTypeSpec =
            serde_yaml_ng::from_str("attributes: [{name: type, value: t}, {name: type, value: u}]")
                .unwrap();
        assert_eq!(
            validate_event_type_spec(&spec).unwrap_err().path,
            "spec.attributes[1].name"
        );
        assert!(serde_yaml_ng::from_str::<EventTypeSpec>("broker: b").is_err());
    }

    #[test]
    fn auto_created_names_are_dns_subdomains() {
        assert_eq!(
            auto_created_name("My_Broker", "0123abcd"),
            "et-my-broker-0123abcd"
        );
        let long = auto_created_name(&"b".repeat(300), "ff");
        assert!(long.len() <= 253);
        assert!(crate::validation::is_dns1123_subdomain(&long));
    }
}
