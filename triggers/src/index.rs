//! An index of trigger filters by the exact `type` (or else `source`) they require, so that an
//! event is fully evaluated only against the triggers that could take it.

use std::collections::HashMap;

use herald_broker::CloudEvent;

use crate::filter::Filter;

pub struct TriggerIndex<K> {
    by_type: HashMap<String, Vec<(K, Filter)>>,
    by_source: HashMap<String, Vec<(K, Filter)>>,
    /// Filters that pin neither: always evaluated.
    rest: Vec<(K, Filter)>,
}

impl<K: Clone> TriggerIndex<K> {
    pub fn new(entries: impl IntoIterator<Item = (K, Filter)>) -> Self {
        let mut index = Self {
            by_type: HashMap::new(),
            by_source: HashMap::new(),
            rest: Vec::new(),
        };
        for (key, filter) in entries {
            if let Some(t) = filter.required_exact("type") {
                index
                    .by_type
                    .entry(t.to_owned())
                    .or_default()
                    .push((key, filter));
            } else if let Some(s) = filter.required_exact("source") {
                index
                    .by_source
                    .entry(s.to_owned())
                    .or_default()
                    .push((key, filter));
            } else {
                index.rest.push((key, filter));
            }
        }
        index
    }

    /// The keys of every trigger whose filter takes the event.
    pub fn matching(&self, event: &CloudEvent) -> Vec<K> {
        let candidates = bucket(&self.by_type, event, "type")
            .iter()
            .chain(bucket(&self.by_source, event, "source"))
            .chain(&self.rest);
        candidates
            .filter(|(_, filter)| filter.matches(event))
            .map(|(key, _)| key.clone())
            .collect()
    }
}

fn bucket<'m, K>(
    map: &'m HashMap<String, Vec<(K, Filter)>>,
    event: &CloudEvent,
    attribute: &str,
) -> &'m [(K, Filter)] {
    event
        .text(attribute)
        .and_then(|value| map.get(value.as_ref()))
        .map(Vec::as_slice)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::TriggerIndex;
    use crate::filter::tests::{any_event, spec, tree};
    use crate::filter::{compile, Filter};
    use herald_crds::SubscriptionsApiFilter;
    use herald_crds::TriggerSpec;

    proptest! {
    #[test]
    fn index_decides_like_evaluating_every_trigger(
        trees in prop::collection::vec(
            (tree(), prop::option::of(prop::sample::select(vec!["a", "b", "ab"]))), 1..20),
        e in any_event(),
    ) {
        let filters: Vec<Filter> = trees.into_iter().map(|(f, pinned)| {
            let mut elements = vec![f];
            if let Some(t) = pinned {
                elements.push(SubscriptionsApiFilter { exact: Some([("type".to_owned(), t.to_owned())].into()), ..Default::default() });
            }
            compile(&TriggerSpec { filters: elements, ..spec("[]") }).unwrap()
        }).collect();
        let index = TriggerIndex::new(filters.iter().enumerate().map(|(i, f)| (i, f.clone())));
        let mut indexed = index.matching(&e);
        indexed.sort_unstable();
        let every: Vec<usize> = filters.iter().enumerate().filter(|(_, f)| f.matches(&e)).map(|(i, _)| i).collect();
        prop_assert_eq!(indexed, every);
    }
    }
}
