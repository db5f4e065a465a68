//! Test harness: the real `herald` binary, real HTTP subscribers, and backends.
#![allow(dead_code, unused_imports)]

pub mod admin;
pub mod certs;
pub mod disk;
pub mod herald;
pub mod kube;
pub mod load;
pub mod otlp;
pub mod subscriber;

pub use herald::{Backend, Herald, HeraldDirs};
pub use herald_broker::testing::Server;

/// Every backend-dependent scenario of `scenarios/`: the one list each backend runs. The
/// scenarios that do not depend on the log (retry timing, dead-letter extensions, filters,
/// the outbound bound) run once, on the embedded log (`e2e_sled.rs`); the delivery unit
/// tests of herald-triggers check the timing on paused time.
#[macro_export]
macro_rules! every_scenario {
    ($backend:expr) => {
        $crate::on_backend!($backend =>
            ingress::status_codes,
            ingress::content_modes_preserve_everything,
            delivery::parked_when_dead_letter_sink_is_down,
            delivery::replies_are_published_to_the_broker,
            delivery::ttl_stops_reply_loops,
            delivery::dead_subscriber_does_not_hold_back_others,
            delivery::ordered_per_partition_key,
            durability::accepted_events_survive_sigkill,
            durability::readiness_and_health,
            durability::sigterm_finishes_in_flight_deliveries,
            observability::metrics_count_exactly_the_traffic,
            observability::trace_context_reaches_subscribers,
            observability::spans_are_exported_over_otlp,
            admin::triggers_change_at_runtime,
            admin::start_from_replays_exactly,
            admin::dead_letters_are_listed_redriven_and_purged,
            names::look_alike_names_keep_their_own_events,
            flows::sequence_of_three_steps,
            flows::parallel_with_filters_and_a_catch_all,
            flows::trigger_into_a_sequence,
            flows::subscription_dead_letters,
            flows::sequence_survives_sigkill,
        );
    };
}

/// Generates one `#[tokio::test]` per scenario of `scenarios/` (skipped without the backend's
/// server outside `scripts/test`), each on a backend built
/// by the given expression (evaluated per test).
#[macro_export]
macro_rules! on_backend {
    ($backend:expr => $($path:ident :: $scenario:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() {
                let Some(backend) = $crate::common::herald::backend_or_skip(|| $backend) else {
                    return;
                };
                scenarios::$path::$scenario(&backend).await;
            }
        )+
    };
}
pub use subscriber::{Reply, Subscriber};

use std::time::Duration;

/// `true` (the test returns, passing) when a server the test needs is missing and the run
/// is a plain `cargo test`; under `scripts/test` nothing is skipped (see
/// `herald_broker::testing::servers`).
pub fn skip_without(servers: &[Server]) -> bool {
    !servers
        .iter()
        .all(|server| herald_broker::testing::available(*server))
}

/// How long any wait for an expected condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A port with nothing listening on it (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `check` holds, polling on a short interval, or panics after the deadline.
pub async fn wait_until<F: FnMut() -> bool>(what: &str, mut check: F) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the subscriber has received a request matching `check`; returns all received.
pub async fn wait_for(
    subscriber: &Subscriber,
    check: impl Fn(&subscriber::Received) -> bool,
) -> Vec<subscriber::Received> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let got = subscriber.received();
        if got.iter().any(&check) {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for a matching request; got {}",
            got.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Waits until the async `check` holds, or panics after the deadline.
pub async fn wait_for_async<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the async `probe` gives a value, or panics after the deadline showing the
/// last thing `describe` said about the state.
pub async fn wait_for_value<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) => assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; last seen: {last}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
