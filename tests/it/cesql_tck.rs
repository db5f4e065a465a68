//! The CloudEvents SQL conformance kit: every case of every YAML file in `CESQL_TCK_DIR`
//! (default `../shared/conformance/cesql-tck`) must give the expected value and error kind.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "test code"
)]

use std::path::PathBuf;

use herald_broker::{json, CloudEvent};
use herald_triggers::cesql::{Expression, Value};
use serde_yaml_ng::Value as Yaml;

fn tck_dir() -> PathBuf {
    match std::env::var_os("CESQL_TCK_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/cesql-tck"),
    }
}

fn default_event() -> serde_json::Map<String, serde_json::Value> {
    let value = serde_json::json!({
        "specversion": "1.0", "id": "tck-id", "source": "/tck", "type": "tck.type"
    });
    value.as_object().cloned().unwrap_or_default()
}

fn to_json(yaml: &Yaml) -> serde_json::Value {
    serde_json::to_value(yaml).expect("YAML event converts to JSON")
}

fn event_for(case: &Yaml) -> CloudEvent {
    let mut members = match case.get("event") {
        Some(event) => to_json(event)
            .as_object()
            .cloned()
            .expect("event is a mapping"),
        None => default_event(),
    };
    if let Some(overrides) = case.get("eventOverrides") {
        for (k, v) in to_json(overrides).as_object().cloned().unwrap_or_default() {
            members.insert(k, v);
        }
    }
    let bytes = serde_json::to_vec(&members).unwrap();
    let event = json::parse_event(&bytes).expect("TCK event parses");
    event.validate().expect("TCK event is valid");
    event
}

fn expected_value(yaml: &Yaml) -> Value<'static> {
    match yaml {
        Yaml::Bool(b) => Value::Bool(*b),
        Yaml::Number(n) => Value::Int(
            n.as_i64()
                .and_then(|i| i32::try_from(i).ok())
                .expect("32-bit result"),
        ),
        Yaml::String(s) => Value::Str(s.clone().into()),
        other => panic!("unexpected result {other:?}"),
    }
}

#[test]
fn cesql_tck() {
    let dir = tck_dir();
    let missing = format!("{} (or CESQL_TCK_DIR)", dir.display());
    if !herald_broker::testing::servers::present_or_skip(
        "the CESQL conformance kit",
        dir.is_dir(),
        &missing,
    ) {
        return;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the CESQL TCK folder {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let (mut run, mut failures) = (0, Vec::new());
    for file in &files {
        let suite: Yaml = serde_yaml_ng::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let cases = suite
            .get("tests")
            .and_then(Yaml::as_sequence)
            .cloned()
            .unwrap_or_default();
        for case in cases {
            run += 1;
            let name = case
                .get("name")
                .and_then(Yaml::as_str)
                .unwrap_or("?")
                .to_owned();
            let expression = match case.get("expression") {
                Some(Yaml::String(s)) => s.clone(),
                // Plain scalars such as `TRUE` or `-10` arrive typed; their text is the expression.
                Some(Yaml::Bool(b)) => b.to_string(),
                Some(Yaml::Number(n)) => n.to_string(),
                other => panic!("{name}: expression must be a scalar, got {other:?}"),
            };
            let want_error = case.get("error").and_then(Yaml::as_str).map(str::to_owned);
            let want_value = case.get("result").map(expected_value);
            let event = event_for(&case);
            let (value, error) = match Expression::parse(&expression) {
                Err(e) => (Value::Bool(false), Some(e.kind.name().to_owned())),
                Ok(compiled) => {
                    let result = compiled.evaluate(&event);
                    let error = result.errors.first().map(|e| e.kind.name().to_owned());
                    (format_owned(result.value), error)
                }
            };
            let value_ok = want_value.as_ref().is_none_or(|want| *want == value);
            if !value_ok || error != want_error {
                failures.push(format!(
                    "{}: {name}: `{expression}` gave {value:?} / {error:?}, want {want_value:?} / {want_error:?}",
                    file.file_name().unwrap().to_string_lossy()
                ));
            }
        }
    }
    assert!(run > 0, "the TCK folder {} holds no cases", dir.display());
    assert!(
        failures.is_empty(),
        "{} of {run} TCK cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!("{run} CESQL TCK cases passed");
}

fn format_owned(value: Value<'_>) -> Value<'static> {
    match value {
        Value::Bool(b) => Value::Bool(b),
        Value::Int(i) => Value::Int(i),
        Value::Str(s) => Value::Str(s.into_owned().into()),
    }
}
