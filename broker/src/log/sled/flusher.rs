//! Makes committed trigger offsets durable without a flush per commit: the first commit
//! after a flush arms one flush [`OFFSET_FLUSH`] later, which covers every commit made
//! meanwhile (with many triggers, a flush per trigger per commit was the cost of fan-out).
//! Nothing is armed while nothing is committed, so an idle log has no timer here.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::database::Database;
use super::signal::Woken;

/// How long after a commit its offset is durable at the latest (README: Delivery).
pub(super) const OFFSET_FLUSH: Duration = Duration::from_millis(200);

/// The flusher loop; returns once the database's `offsets_written` signal is stopped
/// (`close` flushes what is left).
pub(super) fn run_offset_flusher(database: Arc<Database>) {
    let signal = &database.offsets_written;
    loop {
        if signal.wait(None) == Woken::Stopped {
            return;
        }
        if !signal.sleep_until(Instant::now() + OFFSET_FLUSH) {
            return;
        }
        // Commits made while it waited are covered by this flush: take their raise.
        if signal.wait(Some(Instant::now())) == Woken::Stopped {
            return;
        }
        // While the database reopens there is nothing to flush: positions wait for the
        // first commit after it (see `SledConsumer::commit`).
        let Ok(handles) = database.handles() else {
            continue;
        };
        match handles.db.flush() {
            Ok(_) => {
                database.offset_flushes.fetch_add(1, Ordering::SeqCst);
            }
            Err(error) => {
                // Marks the database failed; the writer reopens it.
                let _ = database.storage(error);
            }
        }
    }
}
