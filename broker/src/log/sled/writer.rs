//! The writer thread: group commit, and reopening the database after an I/O error.
//!
//! It takes every append request waiting in its bounded queue, inserts them, and flushes
//! once for all of them; each gets its answer only after the flush that covers it, and the
//! durable mark consumers read up to moves only after a flush succeeded. The writer alone
//! numbers records, so it is also the one that reopens a failed database and renumbers
//! from what the disk holds, with no append in between.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::database::{Database, REOPENING};
use super::BrokerTree;
use crate::log::LogError;

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
    pub records: Vec<Vec<u8>>,
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

/// Inserts and flushes a batch, then answers it: all `Ok`, or all failed when anything
/// failed (an error means "maybe stored", so the callers' retries are at-least-once).
fn commit(database: &Database, batch: Vec<AppendRequest>) {
    match insert_and_flush(database, &batch) {
        Ok(()) => {
            for request in &batch {
                let next = request.broker.next.load(Ordering::SeqCst);
                let moved = request.broker.durable.send_if_modified(|durable| {
                    let moved = *durable < next;
                    *durable = (*durable).max(next);
                    moved
                });
                if moved {
                    crate::log::record_log_size(&request.broker.key, next);
                    request.broker.wake_retention(database);
                }
            }
            for request in batch {
                let _ = request.done.send(Ok(()));
            }
        }
        Err(error) => {
            let message = error.to_string();
            for request in batch {
                let _ = request
                    .done
                    .send(Err(LogError::Unavailable(message.clone())));
            }
        }
    }
}

fn insert_and_flush(database: &Database, batch: &[AppendRequest]) -> Result<(), LogError> {
    let handles = database.handles()?;
    for request in batch {
        let tree = database.tree(&request.broker)?;
        for record in &request.records {
            let offset = request.broker.next.fetch_add(1, Ordering::SeqCst);
            tree.insert(offset.to_be_bytes(), record.as_slice())
                .map_err(|e| database.storage(e))?;
        }
    }
    handles.db.flush().map_err(|e| database.storage(e))?;
    Ok(())
}

/// Drops the failed database and opens it again until that works, answering appends that
/// were already queued as unavailable meanwhile. Returns `false` if the log closed instead.
fn reopen(database: &Database, rx: &mut mpsc::Receiver<WriterMessage>) -> bool {
    database.close_handles();
    let mut delay = REOPEN_FIRST_DELAY;
    let mut attempts = 0u32;
    loop {
        let next_attempt = Instant::now() + delay;
        while Instant::now() < next_attempt {
            if !refuse_queued(rx) {
                return false;
            }
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
                delay = (delay * 2).min(REOPEN_MAX_DELAY);
            }
        }
    }
}

/// Answers every queued append as unavailable; `false` once the log is closing.
fn refuse_queued(rx: &mut mpsc::Receiver<WriterMessage>) -> bool {
    loop {
        match rx.try_recv() {
            Ok(WriterMessage::Append(request)) => {
                let _ = request
                    .done
                    .send(Err(LogError::Unavailable(REOPENING.into())));
            }
            Ok(WriterMessage::Reopen) => {}
            Ok(WriterMessage::Close) | Err(mpsc::error::TryRecvError::Disconnected) => {
                return false
            }
            Err(mpsc::error::TryRecvError::Empty) => return true,
        }
    }
}
