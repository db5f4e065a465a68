//! The embedded log: each broker's events in segment files of its own (see `segments`), and
//! sled for the small rest: consumer offsets, parked records, each broker's first kept
//! offset (names in [`crate::log::names::sled`]).
//!
//! Appends go through one writer thread that takes every request waiting in its bounded
//! queue, writes each broker's records with one write, and syncs each touched segment file
//! once for all of them (group commit): many concurrent producers share one `fdatasync`, and
//! each gets its answer only after the sync that covers it. Consumers read only up to the
//! durable high-water mark, which the writer publishes on a `watch` channel after each sync:
//! they wait on it instead of polling.
//!
//! After an I/O error (a full disk) the log refuses appends and the writer reopens sled and
//! cuts what was not durable off the segments until a write is durable again (see
//! `database`); consumers, the retention thread and everything else reach sled only through
//! [`Database`], so they go on with the reopened one by themselves.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, watch};

use super::names::sled as names;
use super::{
    BrokerKey, BrokerSettings, EventLog, LogConsumer, LogError, LogRecord, ParkedRecord, RecordId,
    StartFrom,
};
use crate::record::Record;

mod database;
mod flusher;
mod migrate;
mod retention;
mod segment;
mod segments;
mod signal;
mod writer;

use database::Database;
pub use database::LOG_WRITABLE;
pub use retention::LOG_TRIMMED;
use retention::{Retention, Trimmer};
use segments::Segments;
use writer::{AppendRequest, WriterMessage};

/// Default bound of the append queue; a full queue answers [`LogError::Overloaded`].
pub const DEFAULT_QUEUE_CAPACITY: usize = 4096;

/// A broker's log: its segment files and the marks in them.
struct BrokerTree {
    key: BrokerKey,
    segments: Segments,
    /// Next offset to assign; only the writer thread advances it.
    next: AtomicU64,
    /// Offsets below this value are durable.
    durable: watch::Sender<u64>,
    /// No record below this offset is left: retention deleted it.
    first: AtomicU64,
    /// What retention keeps, from the broker's settings.
    retention: Mutex<Retention>,
    /// Set once the broker is deleted: its consumers stop.
    deleted: std::sync::atomic::AtomicBool,
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

/// The embedded [`EventLog`] (backend `sled`).
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
    LogError::storage("lock poisoned")
}

/// An I/O error of the segment files as a log error: a record that does not match its
/// checksum is corrupt.
fn io_error(error: std::io::Error) -> LogError {
    match error.kind() {
        std::io::ErrorKind::InvalidData => LogError::corrupt("").caused_by(error),
        _ => LogError::storage("").caused_by(error),
    }
}

/// sled's page cache by default (`--sled-cache-bytes`): sled's own default is 1 GiB, far more
/// than offsets and parked records need.
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
        Self::open_with(dir, queue_capacity, cache_bytes, segments::SEGMENT_BYTES)
    }

    fn open_with(
        dir: &Path,
        queue_capacity: usize,
        cache_bytes: u64,
        segment_bytes: u64,
    ) -> Result<Self, LogError> {
        let (tx, rx) = mpsc::channel(queue_capacity.max(1));
        let database = Arc::new(Database::open(
            dir,
            cache_bytes,
            segment_bytes,
            tx.downgrade(),
        )?);
        metrics::gauge!(LOG_WRITABLE).set(1.0);
        let writer_database = database.clone();
        let thread = std::thread::Builder::new()
            .name("herald-sled-writer".into())
            .spawn(move || writer::run_writer(writer_database, rx))
            .map_err(|e| LogError::storage("cannot start the writer thread").caused_by(e))?;
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
            .map_err(|e| LogError::storage("cannot start the retention thread").caused_by(e))?;
        *log.trimmer_thread.lock().map_err(|_| lock_poisoned())? = Some(trimmer_thread);
        let flusher_thread = std::thread::Builder::new()
            .name("herald-sled-offsets".into())
            .spawn(move || flusher::run_offset_flusher(database))
            .map_err(|e| LogError::storage("cannot start the offset flusher").caused_by(e))?;
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

    /// The broker's log, opened from its segment directory the first time: only its last
    /// segment is read, to find where the records end. Events an earlier version kept in a
    /// sled tree are moved into segments first (see `migrate`).
    fn open_broker(&self, key: &BrokerKey) -> Result<Arc<BrokerTree>, LogError> {
        let mut brokers = self.database.brokers.lock().map_err(|_| lock_poisoned())?;
        if let Some(existing) = brokers.get(key) {
            return Ok(existing.clone());
        }
        let handles = self.database.handles()?;
        let storage = |e| self.database.storage(e);
        let root = self.database.segments_root();
        let relative = names::segment_dir(key);
        let dir = root.join(&relative);
        let segment_bytes = self.database.segment_bytes;
        let legacy = migrate::legacy_tree(&handles.db, key)?;
        if let Some(tree) = &legacy {
            if !dir.exists() {
                let tmp = root.join(database::MIGRATING_DIR).join(&relative);
                migrate::copy_tree(key, tree, &root, &tmp, &dir, segment_bytes)?;
            }
        }
        if legacy.is_some() {
            handles.db.drop_tree(names::tree(key)).map_err(storage)?;
            handles.db.flush().map_err(storage)?;
        }
        let opened = match dir.exists() {
            true => Segments::open(&dir, segment_bytes),
            false => Segments::create(&root, &dir, 0, segment_bytes).map(|s| (s, 0)),
        };
        let (segments, next) =
            opened.map_err(|e| LogError::storage(dir.display().to_string()).caused_by(e))?;
        let kept = match handles
            .starts
            .get(names::broker_prefix(key))
            .map_err(storage)?
        {
            Some(value) => offset_from_key(&value)?,
            None => 0,
        };
        let first = kept.max(segments.first_base().map_err(io_error)?).min(next);
        let (durable, _) = watch::channel(next);
        super::record_log_size(key, next);
        let broker = Arc::new(BrokerTree {
            key: key.clone(),
            segments,
            next: AtomicU64::new(next),
            durable,
            first: AtomicU64::new(first),
            retention: Mutex::new(Retention::default()),
            deleted: Default::default(),
            has_limits: AtomicBool::new(false),
        });
        brokers.insert(key.clone(), broker.clone());
        Ok(broker)
    }

    /// Makes everything written to sled so far durable. sled's `flush_async` can hang when
    /// several tasks call it at once (seen when consumers of many triggers were created
    /// concurrently); a blocking flush on the blocking pool is serialised by sled itself.
    async fn flush(&self) -> Result<(), LogError> {
        let db = self.database.handles()?.db;
        let database = self.database.clone();
        tokio::task::spawn_blocking(move || db.flush().map_err(|e| database.storage(e)))
            .await
            .map_err(|e| LogError::storage("flush task failed").caused_by(e))??;
        Ok(())
    }
}

fn offset_from_key(key: &[u8]) -> Result<u64, LogError> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| LogError::corrupt("log key is not 8 bytes"))?;
    Ok(u64::from_be_bytes(bytes))
}

/// The offset of the first durable record whose `knativearrivaltime` is at or after `time`
/// (records without one count as older), or the durable end when there is none. A scan: it
/// runs once, when a consumer is created.
fn first_arrived_since(broker: &BrokerTree, time: std::time::SystemTime) -> Result<u64, LogError> {
    let end = *broker.durable.borrow();
    let mut at = broker.first.load(Ordering::SeqCst);
    while at < end {
        let records = broker
            .segments
            .read(at, end.min(at + SCAN_BATCH))
            .map_err(io_error)?;
        for (offset, value) in &records {
            if arrival_time(value)?.is_some_and(|arrived| arrived >= time) {
                return Ok(*offset);
            }
        }
        at += records.len().max(1) as u64;
    }
    Ok(end)
}

/// Records read at a time by scans.
const SCAN_BATCH: u64 = 1024;

/// When ingress accepted a stored record (its `knativearrivaltime`), if it says.
fn arrival_time(value: &[u8]) -> Result<Option<std::time::SystemTime>, LogError> {
    let record = Record::decode(bytes::Bytes::copy_from_slice(value))
        .map_err(|e| LogError::corrupt("").caused_by(e))?;
    Ok(record
        .event
        .text(crate::record::ARRIVAL_TIME_EXTENSION)
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
        // Framed here, on the caller's thread, so that the writer only copies and writes.
        let mut frames = Vec::new();
        let mut ends = Vec::with_capacity(records.len());
        for record in &records {
            segment::frame(&record.encode(), &mut frames)
                .ok_or_else(|| LogError::storage("a record of 4 GiB or more"))?;
            ends.push(frames.len() as u64);
        }
        let (done, answer) = oneshot::channel();
        self.writer
            .try_send(WriterMessage::Append(AppendRequest {
                broker: tree,
                frames,
                ends,
                done,
            }))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => LogError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => LogError::unavailable("the log is closed"),
            })?;
        answer
            .await
            .map_err(|_| LogError::unavailable("the writer stopped"))?
    }

    fn can_persist(&self) -> bool {
        !self.database.is_failed()
    }

    async fn recent_ids(
        &self,
        broker: &BrokerKey,
        since: std::time::SystemTime,
        max: usize,
    ) -> Result<Vec<super::RecentId>, LogError> {
        let tree = self.open_broker(broker)?;
        let end = *tree.durable.borrow();
        let mut at = first_arrived_since(&tree, since)?;
        let mut ids = super::RecentIds::new(max);
        while at < end {
            let records = tree
                .segments
                .read(at, end.min(at + SCAN_BATCH))
                .map_err(io_error)?;
            for (offset, value) in &records {
                let record = Record::decode(value.clone())
                    .map_err(|e| LogError::corrupt(format!("offset {offset}")).caused_by(e))?;
                ids.push(&record);
            }
            at += records.len().max(1) as u64;
        }
        Ok(ids.finish())
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
                    StartFrom::Earliest => tree.first.load(Ordering::SeqCst),
                    StartFrom::Time(time) => first_arrived_since(&tree, time)?,
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
        let storage = |e| self.database.storage(e);
        let dir = self
            .database
            .segments_root()
            .join(names::segment_dir(broker));
        {
            // Held while the files go, so that the broker cannot be opened again meanwhile.
            let mut brokers = self.database.brokers.lock().map_err(|_| lock_poisoned())?;
            if let Some(removed) = brokers.remove(broker) {
                // Its consumers may live on a while: they stop at their next poll.
                removed.deleted.store(true, Ordering::SeqCst);
                removed.durable.send_modify(|_| {});
                removed.segments.delete().map_err(io_error)?;
            }
            segments::remove_dir(&dir).map_err(io_error)?;
            if let Some(namespace_dir) = dir.parent() {
                // Only if empty: other brokers of the namespace live there too.
                let _ = std::fs::remove_dir(namespace_dir);
            }
            drop(brokers);
        }
        if migrate::legacy_tree(&handles.db, broker)?.is_some() {
            handles.db.drop_tree(names::tree(broker)).map_err(storage)?;
        }
        let prefix = names::broker_prefix(broker);
        handles.starts.remove(&prefix).map_err(storage)?;
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
                    .map_err(|e| LogError::storage("").caused_by(e))?
                    .map_err(|_| LogError::storage(format!("{name} panicked")))?;
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
                .map_err(|e| LogError::storage("").caused_by(e))?
                .map_err(|_| LogError::storage("the writer thread panicked"))?;
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
    /// Reads from the segment files with one `pread` per poll (the records up to the end of
    /// a segment at most). Reads go on while the log reopens: what they read is durable.
    async fn poll(&mut self, max: usize) -> Result<Vec<LogRecord>, LogError> {
        loop {
            if self.broker.deleted.load(Ordering::SeqCst) {
                return Err(LogError::UnknownBroker(self.broker.key.clone()));
            }
            let high_water = *self.durable.borrow_and_update();
            // Records retention deleted before they were read are skipped.
            let from = self.next_read.max(self.broker.first.load(Ordering::SeqCst));
            if from < high_water {
                let end = high_water.min(from.saturating_add(max.max(1) as u64));
                let records = self.broker.segments.read(from, end).map_err(io_error)?;
                let mut out = Vec::with_capacity(records.len());
                for (offset, value) in records {
                    let record = Record::decode(value)
                        .map_err(|e| LogError::corrupt(format!("offset {offset}")).caused_by(e))?;
                    out.push(LogRecord {
                        id: RecordId {
                            partition: 0,
                            offset,
                        },
                        record,
                    });
                }
                for record in &out {
                    self.pending.insert(record.id.offset);
                }
                self.next_read = from + out.len() as u64;
                if !out.is_empty() {
                    return Ok(out);
                }
                continue;
            }
            self.durable
                .changed()
                .await
                .map_err(|_| LogError::unavailable("the log is closed"))?;
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
            // the cost of fan-out. The offset becomes durable with the offset flusher's flush
            // this commit arms, at most `OFFSET_FLUSH` later; a crash before that only
            // redelivers what finished meanwhile.
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
            Arc::new(reopen(self.dir.path()).await)
        }
    }

    /// Opens the log in `dir`, waiting for an earlier handle to let go (see above).
    async fn reopen(dir: &Path) -> SledLog {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match SledLog::open(dir, 64) {
                Ok(log) => return log,
                Err(LogError::InUse) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await
                }
                Err(e) => panic!("open sled log: {e}"),
            }
        }
    }

    /// [`reopen`], with `broker` ensured (default settings).
    async fn reopen_with(dir: &Path, broker: &BrokerKey) -> SledLog {
        let log = reopen(dir).await;
        log.ensure_broker(broker, &BrokerSettings::default())
            .await
            .unwrap();
        log
    }

    /// The next records, or a failure if none come (never a test that hangs).
    async fn read_some(consumer: &mut dyn LogConsumer) -> Vec<LogRecord> {
        tokio::time::timeout(std::time::Duration::from_secs(10), consumer.poll(10))
            .await
            .expect("records to read")
            .unwrap()
    }

    fn offsets(records: &[LogRecord]) -> Vec<u64> {
        records.iter().map(|r| r.id.offset).collect()
    }

    /// Events an earlier version kept in a sled tree are moved into segment files the first
    /// time their broker is opened, with their offsets (and the positions of its consumers
    /// with them); the tree is dropped, and the events stay after another restart.
    #[tokio::test]
    async fn events_in_an_earlier_versions_sled_tree_are_moved_into_segments() {
        let dir = tempfile::tempdir().unwrap();
        let broker = BrokerKey::new("ns", "old");
        let records: Vec<Record> = (0..5)
            .map(|i| testsuite::sample(&format!("old-{i}")))
            .collect();
        {
            let db = sled::open(dir.path()).unwrap();
            // Retention had deleted offsets 0-2 already.
            migrate::write_legacy_tree(&db, &broker, 3, &records);
            db.open_tree("offsets")
                .unwrap()
                .insert(names::consumer_key(&broker, "c"), &5u64.to_be_bytes())
                .unwrap();
            db.flush().unwrap();
        }
        let log = reopen_with(dir.path(), &broker).await;
        let mut c = log.consumer(&broker, "c", StartFrom::Latest).await.unwrap();
        let read = read_some(&mut *c).await;
        assert_eq!(ids(&read), ["old-2", "old-3", "old-4"]);
        assert_eq!(offsets(&read), [5, 6, 7]);
        let mut all = log
            .consumer(&broker, "all", StartFrom::Earliest)
            .await
            .unwrap();
        let read = read_some(&mut *all).await;
        assert_eq!(offsets(&read), [3, 4, 5, 6, 7]);
        let tree = names::tree(&broker);
        let db = log.database.handles().unwrap().db;
        assert!(
            !db.tree_names()
                .iter()
                .any(|n| n.as_ref() == tree.as_bytes()),
            "the tree was dropped"
        );
        drop(db);
        log.append(&broker, vec![testsuite::sample("new")])
            .await
            .unwrap();
        assert_eq!(offsets(&read_some(&mut *all).await), [8]);
        drop((c, all));
        log.close().await.unwrap();
        drop(log);

        let log = reopen_with(dir.path(), &broker).await;
        let mut again = log
            .consumer(&broker, "again", StartFrom::Earliest)
            .await
            .unwrap();
        let read = read_some(&mut *again).await;
        assert_eq!(
            ids(&read),
            ["old-0", "old-1", "old-2", "old-3", "old-4", "new"]
        );
        assert_eq!(offsets(&read), [3, 4, 5, 6, 7, 8]);
    }

    /// A migration cut short by a crash (the copy in its temporary directory, the tree still
    /// there) starts again from the tree.
    #[tokio::test]
    async fn an_interrupted_migration_starts_again() {
        let dir = tempfile::tempdir().unwrap();
        let broker = BrokerKey::new("ns", "old");
        {
            let db = sled::open(dir.path()).unwrap();
            migrate::write_legacy_tree(&db, &broker, 0, &[testsuite::sample("a")]);
        }
        let half = dir
            .path()
            .join("segments")
            .join(database::MIGRATING_DIR)
            .join(names::segment_dir(&broker));
        std::fs::create_dir_all(&half).unwrap();
        std::fs::write(half.join(segment::file_name(0)), b"half a copy").unwrap();
        std::fs::write(half.join(segment::file_name(7)), b"and more").unwrap();
        let log = reopen_with(dir.path(), &broker).await;
        let mut c = log
            .consumer(&broker, "c", StartFrom::Earliest)
            .await
            .unwrap();
        assert_eq!(ids(&read_some(&mut *c).await), ["a"]);
        assert!(!half.exists());
    }

    /// What a crash left after the last acknowledged record of the log (a record written but
    /// never synced, so never acknowledged, then garbage) is cut off at the restart, and
    /// later appends are read after another restart.
    #[tokio::test]
    async fn a_restart_cuts_off_what_a_crash_left_after_the_durable_end() {
        let dir = tempfile::tempdir().unwrap();
        let broker = BrokerKey::new("ns", "b");
        let log = reopen_with(dir.path(), &broker).await;
        log.append(&broker, vec![testsuite::sample("acked")])
            .await
            .unwrap();
        log.close().await.unwrap();
        drop(log);
        let file = dir.path().join("segments/ns/b").join(segment::file_name(0));
        let end = segment::scan(&std::fs::File::open(&file).unwrap(), None)
            .unwrap()
            .pop()
            .unwrap();
        let mut torn = Vec::new();
        segment::frame(&testsuite::sample("never-acked").encode(), &mut torn).unwrap();
        torn.truncate(torn.len() / 2);
        torn.extend_from_slice(&[0x5A; 300]);
        use std::os::unix::fs::FileExt;
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .write_all_at(&torn, end)
            .unwrap();

        let log = reopen_with(dir.path(), &broker).await;
        log.append(&broker, vec![testsuite::sample("after")])
            .await
            .unwrap();
        log.close().await.unwrap();
        drop(log);
        let log = reopen_with(dir.path(), &broker).await;
        let mut c = log
            .consumer(&broker, "c", StartFrom::Earliest)
            .await
            .unwrap();
        let read = read_some(&mut *c).await;
        assert_eq!(ids(&read), ["acked", "after"]);
        assert_eq!(offsets(&read), [0, 1]);
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
        assert_eq!(ids(&read_some(&mut *consumer).await), ["before"]);

        log.database.fail("injected by the test");
        assert!(!log.can_persist());
        let refused = log
            .append(&broker, vec![testsuite::sample("refused")])
            .await;
        assert!(
            matches!(refused, Err(LogError::Unavailable { .. })),
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
        assert_eq!(ids(&read_some(&mut *consumer).await), ["kept"]);
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
