//! Every `herald` CLI command against a running Herald: output for people and `-o json` for
//! scripts, and exit codes (0 done, 1 refused or failed, 2 bad usage).
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "test code"
)]

use crate::common;
use crate::scenarios;

use std::process::Stdio;

use common::herald::{herald_binary, Sled};
use common::{free_port, wait_until, Herald, HeraldDirs, Subscriber, DEADLINE};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `herald ARGS --server ADMIN` (the token, if any, from the environment).
async fn cli(admin: &str, args: &[&str], token: Option<&str>) -> Run {
    let mut command = tokio::process::Command::new(herald_binary());
    command.args(args).args(["--server", admin]);
    command.env_remove("HERALD_ADMIN_TOKEN");
    if let Some(token) = token {
        command.env("HERALD_ADMIN_TOKEN", token);
    }
    let output = tokio::time::timeout(DEADLINE, command.output())
        .await
        .expect("the CLI finished")
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn ok(run: &Run) -> &str {
    assert_eq!(
        run.code, 0,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    &run.stdout
}

fn json(run: &Run) -> Value {
    serde_json::from_str(ok(run)).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

fn resources(subscriber: &str, delivery: &str) -> String {
    format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: b}}\n---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: t}}\nspec:\n  broker: b\n  subscriber: {{uri: '{subscriber}'}}\n{delivery}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manage_everything_without_config_files() {
    let dirs = HeraldDirs::new("");
    let herald = Herald::start(&Sled, &dirs, &[]).await;
    let admin = herald.admin.as_str();
    let subscriber = Subscriber::start().await;
    let folder = tempfile::tempdir().unwrap();
    let file = folder.path().join("resources.yaml");
    std::fs::write(&file, resources(&subscriber.url(), "")).unwrap();
    let file = file.to_str().unwrap();

    let applied = cli(admin, &["apply", "-f", file], None).await;
    assert_eq!(
        ok(&applied).lines().collect::<Vec<_>>(),
        [
            "broker.eventing.knative.dev/b created",
            "trigger.eventing.knative.dev/t created"
        ]
    );
    let again = cli(admin, &["apply", "-f", file], None).await;
    assert!(
        ok(&again).contains("trigger.eventing.knative.dev/t configured"),
        "{}",
        again.stdout
    );

    let brokers = cli(admin, &["get", "brokers"], None).await;
    let table = ok(&brokers);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains(&format!("{}/default/b", herald.ingress)),
        "{table}"
    );
    let triggers = json(&cli(admin, &["get", "triggers", "-o", "json"], None).await);
    assert_eq!(triggers["kind"], "TriggerList");
    assert_eq!(
        triggers["items"][0]["status"]["subscriberUri"],
        subscriber.url()
    );
    let one = cli(admin, &["get", "trigger", "t", "-o", "yaml"], None).await;
    assert!(ok(&one).contains("name: t"), "{}", one.stdout);
    let sources = json(&cli(admin, &["get", "sources", "-o", "json"], None).await);
    assert_eq!(sources["items"], Value::Array(vec![]));
    let everywhere = cli(admin, &["get", "brokers", "-A"], None).await;
    assert!(ok(&everywhere).starts_with("NAMESPACE"));

    let sent = cli(
        admin,
        &[
            "send",
            "--broker",
            "b",
            "--type",
            "com.example.created",
            "--id",
            "cli-1",
            "--data",
            r#"{"n":1}"#,
            "--ext",
            "region=eu",
            "--ext",
            "note=100% grüße",
        ],
        None,
    )
    .await;
    assert!(
        ok(&sent).contains("event cli-1 sent to broker default/b: 202"),
        "{}",
        sent.stdout
    );
    let got = subscriber.wait_for_id("cli-1").await;
    let event = got.iter().find(|r| r.ce("id") == Some("cli-1")).unwrap();
    assert_eq!(event.ce("type"), Some("com.example.created"));
    assert_eq!(event.ce("region"), Some("eu"));
    assert_eq!(
        event.headers.get("ce-note").map(|v| v.as_bytes()),
        Some("100% grüße".as_bytes()),
        "the value Herald got from the CLI is the one given"
    );
    assert_eq!(event.header("content-type"), Some("application/json"));
    assert_eq!(&event.body[..], br#"{"n":1}"#);
    let generated = cli(admin, &["send", "--broker", "b", "--type", "t"], None).await;
    assert!(ok(&generated).contains("sent to broker default/b"));

    let described = cli(admin, &["describe", "trigger", "t"], None).await;
    let text = ok(&described);
    for part in [
        "Name:           t",
        "Broker:         b",
        "Parked events:  0",
        "Last errors:",
    ] {
        assert!(text.contains(part), "{part} in {text}");
    }
    assert!(text.contains(&subscriber.url()));

    // Errors: not found (1), bad usage (2), unreachable (1), refused by ingress (1).
    let missing = cli(admin, &["get", "trigger", "nope"], None).await;
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("not found"), "{}", missing.stderr);
    let unknown = cli(admin, &["get", "pods"], None).await;
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("unknown resource kind"),
        "{}",
        unknown.stderr
    );
    let bad_ext = cli(
        admin,
        &["send", "--broker", "b", "--type", "t", "--ext", "Bad=1"],
        None,
    )
    .await;
    assert_eq!(bad_ext.code, 2, "{}", bad_ext.stderr);
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let unreachable = cli(&nowhere, &["get", "brokers"], None).await;
    assert_eq!(unreachable.code, 1);
    assert!(
        unreachable.stderr.contains("cannot reach Herald"),
        "{}",
        unreachable.stderr
    );
    let no_broker = cli(admin, &["send", "--broker", "nope", "--type", "t"], None).await;
    assert_eq!(no_broker.code, 1);

    let deleted = cli(admin, &["delete", "trigger", "t"], None).await;
    assert_eq!(
        ok(&deleted).trim(),
        "trigger.eventing.knative.dev/t deleted"
    );
    assert_eq!(cli(admin, &["delete", "trigger", "t"], None).await.code, 1);
    let empty = cli(admin, &["get", "triggers"], None).await;
    assert!(
        empty.stderr.contains("No resources found"),
        "{}",
        empty.stderr
    );
    assert_eq!(empty.code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_and_tail() {
    let dirs = HeraldDirs::new("");
    let herald = Herald::start(&Sled, &dirs, &["--admin-token", "tok"]).await;
    let admin_url = herald.admin.clone();
    let admin = admin_url.as_str();
    let token = Some("tok");
    let port = free_port();
    let folder = tempfile::tempdir().unwrap();
    let file = folder.path().join("r.yaml");
    let delivery = "  delivery: {retry: 0}\n";
    std::fs::write(
        &file,
        resources(&format!("http://127.0.0.1:{port}/"), delivery),
    )
    .unwrap();
    ok(&cli(admin, &["apply", "-f", file.to_str().unwrap()], token).await);
    let anonymous = cli(admin, &["get", "brokers"], None).await;
    assert_eq!(anonymous.code, 1);
    assert!(anonymous.stderr.contains("Bearer"), "{}", anonymous.stderr);

    // A live tail with a CESQL filter.
    let mut tail = tokio::process::Command::new(herald_binary())
        .args([
            "tail",
            "--broker",
            "b",
            "--filter",
            "type = 'keep'",
            "-o",
            "json",
            "--server",
            admin,
        ])
        .env("HERALD_ADMIN_TOKEN", "tok")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut tail_err = BufReader::new(tail.stderr.take().unwrap()).lines();
    let banner = tokio::time::timeout(DEADLINE, tail_err.next_line())
        .await
        .unwrap()
        .unwrap();
    assert!(banner
        .unwrap_or_default()
        .contains("following broker default/b"));

    for (id, kind) in [("d1", "drop"), ("k1", "keep")] {
        ok(&cli(
            admin,
            &["send", "--broker", "b", "--type", kind, "--id", id],
            token,
        )
        .await);
    }
    let mut tail_out = BufReader::new(tail.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(DEADLINE, tail_out.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let tailed: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(tailed["id"], "k1", "the filter dropped d1: {line}");

    // Both events fail once and are parked.
    let mut listed = Value::Null;
    wait_until("two parked events", || {
        let run = std::process::Command::new(herald_binary())
            .args([
                "dlq",
                "list",
                "--trigger",
                "t",
                "-o",
                "json",
                "--server",
                admin,
            ])
            .env("HERALD_ADMIN_TOKEN", "tok")
            .output()
            .unwrap();
        listed = serde_json::from_slice(&run.stdout).unwrap_or(Value::Null);
        listed["items"]
            .as_array()
            .is_some_and(|items| items.len() == 2)
    })
    .await;
    let id_of = |event: &str| {
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["event"]["id"] == event)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let table = cli(admin, &["dlq", "list", "--trigger", "t"], token).await;
    assert!(ok(&table).starts_with("ID"), "{}", table.stdout);
    assert!(table.stdout.contains("k1"));
    let shown = json(
        &cli(
            admin,
            &["dlq", "show", "--trigger", "t", &id_of("k1"), "-o", "json"],
            token,
        )
        .await,
    );
    assert_eq!(shown["event"]["type"], "keep");
    assert_eq!(shown["failure"]["attempts"], 1);

    let subscriber = Subscriber::start_on(port).await;
    let redriven = cli(
        admin,
        &["dlq", "redrive", "--trigger", "t", &id_of("k1")],
        token,
    )
    .await;
    assert!(ok(&redriven).contains("delivered 1"), "{}", redriven.stdout);
    subscriber.wait_for_id("k1").await;
    let purged = json(
        &cli(
            admin,
            &["dlq", "purge", "--trigger", "t", "--all", "-o", "json"],
            token,
        )
        .await,
    );
    assert_eq!(purged["purged"], serde_json::json!([id_of("d1")]));
    let none = cli(admin, &["dlq", "redrive", "--trigger", "t"], token).await;
    assert_eq!(none.code, 2, "ids or --all are required: {}", none.stderr);
    let gone = cli(
        admin,
        &["dlq", "redrive", "--trigger", "t", &id_of("d1")],
        token,
    )
    .await;
    assert_eq!(gone.code, 1, "a purged event cannot be redriven");
    assert_eq!(subscriber.received().len(), 1, "only k1 was delivered");

    // Shutdown ends open tails instead of waiting out the grace period for them.
    let (status, logs) = herald.stop().await;
    assert!(status.success(), "{logs}");
    assert!(
        !logs.contains("did not finish within the grace period"),
        "{logs}"
    );
    let ended = tokio::time::timeout(DEADLINE, tail.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        ended.success(),
        "the tail ends cleanly when the server does"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_example_applies() {
    let dirs = HeraldDirs::new("");
    let herald = Herald::start(&Sled, &dirs, &[]).await;
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/admin/resources.yaml");
    let applied = cli(&herald.admin, &["apply", "-f", example], None).await;
    assert_eq!(ok(&applied).lines().count(), 3, "{}", applied.stdout);
    let replay = json(
        &cli(
            &herald.admin,
            &["get", "trigger", "audit-replay", "-o", "json"],
            None,
        )
        .await,
    );
    assert_eq!(
        replay["metadata"]["annotations"]["herald.dev/start-from"],
        "earliest"
    );
    assert_eq!(replay["status"]["conditions"][0]["status"], "True");
}

/// Config files nested 100,000 levels deep (filters, CESQL, JSONPath, the document itself):
/// `herald serve` exits 1 with an error naming the file, the resource, the field and the
/// limit, promptly, instead of aborting on a stack overflow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_files_nested_100000_levels_deep_are_refused() {
    let levels = 100_000;
    let cases = [
        (
            format!("filters: [{{cesql: \"{}TRUE\"}}]", "NOT ".repeat(levels)),
            "spec.filters[0].cesql",
            "deeper than 64 levels",
        ),
        (
            format!(
                "filters: [{{cesql: \"{}TRUE{}\"}}]",
                "(".repeat(levels),
                ")".repeat(levels)
            ),
            "spec.filters[0].cesql",
            "deeper than 64 levels",
        ),
        (
            format!(
                "filters: [{{jsonpath: '$[?{}@.a{}]'}}]",
                "(".repeat(levels),
                ")".repeat(levels)
            ),
            "spec.filters[0].jsonpath",
            "deeper than 32 levels",
        ),
        (
            format!(
                "filters: [{}{{exact: {{type: a}}}}{}]",
                "{not: ".repeat(levels),
                "}".repeat(levels)
            ),
            "",
            "nests deeper than 128 levels",
        ),
    ];
    for (spec, field, limit) in cases {
        let dirs = HeraldDirs::new(
            &(scenarios::broker_yaml("b", None)
                + &scenarios::trigger_yaml("t", "b", "http://127.0.0.1:1/", &spec)),
        );
        let (status, stderr) = common::herald::run_invalid(&dirs.config_file(), dirs.data.path());
        let excerpt: String = stderr.chars().take(2_000).collect();
        assert_eq!(status.code(), Some(1), "{field}: {excerpt}");
        let resource = if field.is_empty() {
            ""
        } else {
            "Trigger default/t"
        };
        for needle in ["config.yaml", resource, field, limit] {
            assert!(
                stderr.contains(needle),
                "{field}: must name {needle:?}: {excerpt}"
            );
        }
        assert!(
            stderr.len() < 10_000,
            "the error quotes an excerpt, not the whole expression: {} bytes",
            stderr.len()
        );
    }
}

/// `herald token` (issue 21) prints a token from Herald's issuer (through `--token`'s admin
/// API) that the broker's ingress accepts, by `--service-account` and `--broker` or by
/// `--subject` and `--audience`; without the admin token it is refused (exit 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_token_prints_a_token_the_ingress_accepts() {
    let dirs =
        HeraldDirs::new("apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b}\n");
    let herald = Herald::start(
        &Sled,
        &dirs,
        &[
            "--authentication-oidc",
            "enabled",
            "--admin-token",
            "s3cret",
        ],
    )
    .await;
    let admin = herald.admin.as_str();
    let url = herald.broker_url("default", "b");
    let send = |token: String| {
        let url = url.clone();
        async move {
            scenarios::client()
                .post(&url)
                .header("ce-specversion", "1.0")
                .header("ce-id", "1")
                .header("ce-source", "/cli")
                .header("ce-type", "t")
                .header("authorization", format!("Bearer {token}"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };

    let by_account = cli(
        admin,
        &[
            "token",
            "--service-account",
            "default/producer",
            "--broker",
            "b",
        ],
        Some("s3cret"),
    )
    .await;
    let token = ok(&by_account);
    assert_eq!(token.lines().count(), 1, "the token alone: {token}");
    assert_eq!(send(token.trim().to_owned()).await, 202);

    let by_subject = cli(
        admin,
        &[
            "token",
            "--subject",
            "system:serviceaccount:default:other",
            "--audience",
            "eventing.knative.dev/broker/default/b",
            "--expiration-seconds",
            "60",
        ],
        Some("s3cret"),
    )
    .await;
    assert_eq!(send(ok(&by_subject).trim().to_owned()).await, 202);
    // The same subject for another audience is not let in.
    let elsewhere = cli(
        admin,
        &[
            "token",
            "--subject",
            "system:serviceaccount:default:other",
            "--audience",
            "eventing.knative.dev/broker/default/elsewhere",
        ],
        Some("s3cret"),
    )
    .await;
    assert_eq!(send(ok(&elsewhere).trim().to_owned()).await, 401);

    let refused = cli(
        admin,
        &[
            "token",
            "--service-account",
            "default/producer",
            "--broker",
            "b",
        ],
        None,
    )
    .await;
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(refused.stderr.contains("401"), "{}", refused.stderr);
    let usage = cli(
        admin,
        &["token", "--service-account", "producer", "--broker", "b"],
        None,
    )
    .await;
    assert_eq!(usage.code, 2, "{}", usage.stderr);
}
