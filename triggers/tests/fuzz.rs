//! Fuzz targets of trigger filters (see `herald_broker::fuzz`): CESQL parsing and evaluation,
//! `spec.filters` compiled from JSON (as a Kubernetes object carries them) and evaluated, and
//! JSONPath queries over event data. No input panics, overflows a worker's stack or takes
//! long; verdicts are consistent however they are asked for.

use bytes::Bytes;
use herald_broker::fuzz::{inputs, run};
use herald_broker::{AttrValue, CloudEvent};
use herald_crds::{Destination, SubscriptionsApiFilter, TriggerSpec};
use herald_triggers::cesql::{ErrorKind, Expression, Value};
use herald_triggers::filter::{compile, JsonPathFilter, Verdict};

const CESQL_TOKENS: &[&str] = &[
    " AND ",
    " OR ",
    " XOR ",
    "NOT ",
    " LIKE ",
    " NOT LIKE ",
    " IN (",
    " NOT IN (",
    "EXISTS ",
    "TRUE",
    "FALSE",
    "=",
    "!=",
    "<>",
    "<",
    "<=",
    ">",
    ">=",
    "+",
    "*",
    "/",
    "%",
    "-",
    "'%'",
    "'_'",
    "'\\''",
    "\"",
    "ABS(",
    "CONCAT(",
    "CONCAT_WS(",
    "SUBSTRING(",
    "LENGTH(",
    "LOWER(",
    "UPPER(",
    "TRIM(",
    "LEFT(",
    "RIGHT(",
    "INT(",
    "BOOL(",
    "STRING(",
    "IS_INT(",
    "IS_BOOL(",
    "NOPE(",
    "type",
    "source",
    "count",
    "flag",
    "missing",
    "-2147483648",
];

const FILTER_TOKENS: &[&str] = &[
    "{\"all\":[",
    "{\"any\":[",
    "{\"not\":",
    "]}",
    "}",
    "{}",
    "{\"exact\":{\"type\":\"a\"}}",
    "{\"prefix\":{\"source\":\"/\"}}",
    "{\"suffix\":{\"type\":\"\"}}",
    "\"cesql\":",
    "\"jsonpath\":",
    "\"exact\":",
    "\"Type\"",
    "\"type = 'a' OR \"",
    "\"$..*\"",
];

const JSONPATH_TOKENS: &[&str] = &[
    "$",
    "..",
    ".*",
    "[*]",
    "[?",
    "@",
    "&&",
    "||",
    "!",
    "==",
    "!=",
    "<",
    ">=",
    "length(",
    "count(",
    "value(",
    "match(",
    "search(",
    "[-1]",
    "[::-1]",
    "[0:2:0]",
    "['a']",
    ".a",
    "[\"b\"]",
    "\n",
    "{\"a\":[1,{\"a\":2}]}",
    "[[[[",
    "]]]]",
];

/// Events to evaluate against: typed extensions, JSON data, and one with nearly nothing.
fn events() -> Vec<CloudEvent> {
    let mut full = CloudEvent::new();
    for (name, value) in [
        ("specversion", "1.0"),
        ("id", "1"),
        ("source", "/shop/eu"),
        ("type", "a"),
        ("subject", "order 'x' %_"),
        ("time", "2024-01-02T03:04:05Z"),
        ("datacontenttype", "application/json"),
    ] {
        full.set(name, value);
    }
    full.set("count", AttrValue::Integer(i64::from(i32::MIN)));
    full.set("flag", AttrValue::Boolean(true));
    full.set_data(Some(Bytes::from_static(
        br#"{"a":[1,{"a":2,"b":"x"}],"n":-0.0}"#,
    )));
    let mut bare = CloudEvent::new();
    bare.set("specversion", "1.0");
    bare.set("id", "2");
    vec![full, bare]
}

#[test]
fn fuzz_cesql() {
    let events = events();
    run("cesql", inputs("cesql", CESQL_TOKENS), move |input| {
        let text = String::from_utf8_lossy(input);
        let expression = match Expression::parse(&text) {
            Ok(expression) => expression,
            Err(error) => {
                let columns = text.chars().count() + 1;
                if !(1..=columns).contains(&error.column) {
                    return Err(format!(
                        "column {} outside 1..={columns}: {error}",
                        error.column
                    ));
                }
                if !matches!(error.kind, ErrorKind::Parse | ErrorKind::MissingFunction) {
                    return Err(format!("a parse error of kind {:?}", error.kind));
                }
                return Ok(());
            }
        };
        for event in &events {
            let evaluation = expression.evaluate(event);
            let again = expression.evaluate(event);
            if evaluation != again {
                return Err(format!(
                    "two evaluations differ: {evaluation:?} / {again:?}"
                ));
            }
            let verdict = evaluation.errors.is_empty() && evaluation.value == Value::Bool(true);
            if expression.matches(event) != verdict {
                return Err(format!("matches() disagrees with {evaluation:?}"));
            }
        }
        Ok(())
    });
}

#[test]
fn fuzz_filters() {
    let events = events();
    run("filters", inputs("filters", FILTER_TOKENS), move |input| {
        let Ok(filters) = serde_json::from_slice::<Vec<SubscriptionsApiFilter>>(input) else {
            return Ok(());
        };
        let spec = |filters| TriggerSpec {
            broker: "b".into(),
            filters,
            subscriber: Destination::default(),
            ..TriggerSpec::default()
        };
        let Ok(filter) = compile(&spec(filters.clone())) else {
            return Ok(());
        };
        let inverted = compile(&spec(vec![SubscriptionsApiFilter {
            not: Some(Box::new(SubscriptionsApiFilter {
                all: Some(filters),
                ..Default::default()
            })),
            ..Default::default()
        }]));
        for event in &events {
            let verdict = filter.evaluate(event);
            let explained = filter.explain(event);
            if explained.verdict != verdict || filter.matches(event) != (verdict != Verdict::Fail) {
                return Err(format!("{verdict:?} but explained as {explained:?}"));
            }
            if let Ok(inverted) = &inverted {
                let expected = match verdict {
                    Verdict::Pass => Verdict::Fail,
                    Verdict::Fail => Verdict::Pass,
                    Verdict::NoFilter => Verdict::NoFilter,
                };
                if inverted.evaluate(event) != expected {
                    return Err(format!("not does not invert {verdict:?}"));
                }
            }
        }
        Ok(())
    });
}

#[test]
fn fuzz_jsonpath() {
    run("jsonpath", inputs("jsonpath", JSONPATH_TOKENS), |input| {
        // The first line is the query, the rest the event's data.
        let split = input
            .iter()
            .position(|b| *b == b'\n')
            .unwrap_or(input.len());
        let query = String::from_utf8_lossy(&input[..split]);
        let Ok(filter) = JsonPathFilter::parse(&query) else {
            return Ok(());
        };
        let mut event = CloudEvent::new();
        event.set_data(Some(Bytes::copy_from_slice(
            input.get(split + 1..).unwrap_or_default(),
        )));
        let first = filter.matches(&event);
        if filter.matches(&event) != first {
            return Err("two evaluations differ".into());
        }
        Ok(())
    });
}
