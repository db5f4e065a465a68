//! The reference [`EventLog`]: everything in memory, the contract of `log/mod.rs` in as few
//! lines as it takes. It passes the same conformance suite as the real backends, so the
//! control plane's unit tests run on it without a disk or a server.
//!
//! "Durable" means: kept in the [`MemoryStore`] that every [`MemoryLog`] opened on it shares,
//! for as long as the store lives; a closed and reopened log finds what was committed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use async_trait::async_trait;
use tokio::sync::watch;

use super::{
    BrokerKey, BrokerSettings, EventLog, LogConsumer, LogError, LogRecord, ParkedRecord, RecordId,
    StartFrom,
};
use crate::record::Record;

/// The storage behind [`MemoryLog`]s: brokers with their records, consumer positions and
/// parked records.
#[derive(Default)]
pub struct MemoryStore {
    brokers: Mutex<HashMap<BrokerKey, BrokerLog>>,
}

struct BrokerLog {
    /// Each record with the time it was appended; a record's offset is its index.
    records: Vec<(SystemTime, Record)>,
    /// The number of records, for consumers waiting for more.
    length: watch::Sender<u64>,
    /// Committed positions: the offset each consumer resumes from.
    positions: HashMap<String, u64>,
    parked: HashMap<String, BTreeMap<RecordId, ParkedRecord>>,
}

impl BrokerLog {
    fn new() -> Self {
        Self {
            records: Vec::new(),
            length: watch::Sender::new(0),
            positions: HashMap::new(),
            parked: HashMap::new(),
        }
    }
}

impl MemoryStore {
    fn brokers(&self) -> MutexGuard<'_, HashMap<BrokerKey, BrokerLog>> {
        // A panic while holding the lock leaves the maps whole: every change is one insert.
        self.brokers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn with_broker<T>(
        &self,
        broker: &BrokerKey,
        f: impl FnOnce(&mut BrokerLog) -> T,
    ) -> Result<T, LogError> {
        self.brokers()
            .get_mut(broker)
            .map(f)
            .ok_or_else(|| LogError::UnknownBroker(broker.clone()))
    }
}

/// A handle on a [`MemoryStore`]; appends fail once it is closed.
pub struct MemoryLog {
    store: Arc<MemoryStore>,
    closed: AtomicBool,
}

impl MemoryLog {
    /// A log on a new, empty store.
    pub fn new() -> Self {
        Self::open(Arc::new(MemoryStore::default()))
    }

    /// A log on `store`, which may hold what earlier handles wrote.
    pub fn open(store: Arc<MemoryStore>) -> Self {
        Self {
            store,
            closed: AtomicBool::new(false),
        }
    }

    fn check_open(&self) -> Result<(), LogError> {
        match self.closed.load(Ordering::Acquire) {
            true => Err(LogError::unavailable("the log is closed")),
            false => Ok(()),
        }
    }
}

impl Default for MemoryLog {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl EventLog for MemoryLog {
    async fn ensure_broker(&self, broker: &BrokerKey, _: &BrokerSettings) -> Result<(), LogError> {
        self.check_open()?;
        self.store
            .brokers()
            .entry(broker.clone())
            .or_insert_with(BrokerLog::new);
        Ok(())
    }

    async fn append(&self, broker: &BrokerKey, records: Vec<Record>) -> Result<(), LogError> {
        self.check_open()?;
        let now = SystemTime::now();
        self.store.with_broker(broker, |log| {
            log.records.extend(records.into_iter().map(|r| (now, r)));
            log.length.send_replace(log.records.len() as u64);
        })
    }

    async fn recent_ids(
        &self,
        broker: &BrokerKey,
        since: SystemTime,
        max: usize,
    ) -> Result<Vec<super::RecentId>, LogError> {
        self.check_open()?;
        self.store.with_broker(broker, |log| {
            let first = log.records.partition_point(|(time, _)| *time < since);
            let mut ids = super::RecentIds::new(max);
            for (_, record) in &log.records[first..] {
                ids.push(record);
            }
            ids.finish()
        })
    }

    async fn consumer(
        &self,
        broker: &BrokerKey,
        name: &str,
        start: StartFrom,
    ) -> Result<Box<dyn LogConsumer>, LogError> {
        self.check_open()?;
        let (next, length) = self.store.with_broker(broker, |log| {
            let next = match (log.positions.get(name), start) {
                (Some(position), _) => *position,
                (None, StartFrom::Earliest) => 0,
                (None, StartFrom::Latest) => log.records.len() as u64,
                (None, StartFrom::Time(since)) => {
                    log.records.partition_point(|(time, _)| *time < since) as u64
                }
            };
            log.positions.insert(name.to_owned(), next);
            (next, log.length.subscribe())
        })?;
        Ok(Box::new(MemoryConsumer {
            store: self.store.clone(),
            broker: broker.clone(),
            name: name.to_owned(),
            next,
            in_flight: BTreeSet::new(),
            length,
        }))
    }

    async fn park(
        &self,
        broker: &BrokerKey,
        consumer: &str,
        parked: ParkedRecord,
    ) -> Result<(), LogError> {
        self.check_open()?;
        self.store.with_broker(broker, |log| {
            log.parked
                .entry(consumer.to_owned())
                .or_default()
                .insert(parked.id, parked);
        })
    }

    async fn parked(
        &self,
        broker: &BrokerKey,
        consumer: &str,
    ) -> Result<Vec<ParkedRecord>, LogError> {
        self.store.with_broker(broker, |log| {
            log.parked
                .get(consumer)
                .map(|parked| parked.values().cloned().collect())
                .unwrap_or_default()
        })
    }

    async fn unpark(
        &self,
        broker: &BrokerKey,
        consumer: &str,
        ids: &[RecordId],
    ) -> Result<usize, LogError> {
        self.store.with_broker(broker, |log| {
            let Some(parked) = log.parked.get_mut(consumer) else {
                return 0;
            };
            ids.iter().filter(|id| parked.remove(id).is_some()).count()
        })
    }

    async fn delete_consumer(&self, broker: &BrokerKey, consumer: &str) -> Result<(), LogError> {
        if let Some(log) = self.store.brokers().get_mut(broker) {
            log.positions.remove(consumer);
            log.parked.remove(consumer);
        }
        Ok(())
    }

    async fn delete_broker(&self, broker: &BrokerKey) -> Result<(), LogError> {
        self.store.brokers().remove(broker);
        Ok(())
    }

    async fn close(&self) -> Result<(), LogError> {
        self.closed.store(true, Ordering::Release);
        Ok(())
    }
}

struct MemoryConsumer {
    store: Arc<MemoryStore>,
    broker: BrokerKey,
    name: String,
    /// The offset the next poll starts at.
    next: u64,
    /// Polled, not yet acknowledged.
    in_flight: BTreeSet<u64>,
    length: watch::Receiver<u64>,
}

impl MemoryConsumer {
    /// The low-water mark: nothing before it is unfinished.
    fn low_water(&self) -> u64 {
        self.in_flight.first().copied().unwrap_or(self.next)
    }
}

#[async_trait]
impl LogConsumer for MemoryConsumer {
    async fn poll(&mut self, max: usize) -> Result<Vec<LogRecord>, LogError> {
        loop {
            let next = self.next as usize;
            let records = self.store.with_broker(&self.broker, |log| {
                log.records
                    .iter()
                    .enumerate()
                    .skip(next)
                    .take(max)
                    .map(|(offset, (_, record))| LogRecord {
                        id: RecordId {
                            partition: 0,
                            offset: offset as u64,
                        },
                        record: record.clone(),
                    })
                    .collect::<Vec<_>>()
            })?;
            if !records.is_empty() {
                self.next += records.len() as u64;
                self.in_flight.extend(records.iter().map(|r| r.id.offset));
                return Ok(records);
            }
            // Cancel-safe: nothing was taken; the broker's deletion ends the wait.
            if self.length.changed().await.is_err() {
                return Err(LogError::UnknownBroker(self.broker.clone()));
            }
        }
    }

    async fn ack(&mut self, id: RecordId) -> Result<(), LogError> {
        self.in_flight.remove(&id.offset);
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), LogError> {
        let mark = self.low_water();
        self.store.with_broker(&self.broker, |log| {
            log.positions.insert(self.name.clone(), mark);
        })
    }

    fn lag(&self) -> Option<u64> {
        Some(self.length.borrow().saturating_sub(self.low_water()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::testsuite::{self, LogHarness};

    struct MemoryHarness {
        store: Arc<MemoryStore>,
    }

    #[async_trait]
    impl LogHarness for MemoryHarness {
        async fn open(&self) -> Arc<dyn EventLog> {
            Arc::new(MemoryLog::open(self.store.clone()))
        }
    }

    #[tokio::test]
    async fn conformance() {
        testsuite::run_all(&|| async {
            Box::new(MemoryHarness {
                store: Arc::new(MemoryStore::default()),
            }) as Box<dyn LogHarness>
        })
        .await;
    }
}
