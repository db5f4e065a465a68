//! `herald filter test` through the real binary.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "test code"
)]

use std::io::Write;
use std::process::{Command, Stdio};

const TRIGGER: &str = r#"
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: t}
spec:
  broker: b
  subscriber: {uri: 'http://127.0.0.1:1/'}
  filters:
    - exact: {type: order.created}
    - any:
        - cesql: "region = 'eu'"
        - jsonpath: "$.vip"
"#;

fn run(trigger: &str, event: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trigger.yaml");
    std::fs::write(&path, trigger).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["filter", "test", "--trigger"])
        .arg(&path)
        .args(["--event", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(event.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        output.status.code().unwrap_or(-1),
        text(&output.stdout),
        text(&output.stderr),
    )
}

fn event(extra: &str) -> String {
    format!(r#"{{"specversion":"1.0","id":"e1","source":"/s","type":"order.created"{extra}}}"#)
}

#[test]
fn pass_names_the_deciding_element() {
    let (code, out, _) = run(TRIGGER, &event(r#","region":"eu""#));
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("PASS"), "{out}");
    let (code, out, _) = run(TRIGGER, &event(r#","data":{"vip":true}"#));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("spec.filters"), "{out}");
}

#[test]
fn fail_names_the_deciding_element() {
    let (code, out, _) = run(TRIGGER, &event(r#","region":"us""#));
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("FAIL"), "{out}");
    assert!(out.contains("decided by spec.filters[1]"), "{out}");
    let (code, out, _) = run(
        TRIGGER,
        r#"{"specversion":"1.0","id":"e1","source":"/s","type":"other"}"#,
    );
    assert_eq!(code, 1);
    assert!(out.contains("decided by spec.filters[0]"), "{out}");
}

#[test]
fn invalid_input_exits_2_and_says_why() {
    let (code, _, err) = run(TRIGGER, r#"{"specversion":"1.0","id":"e1"}"#);
    assert_eq!(code, 2);
    assert!(err.contains("source"), "{err}");
    let (code, _, err) = run(&TRIGGER.replace("region = 'eu'", "region = "), &event(""));
    assert_eq!(code, 2);
    assert!(
        err.contains("spec.filters[1].any[0].cesql") && err.contains("column"),
        "{err}"
    );
}
