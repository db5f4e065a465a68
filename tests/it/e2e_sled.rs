//! The end-to-end scenario list on the embedded sled log.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "test code"
)]

use crate::common;
use crate::scenarios;

use common::admin::{AdminClient, TRIGGERS};
use common::herald::{run_invalid, Herald, HeraldDirs, Sled};
use common::{Reply, Subscriber};
use scenarios::admin::runtime_trigger;
use scenarios::observability::wait_for_series;

every_scenario!(Sled);

// What does not depend on the log runs once, here: retries and their timing (also unit-tested
// on paused time in herald-triggers), dead-letter extensions, filters, the outbound bound.
on_backend!(Sled =>
    delivery::linear_backoff,
    delivery::exponential_backoff,
    delivery::retry_after_is_honoured,
    delivery::timeout_then_dead_letter,
    delivery::dead_letter_extensions,
    delivery::outbound_requests_are_bounded_across_triggers,
    ingress::exact_filters,
    filters::every_dialect,
);

// Configuration checks happen before any backend is touched: run them once.
on_backend!(Sled =>
    ingress::invalid_config_is_rejected_before_binding,
    filters::invalid_filters_are_rejected_at_load,
    observability::event_type_labels_are_bounded,
);

// The event catalog (issue 20); the 100,000-type bound once.
on_backend!(Sled =>
    catalog::eventtypes_are_auto_created,
    catalog::schemas_are_enforced,
    catalog::schema_violations_are_counted_in_warn_mode,
    catalog::duplicates_are_dropped_across_a_sigkill,
    catalog::auto_created_types_are_bounded,
);

// The embedded log's own disk: full, then freed; and crashes under load.
on_backend!(Sled =>
    disk::full_disk_refuses_then_recovers,
    durability::accepted_events_survive_repeated_sigkill_under_load,
);

/// Two Heralds on one data directory would corrupt the log: the second is refused with an
/// error that says why, and the first goes on accepting events.
#[tokio::test]
async fn a_second_herald_on_the_same_data_dir_is_refused() {
    let dirs = HeraldDirs::new(&scenarios::broker_yaml("b", None));
    let first = Herald::start(&Sled, &dirs, &[]).await;

    let (status, stderr) = run_invalid(&dirs.config_file(), dirs.data.path());
    assert!(!status.success(), "the second Herald must exit non-zero");
    assert!(
        stderr.contains("in use by another process"),
        "the error must say the log is in use: {stderr}"
    );
    assert!(
        stderr.contains(&dirs.data.path().display().to_string()),
        "the error must name the directory: {stderr}"
    );

    let url = first.broker_url(scenarios::NS, "b");
    assert_eq!(scenarios::send_binary(&url, "after", "t", &[]).await, 202);
}

fn broker_with_annotations(annotations: &str) -> String {
    format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: b\n  namespace: default\n  annotations: {{{annotations}}}\n---\n"
    )
}

/// `herald.dev/retention-max-age` on the embedded log: an event older than the limit is
/// deleted, so a trigger replaying from the earliest event never sees it.
#[tokio::test]
async fn the_embedded_log_drops_events_past_the_age_limit() {
    // Long enough that "new" is still young when the trigger reads it on a slow machine.
    let dirs = HeraldDirs::new(&broker_with_annotations(
        "herald.dev/retention-max-age: PT3S",
    ));
    let herald = Herald::start(&Sled, &dirs, &[]).await;
    scenarios::accept(&herald, "old", "t", &[]).await;
    let broker = [("namespace", "default"), ("broker", "b")];
    wait_for_series(&herald, "herald_log_trimmed_records_total", &broker, 1.0).await;

    scenarios::accept(&herald, "new", "t", &[]).await;
    let subscriber = Subscriber::start().await;
    AdminClient::new(&herald.admin)
        .create(
            TRIGGERS,
            &runtime_trigger(
                "replay",
                &subscriber.url(),
                "herald.dev/start-from: earliest",
                "",
            ),
        )
        .await;
    subscriber.wait_for_id("new").await;
    assert_eq!(
        subscriber.ids(),
        ["new"],
        "the log is read in order: old is gone"
    );
}

/// `herald.dev/retention: interest` on the embedded log: events every trigger finished are
/// deleted.
#[tokio::test]
async fn the_embedded_log_drops_what_every_trigger_finished_under_interest_retention() {
    let subscriber = Subscriber::start().await;
    let dirs = HeraldDirs::new(
        &(broker_with_annotations("herald.dev/retention: interest")
            + &scenarios::trigger_yaml("t", "b", &subscriber.url(), "")),
    );
    let herald = Herald::start(&Sled, &dirs, &[]).await;
    for id in ["a", "b", "c"] {
        scenarios::accept(&herald, id, "t", &[]).await;
    }
    subscriber.wait_for(3).await;
    let broker = [("namespace", "default"), ("broker", "b")];
    wait_for_series(&herald, "herald_log_trimmed_records_total", &broker, 3.0).await;
    // Deliveries run concurrently: the order of arrival is not promised.
    let mut ids = subscriber.ids();
    ids.sort();
    assert_eq!(ids, ["a", "b", "c"]);
}

/// `examples/quickstart` does what the README's quickstart says, with the example's
/// subscriber addresses pointed at test subscribers.
#[tokio::test]
async fn the_quickstart_example_behaves_as_documented() {
    let orders = Subscriber::start().await;
    let flaky = Subscriber::start().await;
    flaky.set_default(Reply::status(503).body("flaky on purpose"));
    let dead_letter = Subscriber::start().await;
    let mut config = String::new();
    for file in ["broker.yaml", "triggers.yaml"] {
        let path = format!("{}/examples/quickstart/{file}", env!("CARGO_MANIFEST_DIR"));
        config += &std::fs::read_to_string(path).unwrap();
        config += "\n---\n";
    }
    for (path, subscriber) in [
        ("/orders", &orders),
        ("/flaky", &flaky),
        ("/dead-letter", &dead_letter),
    ] {
        let address = format!("http://127.0.0.1:9000{path}");
        assert!(config.contains(&address), "the example sends to {address}");
        config = config.replace(&address, &subscriber.url());
    }
    let dirs = HeraldDirs::new(&config);
    let herald = Herald::start(&Sled, &dirs, &[]).await;

    let status = scenarios::client()
        .post(herald.broker_url("default", "default"))
        .header("ce-specversion", "1.0")
        .header("ce-id", "order-1")
        .header("ce-source", "/shop")
        .header("ce-type", "com.example.order.created")
        .header("content-type", "application/json")
        .body(r#"{"item":"book","qty":2}"#)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 202);
    orders.wait_for_id("order-1").await;
    let dead = dead_letter.wait_for_id("order-1").await;
    assert_eq!(dead[0].ce("knativeerrorcode"), Some("503"));
    assert_eq!(flaky.ids().len(), 3, "the first attempt and two retries");
}
