//! Trigger positions on Kafka for triggers read through a broker's shared reader
//! ([`super::shared`]): per trigger and partition, the next offset the trigger has to finish,
//! one record per (trigger, partition) in the broker's compacted positions topic
//! (`{topic}-herald-positions`, key `{consumer}/{partition}`, the offset as decimal text; a
//! tombstone when the trigger is deleted).
//!
//! Commits are collected in memory and written together [`FLUSH_DELAY`] after the first of
//! them: 1,000 triggers committing every 100 ms cost one batch of records a second. A crash
//! loses at most the commits of that last second, which redelivers what finished in it
//! (at-least-once, as a crash always did). Partitions taken away in a rebalance are written
//! at once, before they go ([`Positions::flush_blocking`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::producer::BaseRecord;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::Notify;

use super::producer::ReportingProducer;
use super::{unavailable, LogError, REQUEST_TIMEOUT};

/// How long a commit waits for the write that makes it durable.
pub(super) const FLUSH_DELAY: Duration = Duration::from_secs(1);

/// A position's key in the positions topic.
pub(super) fn key(consumer: &str, partition: i32) -> String {
    format!("{consumer}/{partition}")
}

/// The consumer and partition of a key read back (whatever the consumer's name holds).
fn parse_key(key: &str) -> Option<(&str, i32)> {
    let (consumer, partition) = key.rsplit_once('/')?;
    Some((consumer, partition.parse().ok()?))
}

/// Positions read from a positions topic: by consumer, then partition.
pub(super) type Stored = HashMap<String, HashMap<i32, i64>>;

fn lock_poisoned() -> LogError {
    LogError::unavailable("the positions lock is poisoned")
}

pub(super) struct Positions {
    producer: ReportingProducer,
    /// Committed, not yet written: by (positions topic, key); `None` deletes.
    dirty: Mutex<HashMap<(String, String), Option<i64>>>,
    /// Wakes the writer when the first commit of a batch arrives.
    wake: Arc<Notify>,
    /// Held while a batch is written, so that batches land in the order they were taken.
    writing: tokio::sync::Mutex<()>,
}

impl Positions {
    /// The positions and the task that writes them (aborted when the log is dropped).
    pub(super) fn start(producer: ReportingProducer) -> (Arc<Self>, tokio::task::AbortHandle) {
        let wake = Arc::new(Notify::new());
        let positions = Arc::new(Self {
            producer,
            dirty: Mutex::new(HashMap::new()),
            wake: wake.clone(),
            writing: tokio::sync::Mutex::new(()),
        });
        let writer = tokio::spawn(write_loop(Arc::downgrade(&positions), wake));
        (positions, writer.abort_handle())
    }

    /// Records a position (or its deletion) to be written within [`FLUSH_DELAY`].
    pub(super) fn set(
        &self,
        topic: &str,
        key: String,
        offset: Option<i64>,
    ) -> Result<(), LogError> {
        let first = {
            let mut dirty = self.dirty.lock().map_err(|_| lock_poisoned())?;
            let first = dirty.is_empty();
            dirty.insert((topic.to_owned(), key), offset);
            first
        };
        if first {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Drops what was set for `topic` and not written yet (its broker is being deleted);
    /// waits for a batch being written.
    pub(super) async fn forget_topic(&self, topic: &str) -> Result<(), LogError> {
        let _writing = self.writing.lock().await;
        self.dirty
            .lock()
            .map_err(|_| lock_poisoned())?
            .retain(|(t, _), _| t != topic);
        Ok(())
    }

    /// Writes every position set so far and waits until Kafka has them.
    pub(super) async fn flush(&self) -> Result<(), LogError> {
        let _writing = self.writing.lock().await;
        let batch: Vec<((String, String), Option<i64>)> = {
            let mut dirty = self.dirty.lock().map_err(|_| lock_poisoned())?;
            dirty.drain().collect()
        };
        if batch.is_empty() {
            return Ok(());
        }
        let result = self.write(&batch).await;
        if result.is_err() {
            // Put back what no later commit replaced, for the next try.
            let mut dirty = self.dirty.lock().map_err(|_| lock_poisoned())?;
            for (key, offset) in batch {
                dirty.entry(key).or_insert(offset);
            }
            drop(dirty);
            self.wake.notify_one();
        }
        result
    }

    /// [`Self::flush`] from a thread outside the runtime (the shared reader's, in a rebalance).
    pub(super) fn flush_blocking(&self, runtime: &tokio::runtime::Handle) -> Result<(), LogError> {
        runtime.block_on(self.flush())
    }

    async fn write(&self, batch: &[((String, String), Option<i64>)]) -> Result<(), LogError> {
        let values: Vec<Option<String>> = batch
            .iter()
            .map(|(_, offset)| offset.map(|o| o.to_string()))
            .collect();
        let mut deliveries = Vec::with_capacity(batch.len());
        {
            let mut sender = self.producer.sender(batch.len());
            for (((topic, key), _), value) in batch.iter().zip(&values) {
                let mut record = BaseRecord::<str, [u8]>::to(topic).key(key.as_str());
                if let Some(value) = value {
                    record = record.payload(value.as_bytes());
                }
                deliveries.push(sender.send(record).map_err(unavailable)?);
            }
        }
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return Err(unavailable(error)),
                Err(_) => return Err(LogError::unavailable("the producer stopped")),
            }
        }
        Ok(())
    }
}

/// Writes each batch [`FLUSH_DELAY`] after its first commit, for as long as the positions
/// live; a failed write is tried again a delay later.
async fn write_loop(positions: Weak<Positions>, wake: Arc<Notify>) {
    loop {
        wake.notified().await;
        tokio::time::sleep(FLUSH_DELAY).await;
        let Some(positions) = positions.upgrade() else {
            return;
        };
        if let Err(error) = positions.flush().await {
            tracing::warn!(%error, "writing trigger positions failed; trying again");
        }
    }
}

/// Every position in `topic` (a missing topic holds none). Blocking: run it off the async
/// workers.
pub(super) fn read(reader: &BaseConsumer, topic: &str) -> Result<Stored, LogError> {
    // Metadata answers at once for a missing topic, where asking for its offsets waits.
    let metadata = reader
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(unavailable)?;
    let exists = metadata
        .topics()
        .iter()
        .any(|t| t.error().is_none() && !t.partitions().is_empty());
    if !exists {
        return Ok(Stored::new());
    }
    let (low, high) = match reader.fetch_watermarks(topic, 0, REQUEST_TIMEOUT) {
        Ok(marks) => marks,
        Err(error) => match error.rdkafka_error_code() {
            Some(
                RDKafkaErrorCode::UnknownPartition
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownTopic,
            ) => return Ok(Stored::new()),
            _ => return Err(unavailable(error)),
        },
    };
    let mut stored = Stored::new();
    if high <= low {
        return Ok(stored);
    }
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Offset(low))
        .map_err(unavailable)?;
    reader.assign(&assignment).map_err(unavailable)?;
    let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
    let mut next = low;
    while next < high {
        if std::time::Instant::now() > deadline {
            return Err(LogError::unavailable(
                "reading the positions topic timed out",
            ));
        }
        let Some(message) = reader.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.map_err(unavailable)?;
        next = message.offset() + 1;
        let Some((consumer, partition)) = message
            .key()
            .and_then(|k| std::str::from_utf8(k).ok())
            .and_then(parse_key)
        else {
            continue;
        };
        let offset = message
            .payload()
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse::<i64>().ok());
        match offset {
            Some(offset) => {
                stored
                    .entry(consumer.to_owned())
                    .or_default()
                    .insert(partition, offset);
            }
            None => {
                if let Some(partitions) = stored.get_mut(consumer) {
                    partitions.remove(&partition);
                    if partitions.is_empty() {
                        stored.remove(consumer);
                    }
                }
            }
        }
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_back_whatever_the_consumer_holds() {
        assert_eq!(parse_key(&key("trigger-a/b", 7)), Some(("trigger-a/b", 7)));
        assert_eq!(parse_key("no-partition"), None);
        assert_eq!(parse_key("t/x"), None);
    }
}
