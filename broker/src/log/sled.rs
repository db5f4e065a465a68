//! The embedded log on sled: one tree per broker, keyed by big-endian offsets (names in
//! [`crate::log::names::sled`]).
//!
//! Appends go through one writer thread that takes every request waiting in its bounded
//! queue, inserts them, and flushes once for all of them (group commit): many concurrent
//! producers share one fsync, and each gets its answer only after the flush that covers it.
//! Consumers read only up to the durable high-water mark, which the writer publishes on a
//! `watch` channel after each flush: they wait on it instead of polling.
//!
//! After an I/O error (a full disk) the log refuses appends and the writer reopens the
//! database until a write is durable again (see `database`); consumers, the retention
//! thread and everything else reach sled only through [`Database`], so they go on with
//! the reopened one by themselves.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use super::names::sled as names;
use super::{
    BrokerKey, BrokerSettings, EventLog, LogConsumer, LogError, LogRecord, ParkedRecord, RecordId,
    StartFrom,
};
use crate::record::Record;

mod database;
mod flusher;
mod retention;
mod signal;
mod writer;

use database::Database;
pub use database::LOG_WRITABLE;
pub use retention::LOG_TRIMMED;
use retention::{Retention, Trimmer};
use writer::{AppendRequest, WriterMessage};

/// Default bound of the append queue; a full queue answers [`LogError::Overloaded`].
pub const DEFAULT_QUEUE_CAPACITY: usize = 4096;

struct BrokerTree {
    key: BrokerKey,
    /// `None` while the database reopens (see [`Database::tree`]).
    tree: RwLock<Option<sled::Tree>>,
    /// Next offset to assign; only the writer thread advances it.
    next: AtomicU64,
    /// Offsets below this value are durable.
    durable: watch::Sender<u64>,
    /// No record below this offset is left: retention deleted it.
    first: AtomicU64,
    /// What retention keeps, from the broker's settings.
    retention: Mutex<Retention>,
    /// Whether retention may delete anything: appends and commits then wake it.
    has_limits: AtomicBool,
}

impl BrokerTree {
    /// Wakes the retention thread if this broker has limits: something may be deletable.
    fn wake_retention(&self, database: &Database) {
        if self.has_limits.load(Ordering::SeqCst) {
            database.retention_wake.raise();
        }
    }
}

/// The sled-backed [`EventLog`].
pub struct SledLog {
    database: Arc<Database>,
    writer: mpsc::Sender<WriterMessage>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    /// Stopped by the database's `retention_wake` signal (on close or drop).
    trimmer_thread: Mutex<Option<JoinHandle<()>>>,
    /// Stopped by the database's `offsets_written` signal (on close or drop).
    flusher_thread: Mutex<Option<JoinHandle<()>>>,
}

fn lock_poisoned() -> LogError {
    LogError::Storage("lock poisoned".into())
}

/// sled's page cache by default (`--sled-cache-bytes`): sled's own default is 1 GiB, far more
/// than an append-mostly log that is read near its tail needs.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

impl SledLog {
    /// Opens (or creates) the log in `dir` with the default cache.
    pub fn open(dir: &Path, queue_capacity: usize) -> Result<Self, LogError> {
        Self::open_with_cache(dir, queue_capacity, DEFAULT_CACHE_BYTES)
    }

    /// Opens (or creates) the log in `dir`, with at most `cache_bytes` of sled's page cache.
    pub fn open_with_cache(
        dir: &Path,
        queue_capacity: usize,
        cache_bytes: u64,
    ) -> Result<Self, LogError> {
        let (tx, rx) = mpsc::channel(queue_capacity.max(1));
        let database = Arc::new(Database::open(dir, cache_bytes, tx.downgrade())?);
        metrics::gauge!(LOG_WRITABLE).set(1.0);
        let writer_database = database.clone();
        let thread = std::thread::Builder::new()
            .name("herald-sled-writer".into())
            .spawn(move || writer::run_writer(writer_database, rx))
            .map_err(|e| LogError::Storage(format!("cannot start the writer thread: {e}")))?;
        let log = Self {
            database: database.clone(),
            writer: tx,
            writer_thread: Mutex::new(Some(thread)),
            trimmer_thread: Mutex::new(None),
            flusher_thread: Mutex::new(None),
        };
        // From here on, dropping `log` stops whatever was started.
        let trimmer = Trimmer::new(database.clone());
        let trimmer_thread = std::thread::Builder::new()
            .name("herald-sled-retention".into())
            .spawn(move || trimmer.run())
            .map_err(|e| LogError::Storage(format!("cannot start the retention thread: {e}")))?;
        *log.trimmer_thread.lock().map_err(|_| lock_poisoned())? = Some(trimmer_thread);
        let flusher_thread = std::thread::Builder::new()
            .name("herald-sled-offsets".into())
            .spawn(move || flusher::run_offset_flusher(database))
            .map_err(|e| LogError::Storage(format!("cannot start the offset flusher: {e}")))?;
        *log.flusher_thread.lock().map_err(|_| lock_poisoned())? = Some(flusher_thread);
        Ok(log)
    }

    fn broker(&self, key: &BrokerKey) -> Result<Arc<BrokerTree>, LogError> {
        let brokers = self.database.brokers.lock().map_err(|_| lock_poisoned())?;
        brokers
            .get(key)
            .cloned()
            .ok_or_else(|| LogError::UnknownBroker(key.clone()))
    }

    fn open_broker(&self, key: &BrokerKey) -> Result<Arc<BrokerTree>, LogError> {
        let mut brokers = self.database.brokers.lock().map_err(|_| lock_poisoned())?;
        if let Some(existing) = brokers.get(key) {
            return Ok(existing.clone());
        }
        let storage = |e| self.database.storage(e);
        let tree = self
            .database
            .handles()?
            .db
            .open_tree(names::tree(key))
            .map_err(storage)?;
        let next = match tree.last().map_err(storage)? {
            Some((k, _)) => offset_from_key(&k)? + 1,
            None => 0,
        };
        let first = match tree.first().map_err(storage)? {
            Some((k, _)) => offset_from_key(&k)?,
            None => next,
        };
        let (durable, _) = watch::channel(next);
        super::record_log_size(key, next);
        let broker = Arc::new(BrokerTree {
            key: key.clone(),
            tree: RwLock::new(Some(tree)),
            next: AtomicU64::new(next),
            durable,
            first: AtomicU64::new(first),
            retention: Mutex::new(Retention::default()),
            has_limits: AtomicBool::new(false),
        });
        brokers.insert(key.clone(), broker.clone());
        Ok(broker)
    }

    /// Makes everything written so far durable. sled's `flush_async` can hang when several
    /// tasks call it at once (seen when consumers of many triggers were created
    /// concurrently); a blocking flush on the blocking pool is serialised by sled itself.
    async fn flush(&self) -> Result<(), LogError> {
        let db = self.database.handles()?.db;
        let database = self.database.clone();
        tokio::task::spawn_blocking(move || db.flush().map_err(|e| database.storage(e)))
            .await
            .map_err(|e| LogError::Storage(format!("flush task failed: {e}")))??;
        Ok(())
    }
}

fn offset_from_key(key: &[u8]) -> Result<u64, LogError> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| LogError::Corrupt("log key is not 8 bytes".into()))?;
    Ok(u64::from_be_bytes(bytes))
}

/// The offset of the first durable record whose `knativearrivaltime` is at or after `time`
/// (records without one count as older), or the durable end when there is none. A scan: it
/// runs once, when a consumer is created.
fn first_arrived_since(
    database: &Database,
    broker: &BrokerTree,
    time: std::time::SystemTime,
) -> Result<u64, LogError> {
    let end = *broker.durable.borrow();
    for entry in database.tree(broker)?.range(..end.to_be_bytes()) {
        let (key, value) = entry.map_err(|e| database.storage(e))?;
        if arrival_time(&value)?.is_some_and(|arrived| arrived >= time) {
            return offset_from_key(&key);
        }
    }
    Ok(end)
}

/// When ingress accepted a stored record (its `knativearrivaltime`), if it says.
fn arrival_time(value: &[u8]) -> Result<Option<std::time::SystemTime>, LogError> {
    let record = Record::decode(bytes::Bytes::copy_from_slice(value))
        .map_err(|e| LogError::Corrupt(e.to_string()))?;
    Ok(record
        .event
        .text(crate::ingress::ARRIVAL_TIME_EXTENSION)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
        .map(std::time::SystemTime::from))
}

#[async_trait]
impl EventLog for SledLog {
    /// Takes the retention settings (see `retention`); replicas and partitions mean nothing
    /// to a log on one machine.
    async fn ensure_broker(
        &self,
        broker: &BrokerKey,
        settings: &BrokerSettings,
    ) -> Result<(), LogError> {
        let tree = self.open_broker(broker)?;
        let retention = Retention::from_settings(settings);
        *tree.retention.lock().map_err(|_| lock_poisoned())? = retention;
        tree.has_limits
            .store(!retention.keeps_everything(), Ordering::SeqCst);
        // New limits may delete what is there now.
        tree.wake_retention(&self.database);
        Ok(())
    }

    async fn append(&self, broker: &BrokerKey, records: Vec<Record>) -> Result<(), LogError> {
        let tree = self.broker(broker)?;
        // Refused at once while the database reopens, without taking a place in the queue.
        self.database.check_writable()?;
        let records = records.iter().map(Record::encode).collect();
        let (done, answer) = oneshot::channel();
        self.writer
            .try_send(WriterMessage::Append(AppendRequest {
                broker: tree,
                records,
                done,
            }))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => LogError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => {
                    LogError::Unavailable("the log is closed".into())
                }
            })?;
        answer
            .await
            .map_err(|_| LogError::Unavailable("the writer stopped".into()))?
    }

    fn can_persist(&self) -> bool {
        !self.database.is_failed()
    }

    async fn consumer(
        &self,
        broker: &BrokerKey,
        name: &str,
        start: StartFrom,
    ) -> Result<Box<dyn LogConsumer>, LogError> {
        let tree = self.open_broker(broker)?;
        let key = names::consumer_key(broker, name);
        let offsets = self.database.handles()?.offsets;
        let storage = |e| self.database.storage(e);
        let committed = match offsets.get(&key).map_err(storage)? {
            Some(value) => offset_from_key(&value)?,
            None => {
                let start_at = match start {
                    StartFrom::Latest => *tree.durable.borrow(),
                    StartFrom::Earliest => {
                        match self.database.tree(&tree)?.first().map_err(storage)? {
                            Some((k, _)) => offset_from_key(&k)?,
                            None => 0,
                        }
                    }
                    StartFrom::Time(time) => first_arrived_since(&self.database, &tree, time)?,
                };
                // Persist the starting point now, so that a crash before the first commit
                // cannot make the consumer skip what was accepted meanwhile.
                offsets
                    .insert(&key, &start_at.to_be_bytes())
                    .map_err(storage)?;
                drop(offsets);
                self.flush().await?;
                start_at
            }
        };
        Ok(Box::new(SledConsumer {
            durable: tree.durable.subscribe(),
            broker: tree,
            database: self.database.clone(),
            key,
            next_read: committed,
            committed,
            pending: BTreeSet::new(),
        }))
    }

    async fn park(
        &self,
        broker: &BrokerKey,
        consumer: &str,
        parked: ParkedRecord,
    ) -> Result<(), LogError> {
        let mut key = names::consumer_key(broker, consumer);
        key.extend_from_slice(&parked.id.offset.to_be_bytes());
        let value = parked.encode()?;
        self.database
            .handles()?
            .parked
            .insert(key, value)
            .map_err(|e| self.database.storage(e))?;
        self.flush().await?;
        Ok(())
    }

    async fn parked(
        &self,
        broker: &BrokerKey,
        consumer: &str,
    ) -> Result<Vec<ParkedRecord>, LogError> {
        let prefix = names::consumer_key(broker, consumer);
        let mut out = Vec::new();
        for entry in self.database.handles()?.parked.scan_prefix(&prefix) {
            let (_, value) = entry.map_err(|e| self.database.storage(e))?;
            out.push(ParkedRecord::decode(&value)?);
        }
        Ok(out)
    }

    async fn unpark(
        &self,
        broker: &BrokerKey,
        consumer: &str,
        ids: &[RecordId],
    ) -> Result<usize, LogError> {
        let parked = self.database.handles()?.parked;
        let mut removed = 0;
        for id in ids {
            let mut key = names::consumer_key(broker, consumer);
            key.extend_from_slice(&id.offset.to_be_bytes());
            if parked
                .remove(key)
                .map_err(|e| self.database.storage(e))?
                .is_some()
            {
                removed += 1;
            }
        }
        drop(parked);
        self.flush().await?;
        Ok(removed)
    }

    async fn delete_consumer(&self, broker: &BrokerKey, consumer: &str) -> Result<(), LogError> {
        let key = names::consumer_key(broker, consumer);
        let handles = self.database.handles()?;
        let storage = |e| self.database.storage(e);
        handles.offsets.remove(&key).map_err(storage)?;
        for entry in handles.parked.scan_prefix(&key).keys() {
            handles
                .parked
                .remove(entry.map_err(storage)?)
                .map_err(storage)?;
        }
        drop(handles);
        // Under interest retention, what only this consumer still needed goes.
        if let Ok(tree) = self.broker(broker) {
            tree.wake_retention(&self.database);
        }
        self.flush().await?;
        Ok(())
    }

    async fn delete_broker(&self, broker: &BrokerKey) -> Result<(), LogError> {
        let handles = self.database.handles()?;
        let removed = self
            .database
            .brokers
            .lock()
            .map_err(|_| lock_poisoned())?
            .remove(broker);
        // Consumers of the deleted broker may live on a while: they must not keep sled open.
        if let Some(removed) = removed {
            removed.tree.write().map_err(|_| lock_poisoned())?.take();
        }
        let storage = |e| self.database.storage(e);
        handles.db.drop_tree(names::tree(broker)).map_err(storage)?;
        let prefix = names::broker_prefix(broker);
        for tree in [&handles.offsets, &handles.parked] {
            for key in tree.scan_prefix(&prefix).keys() {
                tree.remove(key.map_err(storage)?).map_err(storage)?;
            }
        }
        drop(handles);
        self.flush().await
    }

    async fn close(&self) -> Result<(), LogError> {
        self.database.retention_wake.stop();
        self.database.offsets_written.stop();
        for (thread, name) in [
            (&self.trimmer_thread, "the retention thread"),
            (&self.flusher_thread, "the offset flusher"),
        ] {
            let thread = thread.lock().map_err(|_| lock_poisoned())?.take();
            if let Some(thread) = thread {
                tokio::task::spawn_blocking(move || thread.join())
                    .await
                    .map_err(|e| LogError::Storage(e.to_string()))?
                    .map_err(|_| LogError::Storage(format!("{name} panicked")))?;
            }
        }
        // The writer finishes what it has taken, then stops; requests queued behind the
        // close are answered "unavailable" when the queue is dropped.
        let _ = self.writer.send(WriterMessage::Close).await;
        let thread = self
            .writer_thread
            .lock()
            .map_err(|_| lock_poisoned())?
            .take();
        if let Some(thread) = thread {
            tokio::task::spawn_blocking(move || thread.join())
                .await
                .map_err(|e| LogError::Storage(e.to_string()))?
                .map_err(|_| LogError::Storage("the writer thread panicked".into()))?;
        }
        // A database that failed has nothing more it could make durable.
        if !self.database.is_failed() {
            self.flush().await?;
        }
        Ok(())
    }
}

impl Drop for SledLog {
    /// Stops the background threads of a log dropped without `close` (the writer stops by
    /// itself when its queue is dropped).
    fn drop(&mut self) {
        self.database.retention_wake.stop();
        self.database.offsets_written.stop();
    }
}

struct SledConsumer {
    broker: Arc<BrokerTree>,
    database: Arc<Database>,
    durable: watch::Receiver<u64>,
    key: Vec<u8>,
    next_read: u64,
    committed: u64,
    /// Polled but not yet acknowledged.
    pending: BTreeSet<u64>,
}

#[async_trait]
impl LogConsumer for SledConsumer {
    async fn poll(&mut self, max: usize) -> Result<Vec<LogRecord>, LogError> {
        loop {
            let high_water = *self.durable.borrow_and_update();
            if self.next_read < high_water {
                let end = high_water.min(self.next_read.saturating_add(max.max(1) as u64));
                let mut out = Vec::with_capacity((end - self.next_read) as usize);
                let tree = self.database.tree(&self.broker)?;
                for entry in tree.range(self.next_read.to_be_bytes()..end.to_be_bytes()) {
                    let (key, value) = entry.map_err(|e| self.database.storage(e))?;
                    let offset = offset_from_key(&key)?;
                    let record = Record::decode(Bytes::from_owner(value))
                        .map_err(|e| LogError::Corrupt(format!("offset {offset}: {e}")))?;
                    out.push(LogRecord {
                        id: RecordId {
                            partition: 0,
                            offset,
                        },
                        record,
                    });
                }
                drop(tree);
                for record in &out {
                    self.pending.insert(record.id.offset);
                }
                self.next_read = end;
                if !out.is_empty() {
                    return Ok(out);
                }
                continue;
            }
            self.durable
                .changed()
                .await
                .map_err(|_| LogError::Unavailable("the log is closed".into()))?;
        }
    }

    async fn ack(&mut self, id: RecordId) -> Result<(), LogError> {
        self.pending.remove(&id.offset);
        Ok(())
    }

    fn lag(&self) -> Option<u64> {
        let high_water = *self.durable.borrow();
        // Records retention deleted before they were read are no longer owed.
        let next = self.next_read.max(self.broker.first.load(Ordering::SeqCst));
        Some(high_water.saturating_sub(next) + self.pending.len() as u64)
    }

    async fn commit(&mut self) -> Result<(), LogError> {
        let low_water = self.pending.first().copied().unwrap_or(self.next_read);
        // While the database reopens the position waits here for the first commit after
        // it, as it waits for the next flush otherwise: a crash meanwhile only redelivers.
        if low_water != self.committed && !self.database.is_failed() {
            // No flush of its own: with many triggers, one flush per trigger per commit was
            // the cost of fan-out. The offset becomes durable with the next group commit or
            // the offset flusher's flush this commit arms, at most `OFFSET_FLUSH` later; a
            // crash before that only redelivers what finished meanwhile.
            self.database
                .handles()?
                .offsets
                .insert(&self.key, &low_water.to_be_bytes())
                .map_err(|e| self.database.storage(e))?;
            self.committed = low_water;
            self.database.offsets_written.raise();
            // Under interest retention, what every trigger finished may now go.
            self.broker.wake_retention(&self.database);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::testsuite::{self, LogHarness};

    struct SledHarness {
        dir: tempfile::TempDir,
    }

    #[async_trait]
    impl LogHarness for SledHarness {
        /// Reopening in the same process may find the file lock still held for a moment:
        /// sled releases it from its I/O threads after the last handle is dropped
        /// (spacejam/sled#1234). A new process never sees this, the kernel releases the lock
        /// at exit, so only the harness waits.
        async fn open(&self) -> Arc<dyn EventLog> {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                match SledLog::open(self.dir.path(), 64) {
                    Ok(log) => return Arc::new(log),
                    Err(LogError::InUse) if std::time::Instant::now() < deadline => {
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await
                    }
                    Err(e) => panic!("open sled log: {e}"),
                }
            }
        }
    }

    fn ids(records: &[LogRecord]) -> Vec<String> {
        records
            .iter()
            .map(|r| r.record.event.id().into_owned())
            .collect()
    }

    /// After an I/O error the log refuses appends and says it cannot persist; the writer
    /// reopens the database by itself, and a consumer opened before goes on reading.
    #[tokio::test]
    async fn a_failed_database_is_reopened_and_consumers_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let log = SledLog::open(dir.path(), 16).unwrap();
        let broker = BrokerKey::new("ns", "b");
        log.ensure_broker(&broker, &BrokerSettings::default())
            .await
            .unwrap();
        let mut consumer = log
            .consumer(&broker, "c", StartFrom::Earliest)
            .await
            .unwrap();
        log.append(&broker, vec![testsuite::sample("before")])
            .await
            .unwrap();
        assert_eq!(ids(&consumer.poll(10).await.unwrap()), ["before"]);

        log.database.fail("injected by the test");
        assert!(!log.can_persist());
        let refused = log
            .append(&broker, vec![testsuite::sample("refused")])
            .await;
        assert!(
            matches!(refused, Err(LogError::Unavailable(_))),
            "{refused:?}"
        );

        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !log.can_persist() {
            assert!(std::time::Instant::now() < deadline, "never reopened");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        log.append(&broker, vec![testsuite::sample("after")])
            .await
            .unwrap();
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), consumer.poll(10))
            .await
            .expect("the consumer reads from the reopened database")
            .unwrap();
        assert_eq!(ids(&read), ["after"]);
        consumer.ack(read[0].id).await.unwrap();
        consumer.commit().await.unwrap();
        log.close().await.unwrap();
    }

    /// A snapshot cut short (a full disk, a kill while sled wrote it) must not keep the log
    /// from opening: sled would read it as the newest snapshot and fail as corrupt.
    #[tokio::test]
    async fn an_unfinished_snapshot_does_not_keep_the_log_closed() {
        let harness = SledHarness {
            dir: tempfile::tempdir().unwrap(),
        };
        let broker = BrokerKey::new("ns", "b");
        {
            let log = harness.open().await;
            log.ensure_broker(&broker, &BrokerSettings::default())
                .await
                .unwrap();
            log.append(&broker, vec![testsuite::sample("kept")])
                .await
                .unwrap();
            log.close().await.unwrap();
        }
        std::fs::write(
            harness.dir.path().join("snap.7FFFFFFFFFFFFFFF.generating"),
            b"half a snapshot",
        )
        .unwrap();
        let log = harness.open().await;
        log.ensure_broker(&broker, &BrokerSettings::default())
            .await
            .unwrap();
        let mut consumer = log
            .consumer(&broker, "c", StartFrom::Earliest)
            .await
            .unwrap();
        assert_eq!(ids(&consumer.poll(10).await.unwrap()), ["kept"]);
    }

    fn copy_dir(from: &Path, to: &Path) {
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                std::fs::create_dir_all(&target).unwrap();
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }

    /// A commit is durable by itself, with no append after it, within the offset flush
    /// (README: at most 200 ms): a copy of the directory taken after the flush, which is
    /// what a SIGKILL leaves on disk, resumes after the committed records.
    #[tokio::test]
    async fn a_commit_becomes_durable_with_the_offset_flush_it_arms() {
        let dir = tempfile::tempdir().unwrap();
        let log = SledLog::open(dir.path(), 16).unwrap();
        let broker = BrokerKey::new("ns", "b");
        log.ensure_broker(&broker, &BrokerSettings::default())
            .await
            .unwrap();
        let mut consumer = log
            .consumer(&broker, "c", StartFrom::Earliest)
            .await
            .unwrap();
        log.append(
            &broker,
            vec![testsuite::sample("a"), testsuite::sample("b")],
        )
        .await
        .unwrap();
        let read = consumer.poll(10).await.unwrap();
        assert_eq!(ids(&read), ["a", "b"]);
        for record in &read {
            consumer.ack(record.id).await.unwrap();
        }
        let flushes = log.database.offset_flushes.load(Ordering::SeqCst);
        consumer.commit().await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while log.database.offset_flushes.load(Ordering::SeqCst) == flushes {
            assert!(
                std::time::Instant::now() < deadline,
                "the commit armed no flush"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }

        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), copy.path());
        let after_kill = SledLog::open(copy.path(), 16).unwrap();
        after_kill
            .ensure_broker(&broker, &BrokerSettings::default())
            .await
            .unwrap();
        after_kill
            .append(&broker, vec![testsuite::sample("c")])
            .await
            .unwrap();
        let mut resumed = after_kill
            .consumer(&broker, "c", StartFrom::Earliest)
            .await
            .unwrap();
        assert_eq!(
            ids(&resumed.poll(10).await.unwrap()),
            ["c"],
            "the committed position survived"
        );
        after_kill.close().await.unwrap();
        log.close().await.unwrap();
    }

    #[tokio::test]
    async fn sled_passes_the_conformance_suite() {
        testsuite::run_all(&|| async {
            Box::new(SledHarness {
                dir: tempfile::tempdir().unwrap(),
            }) as Box<dyn LogHarness>
        })
        .await;
    }
}
