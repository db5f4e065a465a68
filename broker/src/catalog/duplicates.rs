//! Herald's duplicate window for backends without one of their own (the embedded log, Kafka):
//! a producer that retries after a lost 202 sends the same (`source`, `id`) again, and the
//! copy is answered 202 without being appended.
//!
//! The window holds the 128-bit SHA-256 prefix of each (`source`, `id`) stored in the last
//! `window` time, at most `max_ids` of them (the oldest go first). An id is reserved before its
//! append and marked stored only after the append is durable: a concurrent copy waits for that
//! outcome (it is a duplicate if the append succeeded, and tries itself if it failed), so two
//! copies racing in are never both appended nor both dropped. The std lock is held only for
//! map operations, never across an await. After a restart the window is rebuilt from the
//! log's recent records (see [`crate::EventLog::recent_ids`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use crate::event::CloudEvent;
use crate::log::BrokerKey;

/// Default `herald.dev/duplicate-window-ids`.
pub const DEFAULT_MAX_IDS: usize = 100_000;
/// Largest `herald.dev/duplicate-window-ids` accepted.
pub const MAX_IDS_LIMIT: usize = 10_000_000;
pub use crate::log::identity::{count_dropped, event_key, id_key, IdKey, DUPLICATES_DROPPED};

/// The window's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowBounds {
    pub window: Duration,
    pub max_ids: usize,
}

enum Slot {
    /// An append of this id is under way; its outcome is announced by dropping the sender.
    Pending(watch::Receiver<()>),
    /// Stored at this time.
    Stored(Instant),
}

#[derive(Default)]
struct State {
    slots: HashMap<IdKey, Slot>,
    /// Stored ids, oldest first.
    order: VecDeque<(IdKey, Instant)>,
}

impl State {
    fn evict(&mut self, now: Instant, bounds: WindowBounds) {
        while let Some(&(key, stored)) = self.order.front() {
            let expired = now.saturating_duration_since(stored) >= bounds.window;
            if !expired && self.order.len() <= bounds.max_ids {
                break;
            }
            self.order.pop_front();
            if matches!(self.slots.get(&key), Some(Slot::Stored(at)) if *at == stored) {
                self.slots.remove(&key);
            }
        }
    }

    fn store(&mut self, key: IdKey, at: Instant, bounds: WindowBounds) {
        self.slots.insert(key, Slot::Stored(at));
        self.order.push_back((key, at));
        self.evict(at, bounds);
    }
}

/// One broker's window.
pub struct DuplicateWindow {
    broker: BrokerKey,
    bounds: WindowBounds,
    state: Mutex<State>,
}

/// What [`DuplicateWindow::admit`] decided for a batch: which events to append, and the
/// reservations to confirm once the append is durable (dropping them releases the ids).
pub struct Admission<'a> {
    pub fresh: Vec<bool>,
    reserved: Vec<(IdKey, watch::Sender<()>)>,
    window: &'a DuplicateWindow,
}

impl Admission<'_> {
    pub fn duplicates(&self) -> usize {
        self.fresh.iter().filter(|fresh| !**fresh).count()
    }

    /// The append was durable: the reserved ids are stored now.
    pub fn confirm(mut self) {
        let now = Instant::now();
        let reserved = std::mem::take(&mut self.reserved);
        if let Ok(mut state) = self.window.state.lock() {
            for (key, _) in &reserved {
                state.store(*key, now, self.window.bounds);
            }
        }
        // The senders drop here, waking the copies that waited on these ids.
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if self.reserved.is_empty() {
            return;
        }
        if let Ok(mut state) = self.window.state.lock() {
            for (key, _) in &self.reserved {
                if matches!(state.slots.get(key), Some(Slot::Pending(_))) {
                    state.slots.remove(key);
                }
            }
        }
    }
}

impl DuplicateWindow {
    pub fn new(broker: BrokerKey, bounds: WindowBounds) -> Self {
        Self {
            broker,
            bounds,
            state: Mutex::new(State::default()),
        }
    }

    pub fn bounds(&self) -> WindowBounds {
        self.bounds
    }

    /// Ids in the window.
    pub fn len(&self) -> usize {
        self.state.lock().map(|s| s.order.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds an id read back from the log (oldest first), stored at `arrived`.
    pub fn remember(&self, key: IdKey, arrived: SystemTime) {
        let now = Instant::now();
        let age = SystemTime::now()
            .duration_since(arrived)
            .unwrap_or(Duration::ZERO);
        if age >= self.bounds.window {
            return;
        }
        let at = now.checked_sub(age).unwrap_or(now);
        if let Ok(mut state) = self.state.lock() {
            state.store(key, at, self.bounds);
        }
    }

    /// Decides for each event whether it is new. Ids are reserved in ascending order, so two
    /// batches that wait on each other's ids cannot wait in a circle.
    pub async fn admit(&self, events: &[CloudEvent]) -> Admission<'_> {
        let keys: Vec<IdKey> = events.iter().map(event_key).collect();
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_by_key(|&i| (keys[i], i));
        let mut admission = Admission {
            fresh: vec![false; keys.len()],
            reserved: Vec::new(),
            window: self,
        };
        let mut previous: Option<IdKey> = None;
        for index in order {
            let key = keys[index];
            // A second copy within the same batch.
            if previous == Some(key) {
                continue;
            }
            previous = Some(key);
            loop {
                let mut outcome = {
                    let Ok(mut state) = self.state.lock() else {
                        // A poisoned window admits everything rather than refusing events.
                        admission.fresh[index] = true;
                        break;
                    };
                    let now = Instant::now();
                    state.evict(now, self.bounds);
                    match state.slots.get(&key) {
                        Some(Slot::Stored(_)) => break,
                        Some(Slot::Pending(receiver)) => receiver.clone(),
                        None => {
                            let (sender, receiver) = watch::channel(());
                            state.slots.insert(key, Slot::Pending(receiver));
                            admission.reserved.push((key, sender));
                            admission.fresh[index] = true;
                            break;
                        }
                    }
                };
                // The other append's outcome: its sender is dropped either way.
                while outcome.changed().await.is_ok() {}
            }
        }
        count_dropped(&self.broker, admission.duplicates() as u64);
        admission
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn event(source: &str, id: &str) -> CloudEvent {
        let mut event = CloudEvent::new();
        event.set("source", source);
        event.set("id", id);
        event.set("type", "t");
        event
    }

    fn window(window: Duration, max_ids: usize) -> DuplicateWindow {
        DuplicateWindow::new(BrokerKey::new("ns", "b"), WindowBounds { window, max_ids })
    }

    #[tokio::test]
    async fn a_stored_id_is_a_duplicate_and_a_failed_one_is_not() {
        let w = window(Duration::from_secs(60), 10);
        let a = w
            .admit(&[event("/s", "1"), event("/s", "1"), event("/s", "2")])
            .await;
        assert_eq!(a.fresh, [true, false, true]);
        a.confirm();
        let again = w.admit(&[event("/s", "1"), event("/t", "1")]).await;
        assert_eq!(again.fresh, [false, true]);
        // The append failed: the id is free again.
        drop(again);
        assert_eq!(w.admit(&[event("/t", "1")]).await.fresh, [true]);
    }

    #[tokio::test]
    async fn a_concurrent_copy_waits_for_the_outcome() {
        let w = Arc::new(window(Duration::from_secs(60), 10));
        let first = w.admit(&[event("/s", "1")]).await;
        let waiter = {
            let w = w.clone();
            tokio::spawn(async move { w.admit(&[event("/s", "1")]).await.fresh.clone() })
        };
        // The copy cannot finish while the first append is under way.
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        first.confirm();
        assert_eq!(waiter.await.unwrap(), [false]);

        let failing = w.admit(&[event("/s", "2")]).await;
        let waiter = {
            let w = w.clone();
            tokio::spawn(async move {
                let admission = w.admit(&[event("/s", "2")]).await;
                let fresh = admission.fresh.clone();
                admission.confirm();
                fresh
            })
        };
        drop(failing);
        assert_eq!(
            waiter.await.unwrap(),
            [true],
            "the copy is appended after a failure"
        );
    }

    #[tokio::test]
    async fn bounds_evict_the_oldest() {
        let w = window(Duration::from_secs(60), 3);
        for id in 0..5 {
            w.admit(&[event("/s", &id.to_string())]).await.confirm();
        }
        assert_eq!(w.len(), 3);
        assert_eq!(w.admit(&[event("/s", "0")]).await.fresh, [true]);
        let w = window(Duration::from_millis(0), 3);
        w.admit(&[event("/s", "0")]).await.confirm();
        assert_eq!(w.admit(&[event("/s", "0")]).await.fresh, [true]);
    }

    #[tokio::test]
    async fn remembered_ids_count_until_they_age_out() {
        let w = window(Duration::from_secs(60), 10);
        w.remember(event_key(&event("/s", "1")), SystemTime::now());
        w.remember(
            event_key(&event("/s", "2")),
            SystemTime::now() - Duration::from_secs(120),
        );
        let a = w.admit(&[event("/s", "1"), event("/s", "2")]).await;
        assert_eq!(a.fresh, [false, true]);
    }

    #[test]
    fn keys_do_not_collide_by_concatenation() {
        assert_ne!(id_key("/a", "b/c"), id_key("/ab", "/c"));
    }
}
