//! Retention on the embedded log: what `herald.dev/retention-max-age`, `-max-bytes` and
//! `herald.dev/retention: interest` mean on sled, with JetStream's meaning.
//!
//! One background thread drops records from the front of each broker's log: those that
//! arrived before the age limit, those every trigger has finished (interest), and the oldest
//! while the stored bytes exceed the limit. Dropping moves the broker's first kept offset
//! (consumers skip what is below it, and it is kept in sled); segment files wholly below it
//! are deleted. The thread runs only when something can be dropped: it is woken by appends,
//! commits and settings of brokers that have limits, and by the moment the oldest kept event
//! reaches its age limit, which each pass computes; a log that keeps everything, or where
//! nothing happens, wakes it never. It runs at most one pass per [`CHECK_INTERVAL`], so that
//! under load one pass drops many records. Only durable records are considered, so the
//! trimmer never races the writer, which appends above the durable mark. Parked events are
//! copies in their own tree and are never trimmed.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::database::Database;
use super::signal::Woken;
use super::{arrival_time, io_error, names, offset_from_key, BrokerTree};
use crate::log::{BrokerKey, BrokerSettings, LogError};

/// Shortest time between two passes. A pass that failed is retried this much later.
pub(super) const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Longest sleep before an age limit is due: the wall clock it is computed with may jump.
const LONGEST_SLEEP: Duration = Duration::from_secs(60);

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

/// The trimmer's state: the brokers to look at.
pub(super) struct Trimmer {
    database: Arc<Database>,
}

impl Trimmer {
    pub(super) fn new(database: Arc<Database>) -> Self {
        Self { database }
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
        // Nothing to do while the database reopens.
        if self.database.is_failed() {
            return None;
        }
        let brokers: Vec<Arc<BrokerTree>> = match self.database.brokers.lock() {
            Ok(brokers) => brokers.values().cloned().collect(),
            Err(_) => return None,
        };
        let mut next: Option<SystemTime> = None;
        for broker in brokers {
            let due = match self.trim(&broker, now) {
                Ok(due) => due,
                Err(e) => {
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

    /// Moves the broker's first kept offset past what its retention no longer keeps, and
    /// deletes the segment files left wholly below it; returns when its oldest kept record
    /// reaches the age limit (`None`: no age limit, or nothing kept to expire).
    fn trim(
        &mut self,
        broker: &BrokerTree,
        now: SystemTime,
    ) -> Result<Option<SystemTime>, LogError> {
        let retention = *broker
            .retention
            .lock()
            .map_err(|_| LogError::storage("lock poisoned"))?;
        if retention.keeps_everything() {
            return Ok(None);
        }
        let durable = *broker.durable.borrow();
        let interest_floor = if retention.interest {
            self.lowest_committed(&broker.key)?.unwrap_or(durable)
        } else {
            0
        };
        let cutoff = retention.max_age.and_then(|age| now.checked_sub(age));
        let start = broker.first.load(Ordering::SeqCst);
        // (limit, bytes of the records from `first` to `durable`).
        let mut size = match retention.max_bytes {
            Some(max) => Some((
                max,
                broker.segments.bytes(start, durable).map_err(io_error)?,
            )),
            None => None,
        };
        let mut arrivals = Arrivals::default();
        let mut first = start;
        let mut expires = None;
        while first < durable {
            let finished = first < interest_floor;
            let over_size = size.is_some_and(|(max, bytes)| bytes > max);
            // Read only when nothing else already drops the record.
            let arrived = match (finished || over_size, cutoff) {
                (false, Some(_)) => arrivals.of(broker, first, durable)?,
                _ => None,
            };
            let too_old = !(finished || over_size)
                && cutoff.is_some_and(|cutoff| arrived.is_none_or(|at| at < cutoff));
            if !(finished || over_size || too_old) {
                // The first record kept: the next one the age limit drops.
                expires = arrived.zip(retention.max_age).map(|(at, age)| at + age);
                break;
            }
            if let Some((_, bytes)) = &mut size {
                let record = broker.segments.bytes(first, first + 1).map_err(io_error)?;
                *bytes = bytes.saturating_sub(record);
            }
            first += 1;
        }
        let removed = first - start;
        if removed == 0 {
            return Ok(expires);
        }
        broker.first.store(first, Ordering::SeqCst);
        // Durable with sled's next flush; until then a restart keeps the first offset of the
        // oldest segment file left, and only brings back records that were to go.
        self.database
            .handles()?
            .starts
            .insert(names::broker_prefix(&broker.key), &first.to_be_bytes())
            .map_err(|e| self.database.storage(e))?;
        broker.segments.remove_below(first).map_err(io_error)?;
        metrics::counter!(
            LOG_TRIMMED,
            "namespace" => broker.key.namespace.clone(),
            "broker" => broker.key.name.clone()
        )
        .increment(removed);
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
}

/// Arrival times of records, read in batches that start at one record (a pass that deletes
/// nothing reads one) and double up to [`MAX_READ`].
#[derive(Default)]
struct Arrivals {
    from: u64,
    times: Vec<Option<SystemTime>>,
    batch: u64,
}

/// Most records the trimmer reads at once.
const MAX_READ: u64 = 1024;

impl Arrivals {
    fn of(
        &mut self,
        broker: &BrokerTree,
        offset: u64,
        durable: u64,
    ) -> Result<Option<SystemTime>, LogError> {
        let held = offset >= self.from && offset - self.from < self.times.len() as u64;
        if !held {
            self.batch = (self.batch * 2).clamp(1, MAX_READ);
            let records = broker
                .segments
                .read(offset, durable.min(offset + self.batch))
                .map_err(io_error)?;
            self.from = offset;
            self.times = records
                .iter()
                .map(|(_, value)| arrival_time(value))
                .collect::<Result<_, _>>()?;
        }
        self.times
            .get((offset - self.from) as usize)
            .copied()
            .ok_or_else(|| LogError::storage(format!("record {offset} could not be read")))
    }
}

/// The monotonic moment of the wall-clock `at`, at most [`LONGEST_SLEEP`] from now.
fn due_instant(at: SystemTime) -> Instant {
    let wait = at
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Instant::now() + wait.min(LONGEST_SLEEP)
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
            crate::record::ARRIVAL_TIME_EXTENSION,
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

    /// Retention drops records one by one, and deletes the segment files that hold only
    /// dropped records; the first kept offset survives a restart.
    #[tokio::test]
    async fn whole_segment_files_below_the_first_kept_record_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let one = 8 + sample("r00").encode().len() as u64;
        // Three records to a segment file.
        let log = SledLog::open_with(dir.path(), 16, 1 << 20, 3 * one + one / 2).unwrap();
        let broker = BrokerKey::new("ns", "b");
        let settings = BrokerSettings {
            max_bytes: Some((3 * one + one / 2) as i64),
            ..Default::default()
        };
        log.ensure_broker(&broker, &settings).await.unwrap();
        let ids: Vec<String> = (0..10).map(|i| format!("r{i:02}")).collect();
        for id in &ids {
            log.append(&broker, vec![sample(id)]).await.unwrap();
        }
        let segment_dir = dir.path().join("segments/ns/b");
        let files = || std::fs::read_dir(&segment_dir).unwrap().count();
        assert_eq!(files(), 4, "r00-r02, r03-r05, r06-r08, r09");
        let f = Fixture {
            _dir: dir,
            log,
            broker,
        };
        f.trim(SystemTime::now());
        assert_eq!(f.remaining().await, ["r07", "r08", "r09"]);
        assert_eq!(
            files(),
            2,
            "the files of r00-r05 are gone, r06-r08 holds r07"
        );

        f.log.close().await.unwrap();
        let Fixture { _dir: dir, log, .. } = f;
        drop(log);
        let log = loop {
            match SledLog::open_with(dir.path(), 16, 1 << 20, 3 * one + one / 2) {
                Err(LogError::InUse) => tokio::time::sleep(Duration::from_millis(10)).await,
                other => break other.unwrap(),
            }
        };
        let broker = BrokerKey::new("ns", "b");
        log.ensure_broker(&broker, &BrokerSettings::default())
            .await
            .unwrap();
        let f = Fixture {
            _dir: dir,
            log,
            broker,
        };
        assert_eq!(
            f.remaining().await,
            ["r07", "r08", "r09"],
            "the first kept offset was kept"
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
