//! The `event_type` label of ingress metrics, bounded per broker.
//!
//! A producer chooses the `type` of its events, so a label taken from it verbatim would let
//! one client grow `/metrics` and the process without limit (every label set is a series
//! kept for the life of the process). Each broker keeps the first types it sees as labels,
//! up to a limit, and counts every later type under [`OTHER_EVENT_TYPES`], as Knative's own
//! metrics keep their label sets bounded.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use crate::BrokerKey;

/// The label value of every event type past a broker's limit.
pub const OTHER_EVENT_TYPES: &str = "_other";

/// Distinct `event_type` labels per broker by default (`--metrics-max-event-types`).
pub const DEFAULT_MAX_EVENT_TYPES: usize = 100;

/// The event types each broker has labels for.
#[derive(Debug)]
pub struct EventTypeLabels {
    limit: usize,
    seen: RwLock<HashMap<BrokerKey, HashSet<String>>>,
}

impl EventTypeLabels {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            seen: RwLock::new(HashMap::new()),
        }
    }

    /// The label for `event_type` on `broker`: the type itself while the broker has fewer
    /// than the limit of types (or already has this one), else [`OTHER_EVENT_TYPES`].
    pub fn label(&self, broker: &BrokerKey, event_type: String) -> String {
        let known = self
            .seen
            .read()
            .map(|seen| seen.get(broker).map(|types| types.contains(&event_type)));
        match known {
            Ok(Some(true)) => return event_type,
            Err(_) => return OTHER_EVENT_TYPES.to_owned(),
            Ok(_) => {}
        }
        let Ok(mut seen) = self.seen.write() else {
            return OTHER_EVENT_TYPES.to_owned();
        };
        let types = seen.entry(broker.clone()).or_default();
        if types.contains(&event_type) {
            event_type
        } else if types.len() < self.limit {
            types.insert(event_type.clone());
            event_type
        } else {
            OTHER_EVENT_TYPES.to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_past_the_limit_share_one_label_per_broker() {
        let labels = EventTypeLabels::new(2);
        let a = BrokerKey::new("ns", "a");
        let b = BrokerKey::new("ns", "b");
        assert_eq!(labels.label(&a, "t1".into()), "t1");
        assert_eq!(labels.label(&a, "t2".into()), "t2");
        assert_eq!(labels.label(&a, "t3".into()), OTHER_EVENT_TYPES);
        assert_eq!(
            labels.label(&a, "t1".into()),
            "t1",
            "a known type keeps its label"
        );
        assert_eq!(
            labels.label(&b, "t3".into()),
            "t3",
            "the limit is per broker"
        );
    }

    #[test]
    fn a_limit_of_zero_labels_nothing() {
        let labels = EventTypeLabels::new(0);
        let a = BrokerKey::new("ns", "a");
        assert_eq!(labels.label(&a, "t".into()), OTHER_EVENT_TYPES);
    }
}
