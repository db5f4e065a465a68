//! The event catalog in the control plane: a Broker's catalog annotations, EventTypes (their
//! status, their schemas read once), and the ingress policy each broker runs with
//! (`herald_broker::catalog`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use herald_broker::catalog::discovered::DEFAULT_MAX_DISCOVERED;
use herald_broker::catalog::{
    BrokerPolicy, DataSchema, DeclaredType, DiscoveredTypes, DuplicateWindow, ValidationMode,
    WindowBounds,
};
use herald_broker::{BrokerKey, BrokerRegistry, EventLog};
use herald_crds::event_type::{MAX_SCHEMA_BYTES, SCHEMA_ATTRIBUTE};
use herald_crds::{Condition, EventTypeSeen, EventTypeStatus, FieldError};
use serde_json::{json, Value};

use crate::annotations::BrokerCatalogSettings;
use crate::config::Desired;
use crate::config::{EventTypePlan, SchemaSource};

/// How long reading a schema URL may take.
const SCHEMA_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Knative's description of an auto-created EventType.
const AUTO_CREATED_DESCRIPTION: &str = "Event Type auto-created by controller";

/// The serve flags of the catalog.
#[derive(Clone, Copy, Debug)]
pub struct CatalogOptions {
    /// `--eventtype-auto-create`: the default of brokers without the annotation.
    pub auto_create: bool,
    /// `--eventtype-auto-create-max`: types recorded per broker.
    pub auto_create_max: usize,
}

impl Default for CatalogOptions {
    fn default() -> Self {
        Self {
            auto_create: false,
            auto_create_max: DEFAULT_MAX_DISCOVERED,
        }
    }
}

/// Knative's EventType status: `ReferenceExists` (True with reason `ReferenceNotSet` without
/// a reference, False `ResourceDoesNotExist` when the broker is not there) and `Ready`.
pub fn event_type_status(desired: &Desired, plan: &EventTypePlan) -> EventTypeStatus {
    let reference = match &plan.reference {
        None => Condition::new("ReferenceExists", true, Some("ReferenceNotSet"), None),
        Some(reference) => {
            let exists = plan
                .broker
                .as_ref()
                .is_some_and(|broker| desired.brokers.contains_key(broker));
            if exists {
                Condition::new("ReferenceExists", true, None, None)
            } else {
                Condition::new(
                    "ReferenceExists",
                    false,
                    Some("ResourceDoesNotExist"),
                    Some(format!("{reference} does not exist")),
                )
            }
        }
    };
    let mut ready = reference.clone();
    ready.type_ = "Ready".into();
    EventTypeStatus {
        observed_generation: plan.generation,
        conditions: vec![reference, ready],
        seen: None,
    }
}

/// Auto-created EventTypes of every broker (or one namespace's), as v1beta3 objects with
/// what ingress saw of them in `status.seen`.
pub fn auto_created(registry: &BrokerRegistry, namespace: Option<&str>) -> Vec<Value> {
    let mut out = Vec::new();
    for (broker, policy) in registry.policies() {
        if namespace.is_some_and(|ns| ns != broker.namespace) {
            continue;
        }
        let Some(discovered) = &policy.discovered else {
            continue;
        };
        for seen in discovered.list() {
            let time = |t: SystemTime| {
                chrono::DateTime::<chrono::Utc>::from(t)
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            };
            let attribute = |name: &str, value: Option<&str>| match value {
                Some(value) => json!({"name": name, "required": true, "value": value}),
                None => json!({"name": name, "required": true}),
            };
            let status = EventTypeStatus {
                observed_generation: None,
                conditions: vec![
                    Condition::new("ReferenceExists", true, None, None),
                    Condition::new("Ready", true, None, None),
                ],
                seen: Some(EventTypeSeen {
                    first: time(seen.first_seen),
                    last: time(seen.last_seen),
                    count: seen.count,
                }),
            };
            out.push(json!({
                "apiVersion": crate::kinds::EVENT_TYPE.api_version(),
                "kind": "EventType",
                "metadata": {
                    "name": seen.name,
                    "namespace": broker.namespace,
                    "creationTimestamp": time(seen.first_seen),
                    "labels": {"herald.dev/auto-created": "true"},
                },
                "spec": {
                    "reference": {
                        "apiVersion": "eventing.knative.dev/v1",
                        "kind": "Broker",
                        "name": broker.name,
                        "namespace": broker.namespace,
                    },
                    "description": AUTO_CREATED_DESCRIPTION,
                    "attributes": [
                        attribute("type", Some(&seen.event_type)),
                        attribute("source", Some(&seen.source)),
                        attribute(SCHEMA_ATTRIBUTE, Some(&seen.schema)),
                        attribute("specversion", Some("1.0")),
                        attribute("id", None),
                    ],
                },
                "status": status,
            }));
        }
    }
    out
}

/// Compiled schemas by their text or URL, kept across reconciles so that a URL is read once.
#[derive(Default)]
pub struct SchemaCache {
    compiled: HashMap<SchemaSource, Arc<DataSchema>>,
}

/// Why a broker's policy could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("EventType {event_type}: {error}")]
    Schema {
        event_type: String,
        error: FieldError,
    },
    #[error("rebuilding the duplicate window from the log: {0}")]
    Log(#[from] herald_broker::LogError),
}

impl SchemaCache {
    async fn schema(&mut self, source: &SchemaSource) -> Result<Arc<DataSchema>, FieldError> {
        if let Some(schema) = self.compiled.get(source) {
            return Ok(schema.clone());
        }
        let (text, field) = match source {
            SchemaSource::Inline(text) => (text.clone(), "spec.schemaData".to_owned()),
            SchemaSource::Url(url) => {
                let field = format!("spec.attributes[{SCHEMA_ATTRIBUTE}].value");
                let text = read_schema_url(url)
                    .await
                    .map_err(|e| FieldError::new(field.clone(), e))?;
                (text, field)
            }
        };
        let schema = Arc::new(
            DataSchema::compile(&text).map_err(|e| FieldError::new(field, e.to_string()))?,
        );
        self.compiled.insert(source.clone(), schema.clone());
        Ok(schema)
    }

    /// The policy of one broker. `previous` (the running policy) keeps its recorded types and
    /// its duplicate window when their bounds are unchanged.
    #[allow(
        clippy::too_many_arguments,
        reason = "one call site, each argument distinct"
    )]
    pub async fn policy(
        &mut self,
        key: &BrokerKey,
        settings: &BrokerCatalogSettings,
        options: CatalogOptions,
        desired: &Desired,
        previous: Option<Arc<BrokerPolicy>>,
        log: &Arc<dyn EventLog>,
        backend_drops_duplicates: bool,
    ) -> Result<BrokerPolicy, PolicyError> {
        let mut types: HashMap<String, Vec<DeclaredType>> = HashMap::new();
        for (object, plan) in &desired.event_types {
            if plan.broker.as_ref() != Some(key) {
                continue;
            }
            let name = format!("{}/{}", object.namespace, object.name);
            let schema = match (&plan.schema, settings.validation) {
                (Some(source), ValidationMode::Warn | ValidationMode::Enforce) => Some(
                    self.schema(source)
                        .await
                        .map_err(|error| PolicyError::Schema {
                            event_type: name.clone(),
                            error,
                        })?,
                ),
                _ => None,
            };
            types
                .entry(plan.event_type.clone())
                .or_default()
                .push(DeclaredType {
                    name,
                    source: plan.source.clone(),
                    schema,
                });
        }
        let auto_create = settings.auto_create.unwrap_or(options.auto_create);
        let discovered = auto_create.then(|| {
            previous
                .as_ref()
                .and_then(|p| p.discovered.clone())
                .filter(|d| d.max() == options.auto_create_max)
                .unwrap_or_else(|| {
                    Arc::new(DiscoveredTypes::new(key.clone(), options.auto_create_max))
                })
        });
        let duplicates = match settings.duplicates {
            Some(bounds) if !backend_drops_duplicates => {
                let running = previous
                    .as_ref()
                    .and_then(|p| p.duplicates.clone())
                    .filter(|w| w.bounds() == bounds);
                Some(match running {
                    Some(window) => window,
                    None => rebuilt_window(key, bounds, log).await?,
                })
            }
            _ => None,
        };
        Ok(BrokerPolicy {
            validation: settings.validation,
            refuse_unknown_types: settings.refuse_unknown_types,
            types,
            discovered,
            duplicates,
        })
    }
}

/// A new window holding what the log received within it: a restart forgets nothing.
async fn rebuilt_window(
    key: &BrokerKey,
    bounds: WindowBounds,
    log: &Arc<dyn EventLog>,
) -> Result<Arc<DuplicateWindow>, PolicyError> {
    let window = DuplicateWindow::new(key.clone(), bounds);
    let since = SystemTime::now()
        .checked_sub(bounds.window)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let recent = log.recent_ids(key, since, bounds.max_ids).await?;
    let count = recent.len();
    for (id, arrived) in recent {
        window.remember(id, arrived);
    }
    tracing::info!(broker = %key, ids = count, "duplicate window rebuilt from the log");
    Ok(Arc::new(window))
}

/// Reads a schema document from an `http(s)://` or `file://` URL, at most
/// [`MAX_SCHEMA_BYTES`].
async fn read_schema_url(url: &str) -> Result<String, String> {
    if let Some(path) = url.strip_prefix("file://") {
        use tokio::io::AsyncReadExt;
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| format!("cannot read {path}: {e}"))?;
        // One byte past the bound tells a file that is too large without reading all of it.
        let mut bytes = Vec::new();
        file.take(MAX_SCHEMA_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| format!("cannot read {path}: {e}"))?;
        if bytes.len() > MAX_SCHEMA_BYTES {
            return Err(format!("{url} has more than {MAX_SCHEMA_BYTES} bytes"));
        }
        return String::from_utf8(bytes).map_err(|_| format!("{url} is not UTF-8"));
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!(
            "{url:?} is not an http(s):// or file:// URL of a JSON Schema (set spec.schemaData for an inline one)"
        ));
    }
    let client = reqwest::Client::builder()
        .timeout(SCHEMA_FETCH_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let mut response = client
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("cannot read {url}: {e}"))?;
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("cannot read {url}: {e}"))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_SCHEMA_BYTES {
            return Err(format!("{url} has more than {MAX_SCHEMA_BYTES} bytes"));
        }
    }
    String::from_utf8(body).map_err(|_| format!("{url} is not UTF-8"))
}
