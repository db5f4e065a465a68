//! The control plane: changes to resources are validated against everything else Herald runs,
//! applied to the runtime, then stored. One change at a time; reads see a consistent state.

mod http;

use std::sync::Arc;

use herald_broker::log::ParkedRecord;
use herald_broker::RecordId;
use herald_triggers::process::{redrive, Outcome};
use herald_triggers::{TriggerPlan, TriggerStats};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::{
    build_desired, check_secrets, BrokerPlan, ConfigError, Desired, Loaded, RefMap, Resource,
    TriggerKey,
};
use crate::kinds::Kind;
use crate::kinds::ObjectKey;
use crate::runtime::Runtime;
use crate::store::{FileChanges, Owner, ResourceStore, StoreError};
use herald_sources::secrets::SecretReader;

/// Why a request to the control plane failed; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// 404
    #[error("{kind} {namespace}/{name} not found")]
    NotFound {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    /// 409: it exists already.
    #[error("{kind} {namespace}/{name} already exists")]
    AlreadyExists {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    /// 409: stale `resourceVersion`, a file-owned object, or a change others depend on.
    #[error("{0}")]
    Conflict(String),
    /// 400: the request itself is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 422: the object is well-formed but not valid here, with the field at fault.
    #[error("{0}")]
    Invalid(ConfigError),
    /// 503: the log or another dependency failed; nothing was changed.
    #[error("{0}")]
    Unavailable(String),
    /// 500
    #[error("{0}")]
    Internal(String),
}

/// Which parked events a dead-letter operation is about.
#[derive(Debug, Clone)]
pub enum Selection {
    All,
    Ids(Vec<RecordId>),
}

/// How a redrive went, per event.
#[derive(Debug, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RedriveReport {
    pub delivered: Vec<String>,
    pub dead_lettered: Vec<String>,
    /// Failed again and parked again (with the new failure).
    pub parked: Vec<String>,
    /// Asked for but not in the dead-letter store.
    pub not_found: Vec<String>,
}

pub struct ControlPlane {
    store: ResourceStore,
    runtime: Runtime,
    desired: Desired,
    /// `--resolve`: where non-Broker refs point off the cluster.
    refs: RefMap,
    /// `--secrets-dir` and the environment: the Secrets KafkaSources name.
    secrets: Arc<dyn SecretReader>,
    /// Cut redrives short at shutdown.
    shutdown: CancellationToken,
}

/// The `herald.dev/start-from`-style id of a parked event: `{partition}-{offset}`.
pub fn record_id_text(id: RecordId) -> String {
    format!("{}-{}", id.partition, id.offset)
}

pub fn parse_record_id(text: &str) -> Option<RecordId> {
    let (partition, offset) = text.split_once('-')?;
    Some(RecordId {
        partition: partition.parse().ok()?,
        offset: offset.parse().ok()?,
    })
}

impl ControlPlane {
    pub fn new(
        store: ResourceStore,
        runtime: Runtime,
        desired: Desired,
        refs: RefMap,
        secrets: Arc<dyn SecretReader>,
    ) -> Self {
        Self {
            store,
            runtime,
            desired,
            refs,
            secrets,
            shutdown: CancellationToken::new(),
        }
    }

    /// Validates the state `change` would make, runs it, and only then stores it; on a
    /// failure the running state is put back.
    async fn apply(
        &mut self,
        key: &ObjectKey,
        change: Option<Resource>,
    ) -> Result<(), ControlError> {
        let candidate = self.store.loaded_with(key, change.as_ref());
        let secrets_read = check_secrets(&candidate, self.secrets.as_ref()).await;
        let desired = secrets_read
            .and_then(|()| build_desired(candidate, &self.refs))
            .map_err(|error| {
                if change.is_none() {
                    ControlError::Conflict(format!(
                        "cannot delete {} {}/{}: {error}",
                        key.kind, key.namespace, key.name
                    ))
                } else {
                    ControlError::Invalid(error)
                }
            })?;
        self.run_or_restore(&desired).await?;
        let stored = match change {
            Some(resource) => self.store.save(resource),
            None => self.store.delete(key),
        };
        if let Err(error) = stored {
            tracing::error!(%error, "cannot store a change");
            let _ = self.runtime.reconcile(&self.desired).await;
            if error.is_disk_full() {
                return Err(ControlError::Unavailable(
                    "the data directory's disk is full: the change could not be stored; nothing was changed, retry once space is freed".into(),
                ));
            }
            return Err(ControlError::Internal(
                "the change could not be stored; nothing was changed (see Herald's log)".into(),
            ));
        }
        self.desired = desired;
        Ok(())
    }

    /// Replaces the objects of the config files with `files` (read again): validated as a
    /// whole, run, and only then kept; on any failure nothing changes.
    pub async fn reload_files(&mut self, files: Vec<Loaded>) -> Result<FileChanges, ControlError> {
        let mut candidate = self.store.clone();
        let changes = candidate
            .replace_files(files)
            .map_err(|error| match error {
                StoreError::Config(error) => ControlError::Invalid(error),
                other => ControlError::Conflict(other.to_string()),
            })?;
        let loaded = candidate.loaded();
        check_secrets(&loaded, self.secrets.as_ref())
            .await
            .map_err(ControlError::Invalid)?;
        let desired = build_desired(loaded, &self.refs).map_err(ControlError::Invalid)?;
        self.run_or_restore(&desired).await?;
        desired.log_waiting_triggers();
        self.store = candidate;
        self.desired = desired;
        Ok(changes)
    }

    /// Runs `desired`; if the runtime refuses it, puts the running state back.
    async fn run_or_restore(&mut self, desired: &Desired) -> Result<(), ControlError> {
        let Err(error) = self.runtime.reconcile(desired).await else {
            return Ok(());
        };
        if let Err(again) = self.runtime.reconcile(&self.desired).await {
            tracing::error!(%again, "cannot restore the previous running state");
        }
        tracing::warn!(%error, "cannot apply a change");
        Err(ControlError::Unavailable(
            "the event log is unavailable; nothing was changed, retry later".into(),
        ))
    }

    fn writable(&self, key: &ObjectKey) -> Result<(), ControlError> {
        if let Some(Owner::File(file)) = self.store.get(key).map(|e| &e.owner) {
            return Err(ControlError::Conflict(format!(
                "{} {}/{} is declared in {file}; change it there (objects from --config files are read-only through the API)",
                key.kind, key.namespace, key.name
            )));
        }
        Ok(())
    }

    /// Knative refuses creating an EventPolicy, or changing its spec, while OIDC
    /// authentication is off: such a policy would protect nothing.
    fn check_policy_allowed(
        &self,
        resource: &Resource,
        current: Option<&Resource>,
    ) -> Result<(), ControlError> {
        let Resource::EventPolicy(_) = resource else {
            return Ok(());
        };
        if self.runtime.policy_settings().authentication
            || current.is_some_and(|c| c.spec_json() == resource.spec_json())
        {
            return Ok(());
        }
        let (namespace, name) = resource.namespaced_name();
        Err(ControlError::Invalid(ConfigError {
            origin: "request body".into(),
            resource: Some(format!("EventPolicy {namespace}/{name}")),
            field: Some("spec".into()),
            message: "OIDC authentication is not enabled: an EventPolicy takes effect only when ingress authenticates senders (start Herald with OIDC authentication on)".into(),
        }))
    }

    /// POST: a new object.
    pub async fn create(&mut self, mut resource: Resource) -> Result<Resource, ControlError> {
        let key = ObjectKey::of(&resource);
        if self.store.get(&key).is_some() {
            self.writable(&key)?;
            return Err(ControlError::AlreadyExists {
                kind: key.kind,
                namespace: key.namespace,
                name: key.name,
            });
        }
        resource.clear_status();
        self.check_policy_allowed(&resource, None)?;
        let version = self.store.next_version();
        let meta = resource.meta_mut();
        meta.namespace = Some(key.namespace.clone());
        meta.uid = Some(uuid::Uuid::new_v4().to_string());
        meta.generation = Some(1);
        meta.resource_version = Some(version);
        meta.creation_timestamp = Some(crate::store::now());
        self.apply(&key, Some(resource.clone())).await?;
        Ok(resource)
    }

    /// PUT: replaces an API object; a `metadata.resourceVersion` in the body must match.
    pub async fn replace(&mut self, mut resource: Resource) -> Result<Resource, ControlError> {
        let key = ObjectKey::of(&resource);
        let Some(current) = self.store.get(&key).map(|e| e.resource.clone()) else {
            return Err(not_found(&key));
        };
        self.writable(&key)?;
        let current_meta = current.meta();
        if let Some(asked) = &resource.meta().resource_version {
            if Some(asked) != current_meta.resource_version.as_ref() {
                return Err(ControlError::Conflict(format!(
                    "{} {}/{} was changed: metadata.resourceVersion is {}, not {asked}; read it again and retry",
                    key.kind,
                    key.namespace,
                    key.name,
                    current_meta.resource_version.as_deref().unwrap_or("?")
                )));
            }
        }
        resource.clear_status();
        self.check_policy_allowed(&resource, Some(&current))?;
        let generation = current_meta.generation.unwrap_or(1)
            + i64::from(resource.spec_json() != current.spec_json());
        let (uid, created) = (
            current_meta.uid.clone(),
            current_meta.creation_timestamp.clone(),
        );
        let version = self.store.next_version();
        let meta = resource.meta_mut();
        meta.namespace = Some(key.namespace.clone());
        meta.uid = uid;
        meta.creation_timestamp = created;
        meta.generation = Some(generation);
        meta.resource_version = Some(version);
        self.apply(&key, Some(resource.clone())).await?;
        Ok(resource)
    }

    /// DELETE: removes an API object; refused while others refer to it.
    pub async fn delete(&mut self, key: &ObjectKey) -> Result<Resource, ControlError> {
        let Some(current) = self.store.get(key).map(|e| e.resource.clone()) else {
            return Err(not_found(key));
        };
        self.writable(key)?;
        self.apply(key, None).await?;
        Ok(current)
    }

    /// One object with its status.
    pub async fn get(&self, key: &ObjectKey) -> Result<serde_json::Value, ControlError> {
        let entry = self.store.get(key).ok_or_else(|| not_found(key))?;
        Ok(self.with_status(&entry.resource).await)
    }

    /// Objects of a kind with their status, in one namespace or all.
    pub async fn list(&self, kind: &Kind, namespace: Option<&str>) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for entry in self.store.list(kind, namespace) {
            out.push(self.with_status(&entry.resource).await);
        }
        if *kind == crate::kinds::EVENT_TYPE {
            out.extend(crate::catalog::auto_created(
                self.runtime.deps().ingress.brokers(),
                namespace,
            ));
        }
        out
    }

    /// The object as stored plus `status`: what is actually running.
    async fn with_status(&self, resource: &Resource) -> serde_json::Value {
        let (namespace, name) = resource.namespaced_name();
        let generation = resource.meta().generation;
        let mut value = resource.to_json();
        // As Kubernetes: every namespaced object says its namespace, `default` when the file
        // left it out.
        if let Some(meta) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            meta.entry("namespace")
                .or_insert_with(|| serde_json::Value::from(namespace.clone()));
        }
        let waiting_for = match resource {
            Resource::Trigger(_) => self
                .desired
                .waiting_triggers
                .get(&(namespace.clone(), name.clone())),
            _ => None,
        };
        if let (Some(broker), Some(object)) = (waiting_for, value.as_object_mut()) {
            let status = crate::status::waiting_for_broker(broker, generation);
            object.insert("status".into(), status);
            return value;
        }
        let runtime = &self.runtime;
        let status = match resource {
            // The running broker: its dead-letter sink's ref resolved.
            Resource::Broker(broker) => {
                let key = herald_broker::BrokerKey::new(namespace.clone(), name.clone());
                // Every stored broker is in the desired state; the object itself otherwise.
                let unchecked;
                let plan = match self.desired.brokers.get(&key) {
                    Some(plan) => plan,
                    None => {
                        unchecked = BrokerPlan::unchecked(broker);
                        &unchecked
                    }
                };
                serde_json::to_value(crate::status::broker(
                    runtime,
                    runtime.ingress_base_url(),
                    &key,
                    plan,
                ))
            }
            Resource::Trigger(_) => {
                let mut status = crate::status::trigger(runtime, &namespace, &name, generation);
                let running = runtime.trigger(&(namespace.clone(), name.clone()));
                let mut recent_errors = Vec::new();
                if let Some((plan, stats)) = running {
                    status.parked_events = runtime.parked_count(&plan).await;
                    status.lag_events = stats.lag_events();
                    status.lag_seconds = Some(stats.lag().as_secs_f64());
                    recent_errors = stats.recent_errors();
                }
                serde_json::to_value(status).map(|mut status| {
                    if !recent_errors.is_empty() {
                        status["recentErrors"] = serde_json::json!(recent_errors);
                    }
                    status
                })
            }
            Resource::Channel(_)
            | Resource::InMemoryChannel(_)
            | Resource::KafkaChannel(_)
            | Resource::Subscription(_)
            | Resource::Sequence(_)
            | Resource::Parallel(_)
            | Resource::EventTransform(_)
            | Resource::RequestReply(_) => Ok(self.flow_status(resource, &namespace, &name).await),
            Resource::EventType(event_type) => {
                let plan = match self.desired.event_types.get(&resource.key()) {
                    Some(plan) => Ok(plan.clone()),
                    None => crate::config::event_type::plan(event_type, &namespace),
                };
                match plan {
                    Ok(plan) => serde_json::to_value(crate::catalog::event_type_status(
                        &self.desired,
                        &plan,
                    )),
                    Err(error) => Ok(crate::status::not_running(
                        generation,
                        vec![crate::status::failed(
                            "Ready",
                            "InvalidSpec",
                            error.to_string(),
                        )],
                    )),
                }
            }
            Resource::EventPolicy(policy) => {
                let plan = match self
                    .desired
                    .policies
                    .policies
                    .get(&(namespace.clone(), name.clone()))
                {
                    Some(plan) => Ok(plan.clone()),
                    None => crate::config::policy_plan::PolicyPlan::of(
                        &policy.spec,
                        &namespace,
                        &name,
                        generation,
                    )
                    .map(Arc::new),
                };
                match plan {
                    Ok(plan) => serde_json::to_value(crate::policy::status::policy_status(
                        &plan,
                        &self.desired.policies,
                        runtime.policy_settings(),
                    )),
                    Err(error) => Ok(crate::status::not_running(
                        generation,
                        vec![crate::status::failed(
                            "Ready",
                            "InvalidSpec",
                            error.to_string(),
                        )],
                    )),
                }
            }
            _ => serde_json::to_value(crate::status::source(runtime, &resource.key(), generation)),
        };
        if let (Some(object), Ok(mut status)) = (value.as_object_mut(), status) {
            crate::policy::status::decorate(
                &self.desired.policies,
                runtime.policy_settings(),
                resource.kind().kind,
                &namespace,
                &name,
                &mut status,
            );
            object.insert("status".into(), status);
        }
        value
    }

    /// A channel's, Subscription's, Sequence's or Parallel's status; a Subscription's with
    /// the events it parked.
    async fn flow_status(
        &self,
        resource: &Resource,
        namespace: &str,
        name: &str,
    ) -> serde_json::Value {
        let runtime = &self.runtime;
        let generation = resource.meta().generation;
        let Some(mut status) = crate::flow_status::status(
            runtime,
            runtime.ingress_base_url(),
            &self.desired,
            resource.kind().kind,
            namespace,
            name,
            generation,
        ) else {
            return crate::status::not_running(
                generation,
                vec![crate::status::failed(
                    "Ready",
                    "NotRunning",
                    "Herald does not run it",
                )],
            );
        };
        if let Resource::Subscription(_) = resource {
            let key = (
                namespace.to_owned(),
                crate::config::flows::subscription_trigger(name),
            );
            if let Some((plan, _)) = runtime.trigger(&key) {
                let parked = runtime
                    .deps()
                    .log
                    .parked(&plan.broker, &plan.consumer_name())
                    .await
                    .map(|p| p.len() as u64);
                if let Ok(parked) = parked {
                    status["parkedEvents"] = serde_json::json!(parked);
                }
            }
        }
        status
    }

    /// The running trigger's plan and statistics, or why there is none.
    pub fn trigger(
        &self,
        key: &TriggerKey,
    ) -> Result<(Arc<TriggerPlan>, Arc<TriggerStats>), ControlError> {
        let object = ObjectKey::new(&crate::kinds::TRIGGER, &key.0, &key.1);
        if self.store.get(&object).is_none() {
            return Err(not_found(&object));
        }
        self.runtime.trigger(key).ok_or_else(|| {
            ControlError::Unavailable(format!("trigger {}/{} is not running", key.0, key.1))
        })
    }

    /// What a redrive needs, so that it can run without holding the control plane.
    pub fn redrive_context(&self, key: &TriggerKey) -> Result<RedriveContext, ControlError> {
        let (plan, stats) = self.trigger(key)?;
        Ok(RedriveContext {
            plan,
            stats,
            deps: self.runtime.deps().clone(),
            shutdown: self.shutdown.clone(),
        })
    }

    /// Stops everything: redrives in progress, sources, dispatchers, the log.
    pub async fn shutdown(&mut self) {
        self.shutdown.cancel();
        self.runtime.shutdown().await;
    }
}

/// A trigger's dead-letter store, usable without the control plane's lock.
pub struct RedriveContext {
    pub plan: Arc<TriggerPlan>,
    pub stats: Arc<TriggerStats>,
    pub deps: herald_triggers::process::Deps,
    shutdown: CancellationToken,
}

impl RedriveContext {
    pub async fn parked(&self) -> Result<Vec<ParkedRecord>, ControlError> {
        self.deps
            .log
            .parked(&self.plan.broker, &self.plan.consumer_name())
            .await
            .map_err(log_unavailable)
    }

    fn select(
        parked: Vec<ParkedRecord>,
        selection: &Selection,
    ) -> (Vec<ParkedRecord>, Vec<String>) {
        match selection {
            Selection::All => (parked, Vec::new()),
            Selection::Ids(ids) => {
                let missing = ids
                    .iter()
                    .filter(|id| !parked.iter().any(|p| p.id == **id))
                    .map(|id| record_id_text(*id))
                    .collect();
                let chosen = parked.into_iter().filter(|p| ids.contains(&p.id)).collect();
                (chosen, missing)
            }
        }
    }

    /// Delivers the selected parked events again through the trigger's normal path, up to
    /// the trigger's in-flight limit at a time.
    pub async fn redrive(&self, selection: &Selection) -> Result<RedriveReport, ControlError> {
        use futures_util::StreamExt;
        let (chosen, not_found) = Self::select(self.parked().await?, selection);
        let mut report = RedriveReport {
            not_found,
            ..RedriveReport::default()
        };
        let results: Vec<_> = futures_util::stream::iter(chosen)
            .map(|parked| async move {
                let outcome =
                    redrive(&self.plan, &self.deps, &parked, &self.stats, &self.shutdown).await;
                (record_id_text(parked.id), outcome)
            })
            .buffer_unordered(self.plan.max_in_flight.max(1))
            .collect()
            .await;
        for (id, outcome) in results {
            match outcome {
                Ok(Outcome::Delivered) => report.delivered.push(id),
                Ok(Outcome::DeadLettered) => report.dead_lettered.push(id),
                Ok(Outcome::Parked) => report.parked.push(id),
                Ok(Outcome::Aborted) => {
                    return Err(ControlError::Unavailable("Herald is shutting down".into()))
                }
                Err(error) => return Err(log_unavailable(error)),
            }
        }
        for list in [
            &mut report.delivered,
            &mut report.dead_lettered,
            &mut report.parked,
        ] {
            list.sort();
        }
        Ok(report)
    }

    /// Removes the selected parked events; returns the ids removed and those not found.
    pub async fn purge(
        &self,
        selection: &Selection,
    ) -> Result<(Vec<String>, Vec<String>), ControlError> {
        let (chosen, not_found) = Self::select(self.parked().await?, selection);
        let ids: Vec<RecordId> = chosen.iter().map(|p| p.id).collect();
        self.deps
            .log
            .unpark(&self.plan.broker, &self.plan.consumer_name(), &ids)
            .await
            .map_err(log_unavailable)?;
        Ok((ids.into_iter().map(record_id_text).collect(), not_found))
    }
}

/// The log failed: details go to Herald's log, the client hears that it may retry.
fn log_unavailable(error: herald_broker::LogError) -> ControlError {
    tracing::warn!(%error, "dead-letter store unavailable");
    ControlError::Unavailable("the event log is unavailable; retry later".into())
}

fn not_found(key: &ObjectKey) -> ControlError {
    ControlError::NotFound {
        kind: key.kind,
        namespace: key.namespace.clone(),
        name: key.name.clone(),
    }
}

impl From<StoreError> for ControlError {
    fn from(error: StoreError) -> Self {
        ControlError::Internal(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_documents;
    use crate::runtime::testing::{runtime, trigger, BROKER};
    use herald_broker::log::memory::MemoryLog;

    /// A control plane over a store in `dir` holding `files` (a config file's text), on the
    /// in-memory log.
    async fn control(dir: &std::path::Path, files: &str) -> (ControlPlane, Arc<MemoryLog>) {
        let log = Arc::new(MemoryLog::new());
        let mut runtime = runtime(log.clone());
        let files = parse_documents("f.yaml", files).unwrap();
        let store = ResourceStore::open(dir, files).unwrap();
        let desired = build_desired(store.loaded(), &RefMap::default()).unwrap();
        runtime.reconcile(&desired).await.unwrap();
        let secrets = Arc::new(herald_sources::secrets::LocalSecrets::new(None));
        let control = ControlPlane::new(store, runtime, desired, RefMap::default(), secrets);
        (control, log)
    }

    fn resource(yaml: &str) -> Resource {
        parse_documents("body", yaml).unwrap().remove(0).resource
    }

    fn trigger_key(name: &str) -> ObjectKey {
        ObjectKey::new(&crate::kinds::TRIGGER, "default", name)
    }

    /// Create, replace (with and without a stale resourceVersion) and delete through the
    /// control plane; each change runs before it answers.
    #[tokio::test]
    async fn changes_run_before_they_answer() {
        let dir = tempfile::tempdir().unwrap();
        let (mut control, _) = control(dir.path(), BROKER).await;
        let created = control
            .create(resource(&trigger("t", "subscriber: {uri: 'http://s'}")))
            .await
            .unwrap();
        assert_eq!(created.meta().generation, Some(1));
        let object = control.get(&trigger_key("t")).await.unwrap();
        assert_eq!(object["status"]["subscriberUri"], "http://s");
        let conditions = object["status"]["conditions"].as_array().unwrap();
        let ready = conditions.iter().find(|c| c["type"] == "Ready").unwrap();
        assert_eq!(ready["status"], "True", "{ready}");

        let mut stale = resource(&trigger("t", "subscriber: {uri: 'http://new'}"));
        stale.meta_mut().resource_version = Some("0".into());
        let error = control.replace(stale).await.unwrap_err();
        assert!(matches!(error, ControlError::Conflict(_)), "{error}");
        let replaced = control
            .replace(resource(&trigger("t", "subscriber: {uri: 'http://new'}")))
            .await
            .unwrap();
        assert_eq!(replaced.meta().generation, Some(2));
        let object = control.get(&trigger_key("t")).await.unwrap();
        assert_eq!(object["status"]["subscriberUri"], "http://new");

        control.delete(&trigger_key("t")).await.unwrap();
        assert!(matches!(
            control.get(&trigger_key("t")).await,
            Err(ControlError::NotFound { .. })
        ));
        control.shutdown().await;
    }

    /// An invalid object changes nothing and says which field is wrong; objects from files
    /// cannot be changed through the API.
    #[tokio::test]
    async fn invalid_and_file_owned_changes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut control, _) = control(dir.path(), BROKER).await;
        let error = control
            .create(resource(&trigger(
                "t",
                "subscriber: {uri: 'http://s'}, filters: [{cesql: 'type = '}]",
            )))
            .await
            .unwrap_err();
        match error {
            ControlError::Invalid(error) => {
                assert_eq!(error.field.as_deref(), Some("spec.filters[0].cesql"))
            }
            other => panic!("{other}"),
        }
        assert!(control.list(&crate::kinds::TRIGGER, None).await.is_empty());
        let broker = ObjectKey::new(&crate::kinds::BROKER, "default", "b");
        let error = control.delete(&broker).await.unwrap_err();
        assert!(error.to_string().contains("declared in f.yaml"), "{error}");
        control.shutdown().await;
    }

    async fn parked(control: &ControlPlane) -> serde_json::Value {
        let object = control.get(&trigger_key("t")).await.unwrap();
        object["status"]["parkedEvents"].clone()
    }

    /// A trigger's status counts its parked events, including those parked after the first
    /// read, and stops counting those redriven or purged.
    #[tokio::test]
    async fn status_counts_parked_events() {
        let dir = tempfile::tempdir().unwrap();
        let files = format!("{BROKER}{}", trigger("t", "subscriber: {uri: 'http://s'}"));
        let (mut control, _) = control(dir.path(), &files).await;
        assert_eq!(parked(&control).await, 0);
        let context = control
            .redrive_context(&("default".to_owned(), "t".to_owned()))
            .unwrap();
        for offset in [1, 2] {
            let record = ParkedRecord {
                id: RecordId {
                    partition: 0,
                    offset,
                },
                record: herald_broker::log::testsuite::sample("p"),
                failure: herald_broker::log::Failure {
                    attempts: 1,
                    last_status: None,
                    last_error: String::new(),
                    reason: "test".into(),
                    parked_at: String::new(),
                },
            };
            context
                .deps
                .log
                .park(&context.plan.broker, &context.plan.consumer_name(), record)
                .await
                .unwrap();
        }
        assert_eq!(parked(&control).await, 2);
        let selection = Selection::Ids(vec![RecordId {
            partition: 0,
            offset: 1,
        }]);
        context.purge(&selection).await.unwrap();
        assert_eq!(parked(&control).await, 1);
        control.shutdown().await;
    }
}
