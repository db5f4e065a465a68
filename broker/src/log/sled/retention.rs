//! Retention on the embedded log: what `herald.dev/retention-max-age`, `-max-bytes` and
//! `herald.dev/retention: interest` mean on sled, with JetStream's meaning.
//!
//! One background thread deletes records from the front of each broker's tree: those that
//! arrived before the age limit, those every trigger has finished (interest), and the oldest
//! while the stored bytes exceed the limit. It runs only when something can be deleted: it
//! is woken by appends, commits and settings of brokers that have limits, and by the moment
//! the oldest kept event reaches its age limit, which each pass computes; a log that keeps
//! everything, or where nothing happens, wakes it never. It runs at most one pass per
//! [`CHECK_INTERVAL`], so that under load one pass deletes many records.
//! Only durable records are considered, so the trimmer never races the writer, which appends
//! above the durable mark. Parked events are copies in their own tree and are never trimmed.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::database::Database;
use super::signal::Woken;
use super::{arrival_time, names, offset_from_key, BrokerTree};
use crate::log::{BrokerKey, BrokerSettings, LogError};

/// Shortest time between two passes. A pass that failed is retried this much later.
pub(super) const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Longest sleep before an age limit is due: the wall clock it is computed with may jump.
const LONGEST_SLEEP: Duration = Duration::from_secs(60);
/// Deletions applied in one sled batch.
const DELETE_BATCH: usize = 4096;

/// Counter of records deleted by retention, by namespace and broker.
pub const LOG_TRIMMED: &str = "herald_log_trimmed_records_total";

/// What a broker keeps. The default keeps everything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Retention {
    max_age: Option<Duration>,
    max_bytes: Option<u64>,
    interest: bool,
}

impl Retention {
    pub(super) fn from_settings(settings: &BrokerSettings) -> Self {
        Self {
            max_age: settings.max_age,
            max_bytes: settings
                .max_bytes
                .and_then(|bytes| u64::try_from(bytes).ok()),
            interest: settings.interest_retention,
        }
    }

    pub(super) fn keeps_everything(&self) -> bool {
        *self == Self::default()
    }
}

/// The stored bytes of a broker's records below `counted_to`, kept only while the broker has
/// a byte limit: counting starts with one scan and then reads only new records.
#[derive(Default)]
struct StoredBytes {
    counted_to: u64,
    bytes: u64,
}

/// The trimmer's state: the brokers to look at and what it has counted.
pub(super) struct Trimmer {
    database: Arc<Database>,
    stored: HashMap<BrokerKey, StoredBytes>,
}

impl Trimmer {
    pub(super) fn new(database: Arc<Database>) -> Self {
        Self {
            database,
            stored: HashMap::new(),
        }
    }

    /// Sleeps until woken or until the next pass is due, runs it, and again, until the
    /// database's retention signal is stopped.
    pub(super) fn run(mut self) {
        let signal = &self.database.clone().retention_wake;
        let mut due: Option<Instant> = None;
        loop {
            if signal.wait(due) == Woken::Stopped {
                return;
            }
            let started = Instant::now();
            due = self.trim_all(SystemTime::now()).map(due_instant);
            if !signal.sleep_until(started + CHECK_INTERVAL) {
                return;
            }
        }
    }

    /// One pass over every broker; returns when the next pass is due by itself (the oldest
    /// kept event reaches its age limit, or a failed pass is retried), if ever.
    pub(super) fn trim_all(&mut self, now: SystemTime) -> Option<SystemTime> {
        // Nothing to do while the database reopens; a pass after it counts afresh.
        if self.database.is_failed() {
            self.stored.clear();
            return None;
        }
        let brokers: Vec<Arc<BrokerTree>> = match self.database.brokers.lock() {
            Ok(brokers) => brokers.values().cloned().collect(),
            Err(_) => return None,
        };
        self.stored
            .retain(|key, _| brokers.iter().any(|broker| &broker.key == key));
        let mut next: Option<SystemTime> = None;
        for broker in brokers {
            let due = match self.trim(&broker, now) {
                Ok(due) => due,
                Err(e) => {
                    // Some deletions may have been applied: count again from scratch next time.
                    self.stored.remove(&broker.key);
                    tracing::warn!(
                        namespace = %broker.key.namespace,
                        broker = %broker.key.name,
                        error = %e,
                        "retention pass failed"
                    );
                    Some(now + CHECK_INTERVAL)
                }
            };
            next = match (next, due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        next
    }

    /// Deletes what the broker's retention no longer keeps; returns when its oldest kept
    /// record reaches the age limit (`None`: no age limit, or nothing kept to expire).
    fn trim(
        &mut self,
        broker: &BrokerTree,
        now: SystemTime,
    ) -> Result<Option<SystemTime>, LogError> {
        let retention = *broker
            .retention
            .lock()
            .map_err(|_| LogError::Storage("lock poisoned".into()))?;
        if retention.keeps_everything() {
            self.stored.remove(&broker.key);
            return Ok(None);
        }
        let durable = *broker.durable.borrow();
        let interest_floor = if retention.interest {
            self.lowest_committed(&broker.key)?.unwrap_or(durable)
        } else {
            0
        };
        let cutoff = retention.max_age.and_then(|age| now.checked_sub(age));
        // (limit, bytes stored below `durable`): every record the loop looks at is counted.
        let mut size = match retention.max_bytes {
            Some(max) => Some((max, self.count_new_records(broker, durable)?)),
            None => {
                self.stored.remove(&broker.key);
                None
            }
        };

        let tree = self.database.tree(broker)?;
        let storage = |e| self.database.storage(e);
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        let mut removed = 0;
        let mut expires = None;
        for entry in tree.range(..durable.to_be_bytes()) {
            let (key, value) = entry.map_err(storage)?;
            let offset = offset_from_key(&key)?;
            let finished = offset < interest_floor;
            let arrived = match cutoff {
                Some(_) => arrival_time(&value)?,
                None => None,
            };
            let too_old = cutoff.is_some_and(|cutoff| arrived.is_none_or(|at| at < cutoff));
            let over_size = size.is_some_and(|(max, bytes)| bytes > max);
            if !(finished || too_old || over_size) {
                // The first record kept: the next one the age limit deletes.
                expires = arrived.zip(retention.max_age).map(|(at, age)| at + age);
                break;
            }
            if let Some((_, bytes)) = &mut size {
                *bytes = bytes.saturating_sub(record_size(&key, &value));
            }
            batch.remove(key);
            in_batch += 1;
            removed += 1;
            broker.first.store(offset + 1, Ordering::SeqCst);
            if in_batch == DELETE_BATCH {
                tree.apply_batch(std::mem::take(&mut batch))
                    .map_err(storage)?;
                in_batch = 0;
            }
        }
        if in_batch > 0 {
            tree.apply_batch(batch).map_err(storage)?;
        }
        if let (Some((_, bytes)), Some(stored)) = (size, self.stored.get_mut(&broker.key)) {
            stored.bytes = bytes;
        }
        if removed > 0 {
            metrics::counter!(
                LOG_TRIMMED,
                "namespace" => broker.key.namespace.clone(),
                "broker" => broker.key.name.clone()
            )
            .increment(removed);
        }
        Ok(expires)
    }

    /// The lowest committed position of the broker's consumers, if it has any.
    fn lowest_committed(&self, broker: &BrokerKey) -> Result<Option<u64>, LogError> {
        let mut lowest: Option<u64> = None;
        let offsets = self.database.handles()?.offsets;
        for entry in offsets.scan_prefix(names::broker_prefix(broker)) {
            let (_, value) = entry.map_err(|e| self.database.storage(e))?;
            let committed = offset_from_key(&value)?;
            lowest = Some(lowest.map_or(committed, |l| l.min(committed)));
        }
        Ok(lowest)
    }

    /// Adds the records that became durable since the last pass to the broker's byte count,
    /// and returns the bytes stored below `durable`.
    fn count_new_records(&mut self, broker: &BrokerTree, durable: u64) -> Result<u64, LogError> {
        let tree = self.database.tree(broker)?;
        let stored = self.stored.entry(broker.key.clone()).or_default();
        if stored.counted_to < durable {
            for entry in tree.range(stored.counted_to.to_be_bytes()..durable.to_be_bytes()) {
                let (key, value) = entry.map_err(|e| self.database.storage(e))?;
                stored.bytes += record_size(&key, &value);
            }
            stored.counted_to = durable;
        }
        Ok(stored.bytes)
    }
}

/// The monotonic moment of the wall-clock `at`, at most [`LONGEST_SLEEP`] from now.
fn due_instant(at: SystemTime) -> Instant {
    let wait = at
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Instant::now() + wait.min(LONGEST_SLEEP)
}

/// What a record counts against a byte limit: its key and its encoded record.
fn record_size(key: &[u8], value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::sled::SledLog;
    use crate::log::testsuite::sample;
    use crate::log::{EventLog, LogConsumer, StartFrom};
    use crate::record::Record;

    const HOUR: Duration = Duration::from_secs(3600);

    fn arrived(id: &str, at: SystemTime) -> Record {
        let mut record = sample(id);
        let at = chrono::DateTime::<chrono::Utc>::from(at);
        record.event.set(
            crate::ingress::ARRIVAL_TIME_EXTENSION,
            at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .as_str(),
        );
        record
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        log: SledLog,
        broker: BrokerKey,
    }

    async fn fixture(settings: BrokerSettings) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let log = SledLog::open(dir.path(), 16).unwrap();
        let broker = BrokerKey::new("ns", "b");
        log.ensure_broker(&broker, &settings).await.unwrap();
        Fixture {
            _dir: dir,
            log,
            broker,
        }
    }

    impl Fixture {
        /// One pass of a trimmer of the test's own, as if at `now`.
        fn trim(&self, now: SystemTime) {
            Trimmer::new(self.log.database.clone()).trim_all(now);
        }

        /// The ids of every record still in the log, read by a consumer that then goes away.
        async fn remaining(&self) -> Vec<String> {
            let probe = "probe";
            let mut consumer = self
                .log
                .consumer(&self.broker, probe, StartFrom::Earliest)
                .await
                .unwrap();
            let durable = *self.log.broker(&self.broker).unwrap().durable.borrow();
            let mut ids = Vec::new();
            let first = self
                .log
                .broker(&self.broker)
                .unwrap()
                .first
                .load(Ordering::SeqCst);
            if first < durable {
                while ids.len() < (durable - first) as usize {
                    let batch = tokio::time::timeout(Duration::from_secs(5), consumer.poll(100))
                        .await
                        .expect("records between first and durable are readable");
                    for record in batch.unwrap() {
                        ids.push(record.record.event.id().into_owned());
                    }
                }
            }
            drop(consumer);
            self.log.delete_consumer(&self.broker, probe).await.unwrap();
            ids
        }

        async fn finish(&self, consumer: &mut dyn LogConsumer, n: usize) {
            let mut done = 0;
            while done < n {
                for record in consumer.poll(n - done).await.unwrap() {
                    consumer.ack(record.id).await.unwrap();
                    done += 1;
                }
            }
            consumer.commit().await.unwrap();
        }
    }

    #[tokio::test]
    async fn without_limits_everything_is_kept() {
        let f = fixture(BrokerSettings::default()).await;
        let long_ago = SystemTime::now() - 48 * HOUR;
        f.log
            .append(&f.broker, vec![arrived("a", long_ago), sample("b")])
            .await
            .unwrap();
        f.trim(SystemTime::now() + 1000 * HOUR);
        assert_eq!(f.remaining().await, ["a", "b"]);
    }

    #[tokio::test]
    async fn an_age_limit_drops_what_arrived_before_it() {
        let f = fixture(BrokerSettings {
            max_age: Some(HOUR),
            ..Default::default()
        })
        .await;
        let now = SystemTime::now();
        let mut early = f
            .log
            .consumer(&f.broker, "early", StartFrom::Earliest)
            .await
            .unwrap();
        f.log
            .append(
                &f.broker,
                vec![
                    arrived("old-1", now - 2 * HOUR),
                    arrived("old-2", now - HOUR - Duration::from_secs(1)),
                    arrived("young", now - HOUR + Duration::from_secs(1)),
                    arrived("new", now),
                ],
            )
            .await
            .unwrap();
        assert_eq!(early.lag(), Some(4));
        f.trim(now);
        assert_eq!(f.remaining().await, ["young", "new"]);
        assert_eq!(early.lag(), Some(2), "deleted records are not owed");
        let read: Vec<String> = early
            .poll(10)
            .await
            .unwrap()
            .iter()
            .map(|r| r.record.event.id().into_owned())
            .collect();
        assert_eq!(read, ["young", "new"], "a consumer behind the limit skips");

        f.trim(now + HOUR - Duration::from_secs(1));
        assert_eq!(f.remaining().await, ["new"], "the limit moves with time");
    }

    /// A pass says when the next one is due by itself: when the oldest kept event reaches
    /// the age limit. Without an age limit, or with nothing kept, no pass is due: retention
    /// then sleeps until an append, a commit or new settings wake it.
    #[tokio::test]
    async fn a_pass_arms_a_timer_only_for_the_next_expiry() {
        // Whole seconds: arrival times are stored to the microsecond.
        let since_epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(since_epoch.as_secs());
        let limited = fixture(BrokerSettings {
            max_age: Some(HOUR),
            ..Default::default()
        })
        .await;
        let mut trimmer = Trimmer::new(limited.log.database.clone());
        assert_eq!(trimmer.trim_all(now), None, "an empty log expires nothing");
        let young = now - HOUR / 2;
        limited
            .log
            .append(
                &limited.broker,
                vec![
                    arrived("old", now - 2 * HOUR),
                    arrived("young", young),
                    arrived("new", now),
                ],
            )
            .await
            .unwrap();
        assert_eq!(trimmer.trim_all(now), Some(young + HOUR));
        assert_eq!(limited.remaining().await, ["young", "new"]);
        assert_eq!(trimmer.trim_all(now + 3 * HOUR), None, "everything expired");

        let unlimited = fixture(BrokerSettings::default()).await;
        unlimited
            .log
            .append(&unlimited.broker, vec![arrived("a", now - 48 * HOUR)])
            .await
            .unwrap();
        let mut trimmer = Trimmer::new(unlimited.log.database.clone());
        assert_eq!(trimmer.trim_all(now), None, "a log that keeps everything");

        let sized = fixture(BrokerSettings {
            max_bytes: Some(1 << 20),
            ..Default::default()
        })
        .await;
        sized
            .log
            .append(&sized.broker, vec![sample("a")])
            .await
            .unwrap();
        let mut trimmer = Trimmer::new(sized.log.database.clone());
        assert_eq!(
            trimmer.trim_all(now),
            None,
            "only appends can exceed a byte limit"
        );
    }

    #[tokio::test]
    async fn a_byte_limit_keeps_the_newest_records_that_fit() {
        let one = 8 + sample("r00").encode().len() as u64;
        let f = fixture(BrokerSettings {
            max_bytes: Some((3 * one + one / 2) as i64),
            ..Default::default()
        })
        .await;
        let ids: Vec<String> = (0..10).map(|i| format!("r{i:02}")).collect();
        let records = ids.iter().map(|id| sample(id)).collect();
        f.log.append(&f.broker, records).await.unwrap();
        f.trim(SystemTime::now());
        assert_eq!(f.remaining().await, ["r07", "r08", "r09"]);

        // Only new records are counted on later passes; the total must stay right.
        f.log
            .append(&f.broker, vec![sample("r10"), sample("r11")])
            .await
            .unwrap();
        f.trim(SystemTime::now());
        assert_eq!(f.remaining().await, ["r09", "r10", "r11"]);
    }

    #[tokio::test]
    async fn interest_drops_what_every_consumer_finished() {
        let f = fixture(BrokerSettings {
            interest_retention: true,
            ..Default::default()
        })
        .await;
        let mut fast = f
            .log
            .consumer(&f.broker, "fast", StartFrom::Earliest)
            .await
            .unwrap();
        let mut slow = f
            .log
            .consumer(&f.broker, "slow", StartFrom::Earliest)
            .await
            .unwrap();
        let records = ["a", "b", "c", "d"].iter().map(|id| sample(id)).collect();
        f.log.append(&f.broker, records).await.unwrap();
        f.finish(&mut *fast, 4).await;
        f.finish(&mut *slow, 2).await;
        f.trim(SystemTime::now());
        assert_eq!(f.remaining().await, ["c", "d"], "slow still needs c and d");

        f.log.delete_consumer(&f.broker, "slow").await.unwrap();
        f.log.delete_consumer(&f.broker, "fast").await.unwrap();
        f.trim(SystemTime::now());
        assert_eq!(
            f.remaining().await,
            Vec::<String>::new(),
            "with no consumers nothing is kept, as on JetStream"
        );
    }

    #[tokio::test]
    async fn the_background_thread_applies_the_limits() {
        let f = fixture(BrokerSettings {
            max_age: Some(HOUR),
            ..Default::default()
        })
        .await;
        let now = SystemTime::now();
        f.log
            .append(
                &f.broker,
                vec![arrived("old", now - 2 * HOUR), arrived("new", now)],
            )
            .await
            .unwrap();
        let tree = f.log.broker(&f.broker).unwrap();
        let deadline = std::time::Instant::now() + 10 * CHECK_INTERVAL;
        while tree.first.load(Ordering::SeqCst) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the retention thread did not trim"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(f.remaining().await, ["new"]);
    }
}
