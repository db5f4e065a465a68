//! One pass of the controller: the objects on the API server → the desired state → the
//! runtime; then (on the leader) finalizers and status.

use std::collections::HashMap;
use std::sync::Arc;

use herald_broker::log::routed::RoutedLog;
use kube::api::DynamicObject;
use serde_json::{json, Value};

use super::identities::{self, Identities};
use super::resolve::{Resolver, Unresolved};
use super::workloads::{TokenMount, WorkloadError, Workloads};
use super::writeback::{Writer, FINALIZER};
use crate::annotations;
use crate::config::{build_desired_lenient, Desired, Loaded, RefMap, Resource, Target};
use crate::kinds::ObjectKey;
use crate::kinds::{self, Kind};
use crate::runtime::Runtime;
use crate::runtime::{FailedObject, RuntimeError};
use crate::status;
use herald_broker::BrokerKey;
use herald_crds::Condition;

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
    /// A trigger whose broker exists but does not run.
    BrokerNotReady(String),
    /// Valid, but running it failed (its backend is down, ...): the others run meanwhile.
    Failed {
        reason: &'static str,
        message: String,
    },
}

impl Problem {
    fn message(&self) -> String {
        match self {
            Problem::Invalid(message)
            | Problem::Backend(message)
            | Problem::BrokerNotReady(message)
            | Problem::Failed { message, .. } => message.clone(),
            Problem::Unresolved(Unresolved { field, message }) => format!("{field}: {message}"),
            Problem::Rejected(rejected) => rejected.error.to_string(),
        }
    }
}

pub struct Reconciler {
    pub runtime: Runtime,
    pub routes: Arc<RoutedLog>,
    pub resolver: Resolver,
    pub writer: Writer,
    pub workloads: Workloads,
    /// With sender identity on: the senders' ServiceAccounts.
    pub identities: Option<Identities>,
    /// Brokers are addressed at `{external_url}/{namespace}/{name}`.
    pub external_url: String,
    /// Brokers get a finalizer that deletes their log (`--delete-broker-logs`).
    pub delete_broker_logs: bool,
}

/// Why an object from the API server is not a valid resource of its kind.
#[derive(Debug, thiserror::Error)]
enum ParseError {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Yaml(#[from] serde_yaml_ng::Error),
    /// A field at `path` does not fit Herald's type.
    #[error("{path}: {source}")]
    Field {
        path: String,
        #[source]
        source: serde_yaml_ng::Error,
    },
}

/// An object as Herald's typed resource (apiVersion and kind filled in, status dropped).
fn parse(kind: &Kind, object: &DynamicObject) -> Result<Resource, ParseError> {
    let mut value = serde_json::to_value(object)?;
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), kind.api_version().into());
        map.insert("kind".into(), kind.kind.into());
        map.remove("status");
        // Knative lets a Broker leave out `spec` (all of it has defaults).
        map.entry("spec").or_insert_with(|| json!({}));
    }
    let yaml = serde_yaml_ng::to_value(&value)?;
    Resource::parse(kind, yaml).map_err(|e| ParseError::Field {
        path: e.path().to_string(),
        source: e.into_inner(),
    })
}

/// Why a workload has no sink address.
#[derive(Debug, thiserror::Error)]
enum SinkError {
    /// Its `ref` does not resolve (the resolver says why).
    #[error("{0}")]
    Unresolved(String),
    #[error("broker {0} does not exist")]
    NoBroker(BrokerKey),
    #[error("spec.sink: set ref or uri")]
    Unset,
}

fn key_of(kind: &Kind, object: &DynamicObject) -> ObjectKey {
    ObjectKey::new(
        kind,
        object.metadata.namespace.as_deref().unwrap_or("default"),
        object.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// The objects of one pass, sorted by what happens to them.
#[derive(Default)]
struct Sorted {
    /// To run in Herald.
    loaded: Vec<Loaded>,
    /// Why the others do not run.
    problems: HashMap<ObjectKey, Problem>,
    /// Deleted, waiting for their finalizer.
    deleting: Vec<(&'static Kind, Arc<DynamicObject>)>,
    /// ContainerSources and SinkBindings: they run on the cluster, not in Herald.
    workloads: Vec<(ObjectKey, Resource)>,
}

impl Reconciler {
    /// Makes the runtime match `objects`; with `leader`, also writes finalizers and status.
    pub async fn reconcile(
        &mut self,
        objects: &[(&'static Kind, Arc<DynamicObject>)],
        leader: bool,
    ) {
        let Sorted {
            loaded,
            mut problems,
            deleting,
            workloads,
        } = self.sort(objects).await;
        let (mut desired, rejected) = build_desired_lenient(loaded, &RefMap::default());
        if !leader {
            // Sources would send everything once per replica: only the leader runs them.
            // Webhooks are the exception: every replica serves them behind the Service.
            desired
                .sources
                .retain(|key, _| key.kind == kinds::WEBHOOK_SOURCE.kind);
        }
        for rejected in rejected {
            // A trigger's broker that exists but does not run is not "missing": say why.
            let broker_problem = rejected
                .missing_broker
                .as_ref()
                .map(|b| ObjectKey::new(&kinds::BROKER, &b.namespace, &b.name))
                .and_then(|key| Some((key.name.clone(), problems.get(&key)?.message())));
            let problem = match broker_problem {
                Some((broker, why)) => {
                    Problem::BrokerNotReady(format!("Broker {broker:?} is not ready: {why}"))
                }
                None => Problem::Rejected(rejected.clone()),
            };
            problems.insert(rejected.key, problem);
        }
        // One object that cannot run (a broker whose backend is down) must not stop the
        // others: leave it out, with its triggers, and run the rest. Each round removes one.
        while let Err(error) = self.runtime.reconcile(&desired).await {
            if !leave_out(&mut desired, &mut problems, &error) {
                tracing::warn!(%error, "cannot run the resources; retrying on the next change or resync");
                return;
            }
            tracing::warn!(%error, "cannot run this object; the others run; retrying on the next change or resync");
        }
        self.finalize(&deleting, leader).await;
        if !leader {
            return;
        }
        // Only the leader touches the cluster: workloads, finalizers, status.
        let mut statuses = HashMap::new();
        for (key, resource) in workloads {
            statuses.insert(key, self.run_workload(&desired, resource).await);
        }
        for (kind, object) in objects {
            if object.metadata.deletion_timestamp.is_some() {
                continue;
            }
            if self.wants_finalizer(kind) {
                self.writer.finalizer(kind, object, true).await;
            }
            let key = key_of(kind, object);
            let mut status = match (statuses.remove(&key), problems.get(&key)) {
                (Some(status), _) => Some(status),
                (None, Some(problem)) => {
                    Some(problem_status(kind, problem, object.metadata.generation))
                }
                (None, None) => self.running_status(&key, &desired),
            };
            if let Some(identities) = &self.identities {
                if let Some(account) = identities::sender_account(kind, &key.name) {
                    let created = identities.ensure(kind, object, &account).await;
                    if let Some(status) = &mut status {
                        identities::decorate(status, &account, &created);
                    }
                }
            }
            if let Some(status) = status {
                self.writer.status(kind, object, status).await;
            }
        }
    }

    /// Parses, resolves and checks each object on its own.
    async fn sort(&self, objects: &[(&'static Kind, Arc<DynamicObject>)]) -> Sorted {
        let mut sorted = Sorted::default();
        for (kind, object) in objects {
            let key = key_of(kind, object);
            if object.metadata.deletion_timestamp.is_some() {
                sorted.deleting.push((*kind, object.clone()));
                continue;
            }
            let mut resource = match parse(kind, object) {
                Ok(resource) => resource,
                Err(error) => {
                    sorted
                        .problems
                        .insert(key, Problem::Invalid(error.to_string()));
                    continue;
                }
            };
            if matches!(
                resource,
                Resource::ContainerSource(_) | Resource::SinkBinding(_)
            ) {
                if let Err(error) = crate::config::validate_cluster_workload(&resource) {
                    sorted
                        .problems
                        .insert(key, Problem::Invalid(error.to_string()));
                    continue;
                }
                sorted.workloads.push((key, resource));
                continue;
            }
            if let Err(unresolved) = self.resolver.resolve(&mut resource).await {
                sorted.problems.insert(key, Problem::Unresolved(unresolved));
                continue;
            }
            if let Resource::Broker(broker) = &resource {
                if let Err(message) = self
                    .routes
                    .backend_for_class(annotations::broker_class(&broker.metadata))
                {
                    sorted
                        .problems
                        .insert(key, Problem::Backend(message.to_string()));
                    continue;
                }
            }
            sorted.loaded.push(Loaded {
                origin: "the API server".into(),
                resource,
            });
        }
        sorted
    }

    /// Triggers and SinkBindings always hold a finalizer (their cleanup must run before
    /// they go); Brokers only when their log is to be deleted with them.
    fn wants_finalizer(&self, kind: &Kind) -> bool {
        match kind.kind {
            "Trigger" | "SinkBinding" => true,
            "Broker" => self.delete_broker_logs,
            _ => false,
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
            if !has_finalizer {
                continue;
            }
            if kind.kind == kinds::SINK_BINDING.kind {
                if !leader {
                    continue;
                }
                // The subjects lose the variables; a subject that is gone has nothing to undo.
                // An invalid binding never bound anything.
                let undone = match parse(kind, object) {
                    Ok(resource) => {
                        match (
                            crate::config::validate_cluster_workload(&resource),
                            resource,
                        ) {
                            (Ok(()), Resource::SinkBinding(binding)) => {
                                self.workloads.bind(&binding, None, None).await.map(|_| ())
                            }
                            _ => Ok(()),
                        }
                    }
                    Err(_) => Ok(()),
                };
                match undone {
                    // A subject that is gone has nothing to undo.
                    Err(error) if !matches!(error, WorkloadError::SubjectMissing { .. }) => {
                        tracing::warn!(
                            binding = object.metadata.name.as_deref().unwrap_or_default(),
                            %error,
                            "cannot unbind; the finalizer stays"
                        )
                    }
                    _ => self.writer.finalizer(kind, object, false).await,
                }
                continue;
            }
            if kind.kind == kinds::BROKER.kind {
                self.finalize_broker(kind, object, leader).await;
                continue;
            }
            if kind.kind != kinds::TRIGGER.kind {
                continue;
            }
            let Ok(Resource::Trigger(trigger)) = parse(kind, object) else {
                // Nothing of it can have run.
                if leader {
                    self.writer.finalizer(kind, object, false).await;
                }
                continue;
            };
            let key = (
                object
                    .metadata
                    .namespace
                    .as_deref()
                    .unwrap_or("default")
                    .to_owned(),
                trigger.metadata.name.clone().unwrap_or_default(),
            );
            match self
                .runtime
                .forget_trigger(&key, &trigger.spec.broker)
                .await
            {
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

    /// A deleted Broker: its log goes when `--delete-broker-logs` asks for it (the leader
    /// does it, once), then the finalizer.
    async fn finalize_broker(&self, kind: &Kind, object: &DynamicObject, leader: bool) {
        if !leader {
            return;
        }
        if self.delete_broker_logs {
            if let Ok(Resource::Broker(broker)) = parse(kind, object) {
                let key = herald_broker::BrokerKey::new(
                    object.metadata.namespace.as_deref().unwrap_or("default"),
                    object.metadata.name.as_deref().unwrap_or_default(),
                );
                let class = annotations::broker_class(&broker.metadata);
                if let Err(error) = self.runtime.delete_broker_log(&key, class).await {
                    tracing::warn!(broker = %key, %error, "cannot delete the broker's log; the finalizer stays");
                    return;
                }
                tracing::info!(broker = %key, "deleted the broker's log");
            }
        }
        self.writer.finalizer(kind, object, false).await;
    }

    /// Where a workload sends events: a Broker by its external address (pods cannot reach
    /// Herald's own listener address), anything else as the resolver says.
    async fn workload_sink(
        &self,
        desired: &crate::config::Desired,
        resource: &mut Resource,
    ) -> Result<String, SinkError> {
        let (namespace, _) = resource.namespaced_name();
        self.resolver
            .resolve(resource)
            .await
            .map_err(|u| SinkError::Unresolved(u.message))?;
        let sink = resource
            .source_spec()
            .map(|spec| spec.sink().clone())
            .unwrap_or_default();
        match Target::of(&sink, &namespace).broker() {
            Some(broker) if !desired.brokers.contains_key(broker) => {
                Err(SinkError::NoBroker(broker.clone()))
            }
            Some(broker) => Ok(format!(
                "{}/{}/{}{}",
                self.external_url,
                broker.namespace,
                broker.name,
                sink.uri.as_deref().unwrap_or_default()
            )),
            None => sink.uri.ok_or(SinkError::Unset),
        }
    }

    /// With sender identity on, a workload's token at `/oidc/token`: its ServiceAccount and
    /// its (resolved) sink's audience; none for a sink without an audience (a URL without
    /// `audience`), as in Knative.
    fn token_mount(&self, resource: &Resource) -> Option<TokenMount> {
        self.identities.as_ref()?;
        let (namespace, name) = resource.namespaced_name();
        let kind = resource.kind();
        let sink = resource.source_spec()?.sink().clone();
        Some(TokenMount {
            service_account: identities::sender_account(kind, &name)?,
            audience: Target::of(&sink, &namespace).audience()?,
        })
    }

    /// Runs a ContainerSource's Deployment or a SinkBinding's injection; returns its status.
    async fn run_workload(&self, desired: &Desired, mut resource: Resource) -> Value {
        let generation = resource.meta().generation;
        let sink = match self.workload_sink(desired, &mut resource).await {
            Ok(sink) => sink,
            Err(error) => {
                let message = error.to_string();
                return status::not_running(
                    generation,
                    vec![
                        status::failed("SinkProvided", "NotFound", message.clone()),
                        status::failed("Ready", "SinkNotProvided", message),
                    ],
                );
            }
        };
        let mut conditions = vec![Condition::new("SinkProvided", true, None, None)];
        let token = self.token_mount(&resource);
        let running = match &resource {
            Resource::ContainerSource(source) => {
                let has_container = source
                    .spec
                    .template
                    .spec
                    .as_ref()
                    .is_some_and(|pod| !pod.containers.is_empty());
                let state = if has_container {
                    self.workloads
                        .container_source(source, &sink, token.as_ref())
                        .await
                        .map_err(|error| error.to_string())
                } else {
                    Err("spec.template.spec.containers: one container is required".to_owned())
                };
                let (adapter, running) = match state {
                    Ok(state) if state.ready => (
                        Condition::new("ReceiveAdapterReady", true, None, None),
                        Ok(()),
                    ),
                    Ok(state) => (
                        status::failed("ReceiveAdapterReady", state.reason, state.message.clone()),
                        Err((state.reason, state.message)),
                    ),
                    Err(message) => (
                        status::failed("ReceiveAdapterReady", "DeploymentFailed", message.clone()),
                        Err(("Failed", message)),
                    ),
                };
                conditions.push(adapter);
                running
            }
            Resource::SinkBinding(binding) => self
                .workloads
                .bind(binding, Some(&sink), token.as_ref())
                .await
                .map(|_| ())
                .map_err(|error| ("Failed", error.to_string())),
            _ => Err(("Failed", "not a workload".to_owned())),
        };
        conditions.push(match running {
            Ok(()) => Condition::new("Ready", true, None, None),
            Err((reason, message)) => status::failed("Ready", reason, message),
        });
        json!({"observedGeneration": generation, "conditions": conditions, "sinkUri": sink})
    }

    /// The status of an object that runs, from what the desired state holds for it.
    fn running_status(&self, key: &ObjectKey, desired: &Desired) -> Option<Value> {
        let (namespace, name) = (key.namespace.clone(), key.name.clone());
        let status = if key.kind == kinds::BROKER.kind {
            let key = BrokerKey::new(namespace, name);
            let broker = desired.brokers.get(&key)?;
            serde_json::to_value(status::broker(
                &self.runtime,
                &self.external_url,
                &key,
                broker,
            ))
        } else if key.kind == kinds::TRIGGER.kind {
            let generation = desired.triggers.get(&(namespace, name))?.generation;
            serde_json::to_value(status::trigger(
                &self.runtime,
                &key.namespace,
                &key.name,
                generation,
            ))
        } else if let Some(status) = crate::flow_status::status(
            &self.runtime,
            &self.external_url,
            desired,
            key.kind,
            &key.namespace,
            &key.name,
            None,
        ) {
            Ok(status)
        } else if key.kind == kinds::EVENT_TYPE.kind {
            serde_json::to_value(crate::catalog::event_type_status(
                desired,
                desired.event_types.get(key)?,
            ))
        } else if key.kind == kinds::EVENT_POLICY.kind {
            let plan = desired.policies.policies.get(&(namespace, name))?;
            serde_json::to_value(crate::policy::status::policy_status(
                plan,
                &desired.policies,
                self.runtime.policy_settings(),
            ))
        } else {
            let generation = desired.sources.get(key)?.generation;
            serde_json::to_value(status::source(&self.runtime, key, generation))
        };
        let mut status = status.ok()?;
        crate::policy::status::decorate(
            &desired.policies,
            self.runtime.policy_settings(),
            key.kind,
            &key.namespace,
            &key.name,
            &mut status,
        );
        // Herald delivers to its own brokers over its listener; the cluster knows them by
        // the external URL.
        let internal = self.runtime.ingress_base_url();
        for field in ["subscriberUri", "deadLetterSinkUri", "sinkUri"] {
            if let Some(uri) = status[field].as_str() {
                if let Some(path) = uri.strip_prefix(internal) {
                    status[field] = Value::String(format!("{}{path}", self.external_url));
                }
            }
        }
        Some(status)
    }
}

/// Takes the object `error` is about out of `desired` (a broker with its triggers), saying
/// why in `problems`; `false` when the error is about no object still in `desired`.
fn leave_out(
    desired: &mut crate::config::Desired,
    problems: &mut HashMap<ObjectKey, Problem>,
    error: &RuntimeError,
) -> bool {
    let problem = Problem::Failed {
        reason: error.reason(),
        message: error.to_string(),
    };
    match error.failed_object() {
        Some(FailedObject::Broker(broker)) if desired.brokers.remove(&broker).is_some() => {
            let why = format!("Broker {:?} is not ready: {error}", broker.name);
            desired.triggers.retain(|(namespace, name), trigger| {
                let on_broker = trigger.broker == broker;
                if on_broker {
                    problems.insert(
                        ObjectKey::new(&kinds::TRIGGER, namespace, name),
                        Problem::BrokerNotReady(why.clone()),
                    );
                }
                !on_broker
            });
            problems.insert(
                ObjectKey::new(&kinds::BROKER, &broker.namespace, &broker.name),
                problem,
            );
            true
        }
        Some(FailedObject::Trigger(trigger)) if desired.triggers.remove(&trigger).is_some() => {
            problems.insert(
                ObjectKey::new(&kinds::TRIGGER, &trigger.0, &trigger.1),
                problem,
            );
            true
        }
        _ => false,
    }
}

/// The status of an object that does not run.
fn problem_status(kind: &Kind, problem: &Problem, generation: Option<i64>) -> Value {
    let conditions = match problem {
        Problem::Rejected(rejected) => return status::rejected(rejected, generation),
        Problem::BrokerNotReady(message) => vec![
            status::failed("BrokerReady", "BrokerNotReady", message.clone()),
            status::failed("Ready", "BrokerNotReady", message.clone()),
        ],
        Problem::Failed { reason, message } => {
            vec![status::failed("Ready", reason, message.clone())]
        }
        Problem::Invalid(message) => vec![status::failed("Ready", "InvalidSpec", message.clone())],
        Problem::Backend(message) => {
            vec![status::failed(
                "Ready",
                "BackendNotConfigured",
                message.clone(),
            )]
        }
        Problem::Unresolved(Unresolved { field, message }) => {
            let type_ = match field.as_str() {
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
                status::failed(type_, reason, message.clone()),
                status::failed("Ready", reason, message),
            ]
        }
    };
    status::not_running(generation, conditions)
}
