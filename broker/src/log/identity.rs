//! The identity of an event for duplicate suppression: a digest of its `source` and `id`,
//! which the logs return from `recent_ids` and the catalog's window keeps.

use crate::event::CloudEvent;
use crate::log::BrokerKey;

/// Counter of events answered 202 without being appended because their (`source`, `id`) was
/// stored within the window, by namespace and broker (NATS brokers count JetStream's drops).
pub const DUPLICATES_DROPPED: &str = "herald_duplicates_dropped_total";

/// Counts `n` dropped duplicates of a broker.
pub fn count_dropped(broker: &BrokerKey, n: u64) {
    if n > 0 {
        metrics::counter!(DUPLICATES_DROPPED, "namespace" => broker.namespace.clone(), "broker" => broker.name.clone())
            .increment(n);
    }
}

/// The identity of an event within a broker: a digest of its `source` and `id`.
pub type IdKey = [u8; 16];

/// The key of (`source`, `id`): lengths are hashed too, so no two pairs collide by
/// concatenation.
pub fn id_key(source: &str, id: &str) -> IdKey {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(&(source.len() as u64).to_be_bytes());
    context.update(source.as_bytes());
    context.update(id.as_bytes());
    let digest = context.finish();
    let mut key = [0; 16];
    key.copy_from_slice(&digest.as_ref()[..16]);
    key
}

pub fn event_key(event: &CloudEvent) -> IdKey {
    id_key(&event.text("source").unwrap_or_default(), &event.id())
}
