//! The sources that run: one task per source resource whose sink is resolvable, restarted
//! with backoff when it fails, replaced when its spec or sink changes, stopped when it goes.
//! Which `Source` each kind runs is its plan's (`crate::source_kinds`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use herald_sources::{SinkClient, SinkToken, Source};
use herald_triggers::auth::{SenderIdentity, TokenSource};
use tokio_util::sync::CancellationToken;

use crate::config::{Desired, SourcePlan, Target};
use crate::kinds::ObjectKey;
use crate::source_kinds::SourceContext;

/// A run that lasts this long counts as started: its last error is cleared.
const HEALTHY_AFTER: Duration = Duration::from_secs(2);

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
    /// Sender identity (`--authentication-oidc enabled`): sources send their token.
    tokens: Option<Arc<dyn TokenSource>>,
}

impl SourceSet {
    pub fn new(ctx: SourceContext, tokens: Option<Arc<dyn TokenSource>>) -> Self {
        Self {
            ctx,
            running: HashMap::new(),
            sinks: HashMap::new(),
            tokens,
        }
    }

    /// The token a source sends its sink: its identity's, for the sink's audience (a
    /// sink without an audience, such as a URL without `audience`, gets none, as in Knative).
    fn sink_token(&self, key: &ObjectKey, plan: &SourcePlan) -> Option<Arc<dyn SinkToken>> {
        let tokens = self.tokens.clone()?;
        let audience = plan.sink.audience()?;
        Some(Arc::new(SourceToken {
            tokens,
            sender: SenderIdentity {
                namespace: key.namespace.clone(),
                service_account: service_account(key),
            },
            audience,
        }))
    }

    /// Makes the running sources match `desired`; `resolve` gives a sink's URL, or why it has
    /// none yet.
    pub async fn reconcile(
        &mut self,
        desired: &Desired,
        resolve: impl Fn(&Target) -> Result<String, String>,
        grace: Duration,
    ) {
        self.sinks = desired
            .sources
            .iter()
            .map(|(key, plan)| (key.clone(), resolve(&plan.sink)))
            .collect();
        let wanted: HashMap<&ObjectKey, (&SourcePlan, &String)> = desired
            .sources
            .iter()
            .filter_map(|(key, plan)| match self.sinks.get(key) {
                Some(Ok(url)) => Some((key, (plan, url))),
                _ => None,
            })
            .collect();
        let stale: Vec<ObjectKey> = self
            .running
            .iter()
            .filter(|(key, running)| {
                wanted
                    .get(key)
                    .is_none_or(|(plan, url)| plan.spec != running.spec || **url != running.sink)
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in stale {
            if let Some(running) = self.running.remove(&key) {
                running.stop(grace).await;
                tracing::info!(source = %format!("{} {}/{}", key.kind, key.namespace, key.name), "source stopped");
            }
        }
        for (key, (plan, url)) in wanted {
            if self.running.contains_key(key) {
                continue;
            }
            let source = plan.runner.start(&self.ctx);
            tracing::info!(source = %source.describe(), sink = %url, "source started");
            let mut sink = SinkClient::new(url.clone(), plan.overrides.clone())
                .with_retries(self.ctx.retries, self.ctx.backoff);
            match self.ctx.sink_clients.get(plan.sink_ca_certs.as_ref()) {
                Ok(client) => sink = sink.with_client(client),
                Err(error) => {
                    tracing::error!(%error, sink = %url, "no HTTPS client for the sink's CACerts: the system roots only are trusted")
                }
            }
            if let Some(token) = self.sink_token(key, plan) {
                sink = sink.with_token(token);
            }
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
                    spec: plan.spec.clone(),
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

/// The ServiceAccount a source's tokens name, as Knative names it:
/// `{name}-oidc-{group}-{kind}` (e.g. `p-oidc-sources.knative.dev-pingsource`).
pub fn service_account(key: &ObjectKey) -> String {
    let group = crate::kinds::by_name(key.kind).map_or("", |kind| kind.group);
    crate::identity::naming::service_account_name(group, key.kind, &key.name)
}

/// A source's token for its sink's audience, from the shared cache.
struct SourceToken {
    tokens: Arc<dyn TokenSource>,
    sender: SenderIdentity,
    audience: String,
}

#[async_trait::async_trait]
impl SinkToken for SourceToken {
    async fn token(&self) -> Result<Arc<str>, String> {
        self.tokens
            .token(&self.sender, &self.audience)
            .await
            .map_err(|e| e.to_string())
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
