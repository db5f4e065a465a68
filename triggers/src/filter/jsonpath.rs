//! Herald's `jsonpath` dialect: an RFC 9535 JSONPath over the event's data.

use herald_broker::CloudEvent;
use jsonpath_rust::parser::model::JpQuery;
use jsonpath_rust::parser::parse_json_path;
use jsonpath_rust::query::js_path_process;

/// Matches when the event's data is JSON and the query selects at least one node.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonPathFilter {
    query: JpQuery,
}

impl JsonPathFilter {
    /// Parses the query once; the error text says what is wrong with it.
    pub fn parse(query: &str) -> Result<Self, String> {
        parse_json_path(query)
            .map(|query| Self { query })
            .map_err(|e| e.to_string())
    }

    pub fn matches(&self, event: &CloudEvent) -> bool {
        let Some(data) = event.data() else {
            return false;
        };
        let Ok(document) = serde_json::from_slice::<serde_json::Value>(data) else {
            return false;
        };
        js_path_process(&self.query, &document).is_ok_and(|nodes| !nodes.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: &[u8]) -> CloudEvent {
        let mut e = CloudEvent::new();
        e.set_data(Some(bytes::Bytes::copy_from_slice(data)));
        e
    }

    #[test]
    fn selects_nodes_in_json_data() {
        let big = JsonPathFilter::parse("$.items[?(@.qty > 10)]").unwrap();
        assert!(big.matches(&event(br#"{"items":[{"qty":3},{"qty":12}]}"#)));
        assert!(!big.matches(&event(br#"{"items":[{"qty":3}]}"#)));
        let tier = JsonPathFilter::parse("$.customer.tier").unwrap();
        assert!(tier.matches(&event(br#"{"customer":{"tier":"gold"}}"#)));
        assert!(!tier.matches(&event(br#"{"customer":{}}"#)));
        assert!(
            !tier.matches(&event(b"not json")),
            "data that is not JSON does not match"
        );
        assert!(!tier.matches(&CloudEvent::new()), "no data does not match");
        assert!(JsonPathFilter::parse("$.[").is_err());
    }
}
