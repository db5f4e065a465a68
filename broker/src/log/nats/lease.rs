//! Which Herald process reads a broker through its shared reader.
//!
//! Durable consumers share a trigger's events among the processes that read it; a shared
//! reader ([`super::shared`]) does not, so two Herald processes on one NATS would each deliver
//! every event. A lease per broker makes one process the reader at a time: a key in a
//! JetStream key-value bucket whose values live [`LEASE_TTL`], created by the process that
//! takes the lease and rewritten (compare-and-set on its revision) every third of that. The
//! others try again at the same pace and take over once the key has expired, within
//! [`LEASE_TTL`] plus a third of it after the holder died. A holder that cannot rewrite the
//! key in time, or finds another's revision, stops reading at once (at-least-once: what it
//! had in flight may be delivered again by the next holder, never lost).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use tokio::sync::{watch, OnceCell};
use tokio::time::Instant;

use super::{unavailable, BrokerKey, LogError};
use crate::log::names::nats as names;

/// How long a lease lives without being renewed.
pub(super) const LEASE_TTL: Duration = Duration::from_secs(10);

/// The leases of one Herald process.
pub(super) struct Leases {
    jetstream: jetstream::Context,
    /// This process, as the lease's value ([`super::NatsOptions::instance`]): a lease found
    /// with this value is this instance's from before a restart, and is taken back at once.
    holder: Bytes,
    ttl: Duration,
    bucket: OnceCell<kv::Store>,
}

/// While held: the lease's epoch, which grows each time this process takes the lease again,
/// so that a reader can tell it must reload the positions another holder may have moved.
pub(super) type Held = Option<u64>;

impl Leases {
    /// Leases held as `instance`, or as a random name (a restarted process then waits for
    /// its predecessor's lease to expire).
    pub(super) fn new(
        jetstream: jetstream::Context,
        ttl: Duration,
        instance: Option<&str>,
    ) -> Self {
        let holder = match instance {
            Some(instance) => instance.to_owned(),
            None => format!("{}@{}", std::process::id(), uuid::Uuid::new_v4()),
        };
        Self {
            jetstream,
            holder: Bytes::from(holder),
            ttl,
            bucket: OnceCell::new(),
        }
    }

    async fn bucket(&self) -> Result<&kv::Store, LogError> {
        self.bucket
            .get_or_try_init(|| async {
                if let Ok(store) = self.jetstream.get_key_value(names::LEASES_BUCKET).await {
                    return Ok(store);
                }
                self.jetstream
                    .create_key_value(kv::Config {
                        bucket: names::LEASES_BUCKET.to_owned(),
                        description: "Herald: which process reads each broker's stream".into(),
                        history: 1,
                        max_age: self.ttl,
                        storage: jetstream::stream::StorageType::File,
                        ..Default::default()
                    })
                    .await
                    .map_err(unavailable)
            })
            .await
    }

    /// Starts keeping the broker's lease: the receiver says whether this process holds it;
    /// the task ends when the handle is aborted (the broker's tail is dropped).
    pub(super) fn keep(
        self: &Arc<Self>,
        broker: &BrokerKey,
    ) -> (watch::Receiver<Held>, tokio::task::AbortHandle) {
        let (sender, receiver) = watch::channel(None);
        let task = tokio::spawn(keep_leased(
            self.clone(),
            broker.clone(),
            names::stream(broker),
            sender,
        ));
        (receiver, task.abort_handle())
    }
}

/// Takes the lease whenever it is free and keeps it while it can.
async fn keep_leased(
    leases: Arc<Leases>,
    broker: BrokerKey,
    key: String,
    held: watch::Sender<Held>,
) {
    let pace = leases.ttl / 3;
    let mut epoch = 0;
    let mut waiting_logged = false;
    loop {
        let store = match leases.bucket().await {
            Ok(store) => store,
            Err(error) => {
                tracing::warn!(broker = %broker, %error, "cannot reach the reader leases; again soon");
                tokio::time::sleep(pace).await;
                continue;
            }
        };
        let mut revision = match store.create(&key, leases.holder.clone()).await {
            Ok(revision) => revision,
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => {
                match take_back(store, &key, &leases.holder).await {
                    Some(revision) => revision,
                    None => {
                        if !waiting_logged {
                            tracing::info!(broker = %broker, "another Herald reads this broker; standing by");
                            waiting_logged = true;
                        }
                        tokio::time::sleep(pace).await;
                        continue;
                    }
                }
            }
            Err(error) => {
                tracing::warn!(broker = %broker, %error, "taking the reader lease failed; again soon");
                tokio::time::sleep(pace).await;
                continue;
            }
        };
        let mut renewed = Instant::now();
        epoch += 1;
        waiting_logged = false;
        held.send_replace(Some(epoch));
        tracing::info!(broker = %broker, "this Herald reads the broker's stream for its triggers");
        loop {
            tokio::time::sleep(pace).await;
            match store.update(&key, leases.holder.clone(), revision).await {
                Ok(next) => {
                    revision = next;
                    renewed = Instant::now();
                }
                Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    tracing::warn!(broker = %broker, "the reader lease passed to another Herald; standing by");
                    break;
                }
                // The key may still be ours: try again until it would have expired.
                Err(error) if renewed.elapsed() + pace < leases.ttl => {
                    tracing::warn!(broker = %broker, %error, "renewing the reader lease failed; again soon");
                }
                Err(error) => {
                    tracing::warn!(broker = %broker, %error, "the reader lease expired unrenewed; standing by");
                    break;
                }
            }
        }
        held.send_replace(None);
    }
}

/// The lease's new revision when the key holds this instance's own lease from before a
/// restart; `None` when another holds it (or it cannot be read now).
async fn take_back(store: &kv::Store, key: &str, holder: &Bytes) -> Option<u64> {
    let entry = store.entry(key).await.ok()??;
    if entry.operation != kv::Operation::Put || entry.value != *holder {
        return None;
    }
    store.update(key, holder.clone(), entry.revision).await.ok()
}
