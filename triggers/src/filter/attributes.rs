//! `spec.filter.attributes`: Knative's spec semantics (the legacy filter).

use herald_broker::CloudEvent;

/// Every listed attribute must be present; a non-empty value must equal the attribute's
/// string form exactly; an empty value matches any value (but the attribute must be there).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttributesFilter {
    required: Vec<(String, String)>,
}

impl AttributesFilter {
    pub fn new<I: IntoIterator<Item = (String, String)>>(attributes: I) -> Self {
        Self {
            required: attributes.into_iter().collect(),
        }
    }

    /// The value an attribute must have exactly, if the filter pins it.
    pub fn required(&self, attribute: &str) -> Option<&str> {
        self.required
            .iter()
            .find(|(name, value)| name == attribute && !value.is_empty())
            .map(|(_, value)| value.as_str())
    }

    pub fn matches(&self, event: &CloudEvent) -> bool {
        self.required
            .iter()
            .all(|(name, wanted)| match event.attribute(name) {
                None => false,
                Some(value) => wanted.is_empty() || value.as_text() == wanted.as_str(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_broker::AttrValue;

    fn event() -> CloudEvent {
        let mut e = CloudEvent::new();
        e.set("type", "order.created");
        e.set("source", "/shop");
        e.set("subject", "");
        e.set("count", AttrValue::Integer(3));
        e
    }

    fn filter(pairs: &[(&str, &str)]) -> AttributesFilter {
        AttributesFilter::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn exact_and_empty_value_rules() {
        type Case = (&'static [(&'static str, &'static str)], bool, &'static str);
        let cases: [Case; 9] = [
            (&[], true, "no attributes: everything passes"),
            (&[("type", "order.created")], true, "exact match"),
            (&[("type", "order.deleted")], false, "other value"),
            (&[("type", "Order.created")], false, "case-sensitive"),
            (&[("source", "")], true, "empty value: any value"),
            (
                &[("subject", "")],
                true,
                "empty value matches a present empty attribute",
            ),
            (
                &[("missing", "")],
                false,
                "empty value still needs the attribute",
            ),
            (
                &[("count", "3")],
                true,
                "typed values compare by string form",
            ),
            (
                &[("type", "order.created"), ("source", "/other")],
                false,
                "all must match",
            ),
        ];
        for (pairs, expected, why) in cases {
            assert_eq!(filter(pairs).matches(&event()), expected, "{why}");
        }
    }
}
