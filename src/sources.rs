//! The sources that run: one task per source resource whose sink is resolvable, restarted
//! with backoff when it fails, replaced when its spec or sink changes, stopped when it goes.
//! The only place that knows which `Source` each kind is.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::apiserver_source::{ApiServerSource, KubeAccess};
use backon::{BackoffBuilder, ExponentialBuilder};
use herald_sources::container::ContainerSource;
use herald_sources::ping::PingSource;
use herald_sources::webhook::{WebhookRegistry, WebhookSource};
use herald_sources::{SinkClient, Source};
use tokio_util::sync::CancellationToken;

use crate::config::{Desired, Resource};
use crate::store::ObjectKey;

/// A run that lasts this long counts as started: its last error is cleared.
const HEALTHY_AFTER: Duration = Duration::from_secs(2);

/// What sources need from the rest of Herald.
#[derive(Clone)]
pub struct SourceContext {
    /// Webhook sources register here; the ingress listener serves them.
    pub webhooks: Arc<WebhookRegistry>,
    /// Knative's source delivery policy: retries after the first attempt...
    pub retries: u32,
    /// ...waiting `backoff·2^(k-1)` before retry k.
    pub backoff: Duration,
    /// The Kubernetes API, for ApiServerSources.
    pub kube: Arc<KubeAccess>,
    /// Where KafkaSources' Secrets are read: files and environment (serve), the API server
    /// (controller).
    #[cfg_attr(
        not(feature = "kafka"),
        allow(dead_code, reason = "only KafkaSource reads Secrets")
    )]
    pub secrets: Arc<dyn herald_sources::secrets::SecretReader>,
}

/// The `Source` for a source resource.
fn build(resource: &Resource, ctx: &SourceContext) -> Option<Arc<dyn Source>> {
    let (namespace, name) = resource.namespaced_name();
    let source: Arc<dyn Source> = match resource {
        #[cfg(feature = "nats")]
        Resource::NatsSource(s) => Arc::new(herald_sources::nats::NatsSource {
            namespace,
            name,
            spec: s.spec.clone(),
        }),
        Resource::PingSource(s) => Arc::new(PingSource::new(&namespace, &name, &s.spec).ok()?),
        Resource::ContainerSource(s) => {
            Arc::new(ContainerSource::new(&namespace, &name, &s.spec).ok()?)
        }
        Resource::WebhookSource(s) => Arc::new(WebhookSource {
            namespace,
            name,
            spec: s.spec.clone(),
            registry: ctx.webhooks.clone(),
        }),
        #[cfg(feature = "kafka")]
        Resource::KafkaSource(s) => Arc::new(herald_sources::kafka::KafkaSource {
            namespace,
            name,
            spec: s.spec.clone(),
            secrets: ctx.secrets.clone(),
        }),
        // Refused by validation in a build without them.
        #[cfg(not(feature = "nats"))]
        Resource::NatsSource(_) => return None,
        #[cfg(not(feature = "kafka"))]
        Resource::KafkaSource(_) => return None,
        Resource::ApiServerSource(s) => Arc::new(ApiServerSource {
            namespace,
            name,
            filter: herald_triggers::filter::compile_filters(&s.spec.filters).ok()?,
            spec: s.spec.clone(),
            kube: ctx.kube.clone(),
        }),
        Resource::Broker(_)
        | Resource::Trigger(_)
        | Resource::EventType(_)
        | Resource::SinkBinding(_) => return None,
    };
    Some(source)
}

/// How a source is doing, for its status.
pub struct SourceState {
    /// The sink's URL, or why there is none (its broker does not exist).
    pub sink: Result<String, String>,
    pub running: bool,
    /// The last failure of a run that did not get going, until a run does.
    pub last_error: Option<SourceFailure>,
}

/// Why a source's last run failed: a condition reason and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFailure {
    pub reason: &'static str,
    pub message: String,
}

struct RunningSource {
    spec: serde_json::Value,
    sink: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    last_error: Arc<Mutex<Option<SourceFailure>>>,
}

impl RunningSource {
    async fn stop(mut self, grace: Duration) {
        self.shutdown.cancel();
        if tokio::time::timeout(grace, &mut self.task).await.is_err() {
            self.task.abort();
        }
    }
}

pub struct SourceSet {
    ctx: SourceContext,
    running: HashMap<ObjectKey, RunningSource>,
    sinks: HashMap<ObjectKey, Result<String, String>>,
}

impl SourceSet {
    pub fn new(ctx: SourceContext) -> Self {
        Self {
            ctx,
            running: HashMap::new(),
            sinks: HashMap::new(),
        }
    }

    /// Makes the running sources match `desired`; `resolve` gives a sink's URL, or why it has
    /// none yet.
    pub async fn reconcile(
        &mut self,
        desired: &Desired,
        resolve: impl Fn(&Resource) -> Result<String, String>,
        grace: Duration,
    ) {
        self.sinks = desired
            .sources
            .iter()
            .map(|(key, resource)| (key.clone(), resolve(resource)))
            .collect();
        let wanted: HashMap<&ObjectKey, (&Resource, &String)> = desired
            .sources
            .iter()
            .filter_map(|(key, resource)| match self.sinks.get(key) {
                Some(Ok(url)) => Some((key, (resource, url))),
                _ => None,
            })
            .collect();
        let stale: Vec<ObjectKey> = self
            .running
            .iter()
            .filter(|(key, running)| {
                wanted.get(key).is_none_or(|(resource, url)| {
                    resource.spec_json() != running.spec || **url != running.sink
                })
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in stale {
            if let Some(running) = self.running.remove(&key) {
                running.stop(grace).await;
                tracing::info!(source = %format!("{} {}/{}", key.kind, key.namespace, key.name), "source stopped");
            }
        }
        for (key, (resource, url)) in wanted {
            if self.running.contains_key(key) {
                continue;
            }
            let Some(source) = build(resource, &self.ctx) else {
                continue;
            };
            let overrides = resource
                .source_spec()
                .map(|spec| spec.extensions())
                .unwrap_or_default();
            tracing::info!(source = %source.describe(), sink = %url, "source started");
            let sink = SinkClient::new(url.clone(), overrides)
                .with_retries(self.ctx.retries, self.ctx.backoff);
            let shutdown = CancellationToken::new();
            let last_error = Arc::new(Mutex::new(None));
            let task = tokio::spawn(supervise(
                source,
                sink,
                shutdown.clone(),
                last_error.clone(),
            ));
            self.running.insert(
                key.clone(),
                RunningSource {
                    spec: resource.spec_json(),
                    sink: url.clone(),
                    shutdown,
                    task,
                    last_error,
                },
            );
        }
    }

    pub fn state(&self, key: &ObjectKey) -> Option<SourceState> {
        let sink = self.sinks.get(key)?.clone();
        let running = self.running.get(key);
        Some(SourceState {
            sink,
            running: running.is_some(),
            last_error: running.and_then(|r| r.last_error.lock().ok()?.clone()),
        })
    }

    pub async fn shutdown(&mut self, grace: Duration) {
        for (_, source) in self.running.drain() {
            source.stop(grace).await;
        }
    }
}

/// The longest wait before a failed source is started again.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Runs a source until shutdown, restarting it with backoff (up to 30 s) when it fails.
async fn supervise(
    source: Arc<dyn Source>,
    sink: SinkClient,
    shutdown: CancellationToken,
    last_error: Arc<Mutex<Option<SourceFailure>>>,
) {
    let mut backoffs = ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(MAX_BACKOFF)
        .without_max_times()
        .build();
    let set_error = |error: Option<SourceFailure>| {
        if let Ok(mut last) = last_error.lock() {
            *last = error;
        }
    };
    loop {
        let run = source.run(sink.clone(), shutdown.clone());
        tokio::pin!(run);
        let result = tokio::select! {
            result = &mut run => result,
            _ = tokio::time::sleep(HEALTHY_AFTER) => {
                set_error(None);
                run.await
            }
        };
        let backoff = backoffs.next().unwrap_or(MAX_BACKOFF);
        match result {
            Ok(()) => return,
            Err(error) => {
                tracing::error!(source = %source.describe(), %error, retry_in = ?backoff, "source failed");
                set_error(Some(SourceFailure {
                    reason: error.reason(),
                    message: error.to_string(),
                }));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
