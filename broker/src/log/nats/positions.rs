//! Trigger positions on JetStream: for each trigger of a broker read through the broker's
//! shared tail ([`super::shared`]), the next stream sequence it has to finish, one message per
//! trigger in the broker's positions stream (which keeps the last message of each subject).
//!
//! Commits are collected in memory and written together, pipelined, [`FLUSH_DELAY`] after the
//! first of them: 1,000 triggers committing every 100 ms cost one batch of publishes a
//! second instead of 10,000 awaited writes. A crash loses at most the commits of that last
//! second, which redelivers what finished in it (at-least-once, as a crash always did).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use tokio::sync::Notify;

use super::{unavailable, BrokerKey, LogError};
use crate::log::names::nats as names;

/// How long a commit waits for the write that makes it durable.
pub(super) const FLUSH_DELAY: Duration = Duration::from_secs(1);

pub(super) struct Positions {
    jetstream: jetstream::Context,
    /// Committed, not yet written: the position by its subject.
    dirty: Mutex<HashMap<String, u64>>,
    /// Wakes the writer when the first commit of a batch arrives.
    wake: Arc<Notify>,
    /// Held while a batch is written, and while a consumer or broker is forgotten, so that no
    /// write lands after its position was deleted.
    writing: tokio::sync::Mutex<()>,
    /// Positions streams known to exist (by stream name), so that a thousand triggers
    /// starting do not ask for it a thousand times.
    ensured: Mutex<std::collections::HashSet<String>>,
}

fn lock_poisoned() -> LogError {
    LogError::unavailable("the positions map lock is poisoned")
}

impl Positions {
    /// The positions and the task that writes them (aborted when the log is dropped).
    pub(super) fn start(jetstream: jetstream::Context) -> (Arc<Self>, tokio::task::AbortHandle) {
        let wake = Arc::new(Notify::new());
        let positions = Arc::new(Self {
            jetstream,
            dirty: Mutex::new(HashMap::new()),
            wake: wake.clone(),
            writing: tokio::sync::Mutex::new(()),
            ensured: Mutex::new(std::collections::HashSet::new()),
        });
        let writer = tokio::spawn(write_loop(Arc::downgrade(&positions), wake));
        (positions, writer.abort_handle())
    }

    /// Creates the broker's positions stream if it is missing (a broker made by an earlier
    /// version has none).
    pub(super) async fn ensure_stream(
        &self,
        broker: &BrokerKey,
        replicas: usize,
    ) -> Result<(), LogError> {
        let name = names::positions_stream(broker);
        if self
            .ensured
            .lock()
            .map_err(|_| lock_poisoned())?
            .contains(&name)
        {
            return Ok(());
        }
        self.jetstream
            .get_or_create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![names::positions_subjects(broker)],
                storage: stream::StorageType::File,
                num_replicas: replicas.max(1),
                max_messages_per_subject: 1,
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        self.ensured
            .lock()
            .map_err(|_| lock_poisoned())?
            .insert(name);
        Ok(())
    }

    /// The consumer's position: its last commit, written or not, else what the stream holds.
    pub(super) async fn read(
        &self,
        broker: &BrokerKey,
        consumer: &str,
    ) -> Result<Option<u64>, LogError> {
        let subject = names::position_subject(broker, consumer);
        if let Some(position) = self
            .dirty
            .lock()
            .map_err(|_| lock_poisoned())?
            .get(&subject)
        {
            return Ok(Some(*position));
        }
        // No stream info: one request per trigger fewer when a thousand start.
        let stream = self
            .jetstream
            .get_stream_no_info(names::positions_stream(broker))
            .await
            .map_err(unavailable)?;
        match stream.get_last_raw_message_by_subject(&subject).await {
            Ok(message) => std::str::from_utf8(&message.payload)
                .ok()
                .and_then(|text| text.parse().ok())
                .map(Some)
                .ok_or_else(|| LogError::corrupt(format!("the position in {subject}"))),
            Err(error) => match error.kind() {
                stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
                // A broker never read through the shared reader has no positions stream.
                stream::LastRawMessageErrorKind::JetStream(ref e)
                    if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(None)
                }
                _ => Err(unavailable(error)),
            },
        }
    }

    /// Writes a position and waits until JetStream has stored it: a consumer's starting point
    /// must be durable before it reads, or a crash could make it skip what came meanwhile.
    pub(super) async fn write_now(
        &self,
        broker: &BrokerKey,
        consumer: &str,
        position: u64,
    ) -> Result<(), LogError> {
        let subject = names::position_subject(broker, consumer);
        let _writing = self.writing.lock().await;
        self.jetstream
            .publish(subject.clone(), Bytes::from(position.to_string()))
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)?;
        // A commit still waiting for the writer is older than this start.
        self.dirty
            .lock()
            .map_err(|_| lock_poisoned())?
            .remove(&subject);
        Ok(())
    }

    /// Records a commit; the writer stores it within [`FLUSH_DELAY`].
    pub(super) fn commit(&self, subject: &str, position: u64) -> Result<(), LogError> {
        let mut dirty = self.dirty.lock().map_err(|_| lock_poisoned())?;
        let first = dirty.is_empty();
        dirty.insert(subject.to_owned(), position);
        drop(dirty);
        if first {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Writes every commit not yet written: all publishes are sent, then all acks awaited.
    /// What fails stays to be written again (unless a newer commit replaced it).
    pub(super) async fn flush(&self) -> Result<(), LogError> {
        let _writing = self.writing.lock().await;
        let batch: Vec<(String, u64)> = self
            .dirty
            .lock()
            .map_err(|_| lock_poisoned())?
            .drain()
            .collect();
        let mut acks = Vec::with_capacity(batch.len());
        let mut failed = Vec::new();
        let mut first_error = None;
        for (subject, position) in batch {
            match self
                .jetstream
                .publish(subject.clone(), Bytes::from(position.to_string()))
                .await
            {
                Ok(ack) => acks.push((subject, position, ack)),
                Err(error) => {
                    first_error.get_or_insert_with(|| unavailable(error));
                    failed.push((subject, position));
                }
            }
        }
        for (subject, position, ack) in acks {
            if let Err(error) = ack.await {
                first_error.get_or_insert_with(|| unavailable(error));
                failed.push((subject, position));
            }
        }
        match first_error {
            None => Ok(()),
            Some(error) => {
                let mut dirty = self.dirty.lock().map_err(|_| lock_poisoned())?;
                for (subject, position) in failed {
                    dirty.entry(subject).or_insert(position);
                }
                drop(dirty);
                self.wake.notify_one();
                Err(error)
            }
        }
    }

    /// Forgets a consumer's position, written or not.
    pub(super) async fn forget(&self, broker: &BrokerKey, consumer: &str) -> Result<(), LogError> {
        let subject = names::position_subject(broker, consumer);
        let _writing = self.writing.lock().await;
        self.dirty
            .lock()
            .map_err(|_| lock_poisoned())?
            .remove(&subject);
        match self
            .jetstream
            .get_stream(names::positions_stream(broker))
            .await
        {
            Ok(stream) => {
                stream.purge().filter(subject).await.map_err(unavailable)?;
                Ok(())
            }
            Err(error) => match error.kind() {
                jetstream::context::GetStreamErrorKind::JetStream(ref e)
                    if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(())
                }
                _ => Err(unavailable(error)),
            },
        }
    }

    /// Forgets every position of a broker and deletes its positions stream.
    pub(super) async fn forget_broker(&self, broker: &BrokerKey) -> Result<(), LogError> {
        let prefix = names::positions_subjects(broker);
        let prefix = prefix.trim_end_matches('*');
        let _writing = self.writing.lock().await;
        self.dirty
            .lock()
            .map_err(|_| lock_poisoned())?
            .retain(|subject, _| !subject.starts_with(prefix));
        self.ensured
            .lock()
            .map_err(|_| lock_poisoned())?
            .remove(&names::positions_stream(broker));
        if let Err(error) = self
            .jetstream
            .delete_stream(names::positions_stream(broker))
            .await
        {
            let not_found = matches!(
                error.kind(),
                jetstream::context::DeleteStreamErrorKind::JetStream(ref e)
                    if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            );
            if !not_found {
                return Err(unavailable(error));
            }
        }
        Ok(())
    }
}

/// Writes batches of commits: woken by the first commit of a batch, it waits [`FLUSH_DELAY`]
/// so the batch can fill, then writes it. Nothing runs while nothing is committed.
async fn write_loop(positions: Weak<Positions>, wake: Arc<Notify>) {
    loop {
        wake.notified().await;
        tokio::time::sleep(FLUSH_DELAY).await;
        let Some(positions) = positions.upgrade() else {
            return;
        };
        if let Err(error) = positions.flush().await {
            tracing::warn!(%error, "writing trigger positions to JetStream failed; retrying");
        }
    }
}
