//! One reader of a broker's topic for all of its triggers (`--kafka-shared-reader`).
//!
//! A consumer group and a librdkafka client per trigger made 1,000 triggers 1,000 clients,
//! each with its threads, connections and fetch sessions reading the same topic. Here a
//! broker's [`Tail`] reads the topic once, on a thread of its own, as a member of one consumer
//! group per broker (`{topic}-herald-shared`): several Herald processes on one Kafka split the
//! partitions between them, and each delivers its partitions to every trigger. The tail keeps
//! a bounded window of the newest records per assigned partition, which every trigger's
//! [`SharedConsumer`] reads at its own pace. A trigger that falls out of the window (a slow
//! or failing subscriber) reads the partitions it is behind on with a client of its own
//! (outside any group) until it is back within the window, so it never holds the others back.
//!
//! Each trigger's position per partition (the next offset it has to finish, a contiguous
//! low-water mark) is kept in the broker's positions topic ([`super::positions`]). When
//! partitions are taken away in a rebalance, the positions of every trigger on them are
//! written before they go; when partitions are given, the tail reads the positions topic and
//! starts each partition at the lowest position of its triggers.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::FutureExt;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;

use super::positions::{self, Positions};
use super::{kafka_record, unavailable, BrokerKey, LogConsumer, LogError, LogRecord, RecordId};
use super::{ERROR_REPORT_INTERVAL, REQUEST_TIMEOUT};
use crate::kafka_binding;
use crate::record::Record;

/// Records a tail keeps for its triggers, at most (all partitions together).
pub(super) const WINDOW_RECORDS: usize = 4_096;
/// Bytes (record values) a tail keeps for its triggers, at most.
pub(super) const WINDOW_BYTES: usize = 32 << 20;
/// Records a tail takes from librdkafka before it wakes the triggers.
const READ_BATCH: usize = 256;
/// How long the tail's thread waits for a record before it looks whether it should stop.
const POLL_WAIT: Duration = Duration::from_millis(200);

fn lock_poisoned() -> LogError {
    LogError::unavailable("a shared reader's lock is poisoned")
}

/// What a tail needs from its log.
#[derive(Clone)]
pub(super) struct TailSetup {
    /// librdkafka settings of every client (bootstrap, security, `--kafka-option`).
    pub config: ClientConfig,
    pub topic: String,
    pub positions_topic: String,
    /// The broker's consumer group, shared by every Herald process.
    pub group: String,
    pub positions: Arc<Positions>,
    pub window_records: usize,
}

/// The live tails of a log, by topic.
#[derive(Default)]
pub(super) struct Tails {
    live: Mutex<HashMap<String, Weak<Tail>>>,
}

impl Tails {
    /// The broker's tail, started if none runs. `first` is registered before the new tail
    /// joins its group, so that its first assignment starts at `first`'s positions.
    pub(super) fn get_or_start(
        &self,
        broker: &BrokerKey,
        setup: &TailSetup,
        first: &Arc<Mutex<Cursor>>,
    ) -> Result<Arc<Tail>, LogError> {
        let mut live = self.live.lock().map_err(|_| lock_poisoned())?;
        if let Some(tail) = live.get(&setup.topic).and_then(Weak::upgrade) {
            tail.register(first)?;
            return Ok(tail);
        }
        live.retain(|_, tail| tail.strong_count() > 0);
        let tail = Tail::start(broker.clone(), setup.clone(), first)?;
        live.insert(setup.topic.clone(), Arc::downgrade(&tail));
        Ok(tail)
    }

    /// The broker's topic is deleted: its tail's consumers get [`LogError::UnknownBroker`].
    pub(super) fn forget(&self, topic: &str) -> Result<(), LogError> {
        let tail = self
            .live
            .lock()
            .map_err(|_| lock_poisoned())?
            .remove(topic)
            .and_then(|tail| tail.upgrade());
        if let Some(tail) = tail {
            tail.state.gone.store(true, Ordering::SeqCst);
            tail.state.changed.send_modify(|n| *n += 1);
        }
        Ok(())
    }
}

/// A trigger's progress on the partitions its process is assigned, shared between its
/// [`SharedConsumer`] and the tail (which adds and takes away partitions in rebalances).
pub(super) struct Cursor {
    consumer: String,
    /// The positions the trigger was opened with, for partitions the positions topic did not
    /// hold yet when they were assigned.
    initial: HashMap<i32, i64>,
    parts: HashMap<i32, PartCursor>,
}

#[derive(Debug, Default)]
struct PartCursor {
    /// The next offset to hand out.
    next_read: i64,
    /// Handed out, not acknowledged.
    pending: BTreeSet<i64>,
    /// The position last handed to the positions writer.
    committed: i64,
}

impl PartCursor {
    fn at(offset: i64) -> Self {
        Self {
            next_read: offset,
            pending: BTreeSet::new(),
            committed: offset,
        }
    }

    fn low_water(&self) -> i64 {
        self.pending.first().copied().unwrap_or(self.next_read)
    }
}

impl Cursor {
    pub(super) fn new(consumer: &str, initial: HashMap<i32, i64>) -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(Self {
            consumer: consumer.to_owned(),
            initial,
            parts: HashMap::new(),
        }))
    }
}

/// A broker's shared reader: its thread and its window of records.
pub(super) struct Tail {
    state: Arc<TailState>,
    stop: Arc<AtomicBool>,
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

struct TailState {
    broker: BrokerKey,
    setup: TailSetup,
    window: Mutex<Window>,
    /// The cursors of the open triggers, and the partitions this process is assigned.
    members: Mutex<Members>,
    /// Bumped when records arrive or the assignment changes: what waiting consumers watch.
    changed: watch::Sender<u64>,
    /// The broker's topic was deleted.
    gone: AtomicBool,
    runtime: tokio::runtime::Handle,
}

#[derive(Default)]
struct Members {
    cursors: Vec<Weak<Mutex<Cursor>>>,
    assigned: BTreeSet<i32>,
}

#[derive(Default)]
struct Window {
    parts: HashMap<i32, PartWindow>,
    /// Every record in the window, oldest first, for eviction across partitions.
    order: VecDeque<(i32, i64)>,
    bytes: usize,
}

#[derive(Default)]
struct PartWindow {
    /// Every record of the partition from this offset on that the tail has read is in
    /// `records`: a trigger whose next offset is below it reads the partition itself.
    covered_from: i64,
    /// The offset after the newest record read.
    end: i64,
    /// Oldest first: offset, value size, record (records that are not CloudEvents are left
    /// out).
    records: VecDeque<(i64, usize, Record)>,
}

impl Window {
    fn push(&mut self, limit: usize, partition: i32, offset: i64, size: usize, record: Record) {
        let Some(part) = self.parts.get_mut(&partition) else {
            return;
        };
        if offset < part.end {
            return;
        }
        part.end = offset + 1;
        part.records.push_back((offset, size, record));
        self.order.push_back((partition, offset));
        self.bytes += size;
        while self.order.len() > limit || self.bytes > WINDOW_BYTES {
            let Some((partition, _)) = self.order.pop_front() else {
                break;
            };
            if let Some(part) = self.parts.get_mut(&partition) {
                if let Some((offset, size, _)) = part.records.pop_front() {
                    self.bytes -= size;
                    part.covered_from = offset + 1;
                }
            }
        }
    }

    /// A record that is not a CloudEvent: only the end moves on.
    fn skip(&mut self, partition: i32, offset: i64) {
        if let Some(part) = self.parts.get_mut(&partition) {
            part.end = part.end.max(offset + 1);
        }
    }

    fn assign(&mut self, partition: i32, start: i64) {
        self.parts.insert(
            partition,
            PartWindow {
                covered_from: start,
                end: start,
                records: VecDeque::new(),
            },
        );
    }

    fn revoke(&mut self, partition: i32) {
        if let Some(part) = self.parts.remove(&partition) {
            for (_, size, _) in part.records {
                self.bytes -= size;
            }
            self.order.retain(|(p, _)| *p != partition);
        }
    }
}

impl Tail {
    fn start(
        broker: BrokerKey,
        setup: TailSetup,
        first: &Arc<Mutex<Cursor>>,
    ) -> Result<Arc<Self>, LogError> {
        let state = Arc::new(TailState {
            broker,
            setup,
            window: Mutex::new(Window::default()),
            members: Mutex::new(Members {
                cursors: vec![Arc::downgrade(first)],
                assigned: BTreeSet::new(),
            }),
            changed: watch::channel(0).0,
            gone: AtomicBool::new(false),
            runtime: tokio::runtime::Handle::current(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let mut config = state.setup.config.clone();
        config
            .set("group.id", &state.setup.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            // A start older than the log's (retention dropped it) reads from the oldest kept.
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("max.poll.interval.ms", "300000")
            // Eager rebalances: every partition is revoked (and its positions written) before
            // any is assigned anew.
            .set("partition.assignment.strategy", "range");
        let reader = reader(&state.setup)?;
        let consumer: BaseConsumer<Rebalancing> = config
            .create_with_context(Rebalancing {
                state: state.clone(),
                reader,
            })
            .map_err(unavailable)?;
        consumer
            .subscribe(&[&state.setup.topic])
            .map_err(unavailable)?;
        let (reading, stopped) = (state.clone(), stop.clone());
        std::thread::Builder::new()
            .name("herald-kafka-tail".into())
            .spawn(move || read_topic(consumer, reading, stopped))
            .map_err(|e| LogError::unavailable("cannot start a shared reader").caused_by(e))?;
        Ok(Arc::new(Self { state, stop }))
    }

    fn register(&self, cursor: &Arc<Mutex<Cursor>>) -> Result<(), LogError> {
        let mut members = self.state.members.lock().map_err(|_| lock_poisoned())?;
        members.cursors.retain(|c| c.strong_count() > 0);
        members.cursors.push(Arc::downgrade(cursor));
        let window = self.state.window.lock().map_err(|_| lock_poisoned())?;
        let mut cursor = cursor.lock().map_err(|_| lock_poisoned())?;
        for partition in &members.assigned {
            let start = cursor
                .initial
                .get(partition)
                .copied()
                .or_else(|| window.parts.get(partition).map(|p| p.end))
                .unwrap_or(0);
            cursor.parts.insert(*partition, PartCursor::at(start));
        }
        drop(cursor);
        drop(window);
        drop(members);
        self.state.changed.send_modify(|n| *n += 1);
        Ok(())
    }
}

/// A client outside any group, for reading partitions by offset.
fn reader(setup: &TailSetup) -> Result<BaseConsumer, LogError> {
    let mut config = setup.config.clone();
    config
        .set("group.id", format!("{}-reader", setup.group))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    config.create().map_err(unavailable)
}

/// Reads the topic into the window until the tail is dropped; then leaves the group (which
/// revokes, and so writes, every partition's positions).
fn read_topic(consumer: BaseConsumer<Rebalancing>, state: Arc<TailState>, stop: Arc<AtomicBool>) {
    let mut last_report: Option<std::time::Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        let Some(first) = consumer.poll(POLL_WAIT) else {
            continue;
        };
        let mut batch = Vec::with_capacity(READ_BATCH);
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Ok(message) => batch.push(decode(&message)),
                Err(error) => {
                    report(&state.broker, &mut last_report, &error);
                    break;
                }
            }
            if batch.len() < READ_BATCH {
                next = consumer.poll(Duration::ZERO);
            }
        }
        state.push(batch);
    }
    consumer.unsubscribe();
    // Dropping the consumer closes it: it leaves the group (after the revocation above).
    drop(consumer);
}

/// Logs a consumer error, at most once per [`ERROR_REPORT_INTERVAL`].
fn report(broker: &BrokerKey, last: &mut Option<std::time::Instant>, error: &KafkaError) {
    if last.is_none_or(|at| at.elapsed() >= ERROR_REPORT_INTERVAL) {
        *last = Some(std::time::Instant::now());
        tracing::warn!(%broker, %error, "Kafka shared reader error (librdkafka retries by itself)");
    }
}

/// A message's partition, offset, value size and record (`None`: not a CloudEvent, logged
/// once here rather than once per trigger).
type Decoded = (i32, i64, usize, Option<Record>);

fn decode<M: Message>(message: &M) -> Decoded {
    let size = message.payload().map_or(0, <[u8]>::len);
    let record = match kafka_binding::decode(&kafka_record(message)) {
        Ok(record) => Some(record),
        Err(error) => {
            tracing::warn!(topic = message.topic(), partition = message.partition(), offset = message.offset(), %error, "skipping a record that is not a CloudEvent");
            None
        }
    };
    (message.partition(), message.offset(), size, record)
}

impl TailState {
    fn push(&self, batch: Vec<Decoded>) {
        if batch.is_empty() {
            return;
        }
        {
            let Ok(mut window) = self.window.lock() else {
                return;
            };
            for (partition, offset, size, record) in batch {
                match record {
                    Some(record) => {
                        window.push(self.setup.window_records, partition, offset, size, record)
                    }
                    None => window.skip(partition, offset),
                }
            }
        }
        self.changed.send_modify(|n| *n += 1);
    }

    fn cursors(&self) -> Vec<Arc<Mutex<Cursor>>> {
        self.members
            .lock()
            .map(|members| members.cursors.iter().filter_map(Weak::upgrade).collect())
            .unwrap_or_default()
    }

    /// Partitions are taken away: every trigger's position on them is written first.
    fn revoke(&self, partitions: &[i32]) {
        let mut wrote = false;
        for cursor in self.cursors() {
            let Ok(mut cursor) = cursor.lock() else {
                continue;
            };
            for partition in partitions {
                if let Some(part) = cursor.parts.remove(partition) {
                    let key = positions::key(&cursor.consumer, *partition);
                    let low = part.low_water();
                    wrote |= self
                        .setup
                        .positions
                        .set(&self.setup.positions_topic, key, Some(low))
                        .is_ok();
                }
            }
        }
        if let Ok(mut members) = self.members.lock() {
            for partition in partitions {
                members.assigned.remove(partition);
            }
        }
        if let Ok(mut window) = self.window.lock() {
            for partition in partitions {
                window.revoke(*partition);
            }
        }
        if wrote {
            if let Err(error) = self.setup.positions.flush_blocking(&self.runtime) {
                tracing::warn!(broker = %self.broker, %error, "writing positions of revoked partitions failed: their triggers will get what they had not finished again");
            }
        }
        self.changed.send_modify(|n| *n += 1);
    }

    /// Partitions are given: each starts at the lowest position of the triggers on it (from
    /// the positions topic, which the previous owner wrote before it let them go).
    fn assign(
        &self,
        consumer: &BaseConsumer<Rebalancing>,
        reader: &BaseConsumer,
        list: &mut TopicPartitionList,
    ) {
        let partitions: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
        let stored = positions::read(reader, &self.setup.positions_topic)
            .unwrap_or_else(|error| {
                tracing::warn!(broker = %self.broker, %error, "cannot read trigger positions; assigned partitions start where the triggers were opened");
                positions::Stored::new()
            });
        let Ok(mut members) = self.members.lock() else {
            return;
        };
        members.cursors.retain(|c| c.strong_count() > 0);
        let cursors: Vec<Arc<Mutex<Cursor>>> =
            members.cursors.iter().filter_map(Weak::upgrade).collect();
        let Ok(mut window) = self.window.lock() else {
            return;
        };
        for partition in partitions {
            let mut starts = Vec::new();
            for cursor in &cursors {
                let Ok(mut cursor) = cursor.lock() else {
                    continue;
                };
                let start = stored
                    .get(&cursor.consumer)
                    .and_then(|p| p.get(&partition))
                    .or_else(|| cursor.initial.get(&partition))
                    .copied();
                if let Some(start) = start {
                    cursor.parts.insert(partition, PartCursor::at(start));
                    starts.push(start);
                }
            }
            let start = match starts.iter().min() {
                Some(start) => *start,
                // No trigger has a position here (a partition added later): its end.
                None => consumer
                    .fetch_watermarks(&self.setup.topic, partition, REQUEST_TIMEOUT)
                    .map(|(_, high)| high)
                    .unwrap_or(0),
            };
            for cursor in &cursors {
                if let Ok(mut cursor) = cursor.lock() {
                    cursor
                        .parts
                        .entry(partition)
                        .or_insert_with(|| PartCursor::at(start));
                }
            }
            window.assign(partition, start);
            members.assigned.insert(partition);
            let _ = list.set_partition_offset(&self.setup.topic, partition, Offset::Offset(start));
        }
        drop(window);
        drop(members);
        self.changed.send_modify(|n| *n += 1);
    }
}

/// Handles the group's rebalances (eager: revoke all, then assign).
struct Rebalancing {
    state: Arc<TailState>,
    /// Reads the positions topic (the group member's own client cannot: `assign` on it would
    /// replace the group's assignment).
    reader: BaseConsumer,
}

impl ClientContext for Rebalancing {}

impl ConsumerContext for Rebalancing {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        list: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.state.assign(consumer, &self.reader, list);
                if let Err(error) = consumer.assign(list) {
                    tracing::warn!(broker = %self.state.broker, %error, "assigning partitions failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let partitions: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
                self.state.revoke(&partitions);
                if let Err(error) = consumer.unassign() {
                    tracing::warn!(broker = %self.state.broker, %error, "unassigning partitions failed");
                }
            }
            _ => {
                let partitions: Vec<i32> = self
                    .state
                    .members
                    .lock()
                    .map(|m| m.assigned.iter().copied().collect())
                    .unwrap_or_default();
                tracing::warn!(broker = %self.state.broker, error = ?err, "rebalance error; giving up the assignment");
                self.state.revoke(&partitions);
                let _ = consumer.unassign();
            }
        }
    }
}

/// A trigger's reader of its broker's tail.
pub(super) struct SharedConsumer {
    tail: Arc<Tail>,
    cursor: Arc<Mutex<Cursor>>,
    changed: watch::Receiver<u64>,
    /// While this trigger is behind the window on some partitions: its own reader of them,
    /// and where each was assigned from.
    behind: Option<(StreamConsumer, HashMap<i32, i64>)>,
    last_report: Option<std::time::Instant>,
}

enum Step {
    Records(Vec<LogRecord>),
    Wait,
    Behind(HashMap<i32, i64>),
}

fn log_record(partition: i32, offset: i64, record: Record) -> LogRecord {
    LogRecord {
        id: RecordId {
            partition: partition as u32,
            offset: offset as u64,
        },
        record,
    }
}

impl SharedConsumer {
    pub(super) fn new(tail: Arc<Tail>, cursor: Arc<Mutex<Cursor>>) -> Self {
        Self {
            changed: tail.state.changed.subscribe(),
            tail,
            cursor,
            behind: None,
            last_report: None,
        }
    }

    fn setup(&self) -> &TailSetup {
        &self.tail.state.setup
    }

    /// Hands out what the window holds from each partition's next offset on.
    fn take_from_window(&self, max: usize) -> Result<Step, LogError> {
        if self.tail.state.gone.load(Ordering::SeqCst) {
            return Err(LogError::UnknownBroker(self.tail.state.broker.clone()));
        }
        let window = self.tail.state.window.lock().map_err(|_| lock_poisoned())?;
        let mut cursor = self.cursor.lock().map_err(|_| lock_poisoned())?;
        let mut out = Vec::new();
        let mut behind = HashMap::new();
        for (partition, part) in cursor.parts.iter_mut() {
            let Some(win) = window.parts.get(partition) else {
                continue;
            };
            if part.next_read < win.covered_from {
                behind.insert(*partition, part.next_read);
                continue;
            }
            let start = win
                .records
                .partition_point(|(offset, _, _)| *offset < part.next_read);
            let mut all = true;
            for (offset, _, record) in win.records.range(start..) {
                if out.len() >= max {
                    all = false;
                    break;
                }
                out.push(log_record(*partition, *offset, record.clone()));
                part.pending.insert(*offset);
                part.next_read = offset + 1;
            }
            if all {
                // What is left up to the end was not a CloudEvent.
                part.next_read = part.next_read.max(win.end);
            }
        }
        Ok(if !out.is_empty() {
            Step::Records(out)
        } else if !behind.is_empty() {
            Step::Behind(behind)
        } else {
            Step::Wait
        })
    }

    /// A reader of its own for the partitions it is behind on, from its next offsets.
    fn read_behind(&mut self, parts: &HashMap<i32, i64>) -> Result<(), LogError> {
        let same = self.behind.as_ref().is_some_and(|(_, assigned)| {
            assigned.len() == parts.len() && assigned.keys().all(|p| parts.contains_key(p))
        });
        if same {
            return Ok(());
        }
        self.behind = None;
        let mut config = self.setup().config.clone();
        config
            .set("group.id", format!("{}-reader", self.setup().group))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false");
        let consumer: StreamConsumer = config.create().map_err(unavailable)?;
        let mut list = TopicPartitionList::new();
        for (partition, offset) in parts {
            list.add_partition_offset(&self.setup().topic, *partition, Offset::Offset(*offset))
                .map_err(unavailable)?;
        }
        consumer.assign(&list).map_err(unavailable)?;
        self.behind = Some((consumer, parts.clone()));
        Ok(())
    }

    /// Takes a message of the own reader if it is the trigger's next on its partition.
    fn take_owned(&self, message: &OwnedMessage, out: &mut Vec<LogRecord>) {
        let Ok(mut cursor) = self.cursor.lock() else {
            return;
        };
        let (partition, offset) = (message.partition(), message.offset());
        let Some(part) = cursor.parts.get_mut(&partition) else {
            return;
        };
        if offset < part.next_read {
            return;
        }
        part.next_read = offset + 1;
        let (_, _, _, record) = decode(message);
        if let Some(record) = record {
            part.pending.insert(offset);
            out.push(log_record(partition, offset, record));
        }
    }

    /// Positions that changed since they were last handed to the writer.
    fn hand_positions(&self) -> Result<(), LogError> {
        let mut cursor = self.cursor.lock().map_err(|_| lock_poisoned())?;
        let consumer = cursor.consumer.clone();
        for (partition, part) in cursor.parts.iter_mut() {
            let low = part.low_water();
            if low != part.committed {
                self.setup().positions.set(
                    &self.setup().positions_topic,
                    positions::key(&consumer, *partition),
                    Some(low),
                )?;
                part.committed = low;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl LogConsumer for SharedConsumer {
    /// Cancel-safe: records are handed out only when `poll` returns them, and the waits (the
    /// tail's change counter, the own reader's next message) lose nothing when dropped.
    async fn poll(&mut self, max: usize) -> Result<Vec<LogRecord>, LogError> {
        let max = max.max(1);
        loop {
            self.changed.borrow_and_update();
            let parts = match self.take_from_window(max)? {
                Step::Records(records) => return Ok(records),
                Step::Wait => {
                    self.behind = None;
                    self.changed
                        .changed()
                        .await
                        .map_err(|_| LogError::unavailable("the broker's shared reader stopped"))?;
                    continue;
                }
                Step::Behind(parts) => parts,
            };
            self.read_behind(&parts)?;
            let Some((reader, _)) = self.behind.take() else {
                continue;
            };
            let received = tokio::select! {
                received = reader.recv() => Some(received.map(|m| m.detach())),
                _ = self.changed.changed() => None,
            };
            let mut out = Vec::new();
            match received {
                Some(Ok(message)) => {
                    let mut messages = vec![message];
                    while messages.len() < max {
                        match reader.recv().now_or_never() {
                            Some(Ok(message)) => messages.push(message.detach()),
                            _ => break,
                        }
                    }
                    self.behind = Some((reader, parts));
                    for message in &messages {
                        self.take_owned(message, &mut out);
                    }
                }
                Some(Err(error)) => {
                    if self
                        .last_report
                        .is_none_or(|at| at.elapsed() >= ERROR_REPORT_INTERVAL)
                    {
                        self.last_report = Some(std::time::Instant::now());
                        tracing::warn!(topic = %self.setup().topic, %error, "Kafka reader error (librdkafka retries by itself)");
                    }
                    self.behind = Some((reader, parts));
                }
                None => self.behind = Some((reader, parts)),
            }
            if !out.is_empty() {
                return Ok(out);
            }
        }
    }

    async fn ack(&mut self, id: RecordId) -> Result<(), LogError> {
        let mut cursor = self.cursor.lock().map_err(|_| lock_poisoned())?;
        if let Some(part) = cursor.parts.get_mut(&(id.partition as i32)) {
            part.pending.remove(&(id.offset as i64));
        }
        Ok(())
    }

    /// Hands the contiguous low-water marks to the positions writer, which stores them within
    /// [`positions::FLUSH_DELAY`].
    async fn commit(&mut self) -> Result<(), LogError> {
        self.hand_positions()
    }

    fn lag(&self) -> Option<u64> {
        let window = self.tail.state.window.lock().ok()?;
        let cursor = self.cursor.lock().ok()?;
        let mut lag = 0u64;
        for (partition, part) in &cursor.parts {
            let end = window
                .parts
                .get(partition)
                .map_or(part.next_read, |w| w.end);
            lag += (end - part.next_read).max(0) as u64 + part.pending.len() as u64;
        }
        Some(lag)
    }
}

impl Drop for SharedConsumer {
    /// The last positions go to the writer; opening a consumer of the same name writes them
    /// before it reads its positions.
    fn drop(&mut self) {
        if let Err(error) = self.hand_positions() {
            tracing::warn!(%error, "the last positions of a trigger were not kept");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        crate::log::testsuite::sample("x")
    }

    #[test]
    fn the_window_keeps_the_newest_records_of_all_partitions() {
        let mut window = Window::default();
        window.assign(0, 10);
        window.assign(1, 0);
        window.push(3, 0, 10, 100, record());
        window.push(3, 1, 0, 100, record());
        window.push(3, 0, 11, 100, record());
        // Read again after a rebalance: not kept twice.
        window.push(3, 0, 11, 100, record());
        assert_eq!(window.order.len(), 3);
        window.push(3, 0, 12, 100, record());
        // The oldest (partition 0, offset 10) made room: partition 0 is covered from 11.
        assert_eq!(window.parts[&0].covered_from, 11);
        assert_eq!(window.parts[&0].end, 13);
        assert_eq!(window.parts[&1].covered_from, 0);
        assert_eq!(window.bytes, 300);
        // A record that is not a CloudEvent moves the end on.
        window.skip(1, 1);
        assert_eq!(window.parts[&1].end, 2);
        // A partition taken away leaves nothing behind.
        window.revoke(0);
        assert_eq!(window.bytes, 100);
        assert_eq!(window.order.len(), 1);
        window.push(3, 1, 2, 100, record());
        window.push(3, 1, 3, 100, record());
        assert_eq!(window.parts[&1].covered_from, 0);
        // Records of a partition not assigned are not kept.
        window.push(3, 0, 13, 100, record());
        assert_eq!(window.order.len(), 3);
    }

    #[test]
    fn a_position_waits_for_the_first_unfinished_record() {
        let mut part = PartCursor::at(5);
        assert_eq!(part.low_water(), 5);
        part.pending.extend([5, 6, 7]);
        part.next_read = 8;
        part.pending.remove(&6);
        assert_eq!(part.low_water(), 5);
        part.pending.remove(&5);
        assert_eq!(part.low_water(), 7);
        part.pending.remove(&7);
        assert_eq!(part.low_water(), 8);
    }
}
