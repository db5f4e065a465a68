//! How many events each trigger has parked, kept up to date as they are parked and removed,
//! so that a trigger's status does not read its whole dead-letter store (on Kafka, a topic)
//! on every request.
//!
//! [`CountingLog`] wraps the log the dispatchers, redrives and purges use. A consumer's
//! parked ids are read from the log once, the first time its count is asked for; from then
//! on every park, unpark and deletion through this process updates them. Events another
//! process parks into a shared store (two Heralds sharing a Kafka trigger) show in this one's
//! count after its next start.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use herald_broker::log::{BrokerSettings, LogConsumer, ParkedRecord};
use herald_broker::record::Record;
use herald_broker::{BrokerKey, EventLog, LogError, RecordId, StartFrom};

type ConsumerKey = (BrokerKey, String);

/// The parked ids of one consumer.
enum Parked {
    Known(HashSet<RecordId>),
    /// Being read from the log: what changes meanwhile is applied to what the read returns.
    Reading {
        parked: HashSet<RecordId>,
        unparked: HashSet<RecordId>,
    },
}

/// An [`EventLog`] that keeps count of each consumer's parked records.
pub struct CountingLog {
    inner: Arc<dyn EventLog>,
    parked: Mutex<HashMap<ConsumerKey, Parked>>,
}

impl CountingLog {
    pub fn new(inner: Arc<dyn EventLog>) -> Self {
        Self {
            inner,
            parked: Mutex::new(HashMap::new()),
        }
    }

    fn parked_ids(&self) -> MutexGuard<'_, HashMap<ConsumerKey, Parked>> {
        // Every change is one insert or removal: a panic cannot leave the map half changed.
        self.parked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many records the consumer has parked; read from the log only the first time.
    pub async fn parked_count(&self, broker: &BrokerKey, consumer: &str) -> Result<u64, LogError> {
        let key = (broker.clone(), consumer.to_owned());
        {
            let mut all = self.parked_ids();
            match all.get(&key) {
                Some(Parked::Known(ids)) => return Ok(ids.len() as u64),
                // Another request reads it: this one reads too, the last one to finish wins.
                Some(Parked::Reading { .. }) => {}
                None => {
                    all.insert(
                        key.clone(),
                        Parked::Reading {
                            parked: HashSet::new(),
                            unparked: HashSet::new(),
                        },
                    );
                }
            }
        }
        let read = self.inner.parked(broker, consumer).await;
        let mut all = self.parked_ids();
        let records = match read {
            Ok(records) => records,
            Err(error) => {
                if matches!(all.get(&key), Some(Parked::Reading { .. })) {
                    all.remove(&key);
                }
                return Err(error);
            }
        };
        let mut ids: HashSet<RecordId> = records.iter().map(|r| r.id).collect();
        if let Some(Parked::Reading { parked, unparked }) = all.get(&key) {
            ids.extend(parked);
            ids.retain(|id| !unparked.contains(id));
        }
        let count = ids.len() as u64;
        all.insert(key, Parked::Known(ids));
        Ok(count)
    }

    fn note(&self, broker: &BrokerKey, consumer: &str, id: RecordId, parked: bool) {
        let key = (broker.clone(), consumer.to_owned());
        let mut all = self.parked_ids();
        match all.get_mut(&key) {
            Some(Parked::Known(ids)) => {
                if parked {
                    ids.insert(id);
                } else {
                    ids.remove(&id);
                }
            }
            Some(Parked::Reading {
                parked: added,
                unparked: removed,
            }) => {
                if parked {
                    added.insert(id);
                    removed.remove(&id);
                } else {
                    removed.insert(id);
                    added.remove(&id);
                }
            }
            None => {}
        }
    }
}

#[async_trait]
impl EventLog for CountingLog {
    async fn ensure_broker(
        &self,
        broker: &BrokerKey,
        settings: &BrokerSettings,
    ) -> Result<(), LogError> {
        self.inner.ensure_broker(broker, settings).await
    }

    async fn append(&self, broker: &BrokerKey, records: Vec<Record>) -> Result<(), LogError> {
        self.inner.append(broker, records).await
    }

    fn can_persist(&self) -> bool {
        self.inner.can_persist()
    }

    fn drops_duplicates(&self, broker: &BrokerKey) -> bool {
        self.inner.drops_duplicates(broker)
    }

    async fn recent_ids(
        &self,
        broker: &BrokerKey,
        since: std::time::SystemTime,
        max: usize,
    ) -> Result<Vec<herald_broker::log::RecentId>, LogError> {
        self.inner.recent_ids(broker, since, max).await
    }

    async fn consumer(
        &self,
        broker: &BrokerKey,
        name: &str,
        start: StartFrom,
    ) -> Result<Box<dyn LogConsumer>, LogError> {
        self.inner.consumer(broker, name, start).await
    }

    async fn park(
        &self,
        broker: &BrokerKey,
        consumer: &str,
        parked: ParkedRecord,
    ) -> Result<(), LogError> {
        let id = parked.id;
        self.inner.park(broker, consumer, parked).await?;
        self.note(broker, consumer, id, true);
        Ok(())
    }

    async fn parked(
        &self,
        broker: &BrokerKey,
        consumer: &str,
    ) -> Result<Vec<ParkedRecord>, LogError> {
        self.inner.parked(broker, consumer).await
    }

    async fn unpark(
        &self,
        broker: &BrokerKey,
        consumer: &str,
        ids: &[RecordId],
    ) -> Result<usize, LogError> {
        let removed = self.inner.unpark(broker, consumer, ids).await?;
        for id in ids {
            self.note(broker, consumer, *id, false);
        }
        Ok(removed)
    }

    async fn delete_consumer(&self, broker: &BrokerKey, consumer: &str) -> Result<(), LogError> {
        self.inner.delete_consumer(broker, consumer).await?;
        self.parked_ids()
            .remove(&(broker.clone(), consumer.to_owned()));
        Ok(())
    }

    async fn delete_broker(&self, broker: &BrokerKey) -> Result<(), LogError> {
        self.inner.delete_broker(broker).await?;
        self.parked_ids().retain(|(b, _), _| b != broker);
        Ok(())
    }

    async fn close(&self) -> Result<(), LogError> {
        self.inner.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_broker::log::memory::MemoryLog;
    use herald_broker::log::testsuite::sample;
    use herald_broker::log::Failure;

    fn parked(offset: u64) -> ParkedRecord {
        ParkedRecord {
            id: RecordId {
                partition: 0,
                offset,
            },
            record: sample(&offset.to_string()),
            failure: Failure {
                attempts: 1,
                last_status: None,
                last_error: String::new(),
                reason: "test".into(),
                parked_at: String::new(),
            },
        }
    }

    /// The count starts from what the log holds, then follows parks and unparks without
    /// reading the log again.
    #[tokio::test]
    async fn counts_follow_parks_without_reading_again() {
        let memory = Arc::new(MemoryLog::new());
        let broker = BrokerKey::new("ns", "b");
        memory
            .ensure_broker(&broker, &BrokerSettings::default())
            .await
            .unwrap();
        memory.park(&broker, "t", parked(1)).await.unwrap();
        let log = CountingLog::new(memory.clone());
        assert_eq!(log.parked_count(&broker, "t").await.unwrap(), 1);
        log.park(&broker, "t", parked(2)).await.unwrap();
        log.park(&broker, "t", parked(2)).await.unwrap();
        assert_eq!(log.parked_count(&broker, "t").await.unwrap(), 2);
        log.unpark(&broker, "t", &[parked(1).id]).await.unwrap();
        assert_eq!(log.parked_count(&broker, "t").await.unwrap(), 1);
        // Parked behind its back: not seen, the count is not read again.
        memory.park(&broker, "t", parked(3)).await.unwrap();
        assert_eq!(log.parked_count(&broker, "t").await.unwrap(), 1);
        log.delete_consumer(&broker, "t").await.unwrap();
        assert_eq!(log.parked_count(&broker, "t").await.unwrap(), 0);
    }
}
