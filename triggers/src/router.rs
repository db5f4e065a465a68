//! Shared filter decisions for the triggers of one broker.
//!
//! Every trigger reads its broker's log on its own (so a slow subscriber never holds back the
//! others), which would mean one filter evaluation per trigger per event. The router instead
//! decides once per record for all of its triggers, through the [`TriggerIndex`], and keeps
//! the decision for the other triggers' dispatchers in a small bounded cache.

use std::collections::HashMap;
use std::sync::Mutex;

use herald_broker::{CloudEvent, RecordId};

use crate::index::TriggerIndex;
use crate::Filter;

/// Decisions kept per router: enough for triggers that are near each other in the log.
pub const DECISION_CACHE_RECORDS: usize = 4096;

/// A cached decision: the record and the sorted slots of the triggers that take it.
type Decision = Option<(RecordId, Box<[usize]>)>;

pub struct TriggerRouter {
    index: TriggerIndex<usize>,
    slots: HashMap<String, usize>,
    /// Decisions by `offset % DECISION_CACHE_RECORDS`: the record they are for and the sorted
    /// slots of the triggers that take it. A ring, so lookups hash nothing.
    decisions: Mutex<Vec<Decision>>,
}

impl TriggerRouter {
    /// Builds the router of one broker from its triggers' names and compiled filters.
    pub fn new(triggers: impl IntoIterator<Item = (String, Filter)>) -> Self {
        let mut slots = HashMap::new();
        let mut filters = Vec::new();
        for (slot, (name, filter)) in triggers.into_iter().enumerate() {
            slots.insert(name, slot);
            filters.push((slot, filter));
        }
        Self {
            index: TriggerIndex::new(filters),
            slots,
            decisions: Mutex::new(vec![None; DECISION_CACHE_RECORDS]),
        }
    }

    /// The slot of a trigger, looked up once by its dispatcher; `None` if the router does not
    /// know it (then the trigger's own filter decides).
    pub fn slot(&self, name: &str) -> Option<usize> {
        self.slots.get(name).copied()
    }

    /// Whether the trigger in `slot` takes the record: the first trigger to ask computes the
    /// decision for all of them through the index; the others read it.
    pub fn takes(
        &self,
        slot: Option<usize>,
        own_filter: &Filter,
        id: RecordId,
        event: &CloudEvent,
    ) -> bool {
        let Some(slot) = slot else {
            return own_filter.matches(event);
        };
        let position = (id.offset % DECISION_CACHE_RECORDS as u64) as usize;
        if let Ok(decisions) = self.decisions.lock() {
            if let Some((cached_id, matching)) = &decisions[position] {
                if *cached_id == id {
                    return matching.binary_search(&slot).is_ok();
                }
            }
        }
        let mut matching = self.index.matching(event);
        matching.sort_unstable();
        let takes = matching.binary_search(&slot).is_ok();
        if let Ok(mut decisions) = self.decisions.lock() {
            decisions[position] = Some((id, matching.into_boxed_slice()));
        }
        takes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::compile;

    fn filter(ty: &str) -> Filter {
        let yaml = format!(
            "broker: b\nsubscriber: {{uri: 'http://x/'}}\nfilters: [{{exact: {{type: {ty}}}}}]\n"
        );
        compile(&serde_yaml_ng::from_str(&yaml).unwrap()).unwrap()
    }

    fn event(ty: &str) -> CloudEvent {
        let mut e = CloudEvent::new();
        e.set("type", ty);
        e
    }

    #[test]
    fn decides_once_per_record_for_every_trigger() {
        let router =
            TriggerRouter::new([("a".to_owned(), filter("x")), ("b".to_owned(), filter("y"))]);
        let (a, b) = (router.slot("a"), router.slot("b"));
        let id = RecordId {
            partition: 0,
            offset: 1,
        };
        assert!(router.takes(a, &filter("x"), id, &event("x")));
        // The decision for record 1 is cached: b is judged by it, not by the event passed now.
        assert!(!router.takes(b, &filter("y"), id, &event("y")));
        // Another record is decided afresh.
        assert!(router.takes(
            b,
            &filter("y"),
            RecordId {
                partition: 0,
                offset: 2
            },
            &event("y")
        ));
        // Unknown triggers fall back to their own filter.
        assert_eq!(router.slot("c"), None);
        assert!(router.takes(None, &filter("z"), id, &event("z")));
    }

    #[test]
    fn slots_that_collide_in_the_ring_are_recomputed() {
        let router = TriggerRouter::new([("a".to_owned(), filter("x"))]);
        let a = router.slot("a");
        let first = RecordId {
            partition: 0,
            offset: 5,
        };
        let same_slot = RecordId {
            partition: 0,
            offset: 5 + DECISION_CACHE_RECORDS as u64,
        };
        assert!(router.takes(a, &filter("x"), first, &event("x")));
        assert!(!router.takes(a, &filter("x"), same_slot, &event("other")));
        assert!(
            router.takes(a, &filter("x"), first, &event("x")),
            "recomputed after eviction"
        );
    }
}
