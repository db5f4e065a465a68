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
    // The commit timer runs only while there is something to commit or report: armed by
    // records read and deliveries finished, disarmed by a tick that finds nothing buffered,
    // nothing in flight and the commit done. An idle trigger has no timer at all.
    // The first tick comes at once, so that the lag is reported from the start.
    let commit_tick = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(commit_tick);
    let mut commit_armed = true;
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
                    arm(commit_tick.as_mut(), &mut commit_armed);
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
                    arm(commit_tick.as_mut(), &mut commit_armed);
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
            () = &mut commit_tick, if commit_armed => {
                commit_armed = false;
                let committed = commit(&mut *consumer, &plan).await;
                let oldest_in_flight = arrivals.values().min().map(Instant::elapsed);
                let oldest_buffered = buffer.front().and_then(|r| crate::metrics::age(&r.record.event));
                let oldest = oldest_in_flight.max(oldest_buffered);
                crate::metrics::lag(&plan, consumer.lag(), oldest);
                stats.set_lag(consumer.lag(), oldest);
                // Work left (or a commit to retry) keeps the tick going: lag in seconds grows
                // while an event waits, and finished records must be committed.
                if !committed || !buffer.is_empty() || !in_flight.is_empty() {
                    arm(commit_tick.as_mut(), &mut commit_armed);
                }
            }
            _ = shutdown.cancelled(), if !stopping => stopping = true,
            polled = consumer.poll(poll_max), if can_poll => match polled {
                Ok(records) => {
                    buffer.extend(records);
                    arm(commit_tick.as_mut(), &mut commit_armed);
                }
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

/// Commits the consumer's position; `false` (logged) when that failed.
async fn commit(consumer: &mut dyn LogConsumer, plan: &TriggerPlan) -> bool {
    match consumer.commit().await {
        Ok(()) => true,
        Err(error) => {
            tracing::error!(trigger = %plan.name, %error, "committing the trigger's offset failed");
            false
        }
    }
}

/// Arms the commit timer for one interval from now, unless it is armed already (a timer
/// that is pushed back by every event would never fire under steady load).
fn arm(tick: std::pin::Pin<&mut tokio::time::Sleep>, armed: &mut bool) {
    if !*armed {
        tick.reset(tokio::time::Instant::now() + DEFAULT_COMMIT_INTERVAL);
        *armed = true;
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use async_trait::async_trait;
    use herald_broker::log::sled::SledLog;
    use herald_broker::log::testsuite::sample;
    use herald_broker::{BrokerKey, BrokerRegistry, Ingress, IngressConfig, LogError};
    use tokio::sync::mpsc;

    use super::*;
    use crate::attempt::Sender;
    use crate::RetryPolicy;

    /// A consumer fed by the test, counting the dispatcher's commits.
    struct FedConsumer {
        feed: mpsc::Receiver<Vec<LogRecord>>,
        acked: Arc<Mutex<Vec<RecordId>>>,
        commits: Arc<AtomicUsize>,
    }

    #[async_trait]
    impl LogConsumer for FedConsumer {
        async fn poll(&mut self, _max: usize) -> Result<Vec<LogRecord>, LogError> {
            match self.feed.recv().await {
                Some(records) => Ok(records),
                None => std::future::pending().await,
            }
        }

        async fn ack(&mut self, id: RecordId) -> Result<(), LogError> {
            self.acked.lock().unwrap().push(id);
            Ok(())
        }

        async fn commit(&mut self) -> Result<(), LogError> {
            self.commits.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn plan() -> TriggerPlan {
        let spec = "broker: b\nsubscriber: {uri: 'http://127.0.0.1:9/'}\nfilters: [{exact: {type: nothing-matches}}]\n";
        TriggerPlan {
            trust: Default::default(),
            namespace: "ns".into(),
            name: "t".into(),
            broker: BrokerKey::new("ns", "b"),
            filter: crate::filter::compile(&serde_yaml_ng::from_str(spec).unwrap()).unwrap(),
            subscriber: "http://127.0.0.1:9/".into(),
            dead_letter_sink: None,
            policy: RetryPolicy::default(),
            format: herald_crds::DeliveryFormat::Binary,
            max_in_flight: 10,
            ordered: false,
            reply: crate::ReplyTarget::Log(BrokerKey::new("ns", "b")),
            auth: Default::default(),
        }
    }

    /// An idle trigger arms no timer: after the first report nothing wakes the dispatcher
    /// until records come; records arm the commit tick, which stops again once they are
    /// committed. Paused time runs a minute in an instant, so a periodic tick (600 in a
    /// minute at 100 ms) would show in the count.
    #[tokio::test(start_paused = true)]
    async fn an_idle_trigger_arms_no_timer() {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn herald_broker::EventLog> =
            Arc::new(SledLog::open(dir.path(), 16).unwrap());
        let ingress = Arc::new(Ingress::new(
            log.clone(),
            Arc::new(BrokerRegistry::default()),
            IngressConfig::default(),
        ));
        let deps = Deps {
            sender: Sender::new(1024, 16).unwrap(),
            log,
            ingress,
            tokens: None,
        };
        let (feed, receiver) = mpsc::channel(4);
        let acked = Arc::new(Mutex::new(Vec::new()));
        let commits = Arc::new(AtomicUsize::new(0));
        let consumer = FedConsumer {
            feed: receiver,
            acked: acked.clone(),
            commits: commits.clone(),
        };
        let plan = Arc::new(plan());
        let router = Arc::new(TriggerRouter::new([(
            plan.name.clone(),
            plan.filter.clone(),
        )]));
        let handle = run_dispatcher(plan, Box::new(consumer), deps, router);

        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(
            commits.load(Ordering::SeqCst),
            1,
            "one report at start, then no tick"
        );

        // Filtered out at once: acknowledged, then committed by the next tick or two.
        let records = (0..3)
            .map(|offset| LogRecord {
                id: RecordId {
                    partition: 0,
                    offset,
                },
                record: sample(&format!("e{offset}")),
            })
            .collect();
        feed.send(records).await.unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(acked.lock().unwrap().len(), 3);
        let after_records = commits.load(Ordering::SeqCst);
        assert!(
            (2..=3).contains(&after_records),
            "the records armed the tick until committed, then it stopped: {after_records} commits"
        );

        handle.stop(Duration::from_secs(1)).await;
    }
}
