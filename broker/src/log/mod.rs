//! The durable event log behind every broker.
//!
//! # Durability contract
//!
//! * [`EventLog::append`] returns `Ok` only once every record of the batch is durable: it
//!   survives a crash of the process (and, for replicated backends, of one machine). Records of
//!   one append keep their order; an error means none, some or all may have been stored, so a
//!   caller may retry and a consumer may see duplicates (at-least-once, never loss).
//! * A consumer is named and durable: it resumes after a restart from its committed position.
//!   Progress is committed as a contiguous low-water mark: [`LogConsumer::commit`] never moves
//!   past a record that was polled but not acknowledged, so a crash redelivers at most what was
//!   in flight (plus what was acknowledged since the last commit).
//! * Parked records (undeliverable, dead-letter sink missing or failing) are durable once
//!   [`EventLog::park`] returns; only then may the consumer acknowledge them.
//!
//! The trait is shaped so that Kafka (topic per broker, consumer group per trigger, offsets per
//! partition) and JetStream (stream per broker, durable consumer per trigger, per-message acks)
//! fit it as naturally as the embedded sled log. [`memory::MemoryLog`] is the reference: the
//! contract and nothing else, for tests.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::record::Record;

pub use error::{Cause, LogError};

mod error;
pub mod identity;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod memory;
pub mod names;
#[cfg(feature = "nats")]
pub mod nats;
pub mod routed;
#[cfg(feature = "sled")]
pub mod sled;
pub mod testsuite;

/// Gauge of the records a broker's log holds (its last offset or stream sequence), by
/// namespace and broker.
pub const LOG_RECORDS: &str = "herald_log_records";

#[cfg_attr(
    not(any(feature = "sled", feature = "nats", feature = "kafka")),
    allow(dead_code, reason = "only the backends record it")
)]
fn record_log_size(broker: &BrokerKey, records: u64) {
    metrics::gauge!(LOG_RECORDS, "namespace" => broker.namespace.clone(), "broker" => broker.name.clone())
        .set(records as f64);
}

/// Identifies a broker: its namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BrokerKey {
    pub namespace: String,
    pub name: String,
}

impl BrokerKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The log stream of a channel (a Channel, InMemoryChannel or KafkaChannel, or one a
    /// Sequence or Parallel made). Its name starts with [`CHANNEL_STREAM_PREFIX`], which no
    /// Kubernetes name can (`:` is not allowed in one), so a channel's stream never meets a
    /// broker's, and every backend names it with a hash ([`names`]).
    pub fn channel(namespace: impl Into<String>, channel: &str) -> Self {
        Self::new(namespace, format!("{CHANNEL_STREAM_PREFIX}{channel}"))
    }

    /// Whether this is a channel's stream rather than a broker's.
    pub fn is_channel(&self) -> bool {
        self.name.starts_with(CHANNEL_STREAM_PREFIX)
    }
}

/// The start of the name of every channel's stream (see [`BrokerKey::channel`]).
pub const CHANNEL_STREAM_PREFIX: &str = "channel:";

impl fmt::Display for BrokerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The position of a record in a broker's log: a partition and an offset within it
/// (sled and JetStream have a single partition 0; offsets are stream sequences there).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RecordId {
    pub partition: u32,
    pub offset: u64,
}

/// A record handed to a consumer.
#[derive(Clone, Debug)]
pub struct LogRecord {
    pub id: RecordId,
    pub record: Record,
}

/// Per-broker log settings, from the Broker's `herald.dev/*` annotations; a backend applies
/// what it supports and the rest keep its defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BrokerSettings {
    /// Drop records older than this (JetStream `max_age`).
    pub max_age: Option<std::time::Duration>,
    /// Keep at most this many bytes (JetStream `max_bytes`).
    pub max_bytes: Option<i64>,
    /// Copies kept by a replicated backend (JetStream replicas, Kafka replication factor).
    pub replicas: Option<usize>,
    /// Partitions of a partitioned backend's new topic (Kafka).
    pub partitions: Option<i32>,
    /// Keep records only while a consumer still needs them (JetStream interest retention)
    /// instead of until the limits drop them.
    pub interest_retention: bool,
    /// The duplicate window of a backend that has its own (JetStream `duplicate_window`);
    /// the others leave it to ingress (see [`EventLog::drops_duplicates`]).
    pub duplicate_window: Option<std::time::Duration>,
}

/// Where a consumer without a committed position starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StartFrom {
    /// Only records appended after the consumer was created (Knative's behaviour).
    #[default]
    Latest,
    /// Every record still in the log.
    Earliest,
    /// The first record accepted at or after this time (ingress's `knativearrivaltime`, or
    /// the backend's own store time), and everything after it.
    Time(std::time::SystemTime),
}

/// Why a record was parked, kept with it so that people can see what went wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// Delivery attempts made to the subscriber.
    pub attempts: u32,
    /// The last HTTP status seen, if any answer came.
    pub last_status: Option<u16>,
    /// The last error or the start of the last response body.
    pub last_error: String,
    /// Why the record was parked rather than dead-lettered.
    pub reason: String,
    /// When it was parked (RFC 3339).
    pub parked_at: String,
}

/// A record in a consumer's dead-letter store.
#[derive(Clone, Debug, PartialEq)]
pub struct ParkedRecord {
    pub id: RecordId,
    pub record: Record,
    pub failure: Failure,
}

impl ParkedRecord {
    /// The stored form: a big-endian u32 length, a JSON header (id and failure), the record.
    pub fn encode(&self) -> Result<Vec<u8>, LogError> {
        let meta = serde_json::to_vec(&(self.id, &self.failure))
            .map_err(|e| LogError::storage("").caused_by(e))?;
        let record = self.record.encode();
        let mut out = Vec::with_capacity(4 + meta.len() + record.len());
        out.extend_from_slice(&(meta.len() as u32).to_be_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(&record);
        Ok(out)
    }

    pub fn decode(value: &[u8]) -> Result<Self, LogError> {
        let corrupt = || LogError::corrupt("parked record is malformed");
        let len_bytes: [u8; 4] = value
            .get(..4)
            .ok_or_else(corrupt)?
            .try_into()
            .map_err(|_| corrupt())?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        let meta = value.get(4..4 + len).ok_or_else(corrupt)?;
        let (id, failure): (RecordId, Failure) =
            serde_json::from_slice(meta).map_err(|e| LogError::corrupt("").caused_by(e))?;
        let record = Record::decode(bytes::Bytes::copy_from_slice(&value[4 + len..]))
            .map_err(|e| LogError::corrupt("").caused_by(e))?;
        Ok(Self {
            id,
            record,
            failure,
        })
    }
}

/// A stored event's duplicate-window key and when ingress accepted it.
pub type RecentId = (crate::log::identity::IdKey, std::time::SystemTime);

/// Collects [`RecentId`]s while a backend scans its records, keeping the newest `max` by
/// arrival time (partitions are read one after another, so read order is not time order).
pub(crate) struct RecentIds {
    max: usize,
    newest: std::collections::BinaryHeap<std::cmp::Reverse<(std::time::SystemTime, [u8; 16])>>,
}

impl RecentIds {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            newest: std::collections::BinaryHeap::new(),
        }
    }

    /// Adds a record read from the log (records without an arrival time count as now).
    pub(crate) fn push(&mut self, record: &Record) {
        let arrived = record
            .event
            .text(crate::record::ARRIVAL_TIME_EXTENSION)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
            .map(std::time::SystemTime::from)
            .unwrap_or_else(std::time::SystemTime::now);
        let key = crate::log::identity::event_key(&record.event);
        self.newest.push(std::cmp::Reverse((arrived, key)));
        if self.newest.len() > self.max {
            self.newest.pop();
        }
    }

    /// Oldest first.
    pub(crate) fn finish(self) -> Vec<RecentId> {
        let mut ids: Vec<RecentId> = self
            .newest
            .into_iter()
            .map(|std::cmp::Reverse((arrived, key))| (key, arrived))
            .collect();
        ids.sort_by_key(|(_, arrived)| *arrived);
        ids
    }
}

/// A broker's durable log.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Creates the broker's log if it does not exist (topic, stream, tree), or updates its
    /// settings where the backend allows.
    async fn ensure_broker(
        &self,
        broker: &BrokerKey,
        settings: &BrokerSettings,
    ) -> Result<(), LogError>;

    /// Appends records durably, in order (see the contract above).
    async fn append(&self, broker: &BrokerKey, records: Vec<Record>) -> Result<(), LogError>;

    /// `false` while the log knows it cannot store appends (the embedded log after a disk
    /// error, until it has reopened): `/readyz` reports not ready meanwhile. A log whose
    /// server owns the storage finds out per append and keeps the default.
    fn can_persist(&self) -> bool {
        true
    }

    /// Whether the backend itself drops a record whose (`source`, `id`) it stored within the
    /// broker's [`BrokerSettings::duplicate_window`] (JetStream's `Nats-Msg-Id`). Ingress keeps
    /// its own window for the others.
    fn drops_duplicates(&self, _broker: &BrokerKey) -> bool {
        false
    }

    /// The (`source`, `id`) keys and arrival times of the records that arrived at or after
    /// `since`, up to the log's end when called, oldest first, at most the newest `max`: what
    /// ingress rebuilds its duplicate window from after a restart.
    async fn recent_ids(
        &self,
        broker: &BrokerKey,
        _since: std::time::SystemTime,
        _max: usize,
    ) -> Result<Vec<RecentId>, LogError> {
        Err(LogError::unavailable(format!(
            "the log of {broker} cannot list recent events"
        )))
    }

    /// Opens the named durable consumer of a broker's log.
    async fn consumer(
        &self,
        broker: &BrokerKey,
        name: &str,
        start: StartFrom,
    ) -> Result<Box<dyn LogConsumer>, LogError>;

    /// Keeps an undeliverable record in the consumer's dead-letter store.
    async fn park(
        &self,
        broker: &BrokerKey,
        consumer: &str,
        parked: ParkedRecord,
    ) -> Result<(), LogError>;

    /// Lists a consumer's parked records, oldest first. Parking a record whose id is already
    /// parked replaces it (a redriven record that fails again keeps one entry).
    async fn parked(
        &self,
        broker: &BrokerKey,
        consumer: &str,
    ) -> Result<Vec<ParkedRecord>, LogError>;

    /// Removes the given records from a consumer's dead-letter store; unknown ids are ignored.
    /// Returns how many were removed.
    async fn unpark(
        &self,
        broker: &BrokerKey,
        consumer: &str,
        ids: &[RecordId],
    ) -> Result<usize, LogError>;

    /// Forgets a consumer: its position and its parked records. A consumer opened later with
    /// the same name starts afresh.
    async fn delete_consumer(&self, broker: &BrokerKey, consumer: &str) -> Result<(), LogError>;

    /// Deletes a broker's log with every consumer position and parked record of it (topic,
    /// stream, tree). Only for a broker nothing uses any more; deleting an unknown broker
    /// is not an error. A broker ensured again afterwards starts empty.
    async fn delete_broker(&self, broker: &BrokerKey) -> Result<(), LogError>;

    /// Flushes everything and releases resources; appends after this fail.
    async fn close(&self) -> Result<(), LogError>;
}

/// A named, durable reader of one broker's log.
#[async_trait]
pub trait LogConsumer: Send {
    /// Waits for records and returns between 1 and `max` of them. Cancel-safe: if the future
    /// is dropped, no record is lost.
    async fn poll(&mut self, max: usize) -> Result<Vec<LogRecord>, LogError>;

    /// Marks a polled record finished (delivered, filtered out, dead-lettered or parked).
    async fn ack(&mut self, id: RecordId) -> Result<(), LogError>;

    /// Makes acknowledged progress durable up to the contiguous low-water mark.
    async fn commit(&mut self) -> Result<(), LogError>;

    /// Records in the log that this consumer has not finished yet, when the backend knows
    /// it cheaply.
    fn lag(&self) -> Option<u64> {
        None
    }
}
