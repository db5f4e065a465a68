//! Test harness: the real `herald` binary, real HTTP subscribers, and backends.
#![allow(dead_code)]

pub mod herald;
pub mod subscriber;

pub use herald::{Backend, Herald, HeraldDirs};

/// Generates one `#[tokio::test]` per scenario of `tests/scenarios/`, each on a backend built
/// by the given expression (evaluated per test).
#[macro_export]
macro_rules! on_backend {
    ($backend:expr => $($path:ident :: $scenario:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() {
                scenarios::$path::$scenario(&$backend).await;
            }
        )+
    };
}
pub use subscriber::{Reply, Subscriber};

use std::time::Duration;

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
