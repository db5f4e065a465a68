//! The `event_type` label of ingress metrics, bounded per broker.
//!
//! A producer chooses the `type` of its events, so a label taken from it verbatim would let
//! one client grow `/metrics` and the process without limit (every label set is a series
//! kept for the life of the process). Each broker keeps the first types it sees as labels,
//! up to a limit, and counts every later type under [`OTHER_EVENT_TYPES`], as Knative's own
//! metrics keep their label sets bounded.

use std::collections::HashMap;
use std::sync::RwLock;

use metrics::Counter;

use crate::BrokerKey;

/// The label value of every event type past a broker's limit.
pub const OTHER_EVENT_TYPES: &str = "_other";

/// Distinct `event_type` labels per broker by default (`--metrics-max-event-types`).
pub const DEFAULT_MAX_EVENT_TYPES: usize = 100;

/// The event types each broker has labels for, each with its counter handle: looking a
/// counter up by its labels allocates the label strings and hashes them in the recorder,
/// which was a visible part of every ingress request; a handle is one atomic add.
#[derive(Debug)]
pub struct EventTypeLabels {
    limit: usize,
    brokers: RwLock<HashMap<BrokerKey, BrokerTypes>>,
}

#[derive(Debug, Default)]
struct BrokerTypes {
    known: HashMap<String, Counter>,
    /// The counter of every type past the limit, made on first use.
    other: Option<Counter>,
}

impl EventTypeLabels {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            brokers: RwLock::new(HashMap::new()),
        }
    }

    /// The counter for `event_type` on `broker`: the type's own while the broker has fewer
    /// than the limit of types (or already has this one), else the one labelled
    /// [`OTHER_EVENT_TYPES`]. `make` builds a counter for a label, once per label.
    pub fn counter(
        &self,
        broker: &BrokerKey,
        event_type: &str,
        make: impl FnOnce(&str) -> Counter,
    ) -> Counter {
        if let Ok(brokers) = self.brokers.read() {
            if let Some(types) = brokers.get(broker) {
                if let Some(counter) = types.known.get(event_type) {
                    return counter.clone();
                }
                if let (true, Some(other)) = (types.known.len() >= self.limit, &types.other) {
                    return other.clone();
                }
            }
        }
        let Ok(mut brokers) = self.brokers.write() else {
            return make(OTHER_EVENT_TYPES);
        };
        if !brokers.contains_key(broker) {
            brokers.insert(broker.clone(), BrokerTypes::default());
        }
        let Some(types) = brokers.get_mut(broker) else {
            return make(OTHER_EVENT_TYPES);
        };
        if let Some(counter) = types.known.get(event_type) {
            counter.clone()
        } else if types.known.len() < self.limit {
            let counter = make(event_type);
            types.known.insert(event_type.to_owned(), counter.clone());
            counter
        } else {
            types
                .other
                .get_or_insert_with(|| make(OTHER_EVENT_TYPES))
                .clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Counters that write their label into `hits` when incremented.
    struct Hits(Arc<Mutex<Vec<String>>>);

    struct LabelledCounter {
        label: String,
        hits: Arc<Mutex<Vec<String>>>,
    }

    impl metrics::CounterFn for LabelledCounter {
        fn increment(&self, _: u64) {
            self.hits.lock().unwrap().push(self.label.clone());
        }
        fn absolute(&self, _: u64) {}
    }

    impl Hits {
        /// Counts one `event_type` event on `broker` and says which label took it.
        fn count(&self, labels: &EventTypeLabels, broker: &BrokerKey, event_type: &str) -> String {
            let hits = self.0.clone();
            labels
                .counter(broker, event_type, |label| {
                    Counter::from_arc(Arc::new(LabelledCounter {
                        label: label.to_owned(),
                        hits,
                    }))
                })
                .increment(1);
            self.0.lock().unwrap().pop().unwrap()
        }
    }

    #[test]
    fn types_past_the_limit_share_one_label_per_broker() {
        let hits = Hits(Arc::default());
        let labels = EventTypeLabels::new(2);
        let a = BrokerKey::new("ns", "a");
        let b = BrokerKey::new("ns", "b");
        assert_eq!(hits.count(&labels, &a, "t1"), "t1");
        assert_eq!(hits.count(&labels, &a, "t2"), "t2");
        assert_eq!(hits.count(&labels, &a, "t3"), OTHER_EVENT_TYPES);
        assert_eq!(hits.count(&labels, &a, "t4"), OTHER_EVENT_TYPES);
        assert_eq!(
            hits.count(&labels, &a, "t1"),
            "t1",
            "a known type keeps its label"
        );
        assert_eq!(
            hits.count(&labels, &b, "t3"),
            "t3",
            "the limit is per broker"
        );
    }

    #[test]
    fn a_counter_is_made_once_per_label() {
        let labels = EventTypeLabels::new(1);
        let a = BrokerKey::new("ns", "a");
        let mut made = Vec::new();
        for event_type in ["t1", "t1", "t2", "t3", "t1"] {
            let _counter = labels.counter(&a, event_type, |label| {
                made.push(label.to_owned());
                Counter::noop()
            });
        }
        assert_eq!(made, ["t1", OTHER_EVENT_TYPES]);
    }

    #[test]
    fn a_limit_of_zero_labels_nothing() {
        let hits = Hits(Arc::default());
        let labels = EventTypeLabels::new(0);
        let a = BrokerKey::new("ns", "a");
        assert_eq!(hits.count(&labels, &a, "t"), OTHER_EVENT_TYPES);
    }
}
