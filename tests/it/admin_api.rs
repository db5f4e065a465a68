//! The admin API through the real binary: every answer of create/get/list/replace/delete,
//! optimistic concurrency, persistence across SIGKILL, read-only file objects, the token rule.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "test code"
)]

use crate::common;
use crate::scenarios;

use common::admin::{message, AdminClient, BROKERS, TRIGGERS};
use common::herald::Sled;
use common::{Herald, HeraldDirs};
use reqwest::Method;
use serde_json::{json, Value};

const BROKER_B: &str = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b}\n";

fn trigger(name: &str, broker: &str) -> String {
    format!("apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: {name}}}\nspec: {{broker: {broker}, subscriber: {{uri: 'http://127.0.0.1:9/'}}}}\n")
}

async fn empty_herald(extra: &[&str]) -> (Herald, HeraldDirs) {
    let dirs = HeraldDirs::new("");
    let herald = Herald::start(&Sled, &dirs, extra).await;
    (herald, dirs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_list_replace_delete_with_every_error() {
    let (herald, _dirs) = empty_herald(&[]).await;
    let admin = AdminClient::new(&herald.admin);

    // Create: 201 with Kubernetes metadata and the running status.
    let broker = admin.create(BROKERS, BROKER_B).await;
    assert_eq!(broker["metadata"]["generation"], 1);
    assert_eq!(broker["metadata"]["namespace"], "default");
    assert!(broker["metadata"]["uid"]
        .as_str()
        .is_some_and(|u| u.len() == 36));
    assert!(broker["metadata"]["resourceVersion"].is_string());
    assert!(broker["metadata"]["creationTimestamp"].is_string());
    assert_eq!(broker["status"]["conditions"][0]["status"], "True");
    assert_eq!(
        broker["status"]["address"]["url"],
        format!("{}/default/b", herald.ingress)
    );
    let (status, again) = admin.post_yaml(BROKERS, BROKER_B).await;
    assert_eq!(
        (status, again["reason"].as_str()),
        (409, Some("AlreadyExists"))
    );

    // JSON bodies work as well as YAML.
    let body = json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger",
        "metadata": {"name": "t"}, "spec": {"broker": "b", "subscriber": {"uri": "http://127.0.0.1:9/"}}});
    let (status, created) = admin
        .call(
            Method::POST,
            TRIGGERS,
            Some(("application/json", &body.to_string())),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"]["subscriberUri"], "http://127.0.0.1:9/");

    // Get and list.
    let (status, got) = admin.get(&format!("{TRIGGERS}/t")).await;
    assert_eq!(status, 200);
    assert_eq!(got["metadata"]["uid"], created["metadata"]["uid"]);
    let (status, list) = admin.get(TRIGGERS).await;
    assert_eq!(status, 200);
    assert_eq!(list["kind"], "TriggerList");
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (status, all) = admin.get("/apis/eventing.knative.dev/v1/brokers").await;
    assert_eq!((status, all["items"].as_array().unwrap().len()), (200, 1));
    let (status, _) = admin.get(&format!("{TRIGGERS}/nope")).await;
    assert_eq!(status, 404);
    let (status, _) = admin
        .get("/apis/eventing.knative.dev/v1/namespaces/default/pods")
        .await;
    assert_eq!(status, 404);

    // Invalid objects: 422 naming the field; malformed bodies: 400.
    let typo = "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: x}\nspec: {broker: b, subscriber: {uri: 'http://h/'}, delivery: {retyr: 3}}\n";
    let (status, invalid) = admin.post_yaml(TRIGGERS, typo).await;
    assert_eq!(status, 422);
    assert_eq!(
        invalid["details"]["causes"][0]["field"],
        "spec.delivery.retyr"
    );
    let (status, _) = admin.post_yaml(TRIGGERS, "kind: [unclosed").await;
    assert_eq!(status, 400);
    let (status, wrong_kind) = admin.post_yaml(TRIGGERS, BROKER_B).await;
    assert_eq!(status, 400);
    assert!(
        message(&wrong_kind).contains("this path serves"),
        "{wrong_kind}"
    );
    let (status, _) = admin
        .call(Method::POST, TRIGGERS, Some(("text/plain", "x")))
        .await;
    assert_eq!(status, 400);
    let unnamed = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {}\n";
    let (status, invalid) = admin.post_yaml(BROKERS, unnamed).await;
    assert_eq!(
        (status, invalid["details"]["causes"][0]["field"].as_str()),
        (422, Some("metadata.name"))
    );
    let elsewhere = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: c, namespace: other}\n";
    assert_eq!(admin.post_yaml(BROKERS, elsewhere).await.0, 400);
    let (_, after) = admin.get(TRIGGERS).await;
    assert_eq!(
        after["items"].as_array().unwrap().len(),
        1,
        "refused requests change nothing"
    );

    // Replace: the generation moves with the spec, resourceVersion with every change.
    let mut changed = got.clone();
    changed["spec"]["subscriber"]["uri"] = Value::from("http://127.0.0.1:10/");
    let (status, replaced) = admin.put_json(&format!("{TRIGGERS}/t"), &changed).await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["metadata"]["generation"], 2);
    assert_eq!(replaced["status"]["observedGeneration"], 2);
    assert_ne!(
        replaced["metadata"]["resourceVersion"],
        got["metadata"]["resourceVersion"]
    );
    assert_eq!(replaced["metadata"]["uid"], got["metadata"]["uid"]);
    let mut labelled = replaced.clone();
    labelled["metadata"]["labels"] = json!({"team": "a"});
    let (status, labelled) = admin.put_json(&format!("{TRIGGERS}/t"), &labelled).await;
    assert_eq!(
        (status, labelled["metadata"]["generation"].as_i64()),
        (200, Some(2))
    );
    // A stale resourceVersion is a conflict.
    let (status, stale) = admin.put_json(&format!("{TRIGGERS}/t"), &changed).await;
    assert_eq!((status, stale["reason"].as_str()), (409, Some("Conflict")));
    let mut renamed = labelled.clone();
    renamed["metadata"]["name"] = Value::from("other");
    assert_eq!(
        admin.put_json(&format!("{TRIGGERS}/t"), &renamed).await.0,
        400
    );
    assert_eq!(admin.put_json(&format!("{TRIGGERS}/nope"), &json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger", "metadata": {"name": "nope"}, "spec": {"broker": "b", "subscriber": {"uri": "http://h/"}}})).await.0, 404);

    // Delete (a broker's triggers then wait for it: tests/knative_yaml.rs).
    let (status, deleted) = admin.delete(&format!("{TRIGGERS}/t")).await;
    assert_eq!(
        (status, deleted["metadata"]["name"].as_str()),
        (200, Some("t"))
    );
    assert_eq!(admin.get(&format!("{TRIGGERS}/t")).await.0, 404);
    assert_eq!(admin.delete(&format!("{TRIGGERS}/t")).await.0, 404);
    assert_eq!(admin.delete(&format!("{BROKERS}/b")).await.0, 200);
    // A deleted broker no longer accepts events.
    assert_eq!(
        scenarios::send_binary(&herald.broker_url("default", "b"), "e", "t", &[]).await,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_replaces_with_the_same_version_let_exactly_one_win() {
    let (herald, _dirs) = empty_herald(&[]).await;
    let admin = std::sync::Arc::new(AdminClient::new(&herald.admin));
    admin.create(BROKERS, BROKER_B).await;
    let current = admin.create(TRIGGERS, &trigger("t", "b")).await;
    let attempts: Vec<_> = (0..8)
        .map(|i| {
            let admin = admin.clone();
            let mut object = current.clone();
            object["spec"]["subscriber"]["uri"] =
                Value::from(format!("http://127.0.0.1:{}/", 100 + i));
            tokio::spawn(async move { admin.put_json(&format!("{TRIGGERS}/t"), &object).await.0 })
        })
        .collect();
    let mut codes = Vec::new();
    for attempt in attempts {
        codes.push(attempt.await.unwrap());
    }
    codes.sort();
    assert_eq!(codes, [200, 409, 409, 409, 409, 409, 409, 409]);
    let (_, after) = admin.get(&format!("{TRIGGERS}/t")).await;
    assert_eq!(after["metadata"]["generation"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_objects_survive_sigkill_and_file_objects_are_read_only() {
    let config = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: from-file}\n";
    let dirs = HeraldDirs::new(config);
    let herald = Herald::start(&Sled, &dirs, &[]).await;
    let admin = AdminClient::new(&herald.admin);
    admin.create(BROKERS, BROKER_B).await;
    let created = admin.create(TRIGGERS, &trigger("t", "b")).await;
    let (_, from_file) = admin.get(&format!("{BROKERS}/from-file")).await;
    assert_eq!(from_file["status"]["conditions"][0]["status"], "True");
    let (status, refused) = admin.delete(&format!("{BROKERS}/from-file")).await;
    assert_eq!(status, 409);
    assert!(
        message(&refused).contains("config.yaml"),
        "names the file: {refused}"
    );
    assert_eq!(
        admin
            .put_json(&format!("{BROKERS}/from-file"), &from_file)
            .await
            .0,
        409
    );
    let (status, refused) = admin
        .post_yaml(
            BROKERS,
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: from-file}\n",
        )
        .await;
    assert_eq!(status, 409);
    assert!(message(&refused).contains("config.yaml"), "{refused}");
    herald.kill();

    let herald = Herald::start(&Sled, &dirs, &[]).await;
    let admin = AdminClient::new(&herald.admin);
    let (status, again) = admin.get(&format!("{TRIGGERS}/t")).await;
    assert_eq!(status, 200, "the trigger survived SIGKILL");
    assert_eq!(again["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(
        again["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    assert_eq!(again["status"]["conditions"][0]["status"], "True");
    // New versions keep growing after a restart.
    let newer = admin
        .create(
            BROKERS,
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: c}\n",
        )
        .await;
    let version = |v: &Value| {
        v["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    assert!(version(&newer) > version(&created));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_guards_everything_but_probes_and_metrics() {
    let (herald, _dirs) = empty_herald(&["--admin-token", "s3cret"]).await;
    let anonymous = AdminClient::new(&herald.admin);
    for open in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            anonymous.call(Method::GET, open, None).await.0,
            200,
            "{open}"
        );
    }
    let (status, body) = anonymous.get(BROKERS).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (401, Some("Unauthorized"))
    );
    assert_eq!(
        AdminClient::new(&herald.admin)
            .with_token("wrong")
            .get(BROKERS)
            .await
            .0,
        401
    );
    let admin = AdminClient::new(&herald.admin).with_token("s3cret");
    assert_eq!(admin.get(BROKERS).await.0, 200);
    assert_eq!(anonymous.post_yaml(BROKERS, BROKER_B).await.0, 401);
    assert_eq!(
        admin.get(&format!("{BROKERS}/b")).await.0,
        404,
        "the refused create changed nothing"
    );
}

#[test]
fn a_public_admin_listener_needs_a_token() {
    let dirs = HeraldDirs::new("");
    let output = std::process::Command::new(common::herald::herald_binary())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "0.0.0.0:0",
        ])
        .arg("--data-dir")
        .arg(dirs.data.path())
        .env_remove("HERALD_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--admin-token"), "{stderr}");
}

/// `--admin-token ''` (or blank) is no token: refused on a public listener, and on loopback
/// the API is open instead of wanting an empty bearer token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blank_admin_token_counts_as_none() {
    for (flag, env) in [(Some(""), None), (Some("  "), None), (None, Some(" \n"))] {
        let dirs = HeraldDirs::new("");
        let mut command = tokio::process::Command::new(common::herald::herald_binary());
        command
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "0.0.0.0:0",
            ])
            .arg("--data-dir")
            .arg(dirs.data.path())
            .env_remove("HERALD_ADMIN_TOKEN")
            .kill_on_drop(true);
        if let Some(token) = flag {
            command.args(["--admin-token", token]);
        }
        if let Some(token) = env {
            command.env("HERALD_ADMIN_TOKEN", token);
        }
        let output = tokio::time::timeout(common::DEADLINE, command.output())
            .await
            .unwrap_or_else(|_| panic!("{flag:?} {env:?}: Herald started"))
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flag:?} {env:?}: {stderr}");
        assert!(
            stderr.contains("blank --admin-token"),
            "{flag:?} {env:?}: {stderr}"
        );
    }

    let (herald, _dirs) = empty_herald(&["--admin-token", ""]).await;
    assert_eq!(AdminClient::new(&herald.admin).get(BROKERS).await.0, 200);
    assert!(
        herald.log_contains("--admin-token is blank"),
        "{}",
        herald.logs()
    );
}

/// The `Authorization` scheme is case-insensitive, as kube-apiserver takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive() {
    let (herald, _dirs) = empty_herald(&["--admin-token", "s3cret"]).await;
    let call = |authorization: &'static str| {
        let url = format!("{}{BROKERS}", herald.admin);
        async move {
            reqwest::Client::new()
                .get(url)
                .header("authorization", authorization)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for accepted in ["Bearer s3cret", "bearer s3cret", "BEARER s3cret"] {
        assert_eq!(call(accepted).await, 200, "{accepted}");
    }
    for refused in [
        "bearer wrong",
        "BEARER s3cre",
        "Basic s3cret",
        "bearers3cret",
    ] {
        assert_eq!(call(refused).await, 401, "{refused}");
    }
}

/// Waits until Herald has logged `needle` `count` times in all.
async fn wait_for_log(herald: &Herald, needle: &str, count: usize) {
    common::wait_until(&format!("{count}x {needle:?} in the log"), || {
        herald.log_count(needle) >= count
    })
    .await;
}

/// SIGHUP reads the config files again and applies them all or nothing: a file with an error
/// changes nothing and the log says where the error is; a good one changes, adds and removes
/// triggers (a changed trigger keeps its position, uid and creation time, with a new
/// generation), and objects the reload did not change keep their resourceVersion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config_files_all_or_nothing() {
    use scenarios::{accept, broker_yaml, trigger_yaml};
    let first = common::Subscriber::start().await;
    let second = common::Subscriber::start().await;
    let added = common::Subscriber::start().await;
    let dirs =
        HeraldDirs::new(&(broker_yaml("b", None) + &trigger_yaml("t", "b", &first.url(), "")));
    let herald = Herald::start(&Sled, &dirs, &[]).await;
    let admin = AdminClient::new(&herald.admin);
    let (_, trigger_before) = admin.get(&format!("{TRIGGERS}/t")).await;
    let (_, broker_before) = admin.get(&format!("{BROKERS}/b")).await;
    accept(&herald, "e1", "t", &[]).await;
    first.wait_for_id("e1").await;

    let write = |config: String| std::fs::write(dirs.config_file(), config).unwrap();
    write(
        broker_yaml("b", None)
            + &trigger_yaml("t", "b", &second.url(), "delivery: {retyr: 1}")
            + &trigger_yaml("u", "b", &added.url(), ""),
    );
    herald.hangup();
    wait_for_log(&herald, "configuration not reloaded", 1).await;
    let logs = herald.logs();
    assert!(logs.contains("spec.delivery.retyr"), "{logs}");
    assert!(
        logs.contains("config.yaml"),
        "the error names the file: {logs}"
    );
    assert_eq!(admin.get(&format!("{TRIGGERS}/u")).await.0, 404);
    accept(&herald, "e2", "t", &[]).await;
    first.wait_for_id("e2").await;

    write(
        broker_yaml("b", None)
            + &trigger_yaml("t", "b", &second.url(), "")
            + &trigger_yaml("u", "b", &added.url(), ""),
    );
    herald.hangup();
    wait_for_log(&herald, "configuration reloaded", 1).await;
    let (_, trigger_after) = admin.get(&format!("{TRIGGERS}/t")).await;
    let (_, broker_after) = admin.get(&format!("{BROKERS}/b")).await;
    for field in ["uid", "creationTimestamp"] {
        assert_eq!(
            trigger_after["metadata"][field],
            trigger_before["metadata"][field]
        );
    }
    assert_eq!(trigger_after["metadata"]["generation"], 2);
    assert_ne!(
        trigger_after["metadata"]["resourceVersion"],
        trigger_before["metadata"]["resourceVersion"]
    );
    assert_eq!(
        broker_after["metadata"]["resourceVersion"], broker_before["metadata"]["resourceVersion"],
        "an unchanged object is untouched"
    );
    accept(&herald, "e3", "t", &[]).await;
    second.wait_for_id("e3").await;
    added.wait_for_id("e3").await;
    assert_eq!(
        second.ids(),
        ["e3"],
        "the changed trigger kept its position"
    );
    assert_eq!(first.ids(), ["e1", "e2"]);

    write(broker_yaml("b", None) + &trigger_yaml("t", "b", &second.url(), ""));
    herald.hangup();
    wait_for_log(&herald, "configuration reloaded", 2).await;
    assert_eq!(admin.get(&format!("{TRIGGERS}/u")).await.0, 404);
    let (status, body) = admin
        .call(Method::DELETE, &format!("{TRIGGERS}/t"), None)
        .await;
    assert_eq!(status, 409, "file objects stay read-only: {body}");
}

/// Deeply nested filters in one request: a clear 400/422 naming the limit, and the process
/// (ingress included) keeps serving. 2,000 levels overflowed a tokio worker's stack once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_filters_are_refused_and_herald_stays_up() {
    let (herald, _dirs) = empty_herald(&[]).await;
    let admin = AdminClient::new(&herald.admin);
    admin.create(BROKERS, BROKER_B).await;
    let broker = herald.broker_url("default", "b");
    let trigger_with = |filters: Value| {
        json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger",
            "metadata": {"name": "deep"},
            "spec": {"broker": "b", "subscriber": {"uri": "http://127.0.0.1:9/"}, "filters": filters}})
        .to_string()
    };
    let levels = 2_000;
    let cases = [
        (
            "nested NOTs",
            trigger_with(json!([{"cesql": "NOT ".repeat(levels) + "TRUE"}])),
            422,
            "spec.filters[0].cesql",
            "deeper than 64 levels",
        ),
        (
            "nested parentheses",
            trigger_with(json!([{"cesql": "(".repeat(levels) + "TRUE" + &")".repeat(levels)}])),
            422,
            "spec.filters[0].cesql",
            "deeper than 64 levels",
        ),
        (
            "nested JSONPath filters",
            trigger_with(
                json!([{"jsonpath": format!("$[?{}@.a{}]", "(".repeat(levels), ")".repeat(levels))}]),
            ),
            422,
            "spec.filters[0].jsonpath",
            "deeper than 32 levels",
        ),
        (
            "not inside not",
            trigger_with(json!([(0..40).fold(
                json!({"exact": {"type": "a"}}),
                |inner, _| json!({"not": inner})
            )])),
            422,
            "spec.filters[0].not.not",
            "filters nest deeper than 32 levels",
        ),
        (
            "a document nested 2,000 levels",
            trigger_with(json!([{"all": []}])).replace(
                "{\"all\":[]}",
                &format!("{}{{}}{}", "{\"all\":[".repeat(levels), "]}".repeat(levels)),
            ),
            400,
            "",
            "nests deeper than 128 levels",
        ),
    ];
    for (what, body, code, field, needle) in cases {
        let (status, answer) = admin
            .call(Method::POST, TRIGGERS, Some(("application/json", &body)))
            .await;
        assert_eq!(status, code, "{what}: {answer}");
        assert!(message(&answer).contains(needle), "{what}: {answer}");
        if code == 422 {
            let cause = answer["details"]["causes"][0]["field"]
                .as_str()
                .unwrap_or_default();
            assert!(cause.starts_with(field), "{what}: {answer}");
        }
        assert_eq!(
            scenarios::send_binary(&broker, what, "t", &[]).await,
            202,
            "{what}: ingress keeps accepting events"
        );
    }
    let (_, triggers) = admin.get(TRIGGERS).await;
    assert_eq!(
        triggers["items"],
        json!([]),
        "refused triggers change nothing"
    );
}

/// Every change through the admin API leaves an audit line (target `herald::audit`): who,
/// verb, resource, namespace, name and outcome; a refused one (wrong token) too, and reads
/// none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_audited() {
    let (herald, _dirs) = empty_herald(&["--admin-token", "s3cret"]).await;
    let admin = AdminClient::new(&herald.admin).with_token("s3cret");
    let wrong = AdminClient::new(&herald.admin).with_token("wrong");
    assert_eq!(wrong.post_yaml(BROKERS, BROKER_B).await.0, 401);
    assert_eq!(admin.post_yaml(BROKERS, BROKER_B).await.0, 201);
    assert_eq!(admin.get(&format!("{BROKERS}/b")).await.0, 200);
    assert_eq!(admin.delete(&format!("{BROKERS}/b")).await.0, 200);
    let audited = |who: &str, verb: &str, name: &str, status: u16, outcome: &str| {
        let logs = herald.logs();
        logs.lines().any(|line| {
            line.contains("herald::audit")
                && line.contains(&format!("who={who}"))
                && line.contains(&format!("verb={verb}"))
                && line.contains("resource=\"brokers\"")
                && line.contains("namespace=\"default\"")
                && line.contains(&format!("name=\"{name}\""))
                && line.contains(&format!("status={status}"))
                && line.contains(&format!("outcome=\"{outcome}\""))
        })
    };
    common::wait_until("the audit of the delete", || {
        audited("admin-token", "DELETE", "b", 200, "allowed")
    })
    .await;
    assert!(
        audited("unauthenticated", "POST", "", 401, "refused"),
        "{}",
        herald.logs()
    );
    assert!(
        audited("admin-token", "POST", "", 201, "allowed"),
        "{}",
        herald.logs()
    );
    assert!(
        !herald
            .logs()
            .lines()
            .any(|l| l.contains("herald::audit") && l.contains("verb=GET")),
        "reads are not audited"
    );
}

/// `--admin-roles` (issue 21): besides the admin token, OIDC tokens for the admin audience
/// (here from Herald's own issuer) get what their subject's role allows per namespace: a
/// viewer lists but may not create (403 saying which role is missing), an editor creates in
/// its namespace and not in another, a token for another audience is refused (401 saying
/// why); every refusal and change is audited with the subject as `who`, and the admin token
/// (the console's) still does everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_tokens_get_the_roles_of_their_subject_per_namespace() {
    let viewer = "system:serviceaccount:ops:viewer";
    let deployer = "system:serviceaccount:team-a:deployer";
    let dirs = HeraldDirs::new("");
    // Not in the config folder, which holds resources.
    let roles_dir = tempfile::tempdir().unwrap();
    let roles_path = roles_dir.path().join("roles.yaml");
    std::fs::write(
        &roles_path,
        format!(
            "bindings:\n- {{subject: '{viewer}', role: viewer, namespaces: [default]}}\n- {{subject: '{deployer}', role: editor, namespaces: [team-a]}}\n"
        ),
    )
    .unwrap();
    let herald = Herald::start(
        &Sled,
        &dirs,
        &[
            "--authentication-oidc",
            "enabled",
            "--admin-token",
            "s3cret",
            "--admin-roles",
            roles_path.to_str().unwrap(),
        ],
    )
    .await;
    let admin = AdminClient::new(&herald.admin).with_token("s3cret");
    let mint = |subject: &'static str, audience: &'static str| {
        let admin = &admin;
        async move {
            let (status, answer) = admin
                .call(
                    Method::POST,
                    "/apis/herald.dev/v1/oidc/token",
                    Some((
                        "application/json",
                        &json!({"subject": subject, "audience": audience}).to_string(),
                    )),
                )
                .await;
            assert_eq!(status, 200, "{answer}");
            answer["token"].as_str().unwrap().to_owned()
        }
    };
    let as_viewer = AdminClient::new(&herald.admin).with_token(&mint(viewer, "herald-admin").await);
    let as_deployer =
        AdminClient::new(&herald.admin).with_token(&mint(deployer, "herald-admin").await);
    let broker = |name: &str| {
        format!("apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: {name}}}\n")
    };
    let brokers_in =
        |namespace: &str| format!("/apis/eventing.knative.dev/v1/namespaces/{namespace}/brokers");

    assert_eq!(admin.post_yaml(BROKERS, &broker("b")).await.0, 201);
    let (status, list) = as_viewer.get(BROKERS).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (status, refused) = as_viewer.post_yaml(BROKERS, &broker("c")).await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["reason"], "Forbidden");
    assert!(
        message(&refused).contains("may not create brokers in namespace \"default\"")
            && message(&refused).contains("needs editor"),
        "{refused}"
    );

    let (status, created) = as_deployer
        .post_yaml(&brokers_in("team-a"), &broker("shop"))
        .await;
    assert_eq!(status, 201, "{created}");
    let (status, refused) = as_deployer
        .post_yaml(&brokers_in("team-b"), &broker("shop"))
        .await;
    assert_eq!(status, 403, "{refused}");
    assert!(message(&refused).contains("has no role there"), "{refused}");
    assert_eq!(as_deployer.get(BROKERS).await.0, 403, "no role in default");

    // A token for another audience (a broker's) is not an admin token.
    let wrong = AdminClient::new(&herald.admin)
        .with_token(&mint(viewer, "eventing.knative.dev/broker/default/b").await);
    let (status, refused) = wrong.get(BROKERS).await;
    assert_eq!(status, 401, "{refused}");
    assert!(message(&refused).contains("audience"), "{refused}");

    let audited = |who: &str, namespace: &str, status: u16, outcome: &str| {
        herald.logs().lines().any(|line| {
            line.contains("herald::audit")
                && line.contains(&format!("who={who} "))
                && line.contains("verb=POST")
                && line.contains(&format!("namespace=\"{namespace}\""))
                && line.contains(&format!("status={status}"))
                && line.contains(&format!("outcome=\"{outcome}\""))
        })
    };
    // The refused read came last: once its line is read, all are.
    common::wait_until("the audit of the refused read", || {
        herald.logs().lines().any(|line| {
            line.contains("herald::audit")
                && line.contains("who=unauthenticated")
                && line.contains("verb=GET")
                && line.contains("status=401")
        })
    })
    .await;
    assert!(
        audited(deployer, "team-b", 403, "refused"),
        "{}",
        herald.logs()
    );
    assert!(
        audited(viewer, "default", 403, "refused"),
        "{}",
        herald.logs()
    );
    assert!(
        audited(deployer, "team-a", 201, "allowed"),
        "{}",
        herald.logs()
    );
    // The admin token (the console's) still does everything.
    assert_eq!(admin.get(&brokers_in("team-a")).await.0, 200);
    assert_eq!(
        admin
            .delete(&format!("{}/shop", brokers_in("team-a")))
            .await
            .0,
        200
    );
}
