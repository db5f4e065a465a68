//! Herald's `jsonpath` dialect: an RFC 9535 JSONPath over the event's data.

use herald_broker::CloudEvent;
use jsonpath_rust::parser::errors::JsonPathError as ParseError;
use jsonpath_rust::parser::model::JpQuery;
use jsonpath_rust::parser::parse_json_path;
use jsonpath_rust::query::js_path_process;

/// How deeply `(` and `[` may nest in a query. The parser and the evaluator recurse once per
/// level; jsonpath-rust bounds this itself (128 in 1.0.12), but not as a documented promise,
/// so Herald checks its own, smaller bound before handing the query over and names it.
pub const MAX_DEPTH: usize = 32;

/// How many rule calls jsonpath-rust's (pest) parser may make for one query. Its grammar
/// backtracks exponentially on some malformed queries (each nested `match(` of a query that
/// does not parse triples the work: 26 of them, 150 characters, would run for days); a
/// well-formed query takes about ten calls per character, so this admits queries of some
/// 100 KB and stops any other after a few milliseconds.
pub const PARSE_CALL_LIMIT: usize = 1_000_000;

/// Matches when the event's data is JSON and the query selects at least one node.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonPathFilter {
    query: JpQuery,
}

impl JsonPathFilter {
    /// Parses the query once; the error says what is wrong with it.
    pub fn parse(query: &str) -> Result<Self, JsonPathError> {
        check_nesting(query)?;
        // A process-wide pest setting; jsonpath-rust is the only pest parser in Herald.
        pest::set_call_limit(std::num::NonZeroUsize::new(PARSE_CALL_LIMIT));
        parse_json_path(query)
            .map(|query| Self { query })
            .map_err(|e| match e {
                // pest fails with its only custom error when a limit is reached, and the
                // call limit is the only one Herald sets.
                ParseError::PestError(pest)
                    if matches!(pest.variant, pest::error::ErrorVariant::CustomError { .. }) =>
                {
                    JsonPathError::TooManySteps
                }
                other => JsonPathError::Invalid(other),
            })
    }

    /// Data that is not JSON, or nests deeper than serde_json's limit (127 levels) (which
    /// bounds the recursion of the query over the document), does not match.
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

/// Why a JSONPath query is refused.
#[derive(Debug, thiserror::Error)]
pub enum JsonPathError {
    /// `(` and `[` nest deeper than [`MAX_DEPTH`] (the column is 1-based).
    #[error("the query nests deeper than {MAX_DEPTH} levels of ( and [ (at column {column})")]
    TooDeep { column: usize },
    #[error("the query takes more than {PARSE_CALL_LIMIT} parser steps: simplify it")]
    TooManySteps,
    /// Not RFC 9535 JSONPath, as jsonpath-rust says.
    #[error("{0}")]
    Invalid(#[source] ParseError),
}

/// Refuses a query whose `(`/`[` nest deeper than [`MAX_DEPTH`], skipping string literals
/// (`'…'`, `"…"` with backslash escapes): a linear scan before any recursion.
fn check_nesting(query: &str) -> Result<(), JsonPathError> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (column, c) in query.chars().enumerate() {
        match quote {
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '\'' | '"' => quote = Some(c),
                '(' | '[' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(JsonPathError::TooDeep { column: column + 1 });
                    }
                }
                ')' | ']' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
    }
    Ok(())
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

    /// Queries of each shape that nests, `levels` deep.
    fn nested(levels: usize) -> Vec<String> {
        vec![
            format!(
                "$[?{}@.a{}]",
                "(".repeat(levels - 1),
                ")".repeat(levels - 1)
            ),
            format!("${}]", "[?@".repeat(levels)).replace(']', &"]".repeat(levels)),
            format!(
                "$[?{}@.a{} == 1]",
                "length(".repeat(levels - 1),
                ")".repeat(levels - 1)
            ),
        ]
    }

    #[test]
    fn queries_nest_up_to_the_limit() {
        for query in nested(MAX_DEPTH) {
            JsonPathFilter::parse(&query).unwrap_or_else(|e| panic!("{query}: {e}"));
        }
        let quoted = format!("$['{}']", "[(".repeat(100));
        JsonPathFilter::parse(&quoted).expect("brackets in strings do not nest");
    }

    #[test]
    fn deeper_queries_are_refused_naming_the_limit() {
        for levels in [MAX_DEPTH + 1, 100_000] {
            for query in nested(levels) {
                let err = JsonPathFilter::parse(&query).expect_err(&query);
                assert!(matches!(err, JsonPathError::TooDeep { .. }), "{err}");
                assert!(
                    err.to_string()
                        .contains(&format!("deeper than {MAX_DEPTH} levels")),
                    "{err}"
                );
            }
        }
    }

    #[test]
    fn deep_data_does_not_match_and_does_not_crash() {
        // On a tokio worker's stack size, where dispatchers evaluate filters.
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| {
                let descend = JsonPathFilter::parse("$..a").unwrap();
                let deep = |levels: usize| {
                    format!("{}{{\"a\":1}}{}", "[".repeat(levels), "]".repeat(levels))
                };
                // serde_json reads up to 127 levels: the object inside 126 arrays is the deepest.
                assert!(descend.matches(&event(deep(126).as_bytes())));
                assert!(!descend.matches(&event(deep(127).as_bytes())));
                assert!(!descend.matches(&event(deep(100_000).as_bytes())));
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn pathological_queries_stop_at_the_call_limit() {
        // Found by fuzzing: nested functions in a query that does not parse backtrack
        // exponentially (14 levels took 7 s, 26 would take days).
        let query = format!("$.a[?(@.a >{} 1)]", "match(".repeat(26));
        let started = std::time::Instant::now();
        let err = JsonPathFilter::parse(&query).unwrap_err();
        assert!(matches!(err, JsonPathError::TooManySteps), "{err:?}");
        assert!(err.to_string().contains("parser steps"), "{err}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        // Long well-formed queries stay far below the limit.
        let long = format!(
            "$.items[?{}]",
            (0..2_000)
                .map(|i| format!("@.f{i} == 'v{i}'"))
                .collect::<Vec<_>>()
                .join(" && ")
        );
        assert!(long.len() > 30_000);
        JsonPathFilter::parse(&long).unwrap();
    }
}
