//! The end-to-end scenario list on the embedded sled log.

mod common;
mod scenarios;

use common::admin::{AdminClient, TRIGGERS};
use common::herald::{run_invalid, Herald, HeraldDirs, Sled};
use common::Subscriber;
use scenarios::admin::runtime_trigger;
use scenarios::observability::wait_for_series;

every_scenario!(Sled);

// Configuration checks happen before any backend is touched: run them once.
on_backend!(Sled =>
    ingress::invalid_config_is_rejected_before_binding,
    filters::invalid_filters_are_rejected_at_load,
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
    assert_eq!(subscriber.ids(), ["a", "b", "c"]);
}
