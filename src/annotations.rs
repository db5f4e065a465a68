//! Every annotation Herald reads, parsed in one place: Knative's broker class and delivery
//! order, and Herald's own `herald.dev/*` settings. Validation calls these once and keeps
//! the typed result in the desired state (`config::plan`); nothing parses them again.
//!
//! Each error names the annotation as its field: `metadata.annotations[NAME]`.

use std::time::Duration;

use herald_broker::catalog::duplicates::{DEFAULT_MAX_IDS, MAX_IDS_LIMIT};
use herald_broker::catalog::{ValidationMode, WindowBounds};
use herald_broker::log::BrokerSettings;
use herald_broker::StartFrom;
use herald_crds::FieldError;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Knative's broker class: which backend keeps a broker's log.
pub use herald_crds::BROKER_CLASS_ANNOTATION;
/// Knative's annotation for in-order delivery, honoured on every backend.
pub use herald_triggers::plan::DELIVERY_ORDER_ANNOTATION;

/// Where a new trigger starts reading its broker: `earliest`, `latest` (Knative's behaviour,
/// the default) or an RFC 3339 time to replay from.
pub const START_FROM_ANNOTATION: &str = "herald.dev/start-from";

/// Herald's per-broker log settings, from the Broker's annotations.
pub const MAX_AGE_ANNOTATION: &str = "herald.dev/retention-max-age";
pub const MAX_BYTES_ANNOTATION: &str = "herald.dev/retention-max-bytes";
pub const REPLICAS_ANNOTATION: &str = "herald.dev/replicas";
pub const RETENTION_ANNOTATION: &str = "herald.dev/retention";
pub const PARTITIONS_ANNOTATION: &str = "herald.dev/partitions";

/// The field path of an annotation, as errors name it.
pub fn field(name: &str) -> String {
    format!("metadata.annotations[{name}]")
}

fn get<'a>(meta: &'a ObjectMeta, name: &str) -> Option<&'a String> {
    meta.annotations.as_ref().and_then(|a| a.get(name))
}

/// A broker's `eventing.knative.dev/broker.class`, if set.
pub fn broker_class(meta: &ObjectMeta) -> Option<&str> {
    get(meta, BROKER_CLASS_ANNOTATION).map(String::as_str)
}

/// The trigger's starting point (`latest` when unset).
pub fn start_from(meta: &ObjectMeta) -> Result<StartFrom, FieldError> {
    let Some(text) = get(meta, START_FROM_ANNOTATION) else {
        return Ok(StartFrom::Latest);
    };
    match text.as_str() {
        "latest" => Ok(StartFrom::Latest),
        "earliest" => Ok(StartFrom::Earliest),
        other => chrono::DateTime::parse_from_rfc3339(other)
            .map(|time| StartFrom::Time(time.into()))
            .map_err(|e| {
                FieldError::new(
                    field(START_FROM_ANNOTATION),
                    format!(
                        "{other:?} is not earliest, latest or an RFC 3339 time like 2026-01-02T15:04:05Z: {e}"
                    ),
                )
            }),
    }
}

/// Whether the trigger delivers in order (`ordered`); `unordered` or unset is Knative's
/// default.
pub fn ordered(meta: &ObjectMeta) -> Result<bool, FieldError> {
    match get(meta, DELIVERY_ORDER_ANNOTATION).map(String::as_str) {
        None | Some("unordered") => Ok(false),
        Some("ordered") => Ok(true),
        Some(order) => Err(FieldError::new(
            field(DELIVERY_ORDER_ANNOTATION),
            format!("{order:?} is not a delivery order: use ordered or unordered"),
        )),
    }
}

/// The `herald.dev/*` log settings of a broker.
pub fn broker_settings(meta: &ObjectMeta) -> Result<BrokerSettings, FieldError> {
    let mut settings = BrokerSettings::default();
    let Some(annotations) = &meta.annotations else {
        return Ok(settings);
    };
    if let Some(text) = annotations.get(MAX_AGE_ANNOTATION) {
        let age = herald_crds::duration::parse_iso8601(text)
            .map_err(|e| FieldError::new(field(MAX_AGE_ANNOTATION), e))?;
        settings.max_age = Some(age);
    }
    if let Some(text) = annotations.get(MAX_BYTES_ANNOTATION) {
        let bytes = text.parse::<i64>().ok().filter(|b| *b > 0);
        let bytes = bytes.ok_or_else(|| {
            FieldError::new(
                field(MAX_BYTES_ANNOTATION),
                format!("{text:?} is not a positive number of bytes"),
            )
        })?;
        settings.max_bytes = Some(bytes);
    }
    if let Some(text) = annotations.get(REPLICAS_ANNOTATION) {
        let replicas = text.parse::<usize>().ok().filter(|r| (1..=5).contains(r));
        let replicas = replicas.ok_or_else(|| {
            FieldError::new(
                field(REPLICAS_ANNOTATION),
                format!("{text:?} is not a replica count from 1 to 5"),
            )
        })?;
        settings.replicas = Some(replicas);
    }
    if let Some(text) = annotations.get(PARTITIONS_ANNOTATION) {
        let partitions = text.parse::<i32>().ok().filter(|p| *p >= 1);
        settings.partitions = Some(partitions.ok_or_else(|| {
            FieldError::new(
                field(PARTITIONS_ANNOTATION),
                format!("{text:?} is not a partition count of 1 or more"),
            )
        })?);
    }
    if let Some(text) = annotations.get(RETENTION_ANNOTATION) {
        settings.interest_retention = match text.as_str() {
            "limits" => false,
            "interest" => true,
            _ => {
                return Err(FieldError::new(
                    field(RETENTION_ANNOTATION),
                    format!("{text:?} is not a retention: use limits or interest"),
                ))
            }
        };
    }
    Ok(settings)
}

// The event catalog's broker settings (README "Event catalog").

/// `enabled` | `disabled`: record the types this broker accepts (Knative's
/// `eventtype-auto-create`, per broker); unset follows `--eventtype-auto-create`.
pub const AUTO_CREATE_ANNOTATION: &str = "herald.dev/eventtype-auto-create";
/// `off` (default) | `warn` | `enforce`: check event data against the schemas of the
/// broker's EventTypes.
pub const SCHEMA_VALIDATION_ANNOTATION: &str = "herald.dev/schema-validation";
/// `accept` (default) | `refuse`: with `enforce`, refuse events of types no EventType of the
/// broker declares.
pub const UNKNOWN_TYPES_ANNOTATION: &str = "herald.dev/unknown-event-types";
/// ISO-8601 duration: drop a second (`source`, `id`) within this time (off when unset).
pub const DUPLICATE_WINDOW_ANNOTATION: &str = "herald.dev/duplicate-window";
/// Ids the duplicate window holds at most (default 100000).
pub const DUPLICATE_IDS_ANNOTATION: &str = "herald.dev/duplicate-window-ids";
/// Longest duplicate window.
pub const MAX_DUPLICATE_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// A Broker's catalog annotations, checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BrokerCatalogSettings {
    pub auto_create: Option<bool>,
    pub validation: ValidationMode,
    pub refuse_unknown_types: bool,
    pub duplicates: Option<WindowBounds>,
}

impl BrokerCatalogSettings {
    /// Reads the annotations; errors name the annotation.
    pub fn of(meta: &ObjectMeta) -> Result<Self, FieldError> {
        let mut settings = Self::default();
        let Some(annotations) = &meta.annotations else {
            return Ok(settings);
        };
        let bad = |name: &str, message: String| FieldError::new(field(name), message);
        if let Some(text) = annotations.get(AUTO_CREATE_ANNOTATION) {
            settings.auto_create = Some(match text.as_str() {
                "enabled" => true,
                "disabled" => false,
                other => {
                    return Err(bad(
                        AUTO_CREATE_ANNOTATION,
                        format!("{other:?} is not enabled or disabled"),
                    ))
                }
            });
        }
        if let Some(text) = annotations.get(SCHEMA_VALIDATION_ANNOTATION) {
            settings.validation = text
                .parse()
                .map_err(|e| bad(SCHEMA_VALIDATION_ANNOTATION, e))?;
        }
        if let Some(text) = annotations.get(UNKNOWN_TYPES_ANNOTATION) {
            settings.refuse_unknown_types = match text.as_str() {
                "accept" => false,
                "refuse" if settings.validation == ValidationMode::Enforce => true,
                "refuse" => {
                    return Err(bad(
                        UNKNOWN_TYPES_ANNOTATION,
                        format!("refuse needs {SCHEMA_VALIDATION_ANNOTATION}: enforce"),
                    ))
                }
                other => {
                    return Err(bad(
                        UNKNOWN_TYPES_ANNOTATION,
                        format!("{other:?} is not accept or refuse"),
                    ))
                }
            };
        }
        let ids = match annotations.get(DUPLICATE_IDS_ANNOTATION) {
            None => DEFAULT_MAX_IDS,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_IDS_LIMIT).contains(n))
                .ok_or_else(|| {
                    bad(
                        DUPLICATE_IDS_ANNOTATION,
                        format!("{text:?} is not a count of ids from 1 to {MAX_IDS_LIMIT}"),
                    )
                })?,
        };
        if let Some(text) = annotations.get(DUPLICATE_WINDOW_ANNOTATION) {
            let window = herald_crds::duration::parse_iso8601(text)
                .map_err(|e| bad(DUPLICATE_WINDOW_ANNOTATION, e))?;
            if window.is_zero() || window > MAX_DUPLICATE_WINDOW {
                return Err(bad(
                    DUPLICATE_WINDOW_ANNOTATION,
                    format!("{text:?} is not a duration above zero and at most P1D"),
                ));
            }
            settings.duplicates = Some(WindowBounds {
                window,
                max_ids: ids,
            });
        } else if annotations.contains_key(DUPLICATE_IDS_ANNOTATION) {
            return Err(bad(
                DUPLICATE_IDS_ANNOTATION,
                format!("it needs {DUPLICATE_WINDOW_ANNOTATION}"),
            ));
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(annotations: &str) -> ObjectMeta {
        serde_yaml_ng::from_str(&format!("{{name: b, annotations: {{{annotations}}}}}")).unwrap()
    }

    #[test]
    fn catalog_annotations_are_read_and_bad_values_name_the_annotation() {
        let ok = BrokerCatalogSettings::of(&meta(
            "herald.dev/schema-validation: enforce, herald.dev/unknown-event-types: refuse, herald.dev/duplicate-window: PT5M, herald.dev/eventtype-auto-create: enabled",
        ))
        .unwrap();
        assert_eq!(ok.validation, ValidationMode::Enforce);
        assert!(ok.refuse_unknown_types);
        assert_eq!(ok.auto_create, Some(true));
        assert_eq!(
            ok.duplicates,
            Some(WindowBounds {
                window: Duration::from_secs(300),
                max_ids: DEFAULT_MAX_IDS
            })
        );
        for (annotations, name) in [
            (
                "herald.dev/schema-validation: strict",
                SCHEMA_VALIDATION_ANNOTATION,
            ),
            (
                "herald.dev/unknown-event-types: refuse",
                UNKNOWN_TYPES_ANNOTATION,
            ),
            (
                "herald.dev/duplicate-window: 5m",
                DUPLICATE_WINDOW_ANNOTATION,
            ),
            (
                "herald.dev/duplicate-window: P2D",
                DUPLICATE_WINDOW_ANNOTATION,
            ),
            (
                "herald.dev/duplicate-window-ids: '10'",
                DUPLICATE_IDS_ANNOTATION,
            ),
            (
                "herald.dev/duplicate-window: PT1M, herald.dev/duplicate-window-ids: '0'",
                DUPLICATE_IDS_ANNOTATION,
            ),
            (
                "herald.dev/eventtype-auto-create: yes",
                AUTO_CREATE_ANNOTATION,
            ),
        ] {
            let error = BrokerCatalogSettings::of(&meta(annotations)).unwrap_err();
            assert_eq!(error.path, field(name), "{annotations}");
        }
    }
}
