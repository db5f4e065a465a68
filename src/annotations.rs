//! Every annotation Herald reads, parsed in one place: Knative's broker class and delivery
//! order, and Herald's own `herald.dev/*` settings. Validation calls these once and keeps
//! the typed result in the desired state (`config::plan`); nothing parses them again.
//!
//! Each error names the annotation as its field: `metadata.annotations[NAME]`.

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
