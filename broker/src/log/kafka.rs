//! The Apache Kafka backend, as Knative's Kafka broker lays it out: a topic per broker
//! (`knative-broker-{ns}-{name}`, made unique where Knative's is not: see
//! [`crate::log::names::kafka`]), records in the CloudEvents Kafka binding's binary mode keyed
//! by `partitionkey`, a consumer group per trigger (`knative-trigger-{ns}-{name}`) whose offsets
//! move per partition as a contiguous low-water mark of finished records, and parked records in
//! a compacted per-broker topic (`...-herald-parked`, one record per parked event, a tombstone
//! when it leaves).
//!
//! Appends answer after the delivery reports (acks=all, idempotent producer); librdkafka batches
//! concurrent appends. A new consumer group commits its starting offsets before it subscribes,
//! so events accepted after the trigger was created are never skipped.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use bytes::Bytes;
use futures_util::FutureExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::names::kafka as names;
use super::{
    BrokerKey, BrokerSettings, EventLog, LogConsumer, LogError, LogRecord, ParkedRecord, RecordId,
    StartFrom,
};
use crate::kafka_binding::{self, KafkaRecord};
use crate::record::Record;

mod positions;
mod producer;
mod recent;
mod shared;
use producer::ReportingProducer;

/// Knative's default partition count for broker topics.
pub const DEFAULT_PARTITIONS: i32 = 10;
/// How long an append may wait for its delivery reports before ingress answers 503.
/// How long the producer waits to fill a batch before sending (librdkafka's `linger.ms`,
/// which `--kafka-option linger.ms=N` overrides). See README, Running on Apache Kafka.
const PRODUCER_LINGER_MS: &str = "1";
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a consumer logs librdkafka's (self-healing) errors.
const ERROR_REPORT_INTERVAL: Duration = Duration::from_secs(10);
/// Bound of every blocking metadata, offset or commit call.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How to reach Kafka and how to name what Herald creates there.
#[derive(Clone, Debug)]
pub struct KafkaOptions {
    /// `host:port[,host:port...]`
    pub bootstrap: String,
    /// librdkafka settings for every client (SASL, TLS, tuning), e.g. `security.protocol`.
    pub client_options: Vec<(String, String)>,
    /// Put before every topic and consumer group name, so that several Herald installations
    /// can share a cluster (empty by default: Knative's names).
    pub prefix: String,
    /// Partitions of new broker topics, unless the broker says otherwise.
    pub partitions: i32,
    /// Replication factor of new topics; -1 takes the cluster's `default.replication.factor`.
    pub replication_factor: i32,
    /// Read each broker's topic once for all of its triggers ([`shared`]), with trigger
    /// positions in a compacted topic, instead of a consumer group per trigger.
    pub shared_reader: bool,
}

impl KafkaOptions {
    pub fn new(bootstrap: impl Into<String>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            client_options: Vec::new(),
            prefix: String::new(),
            partitions: DEFAULT_PARTITIONS,
            replication_factor: -1,
            shared_reader: false,
        }
    }

    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        for (key, value) in &self.client_options {
            config.set(key, value);
        }
        config
    }

    /// The broker's topic, `{prefix}knative-broker-{ns}-{name}` (see [`names::topic`]).
    pub fn topic(&self, broker: &BrokerKey) -> String {
        names::topic(&self.prefix, broker)
    }

    fn parked_topic(&self, broker: &BrokerKey) -> String {
        names::parked_topic(&self.prefix, broker)
    }

    fn positions_topic(&self, broker: &BrokerKey) -> String {
        names::positions_topic(&self.prefix, broker)
    }

    /// A consumer's group, `{prefix}knative-trigger-{ns}-{name}` for a trigger's consumer
    /// (`trigger-{name}`) (see [`names::group`]).
    pub fn group(&self, broker: &BrokerKey, consumer: &str) -> String {
        names::group(&self.prefix, broker, consumer)
    }
}

fn unavailable(error: KafkaError) -> LogError {
    LogError::unavailable("").caused_by(error)
}

/// How long set-up calls keep retrying while a new topic's partitions get their leaders.
const SETUP_PATIENCE: Duration = Duration::from_secs(30);
/// The longest wait between two tries of a set-up call.
const SETUP_RETRY_MAX: Duration = Duration::from_secs(2);

/// Runs a blocking set-up call, retrying transient failures (a topic created a moment ago has
/// no leader yet: `NotLeaderForPartition`, `LeaderNotAvailable`, ...) for [`SETUP_PATIENCE`].
async fn blocking_with_retries<T: Send + 'static>(
    call: impl Fn() -> Result<T, LogError> + Send + Sync + 'static,
) -> Result<T, LogError> {
    let call = Arc::new(call);
    let deadline = std::time::Instant::now() + SETUP_PATIENCE;
    let mut waits = ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(SETUP_RETRY_MAX)
        .without_max_times()
        .build();
    loop {
        let wait = waits.next().unwrap_or(SETUP_RETRY_MAX);
        let attempt = call.clone();
        match blocking(move || attempt()).await {
            Ok(value) => return Ok(value),
            Err(error) if std::time::Instant::now() + wait < deadline => {
                tracing::debug!(%error, "Kafka set-up call failed; retrying");
                tokio::time::sleep(wait).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Runs a blocking librdkafka call off the async workers.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, LogError> + Send + 'static,
) -> Result<T, LogError> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|e| LogError::unavailable("a Kafka call failed").caused_by(e))?
}

pub struct KafkaLog {
    options: KafkaOptions,
    producer: ReportingProducer,
    /// The admin client while a call uses it (see [`Admin`]).
    admin: Mutex<Weak<AdminClient<DefaultClientContext>>>,
    /// The end offset of each partition each broker was written to, for the log-size gauge.
    ends: Mutex<HashMap<BrokerKey, HashMap<i32, i64>>>,
    /// The brokers' shared readers (`shared_reader`).
    tails: shared::Tails,
    /// Trigger positions of the shared readers and their writer, made on first use (the
    /// writer is a task: `connect` may run outside the runtime).
    positions: std::sync::OnceLock<(Arc<positions::Positions>, tokio::task::AbortHandle)>,
    /// Positions topics known to exist.
    positions_topics: Mutex<std::collections::HashSet<String>>,
    /// Records a shared reader keeps (tests make it small).
    window_records: usize,
    /// The last read of each positions topic and when it began (see `stored_positions`).
    stored: tokio::sync::Mutex<HashMap<String, (std::time::Instant, Arc<positions::Stored>)>>,
    /// See `metadata_client`.
    metadata: Mutex<Option<Arc<BaseConsumer>>>,
}

impl Drop for KafkaLog {
    fn drop(&mut self) {
        if let Some((_, writer)) = self.positions.get() {
            writer.abort();
        }
    }
}

impl KafkaLog {
    pub fn connect(options: KafkaOptions) -> Result<Self, LogError> {
        names::validate_prefix(&options.prefix)
            .map_err(|e| LogError::storage(format!("the topic prefix {:?} {e}", options.prefix)))?;
        // Tunable defaults first, then `--kafka-option`, then what a 202 depends on (every
        // replica has the record, no duplicates on retry), which no option may weaken.
        let mut producer = ClientConfig::new();
        producer.set("linger.ms", PRODUCER_LINGER_MS);
        for (key, value) in options.config().config_map() {
            producer.set(key, value);
        }
        producer
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set(
                "message.timeout.ms",
                DELIVERY_TIMEOUT.as_millis().to_string(),
            );
        let producer = ReportingProducer::create(&producer).map_err(unavailable)?;
        Ok(Self {
            options,
            producer,
            admin: Mutex::new(Weak::new()),
            ends: Mutex::new(HashMap::new()),
            tails: shared::Tails::default(),
            positions: std::sync::OnceLock::new(),
            positions_topics: Mutex::new(std::collections::HashSet::new()),
            window_records: shared::WINDOW_RECORDS,
            stored: tokio::sync::Mutex::new(HashMap::new()),
            metadata: Mutex::new(None),
        })
    }

    pub fn options(&self) -> &KafkaOptions {
        &self.options
    }

    /// The trigger positions, their writer started on first use (inside the runtime).
    fn positions(&self) -> Arc<positions::Positions> {
        self.positions
            .get_or_init(|| positions::Positions::start(self.producer.clone()))
            .0
            .clone()
    }

    /// Creates the broker's positions topic if it is missing (compacted, one partition).
    async fn ensure_positions_topic(&self, broker: &BrokerKey) -> Result<(), LogError> {
        let topic = self.options.positions_topic(broker);
        let known = |set: &Mutex<std::collections::HashSet<String>>| {
            set.lock().map(|s| s.contains(&topic)).unwrap_or(false)
        };
        if known(&self.positions_topics) {
            return Ok(());
        }
        let replication = self.options.replication_factor;
        let new = NewTopic::new(&topic, 1, TopicReplication::Fixed(replication))
            .set("cleanup.policy", "compact");
        self.create_topic(new).await?;
        if let Ok(mut set) = self.positions_topics.lock() {
            set.insert(topic.clone());
        }
        Ok(())
    }

    /// A trigger read through its broker's shared reader: its positions come from the
    /// positions topic; a trigger without them takes them over from its consumer group of
    /// the per-trigger mode (and deletes the group), or starts at `start`.
    async fn shared_consumer(
        &self,
        broker: &BrokerKey,
        name: &str,
        start: StartFrom,
    ) -> Result<Box<dyn LogConsumer>, LogError> {
        let positions = self.positions();
        // A consumer of this name that was just dropped handed its last positions over.
        positions.flush().await?;
        self.ensure_positions_topic(broker).await?;
        let topic = self.options.topic(broker);
        let positions_topic = self.options.positions_topic(broker);
        let group = self.options.group(broker, name);
        let stored = self
            .stored_positions(&positions_topic, std::time::Instant::now())
            .await?;
        let reader = self.metadata_client()?;
        let config = self.options.config();
        let read_topic = topic.clone();
        let known = stored.get(name).cloned().unwrap_or_default();
        let (initial, missing, handed_over) = blocking_with_retries(move || {
            let reader = reader.as_ref();
            let mut initial = known.clone();
            let partitions = topic_partitions(reader, &read_topic)?;
            let mut missing: Vec<i32> = partitions
                .iter()
                .copied()
                .filter(|p| !initial.contains_key(p))
                .collect();
            if missing.is_empty() {
                return Ok((initial, Vec::new(), false));
            }
            // Taken over from the trigger's own consumer group, if it has one.
            let mut handed_over = false;
            let groups = reader
                .fetch_group_list(Some(&group), REQUEST_TIMEOUT)
                .map_err(unavailable)?;
            if groups
                .groups()
                .iter()
                .any(|g| g.name() == group && g.state() != "Dead")
            {
                let mut own = config.clone();
                own.set("group.id", &group)
                    .set("enable.auto.commit", "false");
                let own: BaseConsumer = own.create().map_err(unavailable)?;
                let mut list = TopicPartitionList::new();
                for partition in &missing {
                    list.add_partition(&read_topic, *partition);
                }
                let committed = own
                    .committed_offsets(list, REQUEST_TIMEOUT)
                    .map_err(unavailable)?;
                for element in committed.elements() {
                    if let Offset::Offset(offset) = element.offset() {
                        initial.insert(element.partition(), offset);
                        handed_over = true;
                    }
                }
                missing.retain(|p| !initial.contains_key(p));
            }
            for (partition, offset) in starting_offsets(reader, &read_topic, &missing, start)? {
                initial.insert(partition, offset);
            }
            Ok((initial, missing, handed_over))
        })
        .await?;
        if handed_over || !missing.is_empty() {
            for (partition, offset) in &initial {
                positions.set(
                    &positions_topic,
                    positions::key(name, *partition),
                    Some(*offset),
                )?;
            }
            positions.flush().await?;
        }
        if handed_over {
            self.delete_group(&self.options.group(broker, name)).await?;
            tracing::info!(%broker, consumer = name, "trigger position taken over from its consumer group, which is deleted");
        }
        let setup = shared::TailSetup {
            config: self.options.config(),
            topic: topic.clone(),
            positions_topic,
            group: names::shared_group(&self.options.prefix, broker),
            positions,
            window_records: self.window_records,
        };
        let cursor = shared::Cursor::new(name, initial);
        let tail = self.tails.get_or_start(broker, &setup, &cursor)?;
        Ok(Box::new(shared::SharedConsumer::new(tail, cursor)))
    }

    /// The positions stored in `topic`, read at or after `since`: the triggers that open
    /// together (a thousand at start) share one read.
    async fn stored_positions(
        &self,
        topic: &str,
        since: std::time::Instant,
    ) -> Result<Arc<positions::Stored>, LogError> {
        let mut cache = self.stored.lock().await;
        if let Some((read_at, stored)) = cache.get(topic) {
            if *read_at >= since {
                return Ok(stored.clone());
            }
        }
        let read_at = std::time::Instant::now();
        let reader = self.reader()?;
        let read = topic.to_owned();
        let stored = Arc::new(blocking(move || positions::read(&reader, &read)).await?);
        cache.insert(topic.to_owned(), (read_at, stored.clone()));
        Ok(stored)
    }

    /// A client kept for metadata, offset and group queries of the shared readers (making
    /// one per trigger costs its threads and connections each time).
    fn metadata_client(&self) -> Result<Arc<BaseConsumer>, LogError> {
        let mut slot = self
            .metadata
            .lock()
            .map_err(|_| LogError::unavailable("the metadata client's lock is poisoned"))?;
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let client = Arc::new(self.reader()?);
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Forgets a consumer's positions in the broker's positions topic.
    async fn delete_positions(&self, broker: &BrokerKey, consumer: &str) -> Result<(), LogError> {
        let positions = self.positions();
        positions.flush().await?;
        let topic = self.options.positions_topic(broker);
        let reader = self.reader()?;
        let read = topic.clone();
        let stored = blocking(move || positions::read(&reader, &read)).await?;
        let Some(mine) = stored.get(consumer) else {
            return Ok(());
        };
        for partition in mine.keys() {
            positions.set(&topic, positions::key(consumer, *partition), None)?;
        }
        positions.flush().await
    }

    /// Deletes a consumer group; a group with members a moment after its consumer was
    /// dropped is tried again.
    async fn delete_group(&self, group: &str) -> Result<(), LogError> {
        let admin = self.admin()?;
        for attempt in 0..20 {
            let results = admin
                .client()
                .delete_groups(&[group], &AdminOptions::new())
                .await
                .map_err(unavailable)?;
            match results.into_iter().next() {
                None | Some(Ok(_)) | Some(Err((_, RDKafkaErrorCode::GroupIdNotFound))) => {
                    return Ok(())
                }
                Some(Err((_, RDKafkaErrorCode::NonEmptyGroup))) if attempt < 19 => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Some(Err((_, code))) => {
                    return Err(LogError::unavailable(format!(
                        "cannot delete consumer group {group}: {code}"
                    )))
                }
            }
        }
        Ok(())
    }

    /// The admin client, shared by the calls that run at the same time and made anew after
    /// none used it: rdkafka's admin client polls every 100 ms for as long as it lives, and
    /// admin calls are rare (creating and deleting brokers and triggers).
    fn admin(&self) -> Result<Admin, LogError> {
        let mut slot = self
            .admin
            .lock()
            .map_err(|_| LogError::unavailable("the admin client's lock is poisoned"))?;
        if let Some(client) = slot.upgrade() {
            return Ok(Admin(client));
        }
        let client: Arc<AdminClient<DefaultClientContext>> =
            Arc::new(self.options.config().create().map_err(unavailable)?);
        *slot = Arc::downgrade(&client);
        Ok(Admin(client))
    }

    async fn create_topic(&self, topic: NewTopic<'_>) -> Result<(), LogError> {
        let results = self
            .admin()?
            .client()
            .create_topics([&topic], &AdminOptions::new())
            .await
            .map_err(unavailable)?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(LogError::unavailable(format!(
                        "cannot create topic {name}: {code}"
                    )))
                }
            }
        }
        Ok(())
    }

    /// Moves the known partition ends forward and publishes the broker's record count.
    fn record_ends(&self, broker: &BrokerKey, written: impl IntoIterator<Item = (i32, i64)>) {
        let Ok(mut ends) = self.ends.lock() else {
            return;
        };
        let partitions = ends.entry(broker.clone()).or_default();
        for (partition, end) in written {
            let known = partitions.entry(partition).or_default();
            *known = (*known).max(end);
        }
        let total: i64 = partitions.values().sum();
        drop(ends);
        super::record_log_size(broker, total.max(0) as u64);
    }

    /// A consumer outside any group for reading a topic from the start.
    fn reader(&self) -> Result<BaseConsumer, LogError> {
        let mut config = self.options.config();
        config
            .set("group.id", format!("{}herald-reader", self.options.prefix))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false");
        config.create().map_err(unavailable)
    }

    async fn produce(&self, topic: &str, key: &str, value: Option<&[u8]>) -> Result<(), LogError> {
        let mut record = BaseRecord::<str, [u8]>::to(topic).key(key);
        if let Some(value) = value {
            record = record.payload(value);
        }
        let sent = self.producer.sender(1).send(record);
        match sent {
            Ok(delivery) => match delivery.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(error)) => Err(unavailable(error)),
                Err(_) => Err(LogError::unavailable("the producer stopped")),
            },
            Err(error) => Err(unavailable(error)),
        }
    }

    /// Every parked record of the broker, by key, in the order they were last written.
    async fn read_parked(
        &self,
        broker: &BrokerKey,
    ) -> Result<Vec<(String, Option<ParkedRecord>)>, LogError> {
        let topic = self.options.parked_topic(broker);
        let reader = self.reader()?;
        let broker_key = broker.clone();
        blocking(move || {
            let (low, high) = reader
                .fetch_watermarks(&topic, 0, REQUEST_TIMEOUT)
                .map_err(|error| match error.rdkafka_error_code() {
                    Some(
                        RDKafkaErrorCode::UnknownPartition
                        | RDKafkaErrorCode::UnknownTopicOrPartition
                        | RDKafkaErrorCode::UnknownTopic,
                    ) => LogError::UnknownBroker(broker_key.clone()),
                    _ => unavailable(error),
                })?;
            let mut latest: HashMap<String, (i64, Option<ParkedRecord>)> = HashMap::new();
            if high > low {
                let mut assignment = TopicPartitionList::new();
                assignment
                    .add_partition_offset(&topic, 0, Offset::Offset(low))
                    .map_err(unavailable)?;
                reader.assign(&assignment).map_err(unavailable)?;
                let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
                let mut next = low;
                while next < high {
                    if std::time::Instant::now() > deadline {
                        return Err(LogError::unavailable("reading the parked topic timed out"));
                    }
                    let Some(message) = reader.poll(Duration::from_millis(200)) else {
                        continue;
                    };
                    let message = message.map_err(unavailable)?;
                    next = message.offset() + 1;
                    let Some(key) = message.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                        continue;
                    };
                    let parked = match message.payload() {
                        None => None,
                        Some(value) => Some(ParkedRecord::decode(value)?),
                    };
                    latest.insert(key.to_owned(), (message.offset(), parked));
                }
            }
            let mut ordered: Vec<_> = latest.into_iter().collect();
            ordered.sort_by_key(|(_, (offset, _))| *offset);
            Ok(ordered
                .into_iter()
                .map(|(key, (_, parked))| (key, parked))
                .collect())
        })
        .await
    }
}

/// A use of the shared admin client. Dropping the last one stops the client, which waits
/// for its polling thread (up to 100 ms): that happens on a blocking thread, not on the
/// async worker that dropped it.
struct Admin(Arc<AdminClient<DefaultClientContext>>);

impl Admin {
    fn client(&self) -> &AdminClient<DefaultClientContext> {
        &self.0
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        if Arc::strong_count(&self.0) > 1 {
            return;
        }
        // This clone is the last reference once `self.0` is dropped right after.
        let last = self.0.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(move || drop(last));
            }
            Err(_) => drop(last),
        }
    }
}

fn kafka_headers(record: &KafkaRecord) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
    for (key, value) in &record.headers {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_slice()),
        });
    }
    headers
}

/// A consumed message in the binding's terms.
pub fn kafka_record<M: Message>(message: &M) -> KafkaRecord {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default();
    KafkaRecord {
        key: message.key().map(<[u8]>::to_vec),
        headers,
        value: message.payload().map(Bytes::copy_from_slice),
    }
}

#[async_trait]
impl EventLog for KafkaLog {
    async fn ensure_broker(
        &self,
        broker: &BrokerKey,
        settings: &BrokerSettings,
    ) -> Result<(), LogError> {
        let topic = self.options.topic(broker);
        let replication = settings
            .replicas
            .map(|r| r as i32)
            .unwrap_or(self.options.replication_factor);
        let partitions = settings.partitions.unwrap_or(self.options.partitions);
        let mut new = NewTopic::new(&topic, partitions, TopicReplication::Fixed(replication));
        let retention_ms = settings.max_age.map(|age| age.as_millis().to_string());
        if let Some(ms) = &retention_ms {
            new = new.set("retention.ms", ms);
        }
        let retention_bytes = settings.max_bytes.map(|b| b.to_string());
        if let Some(bytes) = &retention_bytes {
            new = new.set("retention.bytes", bytes);
        }
        if settings.interest_retention {
            tracing::warn!(
                %topic,
                "herald.dev/retention: interest is not supported on Kafka: the topic keeps \
                 records by time and size (retention-max-age, retention-max-bytes)"
            );
        }
        self.create_topic(new).await?;
        // Parked records stay until people deal with them: compacted, never expired.
        let parked = self.options.parked_topic(broker);
        let parked_topic = NewTopic::new(&parked, 1, TopicReplication::Fixed(replication))
            .set("cleanup.policy", "compact");
        self.create_topic(parked_topic).await?;
        if self.options.shared_reader {
            self.ensure_positions_topic(broker).await?;
        }
        // Start the log-size gauge from what the topic already holds.
        let reader = self.reader()?;
        let counted = topic.clone();
        let ends = blocking_with_retries(move || {
            let metadata = reader
                .fetch_metadata(Some(&counted), REQUEST_TIMEOUT)
                .map_err(unavailable)?;
            let mut ends = Vec::new();
            for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
                let (_, high) = reader
                    .fetch_watermarks(&counted, partition.id(), REQUEST_TIMEOUT)
                    .map_err(unavailable)?;
                ends.push((partition.id(), high));
            }
            Ok(ends)
        })
        .await?;
        self.record_ends(broker, ends);
        Ok(())
    }

    async fn append(&self, broker: &BrokerKey, records: Vec<Record>) -> Result<(), LogError> {
        let topic = self.options.topic(broker);
        let encoded: Vec<KafkaRecord> = records.iter().map(kafka_binding::encode).collect();
        let mut deliveries = Vec::with_capacity(encoded.len());
        let mut sender = self.producer.sender(encoded.len());
        for record in &encoded {
            let mut message = BaseRecord::<[u8], [u8]>::to(&topic).headers(kafka_headers(record));
            if let Some(key) = &record.key {
                message = message.key(key.as_slice());
            }
            if let Some(value) = &record.value {
                message = message.payload(value.as_ref());
            }
            match sender.send(message) {
                Ok(delivery) => deliveries.push(delivery),
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    return Err(LogError::Overloaded)
                }
                Err(error) => return Err(unavailable(error)),
            }
        }
        drop(sender);
        let mut written = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok((partition, offset))) => written.push((partition, offset + 1)),
                Ok(Err(error)) => return Err(unavailable(error)),
                Err(_) => return Err(LogError::unavailable("the producer stopped")),
            }
        }
        self.record_ends(broker, written);
        Ok(())
    }

    async fn recent_ids(
        &self,
        broker: &BrokerKey,
        since: SystemTime,
        max: usize,
    ) -> Result<Vec<super::RecentId>, LogError> {
        self.read_recent_ids(broker, since, max).await
    }

    async fn consumer(
        &self,
        broker: &BrokerKey,
        name: &str,
        start: StartFrom,
    ) -> Result<Box<dyn LogConsumer>, LogError> {
        if self.options.shared_reader {
            return self.shared_consumer(broker, name, start).await;
        }
        let topic = self.options.topic(broker);
        let group = self.options.group(broker, name);
        let tracker = Arc::new(Mutex::new(Tracker::default()));
        let context = TrackingContext {
            tracker: tracker.clone(),
            topic: topic.clone(),
        };
        let mut config = self.options.config();
        config
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.offset.reset",
                if start == StartFrom::Earliest {
                    "earliest"
                } else {
                    "latest"
                },
            )
            .set("session.timeout.ms", "10000")
            // A trigger whose deliveries all wait on a slow subscriber does not poll for a
            // while; it must not be thrown out of its group for that.
            .set("max.poll.interval.ms", "86400000");
        let consumer: Arc<StreamConsumer<TrackingContext>> =
            Arc::new(config.create_with_context(context).map_err(unavailable)?);
        let setup = consumer.clone();
        let setup_topic = topic.clone();
        let positions_topic = self.options.positions_topic(broker);
        let reader_config = self.options.config();
        let consumer_name = name.to_owned();
        let handed_back = blocking_with_retries(move || {
            let stored = || {
                let mut config = reader_config.clone();
                config
                    .set("group.id", format!("{positions_topic}-reader"))
                    .set("enable.auto.commit", "false");
                let reader: BaseConsumer = config.create().map_err(unavailable)?;
                let mut stored = positions::read(&reader, &positions_topic)?;
                Ok(stored.remove(&consumer_name).unwrap_or_default())
            };
            commit_starting_offsets(&setup, &setup_topic, start, &stored)
        })
        .await?;
        if handed_back {
            // The group has the positions now; a later switch to the shared reader takes
            // them from it again.
            self.delete_positions(broker, name).await?;
            tracing::info!(%broker, consumer = name, "trigger position taken over from the shared reader's positions");
        }
        consumer.subscribe(&[&topic]).map_err(unavailable)?;
        Ok(Box::new(KafkaConsumer {
            consumer,
            tracker,
            topic,
            committed: HashMap::new(),
            last_report: None,
        }))
    }

    async fn park(
        &self,
        broker: &BrokerKey,
        consumer: &str,
        parked: ParkedRecord,
    ) -> Result<(), LogError> {
        let value = parked.encode()?;
        self.produce(
            &self.options.parked_topic(broker),
            &names::parked_key(consumer, parked.id),
            Some(&value),
        )
        .await
    }

    async fn parked(
        &self,
        broker: &BrokerKey,
        consumer: &str,
    ) -> Result<Vec<ParkedRecord>, LogError> {
        Ok(self
            .read_parked(broker)
            .await?
            .into_iter()
            .filter(|(key, _)| names::parked_key_consumer(key) == Some(consumer))
            .filter_map(|(_, parked)| parked)
            .collect())
    }

    async fn unpark(
        &self,
        broker: &BrokerKey,
        consumer: &str,
        ids: &[RecordId],
    ) -> Result<usize, LogError> {
        let present: BTreeSet<RecordId> = self
            .parked(broker, consumer)
            .await?
            .iter()
            .map(|p| p.id)
            .collect();
        let topic = self.options.parked_topic(broker);
        let mut removed = 0;
        for id in ids.iter().filter(|id| present.contains(id)) {
            self.produce(&topic, &names::parked_key(consumer, *id), None)
                .await?;
            removed += 1;
        }
        Ok(removed)
    }

    async fn delete_broker(&self, broker: &BrokerKey) -> Result<(), LogError> {
        let topics = [
            self.options.topic(broker),
            self.options.parked_topic(broker),
            self.options.positions_topic(broker),
        ];
        self.tails.forget(&topics[0])?;
        if let Some((positions, _)) = self.positions.get() {
            positions.forget_topic(&topics[2]).await?;
        }
        if let Ok(mut known) = self.positions_topics.lock() {
            known.remove(&topics[2]);
        }
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let results = self
            .admin()?
            .client()
            .delete_topics(&names, &AdminOptions::new())
            .await
            .map_err(unavailable)?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((name, code)) => {
                    return Err(LogError::unavailable(format!(
                        "cannot delete topic {name}: {code}"
                    )))
                }
            }
        }
        if let Ok(mut ends) = self.ends.lock() {
            ends.remove(broker);
        }
        // Deletion finishes in the background: wait until the topics are gone, so that a
        // broker of the same name created next starts empty.
        let reader = self.reader()?;
        blocking_with_retries(move || {
            for topic in &topics {
                let metadata = reader
                    .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
                    .map_err(unavailable)?;
                let present = metadata
                    .topics()
                    .iter()
                    .any(|t| t.error().is_none() && !t.partitions().is_empty());
                if present {
                    return Err(LogError::unavailable(format!(
                        "topic {topic} is still being deleted"
                    )));
                }
            }
            Ok(())
        })
        .await
    }

    async fn delete_consumer(&self, broker: &BrokerKey, consumer: &str) -> Result<(), LogError> {
        // A broker whose topics are gone (deleted first, or never created) has nothing
        // parked; the consumer group may still exist and is deleted below.
        match self.parked(broker, consumer).await {
            Ok(parked) => {
                let ids: Vec<RecordId> = parked.iter().map(|p| p.id).collect();
                self.unpark(broker, consumer, &ids).await?;
            }
            Err(LogError::UnknownBroker(_)) => {}
            Err(error) => return Err(error),
        }
        self.delete_positions(broker, consumer).await?;
        self.delete_group(&self.options.group(broker, consumer))
            .await
    }

    async fn close(&self) -> Result<(), LogError> {
        if let Some((positions, _)) = self.positions.get() {
            positions.flush().await?;
        }
        let producer = self.producer.clone();
        blocking(move || producer.flush(REQUEST_TIMEOUT).map_err(unavailable)).await
    }
}

/// The partitions of a topic.
fn topic_partitions<C: ConsumerContext, K: Consumer<C>>(
    consumer: &K,
    topic: &str,
) -> Result<Vec<i32>, LogError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(unavailable)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(LogError::unavailable(format!(
            "topic {topic} has no partitions"
        )));
    }
    Ok(partitions)
}

/// Commits where a group without committed offsets starts, before it subscribes: the
/// positions a shared reader kept for the consumer (`stored`, asked only for such a group),
/// else where `start` says. Returns whether stored positions were taken.
fn commit_starting_offsets(
    consumer: &StreamConsumer<TrackingContext>,
    topic: &str,
    start: StartFrom,
    stored: &dyn Fn() -> Result<HashMap<i32, i64>, LogError>,
) -> Result<bool, LogError> {
    let partitions = topic_partitions(consumer, topic)?;
    let mut all = TopicPartitionList::new();
    for partition in &partitions {
        all.add_partition(topic, *partition);
    }
    let committed = consumer
        .committed_offsets(all, REQUEST_TIMEOUT)
        .map_err(unavailable)?;
    let mut missing: Vec<i32> = committed
        .elements()
        .iter()
        .filter(|e| !matches!(e.offset(), Offset::Offset(_)))
        .map(|e| e.partition())
        .collect();
    if missing.is_empty() {
        return Ok(false);
    }
    let mut starting = TopicPartitionList::new();
    let stored = stored()?;
    let handed_back = missing.iter().any(|p| stored.contains_key(p));
    for partition in &missing {
        if let Some(offset) = stored.get(partition) {
            starting
                .add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .map_err(unavailable)?;
        }
    }
    missing.retain(|p| !stored.contains_key(p));
    for (partition, offset) in starting_offsets(consumer, topic, &missing, start)? {
        starting
            .add_partition_offset(topic, partition, Offset::Offset(offset))
            .map_err(unavailable)?;
    }
    if let Err(error) = consumer.commit(&starting, CommitMode::Sync) {
        // Another process of the same group committed first: its offsets stand.
        tracing::debug!(%error, topic, "starting offsets not committed");
    }
    Ok(handed_back)
}

/// Where a consumer without a position starts on each of `missing`, per `start`.
fn starting_offsets<C: ConsumerContext, K: Consumer<C>>(
    consumer: &K,
    topic: &str,
    missing: &[i32],
    start: StartFrom,
) -> Result<Vec<(i32, i64)>, LogError> {
    let mut starting = Vec::new();
    if missing.is_empty() {
        return Ok(starting);
    }
    match start {
        StartFrom::Time(time) => {
            let millis = time
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            let mut query = TopicPartitionList::new();
            for partition in missing {
                query
                    .add_partition_offset(topic, *partition, Offset::Offset(millis))
                    .map_err(unavailable)?;
            }
            let found = consumer
                .offsets_for_times(query, REQUEST_TIMEOUT)
                .map_err(unavailable)?;
            for element in found.elements() {
                let offset = match element.offset() {
                    Offset::Offset(offset) => offset,
                    // No record at or after the time: start at the end.
                    _ => {
                        consumer
                            .fetch_watermarks(topic, element.partition(), REQUEST_TIMEOUT)
                            .map_err(unavailable)?
                            .1
                    }
                };
                starting.push((element.partition(), offset));
            }
        }
        StartFrom::Latest | StartFrom::Earliest => {
            // One ListOffsets request for every partition (the special timestamps -1 and -2
            // ask for the end and the start).
            let wanted = if start == StartFrom::Earliest {
                Offset::Beginning
            } else {
                Offset::End
            };
            let mut query = TopicPartitionList::new();
            for partition in missing {
                query
                    .add_partition_offset(topic, *partition, wanted)
                    .map_err(unavailable)?;
            }
            let found = consumer
                .offsets_for_times(query, REQUEST_TIMEOUT)
                .map_err(unavailable)?;
            for element in found.elements() {
                let Offset::Offset(offset) = element.offset() else {
                    return Err(LogError::unavailable(format!(
                        "no {} offset for {topic} partition {}",
                        if wanted == Offset::Beginning {
                            "first"
                        } else {
                            "end"
                        },
                        element.partition()
                    )));
                };
                starting.push((element.partition(), offset));
            }
        }
    }
    Ok(starting)
}

/// Which records of each assigned partition were handed out and not finished yet.
#[derive(Default, Debug)]
struct Tracker {
    partitions: HashMap<i32, PartitionProgress>,
}

#[derive(Default, Debug)]
struct PartitionProgress {
    /// The offset after the last record handed out.
    next: i64,
    /// Handed out, not acknowledged.
    pending: BTreeSet<i64>,
}

impl Tracker {
    fn handed_out(&mut self, partition: i32, offset: i64) {
        let progress = self.partitions.entry(partition).or_default();
        progress.pending.insert(offset);
        progress.next = progress.next.max(offset + 1);
    }

    fn finished(&mut self, partition: i32, offset: i64) {
        if let Some(progress) = self.partitions.get_mut(&partition) {
            progress.pending.remove(&offset);
        }
    }

    /// The offset to commit per partition: the first unfinished record, else the next one.
    fn low_water_marks(&self) -> impl Iterator<Item = (i32, i64)> + '_ {
        self.partitions.iter().map(|(partition, progress)| {
            let low = progress.pending.first().copied().unwrap_or(progress.next);
            (*partition, low)
        })
    }
}

/// Commits finished progress of partitions that are taken away, before they are.
struct TrackingContext {
    tracker: Arc<Mutex<Tracker>>,
    topic: String,
}

impl ClientContext for TrackingContext {}

impl ConsumerContext for TrackingContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let Ok(mut tracker) = self.tracker.lock() else {
            return;
        };
        let mut commit = TopicPartitionList::new();
        for element in revoked.elements() {
            if let Some(progress) = tracker.partitions.remove(&element.partition()) {
                let low = progress.pending.first().copied().unwrap_or(progress.next);
                let _ = commit.add_partition_offset(
                    &self.topic,
                    element.partition(),
                    Offset::Offset(low),
                );
            }
        }
        drop(tracker);
        if commit.count() > 0 {
            if let Err(error) = consumer.commit(&commit, CommitMode::Sync) {
                tracing::warn!(%error, "commit on partition revocation failed");
            }
        }
    }
}

struct KafkaConsumer {
    consumer: Arc<StreamConsumer<TrackingContext>>,
    tracker: Arc<Mutex<Tracker>>,
    topic: String,
    /// What was last committed per partition, to skip commits that change nothing.
    committed: HashMap<i32, i64>,
    last_report: Option<std::time::Instant>,
}

impl KafkaConsumer {
    fn take(&self, message: &BorrowedMessage<'_>) -> Option<LogRecord> {
        let id = RecordId {
            partition: message.partition() as u32,
            offset: message.offset() as u64,
        };
        let decoded = kafka_binding::decode(&kafka_record(message));
        let mut tracker = self.tracker.lock().ok()?;
        tracker.handed_out(message.partition(), message.offset());
        match decoded {
            Ok(record) => Some(LogRecord { id, record }),
            Err(error) => {
                // Not a CloudEvent (someone else wrote to the topic): nothing to deliver.
                tracing::warn!(topic = %self.topic, ?id, %error, "skipping a record that is not a CloudEvent");
                tracker.finished(message.partition(), message.offset());
                None
            }
        }
    }

    /// Logs a consumer error, at most once per [`ERROR_REPORT_INTERVAL`].
    fn report(&mut self, error: &KafkaError) {
        if self
            .last_report
            .is_none_or(|at| at.elapsed() >= ERROR_REPORT_INTERVAL)
        {
            self.last_report = Some(std::time::Instant::now());
            tracing::warn!(topic = %self.topic, %error, "Kafka consumer error (librdkafka retries by itself)");
        }
    }

    fn changed_marks(&self) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        if let Ok(tracker) = self.tracker.lock() {
            for (partition, low) in tracker.low_water_marks() {
                if self.committed.get(&partition) != Some(&low) {
                    let _ = list.add_partition_offset(&self.topic, partition, Offset::Offset(low));
                }
            }
        }
        list
    }
}

#[async_trait]
impl LogConsumer for KafkaConsumer {
    async fn poll(&mut self, max: usize) -> Result<Vec<LogRecord>, LogError> {
        let mut out = Vec::new();
        while out.is_empty() {
            // librdkafka reconnects by itself; its errors (brokers down, transport failures)
            // only say what is going on, and a backlog of them must not slow the catch-up.
            let first = match self.consumer.recv().await {
                Ok(message) => message,
                Err(error) => {
                    self.report(&error);
                    continue;
                }
            };
            out.extend(self.take(&first));
            drop(first);
            while out.len() < max {
                match self.consumer.recv().now_or_never() {
                    Some(Ok(message)) => out.extend(self.take(&message)),
                    Some(Err(error)) => {
                        self.report(&error);
                        break;
                    }
                    None => break,
                }
            }
        }
        Ok(out)
    }

    async fn ack(&mut self, id: RecordId) -> Result<(), LogError> {
        if let Ok(mut tracker) = self.tracker.lock() {
            tracker.finished(id.partition as i32, id.offset as i64);
        }
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), LogError> {
        let list = self.changed_marks();
        if list.count() == 0 {
            return Ok(());
        }
        self.consumer
            .commit(&list, CommitMode::Async)
            .map_err(unavailable)?;
        for element in list.elements() {
            if let Offset::Offset(offset) = element.offset() {
                self.committed.insert(element.partition(), offset);
            }
        }
        Ok(())
    }
}

impl Drop for KafkaConsumer {
    /// The last progress is committed synchronously: the dispatcher is stopping.
    fn drop(&mut self) {
        let list = self.changed_marks();
        if list.count() > 0 {
            let _ = self.consumer.commit(&list, CommitMode::Sync);
        }
    }
}

/// Milliseconds since the epoch, as Kafka timestamps count.
pub fn epoch_millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Harness {
        bootstrap: String,
        prefix: String,
    }

    #[async_trait]
    impl crate::log::testsuite::LogHarness for Harness {
        async fn open(&self) -> Arc<dyn EventLog> {
            let options = KafkaOptions {
                prefix: self.prefix.clone(),
                // The suite checks the order of one partition.
                partitions: 1,
                ..KafkaOptions::new(self.bootstrap.clone())
            };
            Arc::new(KafkaLog::connect(options).expect("a Kafka client"))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kafka_passes_the_conformance_suite() {
        if !crate::testing::available(crate::testing::Server::Kafka) {
            return;
        }
        let bootstrap = crate::testing::KafkaServer::shared();
        let counter = std::sync::atomic::AtomicUsize::new(0);
        crate::log::testsuite::run_all(&|| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let harness: Box<dyn crate::log::testsuite::LogHarness> = Box::new(Harness {
                bootstrap: bootstrap.clone(),
                prefix: format!("suite{n}."),
            });
            async move { harness }
        })
        .await;
    }

    /// The shared reader with a window of 2 records, so that the suite's consumers also read
    /// what they are behind on with readers of their own.
    struct SharedHarness {
        bootstrap: String,
        prefix: String,
    }

    fn shared_log(bootstrap: &str, prefix: &str, window_records: usize) -> KafkaLog {
        let options = KafkaOptions {
            prefix: prefix.to_owned(),
            partitions: 1,
            shared_reader: true,
            ..KafkaOptions::new(bootstrap.to_owned())
        };
        let mut log = KafkaLog::connect(options).expect("a Kafka client");
        log.window_records = window_records;
        log
    }

    #[async_trait]
    impl crate::log::testsuite::LogHarness for SharedHarness {
        async fn open(&self) -> Arc<dyn EventLog> {
            Arc::new(shared_log(&self.bootstrap, &self.prefix, 2))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_shared_reader_passes_the_conformance_suite() {
        if !crate::testing::available(crate::testing::Server::Kafka) {
            return;
        }
        let bootstrap = crate::testing::KafkaServer::shared();
        let counter = std::sync::atomic::AtomicUsize::new(0);
        crate::log::testsuite::run_all(&|| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let harness: Box<dyn crate::log::testsuite::LogHarness> = Box::new(SharedHarness {
                bootstrap: bootstrap.clone(),
                prefix: format!("shared{}-{n}.", std::process::id()),
            });
            async move { harness }
        })
        .await;
    }

    fn numbered(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| i.to_string()).collect()
    }

    async fn read_acked(consumer: &mut dyn LogConsumer, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        while out.len() < n {
            let records =
                tokio::time::timeout(Duration::from_secs(30), consumer.poll(n - out.len()))
                    .await
                    .expect("records in time")
                    .unwrap();
            for record in records {
                consumer.ack(record.id).await.unwrap();
                out.push(record.record.event.id().into_owned());
            }
        }
        out
    }

    /// A trigger that does not poll falls out of the window while another reads on; it then
    /// reads what it missed with a reader of its own, in order, and is back in the window.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_trigger_behind_the_window_reads_on_its_own() {
        if !crate::testing::available(crate::testing::Server::Kafka) {
            return;
        }
        let bootstrap = crate::testing::KafkaServer::shared();
        let prefix = format!("behind{}.", std::process::id());
        let log = shared_log(&bootstrap, &prefix, 4);
        let broker = BrokerKey::new("default", "behind");
        log.ensure_broker(&broker, &BrokerSettings::default())
            .await
            .unwrap();
        let mut fast = log
            .consumer(&broker, "fast", StartFrom::Latest)
            .await
            .unwrap();
        let mut slow = log
            .consumer(&broker, "slow", StartFrom::Latest)
            .await
            .unwrap();
        for i in 0..20 {
            log.append(&broker, vec![crate::log::testsuite::sample(&i.to_string())])
                .await
                .unwrap();
        }
        assert_eq!(read_acked(&mut *fast, 20).await, numbered(0..20));
        assert_eq!(read_acked(&mut *slow, 20).await, numbered(0..20));
        log.append(&broker, vec![crate::log::testsuite::sample("20")])
            .await
            .unwrap();
        assert_eq!(read_acked(&mut *slow, 1).await, ["20"]);
        assert_eq!(read_acked(&mut *fast, 1).await, ["20"]);
        drop((fast, slow));
        log.delete_broker(&broker).await.unwrap();
    }

    /// Positions are written within a second of a commit and read by the next log (a
    /// restart); what was not acknowledged comes again, what was does not.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn positions_survive_a_restart() {
        if !crate::testing::available(crate::testing::Server::Kafka) {
            return;
        }
        let bootstrap = crate::testing::KafkaServer::shared();
        let prefix = format!("restart{}.", std::process::id());
        let broker = BrokerKey::new("default", "restart");
        {
            let log = shared_log(&bootstrap, &prefix, 4_096);
            log.ensure_broker(&broker, &BrokerSettings::default())
                .await
                .unwrap();
            let mut consumer = log.consumer(&broker, "t", StartFrom::Latest).await.unwrap();
            let records: Vec<Record> = (0..4)
                .map(|i| crate::log::testsuite::sample(&i.to_string()))
                .collect();
            log.append(&broker, records).await.unwrap();
            let polled = tokio::time::timeout(Duration::from_secs(30), consumer.poll(4))
                .await
                .unwrap()
                .unwrap();
            // 0 and 1 finished, 2 not, 3 finished: the position is 2.
            for record in &polled {
                if record.record.event.id() != "2" {
                    consumer.ack(record.id).await.unwrap();
                }
            }
            consumer.commit().await.unwrap();
            // The writer stores it by itself (no flush by a drop or close), then a crash.
            let topic = log.options.positions_topic(&broker);
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                let stored = positions::read(&log.reader().unwrap(), &topic).unwrap();
                if stored.get("t").and_then(|p| p.get(&0)) == Some(&2) {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the position was never written"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            drop(consumer);
            drop(log);
        }
        let log = shared_log(&bootstrap, &prefix, 4_096);
        let mut consumer = log.consumer(&broker, "t", StartFrom::Latest).await.unwrap();
        assert_eq!(read_acked(&mut *consumer, 2).await, ["2", "3"]);
        drop(consumer);
        log.delete_broker(&broker).await.unwrap();
    }

    /// Switching the shared reader on takes a trigger's position over from its consumer
    /// group (which is deleted); switching it off hands the position back to the group.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn positions_are_handed_over_in_both_directions() {
        if !crate::testing::available(crate::testing::Server::Kafka) {
            return;
        }
        let bootstrap = crate::testing::KafkaServer::shared();
        let prefix = format!("handover{}.", std::process::id());
        let broker = BrokerKey::new("default", "handover");
        let per_trigger = || {
            KafkaLog::connect(KafkaOptions {
                prefix: prefix.clone(),
                partitions: 1,
                ..KafkaOptions::new(bootstrap.clone())
            })
            .unwrap()
        };
        let log = per_trigger();
        log.ensure_broker(&broker, &BrokerSettings::default())
            .await
            .unwrap();
        let mut consumer = log
            .consumer(&broker, "trigger-t", StartFrom::Latest)
            .await
            .unwrap();
        let records: Vec<Record> = (0..6)
            .map(|i| crate::log::testsuite::sample(&i.to_string()))
            .collect();
        log.append(&broker, records).await.unwrap();
        assert_eq!(read_acked(&mut *consumer, 2).await, numbered(0..2));
        drop(consumer);
        drop(log);

        let shared = shared_log(&bootstrap, &prefix, 4_096);
        let mut consumer = shared
            .consumer(&broker, "trigger-t", StartFrom::Latest)
            .await
            .unwrap();
        assert_eq!(read_acked(&mut *consumer, 2).await, numbered(2..4));
        let group = shared.options.group(&broker, "trigger-t");
        let reader = shared.reader().unwrap();
        let groups = reader
            .fetch_group_list(Some(&group), REQUEST_TIMEOUT)
            .unwrap();
        assert!(
            groups.groups().iter().all(|g| g.state() == "Dead"),
            "the trigger's consumer group must be deleted once its position is taken over"
        );
        consumer.commit().await.unwrap();
        drop(consumer);
        shared.close().await.unwrap();
        drop(shared);

        let log = per_trigger();
        let mut consumer = log
            .consumer(&broker, "trigger-t", StartFrom::Latest)
            .await
            .unwrap();
        assert_eq!(read_acked(&mut *consumer, 2).await, numbered(4..6));
        let stored = positions::read(
            &log.reader().unwrap(),
            &log.options.positions_topic(&broker),
        )
        .unwrap();
        assert!(
            !stored.contains_key("trigger-t"),
            "the position handed back must be forgotten"
        );
        drop(consumer);
        log.delete_broker(&broker).await.unwrap();
    }

    #[test]
    fn low_water_marks_wait_for_the_first_unfinished_record() {
        let mut tracker = Tracker::default();
        for offset in 10..15 {
            tracker.handed_out(0, offset);
        }
        tracker.handed_out(3, 7);
        tracker.finished(0, 10);
        tracker.finished(0, 12);
        tracker.finished(3, 7);
        let mut marks: Vec<_> = tracker.low_water_marks().collect();
        marks.sort();
        assert_eq!(marks, [(0, 11), (3, 8)]);
    }
}
