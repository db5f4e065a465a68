//! The end-to-end scenario list on the embedded sled log.

mod common;
mod scenarios;

use common::herald::{run_invalid, Herald, HeraldDirs, Sled};

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
