//! The embedded log on sled: one tree per broker, keyed by big-endian offsets (names in
//! [`crate::log::names::sled`]).
//!
//! Appends go through one writer thread that takes every request waiting in its bounded
//! queue, inserts them, and flushes once for all of them (group commit): many concurrent
//! producers share one fsync, and each gets its answer only after the flush that covers it.
//! Consumers read only up to the durable high-water mark, which the writer publishes on a
//! `watch` channel after each flush: they wait on it instead of polling.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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

mod retention;

pub use retention::LOG_TRIMMED;
use retention::{Retention, Trimmer};

/// Default bound of the append queue; a full queue answers [`LogError::Overloaded`].
pub const DEFAULT_QUEUE_CAPACITY: usize = 4096;
/// Background flush interval: what makes committed offsets durable when no appends flush.
const OFFSET_FLUSH_MS: u64 = 200;
/// Most requests one group commit takes.
const MAX_BATCH_REQUESTS: usize = 1024;

struct BrokerTree {
    key: BrokerKey,
    tree: sled::Tree,
    /// Next offset to assign; only the writer thread advances it.
    next: AtomicU64,
    /// Offsets below this value are durable.
    durable: watch::Sender<u64>,
    /// No record below this offset is left: retention deleted it.
    first: AtomicU64,
    /// What retention keeps, from the broker's settings.
    retention: Mutex<Retention>,
}

/// What the writer thread is asked to do.
enum WriterMessage {
    Append(AppendRequest),
    /// Finish the current batch and stop; later appends fail as unavailable.
    Close,
}

struct AppendRequest {
    broker: Arc<BrokerTree>,
    records: Vec<Vec<u8>>,
    done: oneshot::Sender<Result<(), LogError>>,
}

/// The sled-backed [`EventLog`].
pub struct SledLog {
    db: sled::Db,
    offsets: sled::Tree,
    parked: sled::Tree,
    brokers: Arc<Mutex<HashMap<BrokerKey, Arc<BrokerTree>>>>,
    writer: mpsc::Sender<WriterMessage>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    /// Dropping (or sending on) it stops the retention thread.
    trimmer_stop: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    trimmer_thread: Mutex<Option<JoinHandle<()>>>,
}

fn storage(e: sled::Error) -> LogError {
    LogError::Storage(e.to_string())
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
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .flush_every_ms(Some(OFFSET_FLUSH_MS))
            .open()
            .map_err(|e| match e {
                // sled reports its failed `flock` as an `Other` I/O error with this text
                // (sled 0.34, config.rs `try_lock`); a test of two Heralds on one directory
                // notices if that changes.
                sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                    LogError::InUse
                }
                other => storage(other),
            })?;
        let offsets = db.open_tree("offsets").map_err(storage)?;
        let parked = db.open_tree("parked").map_err(storage)?;
        let (tx, rx) = mpsc::channel(queue_capacity.max(1));
        let writer_db = db.clone();
        let thread = std::thread::Builder::new()
            .name("herald-sled-writer".into())
            .spawn(move || run_writer(writer_db, rx))
            .map_err(|e| LogError::Storage(format!("cannot start the writer thread: {e}")))?;
        let brokers = Arc::new(Mutex::new(HashMap::new()));
        let (trimmer_stop, stop) = std::sync::mpsc::channel();
        let trimmer = Trimmer::new(brokers.clone(), offsets.clone());
        let trimmer_thread = std::thread::Builder::new()
            .name("herald-sled-retention".into())
            .spawn(move || trimmer.run(stop))
            .map_err(|e| LogError::Storage(format!("cannot start the retention thread: {e}")))?;
        Ok(Self {
            db,
            offsets,
            parked,
            brokers,
            writer: tx,
            writer_thread: Mutex::new(Some(thread)),
            trimmer_stop: Mutex::new(Some(trimmer_stop)),
            trimmer_thread: Mutex::new(Some(trimmer_thread)),
        })
    }

    fn broker(&self, key: &BrokerKey) -> Result<Arc<BrokerTree>, LogError> {
        let brokers = self
            .brokers
            .lock()
            .map_err(|_| LogError::Storage("lock poisoned".into()))?;
        brokers
            .get(key)
            .cloned()
            .ok_or_else(|| LogError::UnknownBroker(key.clone()))
    }

    fn open_broker(&self, key: &BrokerKey) -> Result<Arc<BrokerTree>, LogError> {
        let mut brokers = self
            .brokers
            .lock()
            .map_err(|_| LogError::Storage("lock poisoned".into()))?;
        if let Some(existing) = brokers.get(key) {
            return Ok(existing.clone());
        }
        let tree = self.db.open_tree(names::tree(key)).map_err(storage)?;
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
            tree,
            next: AtomicU64::new(next),
            durable,
            first: AtomicU64::new(first),
            retention: Mutex::new(Retention::default()),
        });
        brokers.insert(key.clone(), broker.clone());
        Ok(broker)
    }
}

/// Makes everything written so far durable. sled's `flush_async` can hang when several tasks
/// call it at once (seen when consumers of many triggers were created concurrently); a
/// blocking flush on the blocking pool is serialised by sled itself.
async fn flush(db: &sled::Db) -> Result<(), LogError> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || db.flush())
        .await
        .map_err(|e| LogError::Storage(format!("flush task failed: {e}")))?
        .map_err(storage)?;
    Ok(())
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
fn first_arrived_since(tree: &BrokerTree, time: std::time::SystemTime) -> Result<u64, LogError> {
    let end = *tree.durable.borrow();
    for entry in tree.tree.range(..end.to_be_bytes()) {
        let (key, value) = entry.map_err(storage)?;
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

/// The group-commit loop: take all waiting requests, insert, flush once, answer all.
fn run_writer(db: sled::Db, mut rx: mpsc::Receiver<WriterMessage>) {
    let mut closing = false;
    while !closing {
        let mut batch = Vec::new();
        match rx.blocking_recv() {
            None | Some(WriterMessage::Close) => break,
            Some(WriterMessage::Append(request)) => batch.push(request),
        }
        while batch.len() < MAX_BATCH_REQUESTS {
            match rx.try_recv() {
                Ok(WriterMessage::Append(request)) => batch.push(request),
                Ok(WriterMessage::Close) => {
                    closing = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let mut results = Vec::with_capacity(batch.len());
        for request in &batch {
            let mut result = Ok(());
            for record in &request.records {
                let offset = request.broker.next.fetch_add(1, Ordering::SeqCst);
                if let Err(e) = request
                    .broker
                    .tree
                    .insert(offset.to_be_bytes(), record.as_slice())
                {
                    result = Err(storage(e));
                    break;
                }
            }
            results.push(result);
        }
        let flushed = db.flush().map_err(storage);
        for request in &batch {
            let next = request.broker.next.load(Ordering::SeqCst);
            let moved = request.broker.durable.send_if_modified(|durable| {
                let moved = *durable != next;
                *durable = next;
                moved
            });
            if moved {
                super::record_log_size(&request.broker.key, next);
            }
        }
        for (request, result) in batch.into_iter().zip(results) {
            let answer = match (&flushed, result) {
                (Err(e), _) => Err(LogError::Storage(e.to_string())),
                (Ok(_), result) => result,
            };
            let _ = request.done.send(answer);
        }
    }
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
        *tree
            .retention
            .lock()
            .map_err(|_| LogError::Storage("lock poisoned".into()))? =
            Retention::from_settings(settings);
        Ok(())
    }

    async fn append(&self, broker: &BrokerKey, records: Vec<Record>) -> Result<(), LogError> {
        let tree = self.broker(broker)?;
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

    async fn consumer(
        &self,
        broker: &BrokerKey,
        name: &str,
        start: StartFrom,
    ) -> Result<Box<dyn LogConsumer>, LogError> {
        let tree = self.open_broker(broker)?;
        let key = names::consumer_key(broker, name);
        let committed = match self.offsets.get(&key).map_err(storage)? {
            Some(value) => offset_from_key(&value)?,
            None => {
                let start_at = match start {
                    StartFrom::Latest => *tree.durable.borrow(),
                    StartFrom::Earliest => match tree.tree.first().map_err(storage)? {
                        Some((k, _)) => offset_from_key(&k)?,
                        None => 0,
                    },
                    StartFrom::Time(time) => first_arrived_since(&tree, time)?,
                };
                // Persist the starting point now, so that a crash before the first commit
                // cannot make the consumer skip what was accepted meanwhile.
                self.offsets
                    .insert(&key, &start_at.to_be_bytes())
                    .map_err(storage)?;
                flush(&self.db).await?;
                start_at
            }
        };
        Ok(Box::new(SledConsumer {
            durable: tree.durable.subscribe(),
            broker: tree,
            offsets: self.offsets.clone(),
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
        self.parked.insert(key, value).map_err(storage)?;
        flush(&self.db).await?;
        Ok(())
    }

    async fn parked(
        &self,
        broker: &BrokerKey,
        consumer: &str,
    ) -> Result<Vec<ParkedRecord>, LogError> {
        let prefix = names::consumer_key(broker, consumer);
        let mut out = Vec::new();
        for entry in self.parked.scan_prefix(&prefix) {
            let (_, value) = entry.map_err(storage)?;
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
        let mut removed = 0;
        for id in ids {
            let mut key = names::consumer_key(broker, consumer);
            key.extend_from_slice(&id.offset.to_be_bytes());
            if self.parked.remove(key).map_err(storage)?.is_some() {
                removed += 1;
            }
        }
        flush(&self.db).await?;
        Ok(removed)
    }

    async fn delete_consumer(&self, broker: &BrokerKey, consumer: &str) -> Result<(), LogError> {
        let key = names::consumer_key(broker, consumer);
        self.offsets.remove(&key).map_err(storage)?;
        for entry in self.parked.scan_prefix(&key).keys() {
            self.parked
                .remove(entry.map_err(storage)?)
                .map_err(storage)?;
        }
        flush(&self.db).await?;
        Ok(())
    }

    async fn delete_broker(&self, broker: &BrokerKey) -> Result<(), LogError> {
        self.brokers
            .lock()
            .map_err(|_| LogError::Storage("lock poisoned".into()))?
            .remove(broker);
        self.db.drop_tree(names::tree(broker)).map_err(storage)?;
        let prefix = names::broker_prefix(broker);
        for tree in [&self.offsets, &self.parked] {
            for key in tree.scan_prefix(&prefix).keys() {
                tree.remove(key.map_err(storage)?).map_err(storage)?;
            }
        }
        flush(&self.db).await
    }

    async fn close(&self) -> Result<(), LogError> {
        let trimmer = self
            .trimmer_thread
            .lock()
            .map_err(|_| LogError::Storage("lock poisoned".into()))?
            .take();
        if let Some(stop) = self
            .trimmer_stop
            .lock()
            .map_err(|_| LogError::Storage("lock poisoned".into()))?
            .take()
        {
            let _ = stop.send(());
        }
        if let Some(thread) = trimmer {
            tokio::task::spawn_blocking(move || thread.join())
                .await
                .map_err(|e| LogError::Storage(e.to_string()))?
                .map_err(|_| LogError::Storage("the retention thread panicked".into()))?;
        }
        // The writer finishes what it has taken, then stops; requests queued behind the
        // close are answered "unavailable" when the queue is dropped.
        let _ = self.writer.send(WriterMessage::Close).await;
        let thread = self
            .writer_thread
            .lock()
            .map_err(|_| LogError::Storage("lock poisoned".into()))?
            .take();
        if let Some(thread) = thread {
            tokio::task::spawn_blocking(move || thread.join())
                .await
                .map_err(|e| LogError::Storage(e.to_string()))?
                .map_err(|_| LogError::Storage("the writer thread panicked".into()))?;
        }
        flush(&self.db).await?;
        Ok(())
    }
}

struct SledConsumer {
    broker: Arc<BrokerTree>,
    durable: watch::Receiver<u64>,
    offsets: sled::Tree,
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
                for entry in self
                    .broker
                    .tree
                    .range(self.next_read.to_be_bytes()..end.to_be_bytes())
                {
                    let (key, value) = entry.map_err(storage)?;
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
        if low_water != self.committed {
            // No flush of its own: with many triggers, one flush per trigger per commit was
            // the cost of fan-out. The offset becomes durable with the next group commit or
            // the background flush, at most OFFSET_FLUSH_MS later; a crash before that only
            // redelivers what finished meanwhile.
            self.offsets
                .insert(&self.key, &low_water.to_be_bytes())
                .map_err(storage)?;
            self.committed = low_water;
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
