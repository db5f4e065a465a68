//! Reading back what a broker's topic received since a time, for ingress's duplicate window.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};

use super::{blocking, epoch_millis, kafka_record, unavailable, KafkaLog, REQUEST_TIMEOUT};
use crate::kafka_binding;
use crate::log::{BrokerKey, LogError, RecentId, RecentIds};

/// How long reading the recent records of a topic may take.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

impl KafkaLog {
    /// Every partition from its first record at or after `since` (Kafka's timestamp index,
    /// which the producer's create time fills) to its end when called.
    pub(super) async fn read_recent_ids(
        &self,
        broker: &BrokerKey,
        since: SystemTime,
        max: usize,
    ) -> Result<Vec<RecentId>, LogError> {
        let topic = self.options.topic(broker);
        let reader = self.reader()?;
        blocking(move || {
            let metadata = reader
                .fetch_metadata(Some(&topic), REQUEST_TIMEOUT)
                .map_err(unavailable)?;
            let partitions: Vec<i32> = metadata
                .topics()
                .iter()
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            let mut query = TopicPartitionList::new();
            for partition in &partitions {
                query
                    .add_partition_offset(&topic, *partition, Offset::Offset(epoch_millis(since)))
                    .map_err(unavailable)?;
            }
            let starts = reader
                .offsets_for_times(query, REQUEST_TIMEOUT)
                .map_err(unavailable)?;
            let mut assignment = TopicPartitionList::new();
            let mut ends: HashMap<i32, i64> = HashMap::new();
            for element in starts.elements() {
                let partition = element.partition();
                let (_, high) = reader
                    .fetch_watermarks(&topic, partition, REQUEST_TIMEOUT)
                    .map_err(unavailable)?;
                let Offset::Offset(start) = element.offset() else {
                    continue; // nothing at or after `since` in this partition
                };
                if start < high {
                    assignment
                        .add_partition_offset(&topic, partition, Offset::Offset(start))
                        .map_err(unavailable)?;
                    ends.insert(partition, high);
                }
            }
            let mut ids = RecentIds::new(max);
            if ends.is_empty() {
                return Ok(ids.finish());
            }
            reader.assign(&assignment).map_err(unavailable)?;
            let deadline = Instant::now() + READ_TIMEOUT;
            while !ends.is_empty() {
                if Instant::now() > deadline {
                    return Err(LogError::unavailable(format!(
                        "reading the recent records of {topic} timed out"
                    )));
                }
                let Some(message) = reader.poll(Duration::from_millis(200)) else {
                    continue;
                };
                let message = message.map_err(unavailable)?;
                let partition = rdkafka::Message::partition(&message);
                let offset = rdkafka::Message::offset(&message);
                if let Ok(record) = kafka_binding::decode(&kafka_record(&message)) {
                    ids.push(&record);
                }
                if ends.get(&partition).is_some_and(|end| offset + 1 >= *end) {
                    ends.remove(&partition);
                }
            }
            Ok(ids.finish())
        })
        .await
    }
}
