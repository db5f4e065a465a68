//! One dispatcher per trigger: tail the broker's log, filter, deliver with bounded
//! concurrency, and commit the contiguous low-water mark of finished records.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_broker::{CloudEvent, LogConsumer, LogRecord, RecordId};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::plan::DEFAULT_COMMIT_INTERVAL;
use crate::process::{process, Deps, Outcome};
use crate::router::TriggerRouter;
use crate::stats::TriggerStats;
use crate::TriggerPlan;

/// Controls a running dispatcher.
pub struct DispatcherHandle {
    /// Stop taking new records; in-flight deliveries go on.
    shutdown: CancellationToken,
    /// Cut in-flight deliveries short (they are redelivered after a restart).
    abort: CancellationToken,
    task: JoinHandle<()>,
    stats: Arc<TriggerStats>,
}

impl DispatcherHandle {
    /// Lag and recent errors, as the dispatcher last saw them.
    pub fn stats(&self) -> &Arc<TriggerStats> {
        &self.stats
    }

    /// Stops the dispatcher: waits up to `grace` for in-flight deliveries, then aborts them,
    /// and returns after the final commit.
    pub async fn stop(mut self, grace: Duration) {
        self.shutdown.cancel();
        if tokio::time::timeout(grace, &mut self.task).await.is_err() {
            self.abort.cancel();
            let _ = self.task.await;
        }
    }
}

/// Starts a dispatcher for `plan` reading from `consumer`; `router` shares filter decisions
/// with the other triggers of the broker.
pub fn run_dispatcher(
    plan: Arc<TriggerPlan>,
    consumer: Box<dyn LogConsumer>,
    deps: Deps,
    router: Arc<TriggerRouter>,
) -> DispatcherHandle {
    let shutdown = CancellationToken::new();
    let abort = CancellationToken::new();
    let stats = Arc::new(TriggerStats::default());
    let task = tokio::spawn(dispatch_loop(
        plan,
        consumer,
        deps,
        router,
        stats.clone(),
        shutdown.clone(),
        abort.clone(),
    ));
    DispatcherHandle {
        shutdown,
        abort,
        task,
        stats,
    }
}

async fn dispatch_loop(
    plan: Arc<TriggerPlan>,
    mut consumer: Box<dyn LogConsumer>,
    deps: Deps,
    router: Arc<TriggerRouter>,
    stats: Arc<TriggerStats>,
    shutdown: CancellationToken,
    abort: CancellationToken,
) {
    let max_in_flight = plan.max_in_flight.max(1);
    let mut buffer: VecDeque<LogRecord> = VecDeque::with_capacity(max_in_flight);
    let mut in_flight = JoinSet::new();
    let mut commit_tick = tokio::time::interval(DEFAULT_COMMIT_INTERVAL);
    commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = false;
    let slot = router.slot(&plan.name);
    // Ordered delivery: partition keys with a delivery in flight, and the key of each.
    let mut busy_keys: HashSet<String> = HashSet::new();
    let mut key_of: HashMap<RecordId, String> = HashMap::new();
    // When each in-flight record arrived at ingress, for the lag in seconds.
    let mut arrivals: HashMap<RecordId, Instant> = HashMap::new();
    tracing::info!(trigger = %plan.name, broker = %plan.broker, subscriber = %plan.subscriber, "dispatcher started");
    loop {
        // Start as much buffered work as the in-flight bound allows; filtered-out records
        // finish right here.
        // With ordered delivery, a record waits while an earlier one of its partition key is
        // in flight or waiting.
        let mut index = 0;
        let mut waiting_keys = HashSet::new();
        while !stopping && in_flight.len() < max_in_flight && index < buffer.len() {
            let event = &buffer[index].record.event;
            if !router.takes(slot, &plan.filter, buffer[index].id, event) {
                if let Some(record) = buffer.remove(index) {
                    ack(&mut *consumer, &plan, record.id).await;
                }
                continue;
            }
            if plan.ordered {
                let key = ordering_key(buffer[index].id.partition, event);
                if busy_keys.contains(&key) || waiting_keys.contains(&key) {
                    waiting_keys.insert(key);
                    index += 1;
                    continue;
                }
                busy_keys.insert(key.clone());
                key_of.insert(buffer[index].id, key);
            }
            let Some(record) = buffer.remove(index) else {
                break;
            };
            let now = Instant::now();
            let age = crate::metrics::age(&record.record.event).unwrap_or_default();
            let arrived = now.checked_sub(age).unwrap_or(now);
            arrivals.insert(record.id, arrived);
            let (plan, deps, stats, abort) =
                (plan.clone(), deps.clone(), stats.clone(), abort.clone());
            in_flight.spawn(async move {
                let outcome = process(&plan, &deps, &record, &stats, &abort).await;
                (record.id, outcome)
            });
        }
        if stopping && in_flight.is_empty() {
            break;
        }
        let can_poll = !stopping && buffer.len() < max_in_flight && in_flight.len() < max_in_flight;
        let poll_max = max_in_flight - buffer.len();
        let busy = !in_flight.is_empty();
        tokio::select! {
            Some(done) = in_flight.join_next(), if busy => match done {
                Ok((id, outcome)) => {
                    arrivals.remove(&id);
                    if let Some(key) = key_of.remove(&id) {
                        busy_keys.remove(&key);
                    }
                    match outcome {
                        Outcome::Aborted => tracing::debug!(trigger = %plan.name, ?id, "delivery aborted by shutdown"),
                        _ => ack(&mut *consumer, &plan, id).await,
                    }
                }
                Err(error) => tracing::error!(trigger = %plan.name, %error, "delivery task failed"),
            },
            _ = commit_tick.tick() => {
                commit(&mut *consumer, &plan).await;
                let oldest_in_flight = arrivals.values().min().map(Instant::elapsed);
                let oldest_buffered = buffer.front().and_then(|r| crate::metrics::age(&r.record.event));
                let oldest = oldest_in_flight.max(oldest_buffered);
                crate::metrics::lag(&plan, consumer.lag(), oldest);
                stats.set_lag(consumer.lag(), oldest);
            }
            _ = shutdown.cancelled(), if !stopping => stopping = true,
            polled = consumer.poll(poll_max), if can_poll => match polled {
                Ok(records) => buffer.extend(records),
                Err(error) => {
                    tracing::error!(trigger = %plan.name, %error, "reading the log failed; retrying in 1s");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.cancelled() => stopping = true,
                    }
                }
            },
        }
    }
    commit(&mut *consumer, &plan).await;
    tracing::info!(trigger = %plan.name, "dispatcher stopped");
}

async fn ack(consumer: &mut dyn LogConsumer, plan: &TriggerPlan, id: herald_broker::RecordId) {
    if let Err(error) = consumer.ack(id).await {
        tracing::error!(trigger = %plan.name, ?id, %error, "acknowledging a record failed");
    }
}

async fn commit(consumer: &mut dyn LogConsumer, plan: &TriggerPlan) {
    if let Err(error) = consumer.commit().await {
        tracing::error!(trigger = %plan.name, %error, "committing the trigger's offset failed");
    }
}

/// The ordering key of an event: its `partitionkey` extension; events without one share the
/// log's single partition order.
/// Ordered delivery goes one at a time per log partition and `partitionkey` (events without
/// a key share one per partition): a failing event holds back only its key.
fn ordering_key(partition: u32, event: &CloudEvent) -> String {
    let key = event.text("partitionkey").unwrap_or_default();
    format!("{partition}/{key}")
}
