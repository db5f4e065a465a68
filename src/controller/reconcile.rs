//! One pass of the controller: the objects on the API server → the desired state → the
//! runtime; then (on the leader) finalizers and status.

use std::collections::HashMap;
use std::sync::Arc;

use herald_broker::log::routed::RoutedLog;
use kube::api::DynamicObject;
use serde_json::{json, Value};

use super::resolve::{Resolver, Unresolved};
use super::writeback::{Writer, FINALIZER};
use crate::config::{build_desired_lenient, Loaded, Resource};
use crate::kinds::{self, Kind};
use crate::runtime::Runtime;
use crate::serve::broker_class;
use crate::store::ObjectKey;

/// Why an object does not run.
enum Problem {
    /// Herald's types or rules refuse it.
    Invalid(String),
    /// A destination's `ref` does not resolve.
    Unresolved(Unresolved),
    /// Its broker class names a backend this Herald was not started with.
    Backend(String),
    /// Left out of the desired state (a missing broker, a bad reference).
    Rejected(crate::config::Rejected),
}

pub struct Reconciler {
    pub runtime: Runtime,
    pub routes: Arc<RoutedLog>,
    pub resolver: Resolver,
    pub writer: Writer,
    /// Brokers are addressed at `{external_url}/{namespace}/{name}`.
    pub external_url: String,
}

/// An object as Herald's typed resource (apiVersion and kind filled in, status dropped).
fn parse(kind: &Kind, object: &DynamicObject) -> Result<Resource, String> {
    let mut value = serde_json::to_value(object).map_err(|e| e.to_string())?;
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), kind.api_version().into());
        map.insert("kind".into(), kind.kind.into());
        map.remove("status");
        // Knative lets a Broker leave out `spec` (all of it has defaults).
        map.entry("spec").or_insert_with(|| json!({}));
    }
    let yaml = serde_yaml_ng::to_value(&value).map_err(|e| e.to_string())?;
    Resource::parse(kind, yaml).map_err(|e| format!("{}: {}", e.path(), e.inner()))
}

fn key_of(kind: &Kind, object: &DynamicObject) -> ObjectKey {
    ObjectKey::new(
        kind,
        object.metadata.namespace.as_deref().unwrap_or("default"),
        object.metadata.name.as_deref().unwrap_or_default(),
    )
}

impl Reconciler {
    /// Makes the runtime match `objects`; with `leader`, also writes finalizers and status.
    pub async fn reconcile(
        &mut self,
        objects: &[(&'static Kind, Arc<DynamicObject>)],
        leader: bool,
    ) {
        let mut problems: HashMap<ObjectKey, Problem> = HashMap::new();
        let mut loaded = Vec::new();
        let mut deleting = Vec::new();
        for (kind, object) in objects {
            let key = key_of(kind, object);
            if object.metadata.deletion_timestamp.is_some() {
                deleting.push((*kind, object.clone()));
                continue;
            }
            let mut resource = match parse(kind, object) {
                Ok(resource) => resource,
                Err(message) => {
                    problems.insert(key, Problem::Invalid(message));
                    continue;
                }
            };
            if let Err(unresolved) = self.resolver.resolve(&mut resource).await {
                problems.insert(key, Problem::Unresolved(unresolved));
                continue;
            }
            if let Resource::Broker(broker) = &resource {
                if let Err(message) = self.routes.backend_for_class(broker_class(broker)) {
                    problems.insert(key, Problem::Backend(message));
                    continue;
                }
            }
            loaded.push(Loaded {
                origin: "the API server".into(),
                resource,
            });
        }
        let (desired, rejected) = build_desired_lenient(loaded);
        for rejected in rejected {
            problems.insert(rejected.key.clone(), Problem::Rejected(rejected));
        }
        if let Err(error) = self.runtime.reconcile(&desired).await {
            tracing::warn!(%error, "cannot run the resources; retrying on the next change or resync");
            return;
        }
        self.finalize(&deleting, leader).await;
        if !leader {
            return;
        }
        for (kind, object) in objects {
            if object.metadata.deletion_timestamp.is_some() {
                continue;
            }
            if kind.kind == kinds::TRIGGER.kind {
                self.writer.finalizer(kind, object, true).await;
            }
            let key = key_of(kind, object);
            let status = match problems.get(&key) {
                Some(problem) => problem_status(kind, problem, object.metadata.generation),
                None => self.running_status(kind, object),
            };
            if let Some(status) = status {
                self.writer.status(kind, object, status).await;
            }
        }
    }

    /// Deleted Triggers: their consumer state goes, then (on the leader) the finalizer.
    async fn finalize(&self, deleting: &[(&'static Kind, Arc<DynamicObject>)], leader: bool) {
        for (kind, object) in deleting {
            let has_finalizer = object
                .metadata
                .finalizers
                .iter()
                .flatten()
                .any(|f| f == FINALIZER);
            if kind.kind != kinds::TRIGGER.kind || !has_finalizer {
                continue;
            }
            let Ok(Resource::Trigger(trigger)) = parse(kind, object) else {
                // Nothing of it can have run.
                if leader {
                    self.writer.finalizer(kind, object, false).await;
                }
                continue;
            };
            let namespace = object.metadata.namespace.as_deref().unwrap_or("default");
            match self.runtime.forget_trigger(namespace, &trigger).await {
                Ok(()) if leader => self.writer.finalizer(kind, object, false).await,
                Ok(()) => {}
                Err(error) => tracing::warn!(
                    trigger = object.metadata.name.as_deref().unwrap_or_default(),
                    %error,
                    "cannot delete the trigger's consumer state; the finalizer stays"
                ),
            }
        }
    }

    /// The status of an object that runs.
    fn running_status(&self, kind: &Kind, object: &DynamicObject) -> Option<Value> {
        let resource = parse(kind, object).ok()?;
        let (namespace, name) = resource.namespaced_name();
        let generation = object.metadata.generation;
        let status = match &resource {
            Resource::Broker(broker) => serde_json::to_value(crate::status::broker(
                &self.runtime,
                &self.external_url,
                broker,
            )),
            Resource::Trigger(_) => serde_json::to_value(crate::status::trigger(
                &self.runtime,
                &namespace,
                &name,
                generation,
            )),
            _ => serde_json::to_value(crate::status::source(&self.runtime, &resource)),
        };
        status.ok()
    }
}

/// The status of an object that does not run.
fn problem_status(kind: &Kind, problem: &Problem, generation: Option<i64>) -> Option<Value> {
    let condition = |type_: &str, reason: &str, message: &str| json!({"type": type_, "status": "False", "reason": reason, "message": message});
    let conditions = match problem {
        Problem::Rejected(rejected) => return Some(crate::status::rejected(rejected, generation)),
        Problem::Invalid(message) => vec![condition("Ready", "InvalidSpec", message)],
        Problem::Backend(message) => vec![condition("Ready", "BackendNotConfigured", message)],
        Problem::Unresolved(Unresolved { field, message }) => {
            let type_ = match *field {
                "spec.subscriber" => "SubscriberResolved",
                "spec.sink" => "SinkProvided",
                _ => "DeadLetterSinkResolved",
            };
            let reason = if kind.source {
                "NotFound"
            } else {
                "Unresolved"
            };
            let message = format!("{field}: {message}");
            vec![
                condition(type_, reason, &message),
                condition("Ready", reason, &message),
            ]
        }
    };
    Some(json!({"observedGeneration": generation, "conditions": conditions}))
}
