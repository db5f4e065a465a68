//! The writer thread: group commit, and reopening the log after an I/O error.
//!
//! It takes every append request waiting in its bounded queue, writes each broker's records
//! with one write and syncs each touched segment file once; each request gets its answer
//! only after the sync that covers it, and the durable mark consumers read up to moves only
//! after every sync of the batch succeeded. The writer alone numbers records, so it is also
//! the one that reopens a failed log and renumbers from the durable marks, with no append
//! in between.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::{mpsc, oneshot};

use super::database::{Database, REOPENING};
use super::segments::AppendError;
use super::BrokerTree;
use crate::log::{Cause, LogError};

/// Most requests one group commit takes.
const MAX_BATCH_REQUESTS: usize = 1024;
/// First wait between attempts to reopen a failed database; it doubles up to the maximum.
const REOPEN_FIRST_DELAY: Duration = Duration::from_millis(100);
/// Longest wait between attempts: how long after the disk has room again appends resume.
const REOPEN_MAX_DELAY: Duration = Duration::from_secs(1);
/// How often the writer looks at its queue while waiting to reopen.
const QUEUE_CHECK: Duration = Duration::from_millis(20);

/// What the writer thread is asked to do.
pub(super) enum WriterMessage {
    Append(AppendRequest),
    /// The database failed: reopen it (sent by whoever saw the I/O error).
    Reopen,
    /// Finish the current batch and stop; later appends fail as unavailable.
    Close,
}

pub(super) struct AppendRequest {
    pub broker: Arc<BrokerTree>,
    /// The records' frames, one after the other.
    pub frames: Vec<u8>,
    /// Where each frame ends in `frames`.
    pub ends: Vec<u64>,
    pub done: oneshot::Sender<Result<(), LogError>>,
}

/// The writer loop: group commits while the database works, reopening while it does not;
/// returns on `Close` or when the log is dropped.
pub(super) fn run_writer(database: Arc<Database>, mut rx: mpsc::Receiver<WriterMessage>) {
    loop {
        if database.is_failed() && !reopen(&database, &mut rx) {
            return;
        }
        let mut batch = Vec::new();
        let mut closing = false;
        match rx.blocking_recv() {
            None | Some(WriterMessage::Close) => return,
            Some(WriterMessage::Reopen) => continue,
            Some(WriterMessage::Append(request)) => batch.push(request),
        }
        while batch.len() < MAX_BATCH_REQUESTS {
            match rx.try_recv() {
                Ok(WriterMessage::Append(request)) => batch.push(request),
                Ok(WriterMessage::Reopen) => {}
                Ok(WriterMessage::Close) => {
                    closing = true;
                    break;
                }
                Err(_) => break,
            }
        }
        commit(&database, batch);
        if closing {
            return;
        }
    }
}

/// Writes and syncs a batch, then answers it: all `Ok`, or all failed when anything failed
/// (an error means "maybe stored", so the callers' retries are at-least-once). Requests
/// for a broker deleted meanwhile are answered on their own.
fn commit(database: &Database, batch: Vec<AppendRequest>) {
    if let Err(error) = database.check_writable() {
        for request in batch {
            let _ = request
                .done
                .send(Err(LogError::unavailable(error.to_string())));
        }
        return;
    }
    // Each broker's requests in the order they came, written together.
    let mut groups: Vec<(Arc<BrokerTree>, Vec<AppendRequest>)> = Vec::new();
    for request in batch {
        match groups
            .iter_mut()
            .find(|(broker, _)| Arc::ptr_eq(broker, &request.broker))
        {
            Some((_, requests)) => requests.push(request),
            None => groups.push((request.broker.clone(), vec![request])),
        }
    }
    let mut failure = None;
    let mut written = Vec::with_capacity(groups.len());
    for (broker, requests) in groups {
        if failure.is_some() {
            written.push((broker, requests));
            continue;
        }
        match write_and_sync(&broker, &requests) {
            Ok(()) => written.push((broker, requests)),
            Err(AppendError::Deleted) => {
                for request in requests {
                    let _ = request
                        .done
                        .send(Err(LogError::UnknownBroker(broker.key.clone())));
                }
            }
            Err(AppendError::Io(error)) => {
                failure = Some((broker.key.to_string(), Arc::new(error)));
                written.push((broker, requests));
            }
        }
    }
    if let Some((broker, error)) = failure {
        // The reopen cuts off what this batch wrote and numbers from the durable marks.
        database.fail(&format!("{broker}: {error}"));
        for request in written.into_iter().flat_map(|(_, requests)| requests) {
            let _ = request.done.send(Err(
                LogError::unavailable(broker.clone()).caused_by(Cause::Io(error.clone()))
            ));
        }
        return;
    }
    for (broker, requests) in written {
        let next = broker.next.load(Ordering::SeqCst);
        let moved = broker.durable.send_if_modified(|durable| {
            let moved = *durable < next;
            *durable = (*durable).max(next);
            moved
        });
        if moved {
            crate::log::record_log_size(&broker.key, next);
            broker.wake_retention(database);
        }
        for request in requests {
            let _ = request.done.send(Ok(()));
        }
    }
}

/// Writes the records of one broker's requests with one write, syncs them, and numbers
/// them.
fn write_and_sync(broker: &BrokerTree, requests: &[AppendRequest]) -> Result<(), AppendError> {
    let next = broker.next.load(Ordering::SeqCst);
    let count: usize = requests.iter().map(|r| r.ends.len()).sum();
    if let [request] = requests {
        broker
            .segments
            .append(&request.frames, &request.ends, next)?;
    } else {
        let mut frames = Vec::with_capacity(requests.iter().map(|r| r.frames.len()).sum());
        let mut ends = Vec::with_capacity(count);
        for request in requests {
            let at = frames.len() as u64;
            frames.extend_from_slice(&request.frames);
            ends.extend(request.ends.iter().map(|end| at + end));
        }
        broker.segments.append(&frames, &ends, next)?;
    }
    broker.next.store(next + count as u64, Ordering::SeqCst);
    Ok(())
}

/// Drops the failed database and opens it again until that works, answering appends that
/// were already queued as unavailable meanwhile. Returns `false` if the log closed instead.
fn reopen(database: &Database, rx: &mut mpsc::Receiver<WriterMessage>) -> bool {
    database.close_handles();
    let mut delays = ExponentialBuilder::new()
        .with_min_delay(REOPEN_FIRST_DELAY)
        .with_max_delay(REOPEN_MAX_DELAY)
        .without_max_times()
        .build();
    let mut attempts = 0u32;
    loop {
        let next_attempt = Instant::now() + delays.next().unwrap_or(REOPEN_MAX_DELAY);
        while Instant::now() < next_attempt {
            if !refuse_queued(rx) {
                return false;
            }
            #[allow(
                clippy::disallowed_methods,
                reason = "the writer's own thread, not async"
            )]
            std::thread::sleep(
                QUEUE_CHECK.min(next_attempt.saturating_duration_since(Instant::now())),
            );
        }
        attempts += 1;
        match database.reopen() {
            Ok(()) => return true,
            Err(error) => {
                // The first failures and then about one a minute: a full disk may last.
                if attempts <= 3 || attempts.is_multiple_of(60) {
                    tracing::warn!(%error, attempts, "the embedded log cannot be reopened yet");
                }
            }
        }
    }
}

/// Answers every queued append as unavailable; `false` once the log is closing.
fn refuse_queued(rx: &mut mpsc::Receiver<WriterMessage>) -> bool {
    loop {
        match rx.try_recv() {
            Ok(WriterMessage::Append(request)) => {
                let _ = request.done.send(Err(LogError::unavailable(REOPENING)));
            }
            Ok(WriterMessage::Reopen) => {}
            Ok(WriterMessage::Close) | Err(mpsc::error::TryRecvError::Disconnected) => {
                return false
            }
            Err(mpsc::error::TryRecvError::Empty) => return true,
        }
    }
}
