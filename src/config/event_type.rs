//! EventTypes in the desired state: both served versions parsed into v1beta3, and the plan
//! ingress and status use.

use herald_broker::BrokerKey;
use herald_crds::event_type::{EventTypeV1beta2, SCHEMA_ATTRIBUTE};
use herald_crds::{EventType, FieldError};

use super::{EventTypePlan, SchemaSource};

/// Parses an EventType of either version: v1beta2 is converted to v1beta3 (see
/// `herald_crds::event_type`).
pub fn parse_event_type(
    value: serde_yaml_ng::Value,
) -> Result<EventType, serde_path_to_error::Error<serde_yaml_ng::Error>> {
    let is_v1beta2 = value
        .get("apiVersion")
        .and_then(serde_yaml_ng::Value::as_str)
        .is_some_and(|v| v.ends_with("/v1beta2"));
    if !is_v1beta2 {
        return serde_path_to_error::deserialize(value);
    }
    serde_path_to_error::deserialize::<_, FromV1beta2>(value).map(|converted| converted.0)
}

/// A v1beta2 EventType read and converted in one step, so a conversion error is a parse
/// error like the others.
#[derive(serde::Deserialize)]
#[serde(try_from = "EventTypeV1beta2")]
struct FromV1beta2(EventType);

impl TryFrom<EventTypeV1beta2> for FromV1beta2 {
    type Error = String;
    fn try_from(old: EventTypeV1beta2) -> Result<Self, String> {
        old.into_v1beta3().map(Self).map_err(|e| e.to_string())
    }
}

/// Checks an EventType and makes its plan.
pub fn plan(event_type: &EventType, namespace: &str) -> Result<EventTypePlan, FieldError> {
    let spec = &event_type.spec;
    herald_crds::event_type::validate_event_type_spec(spec)?;
    let broker = spec.reference.as_ref().and_then(|reference| {
        (reference.kind == "Broker" && reference.api_version.starts_with("eventing.knative.dev/"))
            .then(|| {
                BrokerKey::new(
                    reference.namespace.as_deref().unwrap_or(namespace),
                    reference.name.clone(),
                )
            })
    });
    let schema = match (&spec.schema_data, spec.attribute(SCHEMA_ATTRIBUTE)) {
        (Some(inline), _) => Some(SchemaSource::Inline(inline.clone())),
        (None, Some(url)) => Some(SchemaSource::Url(url.to_owned())),
        (None, None) => None,
    };
    Ok(EventTypePlan {
        generation: event_type.metadata.generation,
        reference: spec
            .reference
            .as_ref()
            .map(|r| format!("{} {}", r.kind, r.name)),
        broker,
        event_type: spec.event_type().unwrap_or_default().to_owned(),
        source: spec.attribute("source").map(str::to_owned),
        schema,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1beta2_objects_are_stored_as_v1beta3() {
        let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(
            "apiVersion: eventing.knative.dev/v1beta2\nkind: EventType\nmetadata: {name: e}\nspec: {type: t, source: /s, broker: b}",
        )
        .unwrap();
        let event_type = parse_event_type(value).unwrap();
        let plan = plan(&event_type, "default").unwrap();
        assert_eq!(plan.event_type, "t");
        assert_eq!(plan.broker, Some(BrokerKey::new("default", "b")));
        let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(
            "apiVersion: eventing.knative.dev/v1beta2\nkind: EventType\nmetadata: {name: e}\nspec: {source: /s}",
        )
        .unwrap();
        assert!(parse_event_type(value)
            .unwrap_err()
            .to_string()
            .contains("spec.type"));
    }
}
