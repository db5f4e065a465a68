//! The event catalog at a broker's ingress: declared EventTypes and their schemas
//! ([`schema`]), Knative's auto-created EventTypes ([`discovered`]) and the duplicate window
//! ([`duplicates`]). A [`BrokerPolicy`] holds what one broker asks for; ingress reads it once
//! per request.

pub mod discovered;
pub mod duplicates;
pub mod schema;

use std::collections::HashMap;
use std::sync::Arc;

use crate::event::CloudEvent;
use crate::log::BrokerKey;

pub use discovered::{DiscoveredType, DiscoveredTypes};
pub use duplicates::{DuplicateWindow, WindowBounds};
pub use schema::{DataSchema, SchemaError, SchemaViolation};

/// Counter of events whose data did not follow their type's schema, by namespace, broker and
/// what ingress did (`accepted` in `warn` mode, `refused` in `enforce` mode).
pub const SCHEMA_VIOLATIONS: &str = "herald_schema_violations_total";

/// What a broker does with an event whose data breaks its type's schema
/// (`herald.dev/schema-validation`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ValidationMode {
    /// Schemas are not checked.
    #[default]
    Off,
    /// Checked; a violation is counted and logged, the event accepted.
    Warn,
    /// Checked; a violation answers 400 naming the JSON pointer and the rule.
    Enforce,
}

impl std::str::FromStr for ValidationMode {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "off" => Ok(Self::Off),
            "warn" => Ok(Self::Warn),
            "enforce" => Ok(Self::Enforce),
            other => Err(format!("{other:?} is not off, warn or enforce")),
        }
    }
}

/// An EventType declared for a broker, as ingress checks it.
#[derive(Clone, Debug)]
pub struct DeclaredType {
    /// The EventType's `namespace/name`, for messages.
    pub name: String,
    /// Only events from this source match, when set.
    pub source: Option<String>,
    pub schema: Option<Arc<DataSchema>>,
}

/// Why ingress refused an event by its type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TypeRefusal {
    #[error("event type {event_type:?} is not declared by any EventType of this broker")]
    Unknown { event_type: String },
    #[error("event type {event_type:?} (EventType {event_type_name}): {violation}")]
    Schema {
        event_type: String,
        event_type_name: String,
        violation: SchemaViolation,
    },
}

/// What one broker's ingress does beyond storing: schema checks, auto-created types,
/// duplicate suppression. The default does none of it.
#[derive(Default)]
pub struct BrokerPolicy {
    pub validation: ValidationMode,
    /// In `enforce` mode, refuse events whose type no EventType declares.
    pub refuse_unknown_types: bool,
    /// Declared types by event type.
    pub types: HashMap<String, Vec<DeclaredType>>,
    pub discovered: Option<Arc<DiscoveredTypes>>,
    /// Herald's window; `None` when off or when the backend has its own (JetStream).
    pub duplicates: Option<Arc<DuplicateWindow>>,
}

impl std::fmt::Debug for BrokerPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerPolicy")
            .field("validation", &self.validation)
            .field("refuse_unknown_types", &self.refuse_unknown_types)
            .field("types", &self.types.len())
            .field("discovered", &self.discovered.is_some())
            .field("duplicates", &self.duplicates.as_ref().map(|d| d.bounds()))
            .finish()
    }
}

impl BrokerPolicy {
    /// Whether ingress has anything to check per event.
    pub fn checks_events(&self) -> bool {
        self.validation != ValidationMode::Off
    }

    /// Checks an event against its declared type; `Err` only in `enforce` mode.
    pub fn check(&self, broker: &BrokerKey, event: &CloudEvent) -> Result<(), TypeRefusal> {
        if self.validation == ValidationMode::Off {
            return Ok(());
        }
        let event_type = event.event_type();
        let declared = self.types.get(event_type.as_ref());
        let Some(declared) = declared else {
            if self.validation == ValidationMode::Enforce && self.refuse_unknown_types {
                return Err(TypeRefusal::Unknown {
                    event_type: event_type.into_owned(),
                });
            }
            return Ok(());
        };
        let source = event.text("source").unwrap_or_default();
        // A declaration for this very source wins over one for any source.
        let declaration = declared
            .iter()
            .filter(|d| d.schema.is_some())
            .find(|d| d.source.as_deref() == Some(source.as_ref()))
            .or_else(|| {
                declared
                    .iter()
                    .filter(|d| d.schema.is_some())
                    .find(|d| d.source.is_none())
            });
        let Some(declaration) = declaration else {
            return Ok(());
        };
        let Some(schema) = &declaration.schema else {
            return Ok(());
        };
        let Err(violation) = schema.check(event) else {
            return Ok(());
        };
        let action = match self.validation {
            ValidationMode::Enforce => "refused",
            _ => "accepted",
        };
        metrics::counter!(SCHEMA_VIOLATIONS, "namespace" => broker.namespace.clone(), "broker" => broker.name.clone(), "action" => action)
            .increment(1);
        let refusal = TypeRefusal::Schema {
            event_type: event_type.into_owned(),
            event_type_name: declaration.name.clone(),
            violation,
        };
        if self.validation == ValidationMode::Enforce {
            Err(refusal)
        } else {
            tracing::warn!(%broker, id = %event.id(), "{refusal}");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn event(event_type: &str, source: &str, data: &str) -> CloudEvent {
        let mut event = CloudEvent::new();
        event.set("specversion", "1.0");
        event.set("id", "1");
        event.set("source", source);
        event.set("type", event_type);
        event.set_data(Some(Bytes::copy_from_slice(data.as_bytes())));
        event
    }

    fn policy(mode: ValidationMode, refuse_unknown: bool) -> BrokerPolicy {
        let schema = |text: &str| Some(Arc::new(DataSchema::compile(text).unwrap()));
        let mut types = HashMap::new();
        types.insert(
            "order".to_owned(),
            vec![
                DeclaredType {
                    name: "ns/order".into(),
                    source: None,
                    schema: schema(r#"{"required": ["id"]}"#),
                },
                DeclaredType {
                    name: "ns/order-legacy".into(),
                    source: Some("/legacy".into()),
                    schema: schema(r#"{"required": ["number"]}"#),
                },
            ],
        );
        types.insert(
            "free".to_owned(),
            vec![DeclaredType {
                name: "ns/free".into(),
                source: None,
                schema: None,
            }],
        );
        BrokerPolicy {
            validation: mode,
            refuse_unknown_types: refuse_unknown,
            types,
            ..BrokerPolicy::default()
        }
    }

    #[test]
    fn enforce_refuses_what_breaks_the_schema_of_its_source() {
        let broker = BrokerKey::new("ns", "b");
        let p = policy(ValidationMode::Enforce, false);
        assert!(p
            .check(&broker, &event("order", "/shop", r#"{"id": 1}"#))
            .is_ok());
        assert!(matches!(
            p.check(&broker, &event("order", "/shop", r#"{"number": 1}"#)),
            Err(TypeRefusal::Schema { .. })
        ));
        assert!(p
            .check(&broker, &event("order", "/legacy", r#"{"number": 1}"#))
            .is_ok());
        assert!(p.check(&broker, &event("free", "/x", "not json")).is_ok());
        assert!(p.check(&broker, &event("other", "/x", "{}")).is_ok());
        let strict = policy(ValidationMode::Enforce, true);
        assert!(matches!(
            strict.check(&broker, &event("other", "/x", "{}")),
            Err(TypeRefusal::Unknown { .. })
        ));
    }

    #[test]
    fn warn_and_off_accept_everything() {
        let broker = BrokerKey::new("ns", "b");
        for mode in [ValidationMode::Warn, ValidationMode::Off] {
            let p = policy(mode, true);
            assert!(p.check(&broker, &event("order", "/shop", "{}")).is_ok());
            assert!(p.check(&broker, &event("other", "/shop", "{}")).is_ok());
        }
    }
}
