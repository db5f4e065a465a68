//! Desired resources → running brokers and dispatchers. Files (and later the admin API and the
//! Kubernetes controller) all feed [`Runtime::reconcile`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use crate::config::{Desired, Target, TriggerKey, TriggerSpecPlan};
use crate::identity::naming;
use crate::kinds::{ObjectKey, TRIGGER};
use crate::parked::CountingLog;
use crate::source_kinds::SourceContext;
use crate::sources::{SourceSet, SourceState};
use herald_broker::log::routed::RoutedLog;
use herald_broker::{BrokerKey, EventLog, Ingress};
use herald_triggers::auth::SenderIdentity;
use herald_triggers::plan::TriggerAuth;
use herald_triggers::process::Deps;
use herald_triggers::router::TriggerRouter;
use herald_triggers::Filter;
use herald_triggers::{run_dispatcher, DispatcherHandle, ReplyTarget, TriggerPlan, TriggerStats};

#[cfg(test)]
pub mod testing;

/// Trigger consumers opened concurrently during a reconcile.
const CONSUMERS_OPENED_AT_ONCE: usize = 32;

/// How long in-flight deliveries of a changed or deleted trigger may finish.
const CHANGE_GRACE: Duration = Duration::from_secs(1);

/// Why the runtime could not start what was asked for.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Log(#[from] herald_broker::LogError),
    /// The broker's log cannot be created or opened (its backend is down, ...).
    #[error("broker {broker}: {error}")]
    BrokerLog {
        broker: BrokerKey,
        error: herald_broker::LogError,
    },
    /// An EventType of the broker has a schema that cannot be read or compiled.
    #[error("broker {broker}: {error}")]
    Catalog {
        broker: BrokerKey,
        error: crate::catalog::PolicyError,
    },
    /// The trigger's consumer cannot be opened.
    #[error("trigger {}/{}: {error}", trigger.0, trigger.1)]
    TriggerLog {
        trigger: TriggerKey,
        error: herald_broker::LogError,
    },
}

/// The one object a [`RuntimeError`] is about, so that a caller can leave it out and run
/// the others.
pub enum FailedObject {
    Broker(BrokerKey),
    Trigger(TriggerKey),
}

impl RuntimeError {
    pub fn failed_object(&self) -> Option<FailedObject> {
        match self {
            RuntimeError::Log(_) => None,
            RuntimeError::BrokerLog { broker, .. } | RuntimeError::Catalog { broker, .. } => {
                Some(FailedObject::Broker(broker.clone()))
            }
            RuntimeError::TriggerLog { trigger, .. } => {
                Some(FailedObject::Trigger(trigger.clone()))
            }
        }
    }

    /// The condition reason for the object it is about.
    pub fn reason(&self) -> &'static str {
        match self {
            RuntimeError::Catalog { .. } => "InvalidEventType",
            _ => "LogUnavailable",
        }
    }
}

/// Runs what the desired state asks for.
pub struct Runtime {
    routes: Arc<RoutedLog>,
    deps: Deps,
    ingress_base_url: String,
    max_in_flight: usize,
    grace: Duration,
    dispatchers: HashMap<TriggerKey, (Arc<TriggerPlan>, DispatcherHandle)>,
    /// The log of `deps`, counting each trigger's parked events.
    parked: Arc<CountingLog>,
    sources: SourceSet,
    /// Whether a trigger missing from the desired state has been deleted (files, admin API)
    /// or may only be waiting (the controller: its broker or subscriber may come back, and
    /// a finalizer says when it is really deleted).
    removal_is_deletion: bool,
    /// `--eventtype-auto-create*`, and schemas read once.
    catalog: crate::catalog::CatalogOptions,
    schemas: crate::catalog::SchemaCache,
    /// EventTransforms and RequestReplies, served in process on the ingress listener.
    pub transforms: Arc<crate::transform::Transforms>,
    pub request_replies: Arc<crate::request_reply::RequestReplies>,
    max_event_bytes: usize,
    /// The schemes the ingress serves, for the addresses status advertises.
    transport: crate::addresses::Transport,
    /// The EventPolicies ingress enforces, compiled on each reconcile.
    pub authorizer: Arc<crate::policy::Authorizer>,
    /// The ingress's token check (`--authentication-oidc enabled`), for the addressables
    /// served in process.
    pub verifier: Option<Arc<crate::identity::verify::Verifier>>,
    policy_settings: crate::policy::PolicySettings,
}

impl Runtime {
    pub fn new(
        routes: Arc<RoutedLog>,
        deps: Deps,
        ingress_base_url: String,
        max_in_flight: usize,
        grace: Duration,
        sources: SourceContext,
        max_event_bytes: usize,
    ) -> Self {
        let parked = Arc::new(CountingLog::new(deps.log.clone()));
        let deps = Deps {
            log: parked.clone(),
            ..deps
        };
        let sources = SourceSet::new(sources, deps.tokens.clone());
        let request_replies = Arc::new(crate::request_reply::RequestReplies::new(
            deps.ingress.clone(),
            max_event_bytes,
        ));
        Self {
            transforms: Arc::default(),
            request_replies,
            max_event_bytes,
            routes,
            deps,
            parked,
            ingress_base_url,
            max_in_flight,
            grace,
            dispatchers: HashMap::new(),
            sources,
            removal_is_deletion: true,
            catalog: crate::catalog::CatalogOptions::default(),
            schemas: crate::catalog::SchemaCache::default(),
            transport: Default::default(),
            authorizer: Arc::default(),
            verifier: None,
            policy_settings: crate::policy::PolicySettings::default(),
        }
    }

    /// OIDC authentication and the default authorization mode (flags).
    pub fn set_policy_settings(&mut self, settings: crate::policy::PolicySettings) {
        self.policy_settings = settings;
    }

    pub fn policy_settings(&self) -> crate::policy::PolicySettings {
        self.policy_settings
    }

    /// The serve flags of the event catalog.
    pub fn set_catalog_options(&mut self, options: crate::catalog::CatalogOptions) {
        self.catalog = options;
    }

    /// The routes of EventTransforms and RequestReplies, for the ingress listener.
    pub fn in_process_router(&self) -> axum::Router {
        let access =
            crate::policy::InProcessAccess::new(self.verifier.clone(), self.authorizer.clone());
        crate::transform::router(
            self.transforms.clone(),
            self.max_event_bytes,
            access.clone(),
        )
        .merge(crate::request_reply::router(
            self.request_replies.clone(),
            access,
        ))
    }

    /// Triggers that leave the desired state keep their position and parked events until
    /// [`Runtime::forget_trigger`] is called (the controller's finalizer).
    pub fn keep_state_of_removed_triggers(&mut self) {
        self.removal_is_deletion = false;
    }

    fn log(&self) -> &Arc<dyn EventLog> {
        &self.deps.log
    }

    fn ingress(&self) -> &Arc<Ingress> {
        &self.deps.ingress
    }

    /// Makes the running state match `desired`: creates brokers, starts new or changed
    /// triggers, stops removed ones. Unchanged triggers are not disturbed.
    pub async fn reconcile(&mut self, desired: &Desired) -> Result<(), RuntimeError> {
        for (key, broker) in &desired.brokers {
            let log_error = |error| RuntimeError::BrokerLog {
                broker: key.clone(),
                error,
            };
            self.routes
                .assign(key, broker.class.as_deref())
                .map_err(log_error)?;
            // JetStream keeps the duplicate window itself; ingress keeps it for the others.
            let drops_duplicates = self.log().drops_duplicates(key);
            let mut settings = broker.settings.clone();
            if drops_duplicates {
                settings.duplicate_window = broker.catalog.duplicates.map(|b| b.window);
            }
            self.log()
                .ensure_broker(key, &settings)
                .await
                .map_err(log_error)?;
            let log = self.deps.log.clone();
            let previous = self.ingress().brokers().policy(key);
            let policy = self
                .schemas
                .policy(
                    key,
                    &broker.catalog,
                    self.catalog,
                    desired,
                    previous,
                    &log,
                    drops_duplicates,
                )
                .await
                .map_err(|error| match error {
                    crate::catalog::PolicyError::Log(error) => log_error(error),
                    error => RuntimeError::Catalog {
                        broker: key.clone(),
                        error,
                    },
                })?;
            self.ingress()
                .brokers()
                .insert_with(key.clone(), Arc::new(policy));
        }
        // A removed broker stops accepting at once; its log stays in the data dir.
        self.ingress()
            .brokers()
            .retain(|key| desired.brokers.contains_key(key));
        // Channels, Sequences and Parallels answer at their own paths.
        self.ingress()
            .brokers()
            .set_addresses(desired.flows.addresses());
        // EventTransforms and RequestReplies answer at theirs.
        let transforms = desired
            .flows
            .transforms
            .iter()
            .map(|(key, plan)| {
                let sink_auth = match (
                    &self.deps.tokens,
                    plan.sink.as_ref().and_then(Target::audience),
                ) {
                    (Some(tokens), Some(audience)) => Some(crate::transform::SinkAuth {
                        tokens: tokens.clone(),
                        sender: SenderIdentity {
                            namespace: key.0.clone(),
                            service_account: crate::transform::sink_service_account(&key.1),
                        },
                        audience,
                    }),
                    _ => None,
                };
                let running = crate::transform::RunningTransform {
                    plan: plan.clone(),
                    sink_url: plan.sink.as_ref().map(|sink| self.url(sink)),
                    sink_auth,
                };
                (key.clone(), Arc::new(running))
            })
            .collect();
        self.transforms.set(transforms);
        self.request_replies.set(&desired.flows.request_replies);
        self.authorizer.set(desired, self.policy_settings);
        let plans: HashMap<TriggerKey, TriggerPlan> = desired
            .triggers
            .iter()
            .map(|(key, trigger)| (key.clone(), self.plan(key, trigger)))
            .collect();
        let stale: Vec<TriggerKey> = self
            .dispatchers
            .iter()
            .filter(|(key, (running, _))| plans.get(*key) != Some(running.as_ref()))
            .map(|(key, _)| key.clone())
            .collect();
        for key in stale {
            if let Some((running, handle)) = self.dispatchers.remove(&key) {
                // A change must not wait on a slow subscriber: in-flight deliveries get a
                // second, then are redelivered by the new dispatcher (at least once).
                handle.stop(self.grace.min(CHANGE_GRACE)).await;
                let forget = match plans.get(&key) {
                    Some(plan) => plan.broker != running.broker,
                    // A trigger whose broker went away waits for it with its position.
                    None => {
                        self.removal_is_deletion && !desired.waiting_triggers.contains_key(&key)
                    }
                };
                if forget {
                    // A deleted (or moved) trigger forgets its position and parked events, so
                    // a new trigger of the same name starts where its annotation says.
                    if let Err(error) = self
                        .log()
                        .delete_consumer(&running.broker, &running.consumer_name())
                        .await
                    {
                        tracing::warn!(trigger = %running.name, %error, "cannot delete the trigger's consumer state");
                    }
                }
            }
        }
        // One router per broker shares filter decisions among the triggers started now;
        // running dispatchers keep the router they started with (their filters are unchanged).
        let mut filters_by_broker: HashMap<BrokerKey, Vec<(String, Filter)>> = HashMap::new();
        for plan in plans.values() {
            filters_by_broker
                .entry(plan.broker.clone())
                .or_default()
                .push((plan.name.clone(), plan.filter.clone()));
        }
        let routers: HashMap<BrokerKey, Arc<TriggerRouter>> = filters_by_broker
            .into_iter()
            .map(|(broker, filters)| (broker, Arc::new(TriggerRouter::new(filters))))
            .collect();
        let mut to_start = Vec::new();
        for (key, plan) in plans {
            if self.dispatchers.contains_key(&key) {
                continue;
            }
            let Some(router) = routers.get(&plan.broker).cloned() else {
                continue;
            };
            // Only a consumer created now uses it: an existing one resumes where it was.
            let start = desired
                .triggers
                .get(&key)
                .map(|trigger| trigger.start)
                .unwrap_or_default();
            to_start.push((key, Arc::new(plan), router, start));
        }
        // Opening a consumer takes a few round trips on Kafka and NATS: open many at once, so
        // that a thousand triggers start in seconds.
        let log = self.log().clone();
        let opened: Vec<_> = futures_util::stream::iter(to_start)
            .map(|(key, plan, router, start)| {
                let log = log.clone();
                async move {
                    let consumer = log
                        .consumer(&plan.broker, &plan.consumer_name(), start)
                        .await;
                    (key, plan, router, consumer)
                }
            })
            .buffer_unordered(CONSUMERS_OPENED_AT_ONCE)
            .collect()
            .await;
        let mut first_error = None;
        for (key, plan, router, consumer) in opened {
            match consumer {
                Ok(consumer) => {
                    let handle = run_dispatcher(plan.clone(), consumer, self.deps.clone(), router);
                    self.dispatchers.insert(key, (plan, handle));
                }
                Err(error) => {
                    first_error.get_or_insert(RuntimeError::TriggerLog {
                        trigger: key,
                        error,
                    });
                }
            }
        }
        if let Some(error) = first_error {
            return Err(error);
        }
        self.reconcile_sources(desired).await;
        Ok(())
    }

    /// Starts new or changed sources and stops removed ones. A source whose sink is a broker
    /// that does not exist waits until it does.
    async fn reconcile_sources(&mut self, desired: &Desired) {
        let base = self.ingress_base_url.clone();
        let resolve = |sink: &Target| {
            if let Some(broker) = sink.broker() {
                if !desired.brokers.contains_key(broker) {
                    return Err(format!("broker {broker} does not exist"));
                }
            }
            if let Target::Flow {
                kind,
                namespace,
                name,
                ..
            } = sink
            {
                if !desired.flows.has(*kind, namespace, name) {
                    return Err(format!("{kind:?} {namespace}/{name} does not exist"));
                }
            }
            Ok(sink.url(&base))
        };
        self.sources.reconcile(desired, resolve, self.grace).await;
    }

    /// The data plane's plan of a trigger: its targets' URLs and the in-flight bound.
    fn plan(&self, (namespace, name): &TriggerKey, trigger: &TriggerSpecPlan) -> TriggerPlan {
        TriggerPlan {
            namespace: namespace.clone(),
            name: name.clone(),
            broker: trigger.broker.clone(),
            filter: trigger.filter.clone(),
            subscriber: self.url(&trigger.subscriber),
            dead_letter_sink: trigger.dead_letter_sink.as_ref().map(|d| self.url(d)),
            policy: trigger.policy.clone(),
            format: trigger.format,
            max_in_flight: self.max_in_flight,
            ordered: trigger.ordered,
            trust: trigger.trust.clone(),
            // Replies to Herald's own brokers and channels are appended to their streams
            // directly; others are posted.
            reply: match &trigger.reply {
                None => ReplyTarget::Drop,
                Some(target) => match target.stream() {
                    Some(stream) => ReplyTarget::Log(stream),
                    None => ReplyTarget::Http(self.url(target)),
                },
            },
            auth: self.trigger_auth(namespace, name, trigger),
        }
    }

    /// A trigger's identity and its targets' audiences, when senders' tokens are on.
    fn trigger_auth(&self, namespace: &str, name: &str, trigger: &TriggerSpecPlan) -> TriggerAuth {
        if self.deps.tokens.is_none() {
            return TriggerAuth::default();
        }
        let service_account = match name
            .strip_prefix(crate::config::flows::SUBSCRIPTION_TRIGGER_PREFIX)
        {
            Some(subscription) => {
                naming::service_account_name("messaging.knative.dev", "Subscription", subscription)
            }
            None => naming::service_account_name(TRIGGER.group, TRIGGER.kind, name),
        };
        TriggerAuth {
            identity: Some(SenderIdentity {
                namespace: namespace.to_owned(),
                service_account,
            }),
            subscriber_audience: trigger.subscriber.audience(),
            reply_audience: trigger.reply.as_ref().and_then(Target::audience),
            dead_letter_audience: trigger.dead_letter_sink.as_ref().and_then(Target::audience),
        }
    }

    /// Deletes a deleted broker's log, in the backend its class names.
    pub async fn delete_broker_log(
        &self,
        key: &BrokerKey,
        class: Option<&str>,
    ) -> Result<(), RuntimeError> {
        self.routes.assign(key, class)?;
        Ok(self.log().delete_broker(key).await?)
    }

    /// Forgets a deleted trigger's position and parked events in the log, whether or not it
    /// ran in this process (a controller finalizing a trigger deleted while it was down).
    pub async fn forget_trigger(
        &self,
        (namespace, name): &TriggerKey,
        broker: &str,
    ) -> Result<(), herald_broker::LogError> {
        if self
            .dispatchers
            .contains_key(&(namespace.clone(), name.clone()))
        {
            return Ok(());
        }
        let broker = BrokerKey::new(namespace.clone(), broker.to_owned());
        self.log()
            .delete_consumer(&broker, &herald_triggers::plan::consumer_name(name))
            .await
    }

    /// The running trigger's plan and statistics.
    pub fn trigger(&self, key: &TriggerKey) -> Option<(Arc<TriggerPlan>, Arc<TriggerStats>)> {
        self.dispatchers
            .get(key)
            .map(|(plan, handle)| (plan.clone(), handle.stats().clone()))
    }

    /// How many events the running trigger has parked: read from its dead-letter store the
    /// first time, then kept up to date (see [`crate::parked`]).
    pub async fn parked_count(&self, plan: &TriggerPlan) -> Option<u64> {
        self.parked
            .parked_count(&plan.broker, &plan.consumer_name())
            .await
            .ok()
    }

    /// How a source is doing (`None` for a key that is not a source).
    pub fn source_state(&self, key: &ObjectKey) -> Option<SourceState> {
        self.sources.state(key)
    }

    pub fn deps(&self) -> &Deps {
        &self.deps
    }

    /// Whether sender identity (`--authentication-oidc`) is on: deliveries carry tokens.
    pub fn sender_identity_enabled(&self) -> bool {
        self.deps.tokens.is_some()
    }

    /// HTTPS at ingress (`--tls-*`): status then advertises https addresses.
    pub fn set_transport(&mut self, transport: crate::addresses::Transport) {
        self.transport = transport;
    }

    pub fn transport(&self) -> &crate::addresses::Transport {
        &self.transport
    }

    /// `http://host:port` of the ingress listener.
    pub fn ingress_base_url(&self) -> &str {
        &self.ingress_base_url
    }

    /// A target's URL, as deliveries use it.
    pub fn url(&self, target: &Target) -> String {
        target.url(&self.ingress_base_url)
    }

    /// Stops every dispatcher (in-flight deliveries get `grace`), then closes the log.
    pub async fn shutdown(&mut self) {
        let grace = self.grace;
        self.sources.shutdown(grace).await;
        let stops: Vec<_> = self
            .dispatchers
            .drain()
            .map(|(_, (_, handle))| handle.stop(grace))
            .collect();
        for stop in stops {
            stop.await;
        }
        if let Err(error) = self.deps.log.close().await {
            tracing::error!(%error, "closing the log failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{desired, runtime, trigger, BROKER, INGRESS};
    use super::*;
    use herald_broker::log::memory::MemoryLog;
    use herald_broker::log::{Failure, ParkedRecord};
    use herald_broker::RecordId;

    fn key(name: &str) -> TriggerKey {
        ("default".to_owned(), name.to_owned())
    }

    /// Brokers accept events once reconciled; triggers run with their targets resolved:
    /// a Broker ref is Herald's own ingress address, with the ref's `uri` as a path.
    #[tokio::test]
    async fn reconcile_runs_brokers_and_triggers_with_resolved_targets() {
        let mut runtime = runtime(Arc::new(MemoryLog::new()));
        let yaml = format!(
            "{BROKER}---\napiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: other}}\n{}{}",
            trigger("t", "subscriber: {uri: 'http://localhost:1/x'}"),
            trigger(
                "to-broker",
                "subscriber: {ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: other}, uri: /p}, delivery: {deadLetterSink: {uri: 'http://dls'}}"
            ),
        );
        runtime.reconcile(&desired(&yaml)).await.unwrap();
        let brokers = runtime.deps().ingress.brokers();
        assert!(brokers.contains(&BrokerKey::new("default", "b")));
        let (plan, _) = runtime.trigger(&key("t")).unwrap();
        assert_eq!(plan.subscriber, "http://localhost:1/x");
        assert_eq!(plan.dead_letter_sink, None);
        let (plan, _) = runtime.trigger(&key("to-broker")).unwrap();
        assert_eq!(plan.subscriber, format!("{INGRESS}/default/other/p"));
        assert_eq!(plan.dead_letter_sink.as_deref(), Some("http://dls"));
        runtime.shutdown().await;
    }

    /// A trigger without `delivery` takes its broker's (Knative's rule).
    #[tokio::test]
    async fn a_trigger_takes_its_brokers_delivery() {
        let mut runtime = runtime(Arc::new(MemoryLog::new()));
        let yaml = format!(
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: b}}\nspec: {{delivery: {{retry: 7, deadLetterSink: {{uri: 'http://dls'}}}}}}\n{}",
            trigger("t", "subscriber: {uri: 'http://s'}")
        );
        runtime.reconcile(&desired(&yaml)).await.unwrap();
        let (plan, _) = runtime.trigger(&key("t")).unwrap();
        assert_eq!(plan.dead_letter_sink.as_deref(), Some("http://dls"));
        assert_eq!(plan.policy.retry, 7);
        runtime.shutdown().await;
    }

    /// An unchanged trigger keeps its dispatcher through a reconcile; a changed one gets a
    /// new one.
    #[tokio::test]
    async fn only_changed_triggers_restart() {
        let mut runtime = runtime(Arc::new(MemoryLog::new()));
        let before = desired(&format!(
            "{BROKER}{}{}",
            trigger("same", "subscriber: {uri: 'http://s'}"),
            trigger("changed", "subscriber: {uri: 'http://s'}")
        ));
        let after = desired(&format!(
            "{BROKER}{}{}",
            trigger("same", "subscriber: {uri: 'http://s'}"),
            trigger(
                "changed",
                "subscriber: {uri: 'http://s'}, filter: {attributes: {type: x}}"
            )
        ));
        runtime.reconcile(&before).await.unwrap();
        let (same, _) = runtime.trigger(&key("same")).unwrap();
        let (changed, _) = runtime.trigger(&key("changed")).unwrap();
        runtime.reconcile(&after).await.unwrap();
        assert!(Arc::ptr_eq(
            &same,
            &runtime.trigger(&key("same")).unwrap().0
        ));
        assert!(!Arc::ptr_eq(
            &changed,
            &runtime.trigger(&key("changed")).unwrap().0
        ));
        runtime.shutdown().await;
    }

    fn parked(offset: u64) -> ParkedRecord {
        ParkedRecord {
            id: RecordId {
                partition: 0,
                offset,
            },
            record: herald_broker::log::testsuite::sample("p"),
            failure: Failure {
                attempts: 1,
                last_status: None,
                last_error: String::new(),
                reason: "test".into(),
                parked_at: String::new(),
            },
        }
    }

    /// A trigger deleted from files or the API forgets its parked events and position; one
    /// whose broker went away keeps them and waits; under the controller (whose finalizer
    /// forgets) a removed trigger keeps them too.
    #[tokio::test]
    async fn removed_triggers_forget_their_state_unless_asked_to_keep_it() {
        for keep in [false, true] {
            let log = Arc::new(MemoryLog::new());
            let mut runtime = runtime(log.clone());
            if keep {
                runtime.keep_state_of_removed_triggers();
            }
            let broker = BrokerKey::new("default", "b");
            runtime
                .reconcile(&desired(&format!(
                    "{BROKER}{}",
                    trigger("t", "subscriber: {uri: 'http://s'}")
                )))
                .await
                .unwrap();
            log.park(&broker, "trigger-t", parked(1)).await.unwrap();
            runtime.reconcile(&desired(BROKER)).await.unwrap();
            assert!(runtime.trigger(&key("t")).is_none());
            let left = log.parked(&broker, "trigger-t").await.unwrap().len();
            assert_eq!(left, usize::from(keep), "keep state: {keep}");
            runtime.shutdown().await;
        }
        let log = Arc::new(MemoryLog::new());
        let mut runtime = runtime(log.clone());
        let broker = BrokerKey::new("default", "b");
        let with_trigger = format!("{BROKER}{}", trigger("t", "subscriber: {uri: 'http://s'}"));
        runtime.reconcile(&desired(&with_trigger)).await.unwrap();
        log.park(&broker, "trigger-t", parked(1)).await.unwrap();
        // The broker goes: the trigger waits for it, with its parked events.
        let waiting = desired(&trigger("t", "subscriber: {uri: 'http://s'}"));
        assert_eq!(waiting.waiting_triggers.len(), 1);
        runtime.reconcile(&waiting).await.unwrap();
        assert_eq!(log.parked(&broker, "trigger-t").await.unwrap().len(), 1);
        runtime.shutdown().await;
    }

    /// A source whose sink broker does not exist waits, saying why; it runs once it does.
    #[tokio::test]
    async fn a_source_waits_for_its_sink_broker() {
        let mut runtime = runtime(Arc::new(MemoryLog::new()));
        let source = "---\napiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {name: p}\nspec: {schedule: '0 0 1 1 *', sink: {ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: b}}}\n";
        let key = ObjectKey::new(&crate::kinds::PING_SOURCE, "default", "p");
        runtime.reconcile(&desired(source)).await.unwrap();
        let state = runtime.source_state(&key).unwrap();
        assert_eq!(
            state.sink,
            Err("broker default/b does not exist".to_owned())
        );
        assert!(!state.running);
        runtime
            .reconcile(&desired(&format!("{BROKER}{source}")))
            .await
            .unwrap();
        let state = runtime.source_state(&key).unwrap();
        assert_eq!(state.sink, Ok(format!("{INGRESS}/default/b")));
        assert!(state.running);
        runtime.shutdown().await;
    }
}
