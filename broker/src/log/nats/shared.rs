//! One reader of a broker's stream for all of its triggers.
//!
//! A durable JetStream consumer per trigger made nats-server deliver, track and take an ack
//! for every event once per trigger: with 1,000 triggers that was the larger part of each
//! delivery's cost. Here a broker's [`Tail`] reads the stream once, with an ordered consumer
//! (ephemeral, no acks), into a bounded window of the newest records; every trigger's
//! [`SharedConsumer`] reads that window at its own pace, as the embedded log's triggers read
//! its segment files. A trigger that falls out of the window (a slow or failing subscriber)
//! never holds the others back: it reads from the stream through an ordered consumer of its
//! own until it is back within the window. Each trigger's position (the next sequence it has
//! to finish, a contiguous low-water mark) is kept durably in the broker's positions stream
//! ([`super::positions`]).
//!
//! One Herald process at a time reads a broker this way: the holder of the broker's lease
//! ([`super::lease`]). The triggers of the others wait, and load their positions again when
//! their process takes the lease.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::{self, stream::Stream};
use async_trait::async_trait;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::watch;

use super::lease::{Held, Leases};
use super::positions::Positions;
use super::{unavailable, BrokerKey, LogConsumer, LogError, LogRecord, RecordId};
use crate::log::names::nats as names;
use crate::record::Record;

/// Records a tail keeps for its triggers, at most.
pub(super) const WINDOW_RECORDS: usize = 4_096;
/// Bytes (stored records) a tail keeps for its triggers, at most.
pub(super) const WINDOW_BYTES: usize = 32 << 20;
/// Records a tail takes from its consumer before it wakes the triggers.
const READ_BATCH: usize = 256;

/// The live tails of a log, by stream name.
pub(super) struct Tails {
    live: Mutex<HashMap<String, Weak<Tail>>>,
    /// Records each tail keeps (tests make it small).
    window_records: usize,
    leases: Arc<Leases>,
}

fn lock_poisoned() -> LogError {
    LogError::unavailable("a tail lock is poisoned")
}

impl Tails {
    pub(super) fn new(leases: Arc<Leases>, window_records: usize) -> Self {
        Self {
            live: Mutex::new(HashMap::new()),
            window_records: window_records.max(1),
            leases,
        }
    }

    #[cfg(test)]
    pub(super) fn leases(&self) -> Arc<Leases> {
        self.leases.clone()
    }

    /// The broker's tail, started at `next` (the sequence after the stream's last) if none
    /// runs.
    pub(super) fn get_or_start(
        &self,
        broker: &BrokerKey,
        stream: &Stream,
        next: u64,
    ) -> Result<Arc<Tail>, LogError> {
        let mut live = self.live.lock().map_err(|_| lock_poisoned())?;
        let name = names::stream(broker);
        if let Some(tail) = live.get(&name).and_then(Weak::upgrade) {
            return Ok(tail);
        }
        live.retain(|_, tail| tail.strong_count() > 0);
        let tail = Tail::start(
            broker.clone(),
            stream.clone(),
            next,
            self.window_records,
            &self.leases,
        );
        live.insert(name, Arc::downgrade(&tail));
        Ok(tail)
    }

    /// The broker's stream is deleted: its tail's consumers get [`LogError::UnknownBroker`],
    /// and a broker of the same name made again gets a new tail.
    pub(super) fn forget(&self, broker: &BrokerKey) -> Result<(), LogError> {
        let tail = self
            .live
            .lock()
            .map_err(|_| lock_poisoned())?
            .remove(&names::stream(broker))
            .and_then(|tail| tail.upgrade());
        if let Some(tail) = tail {
            tail.state.ring.lock().map_err(|_| lock_poisoned())?.gone = true;
            tail.state.next.send_modify(|_| {});
            tail.lease_keeper.abort();
        }
        Ok(())
    }
}

/// A broker's shared reader and its window of records.
pub(super) struct Tail {
    broker: BrokerKey,
    state: Arc<TailState>,
    reader: tokio::task::AbortHandle,
    /// Whether this process holds the broker's lease, and since when (its epoch).
    lease: watch::Receiver<Held>,
    lease_keeper: tokio::task::AbortHandle,
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.reader.abort();
        self.lease_keeper.abort();
    }
}

struct TailState {
    window_records: usize,
    ring: Mutex<Window>,
    /// The sequence after the newest record read: what caught-up consumers wait on.
    next: watch::Sender<u64>,
}

struct Window {
    /// Every record of the stream from this sequence on that the tail has read is in
    /// `records`: a consumer whose next sequence is below it reads from the stream itself.
    covered_from: u64,
    /// Oldest first: sequence, stored size, record.
    records: VecDeque<(u64, usize, Record)>,
    bytes: usize,
    /// The broker's stream was deleted.
    gone: bool,
}

impl Tail {
    fn start(
        broker: BrokerKey,
        stream: Stream,
        next: u64,
        window_records: usize,
        leases: &Arc<Leases>,
    ) -> Arc<Self> {
        let state = Arc::new(TailState {
            window_records,
            ring: Mutex::new(Window {
                covered_from: next,
                records: VecDeque::new(),
                bytes: 0,
                gone: false,
            }),
            next: watch::channel(next).0,
        });
        let (lease, lease_keeper) = leases.keep(&broker);
        let reader = tokio::spawn(read_stream(
            broker.clone(),
            stream,
            state.clone(),
            lease.clone(),
        ));
        Arc::new(Self {
            broker,
            state,
            reader: reader.abort_handle(),
            lease,
            lease_keeper,
        })
    }
}

impl TailState {
    fn push(&self, mut batch: Vec<(u64, usize, Record)>) {
        // An ordered consumer recreated before its first message starts again at the
        // stream's beginning: what was read already is dropped, so the window stays in order.
        let mut from = *self.next.borrow();
        batch.retain(|(sequence, _, _)| {
            let new = *sequence >= from;
            if new {
                from = sequence + 1;
            }
            new
        });
        let Some(last) = batch.last().map(|(sequence, _, _)| *sequence) else {
            return;
        };
        {
            let Ok(mut window) = self.ring.lock() else {
                return;
            };
            for entry in batch {
                window.bytes += entry.1;
                window.records.push_back(entry);
            }
            while window.records.len() > self.window_records || window.bytes > WINDOW_BYTES {
                let Some((sequence, size, _)) = window.records.pop_front() else {
                    break;
                };
                window.bytes -= size;
                window.covered_from = sequence + 1;
            }
        }
        self.next.send_replace(last + 1);
    }
}

/// Reads the stream from the tail's next sequence into its window, for as long as the tail
/// lives, from the first time this process holds the broker's lease (a process standing by
/// reads nothing); a failed read starts again a second later where it stopped.
async fn read_stream(
    broker: BrokerKey,
    stream: Stream,
    state: Arc<TailState>,
    mut lease: watch::Receiver<Held>,
) {
    if lease.wait_for(Option::is_some).await.is_err() {
        return;
    }
    loop {
        let start = *state.next.borrow();
        let error = match ordered_reader(&stream, start).await {
            Ok(mut messages) => loop {
                let first = match messages.next().await {
                    Some(Ok(message)) => message,
                    Some(Err(error)) => break unavailable(error),
                    None => break LogError::unavailable("the tail's consumer ended"),
                };
                let mut batch = Vec::with_capacity(READ_BATCH);
                let mut failed = None;
                let mut next = Some(first);
                while let Some(message) = next.take() {
                    match decode(&message) {
                        Ok(Some(entry)) => batch.push(entry),
                        Ok(None) => {}
                        Err(error) => {
                            failed = Some(error);
                            break;
                        }
                    }
                    if batch.len() < READ_BATCH {
                        match messages.next().now_or_never() {
                            Some(Some(Ok(message))) => next = Some(message),
                            Some(Some(Err(error))) => failed = Some(unavailable(error)),
                            _ => {}
                        }
                    }
                }
                state.push(batch);
                if let Some(error) = failed {
                    break error;
                }
            },
            Err(error) => error,
        };
        tracing::warn!(broker = %broker, %error, "reading the broker's stream failed; again in 1s");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// An ordered consumer of the stream from `start` on: ephemeral and without acks, so the
/// server keeps no per-message state for it.
async fn ordered_reader(stream: &Stream, start: u64) -> Result<pull::Ordered, LogError> {
    stream
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: start.max(1),
            },
            ..Default::default()
        })
        .await
        .map_err(unavailable)?
        .messages()
        .await
        .map_err(unavailable)
}

/// A message's sequence, stored size and record. A record that cannot be decoded is logged
/// and skipped (`None`): it would fail the same way for every trigger on every read.
fn decode(message: &jetstream::Message) -> Result<Option<(u64, usize, Record)>, LogError> {
    let sequence = message.info().map_err(unavailable)?.stream_sequence;
    match Record::decode(message.payload.clone()) {
        Ok(record) => Ok(Some((sequence, message.payload.len(), record))),
        Err(error) => {
            tracing::error!(sequence, %error, "a stored record cannot be decoded; skipped");
            Ok(None)
        }
    }
}

/// Loads a trigger's position when its process takes the broker's lease: the stored one, or
/// where a new trigger starts (made durable before it is returned).
pub(super) type LoadPosition =
    Box<dyn Fn() -> futures_util::future::BoxFuture<'static, Result<u64, LogError>> + Send + Sync>;

/// A trigger's reader of its broker's tail.
pub(super) struct SharedConsumer {
    tail: Arc<Tail>,
    tail_next: watch::Receiver<u64>,
    lease: watch::Receiver<Held>,
    /// The lease epoch the position below was loaded in; `None` before the first load.
    epoch: Held,
    load_position: LoadPosition,
    stream: Stream,
    /// While this consumer is behind the tail's window: its own reader of the stream.
    behind: Option<pull::Ordered>,
    next_read: u64,
    /// Polled, not yet acknowledged.
    pending: BTreeSet<u64>,
    /// The position last handed to `positions`.
    committed: u64,
    positions: Arc<Positions>,
    subject: String,
}

enum Step {
    Records(Vec<LogRecord>),
    Wait,
    Behind,
}

impl SharedConsumer {
    pub(super) fn new(
        tail: Arc<Tail>,
        stream: Stream,
        positions: Arc<Positions>,
        consumer: &str,
        load_position: LoadPosition,
    ) -> Self {
        let subject = names::position_subject(&tail.broker, consumer);
        Self {
            tail_next: tail.state.next.subscribe(),
            lease: tail.lease.clone(),
            epoch: None,
            load_position,
            tail,
            stream,
            behind: None,
            next_read: 0,
            pending: BTreeSet::new(),
            committed: 0,
            positions,
            subject,
        }
    }

    /// Waits until this process holds the broker's lease, and loads the position again when
    /// the lease was taken since the last load (another holder may have moved it meanwhile).
    /// Cancel-safe: nothing changes until the load is done.
    async fn hold_lease(&mut self) -> Result<(), LogError> {
        loop {
            let held = *self.lease.borrow_and_update();
            match held {
                Some(_) if held == self.epoch => return Ok(()),
                Some(_) => {
                    let position = (self.load_position)().await?;
                    self.behind = None;
                    self.pending.clear();
                    self.next_read = position;
                    self.committed = position;
                    self.epoch = held;
                    return Ok(());
                }
                None => {
                    if self
                        .tail
                        .state
                        .ring
                        .lock()
                        .map_err(|_| lock_poisoned())?
                        .gone
                    {
                        return Err(LogError::UnknownBroker(self.tail.broker.clone()));
                    }
                    tokio::select! {
                        changed = self.lease.changed() => changed
                            .map_err(|_| LogError::unavailable("the broker's lease keeper stopped"))?,
                        _ = self.tail_next.changed() => {}
                    }
                }
            }
        }
    }

    /// Takes what the window holds from `next_read` on, if `next_read` is within it.
    fn take_from_window(&self, max: usize) -> Result<Step, LogError> {
        let window = self.tail.state.ring.lock().map_err(|_| lock_poisoned())?;
        if window.gone {
            return Err(LogError::UnknownBroker(self.tail.broker.clone()));
        }
        if self.next_read < window.covered_from {
            return Ok(Step::Behind);
        }
        let start = window
            .records
            .partition_point(|(sequence, _, _)| *sequence < self.next_read);
        let out: Vec<LogRecord> = window
            .records
            .range(start..)
            .take(max)
            .map(|(sequence, _, record)| LogRecord {
                id: RecordId {
                    partition: 0,
                    offset: *sequence,
                },
                record: record.clone(),
            })
            .collect();
        Ok(if out.is_empty() {
            Step::Wait
        } else {
            Step::Records(out)
        })
    }

    /// Reads from the stream itself, from `next_read` on.
    async fn take_from_stream(&mut self, max: usize) -> Result<Vec<LogRecord>, LogError> {
        if self.behind.is_none() {
            self.behind = Some(ordered_reader(&self.stream, self.next_read).await?);
        }
        let Some(behind) = self.behind.as_mut() else {
            return Ok(Vec::new());
        };
        let mut messages = Vec::new();
        match behind.next().await {
            Some(Ok(message)) => messages.push(message),
            Some(Err(error)) => {
                self.behind = None;
                return Err(unavailable(error));
            }
            None => {
                self.behind = None;
                return Err(LogError::unavailable("the stream's reader ended"));
            }
        }
        while messages.len() < max {
            match behind.next().now_or_never() {
                Some(Some(Ok(message))) => messages.push(message),
                _ => break,
            }
        }
        let mut out = Vec::with_capacity(messages.len());
        // In order and new only (see `TailState::push`).
        let mut from = self.next_read;
        for message in &messages {
            if let Some((sequence, _, record)) = decode(message)? {
                if sequence >= from {
                    from = sequence + 1;
                    out.push(LogRecord {
                        id: RecordId {
                            partition: 0,
                            offset: sequence,
                        },
                        record,
                    });
                }
            }
        }
        Ok(out)
    }

    fn hand_out(&mut self, records: &[LogRecord]) {
        if let Some(last) = records.last() {
            self.next_read = last.id.offset + 1;
        }
        self.pending.extend(records.iter().map(|r| r.id.offset));
    }
}

#[async_trait]
impl LogConsumer for SharedConsumer {
    /// Cancel-safe: records are handed out only when `poll` returns them, and the waits
    /// (the tail's next sequence, the own reader's next message) lose nothing when dropped.
    async fn poll(&mut self, max: usize) -> Result<Vec<LogRecord>, LogError> {
        let max = max.max(1);
        loop {
            self.hold_lease().await?;
            // A lost lease ends any wait below: the next holder reads from here on.
            let mut lease = self.lease.clone();
            self.tail_next.borrow_and_update();
            match self.take_from_window(max)? {
                Step::Records(records) => {
                    self.behind = None;
                    self.hand_out(&records);
                    return Ok(records);
                }
                Step::Wait => {
                    self.behind = None;
                    tokio::select! {
                        changed = self.tail_next.changed() => changed
                            .map_err(|_| LogError::unavailable("the broker's tail stopped"))?,
                        _ = lease.changed() => {}
                    }
                }
                Step::Behind => {
                    let records = tokio::select! {
                        records = self.take_from_stream(max) => records?,
                        _ = lease.changed() => continue,
                    };
                    if !records.is_empty() {
                        self.hand_out(&records);
                        return Ok(records);
                    }
                }
            }
        }
    }

    async fn ack(&mut self, id: RecordId) -> Result<(), LogError> {
        self.pending.remove(&id.offset);
        Ok(())
    }

    /// Hands the contiguous low-water mark to the positions writer, which stores it within
    /// [`super::positions::FLUSH_DELAY`].
    async fn commit(&mut self) -> Result<(), LogError> {
        // Positions belong to the lease's holder: after a loss, the next holder's count.
        if self.epoch.is_none() || *self.lease.borrow() != self.epoch {
            return Ok(());
        }
        let low_water = self.pending.first().copied().unwrap_or(self.next_read);
        if low_water != self.committed {
            self.positions.commit(&self.subject, low_water)?;
            self.committed = low_water;
        }
        Ok(())
    }

    fn lag(&self) -> Option<u64> {
        self.epoch?;
        let tail_next = *self.tail_next.borrow();
        Some(tail_next.saturating_sub(self.next_read) + self.pending.len() as u64)
    }
}
