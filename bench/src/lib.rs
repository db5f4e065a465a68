//! herald-bench: Herald's throughput and latency with baselines measured in the same run.
//!
//! For each backend it starts Herald, a fast built-in subscriber and a load generator, and
//! measures closed-loop maximum ingress throughput, open-loop latency at fixed rates (ingress
//! 202 and ingress→subscriber), and fan-out to 1…1,000 triggers. Baselines in the same run: a
//! bare axum server answering 202 (this machine's HTTP limit) and, for NATS, the raw JetStream
//! publish rate to the same server. Reports are JSON plus a markdown table.
#![forbid(unsafe_code)]

pub mod load;
pub mod processes;
pub mod report;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

/// What to run and how long.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    #[serde(skip)]
    pub herald: PathBuf,
    pub backends: Vec<String>,
    pub connections: usize,
    pub event_bytes: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub repetitions: usize,
    /// Open-loop rates as fractions of the measured maximum throughput.
    pub rate_fractions: Vec<f64>,
    pub fanout_triggers: Vec<usize>,
    pub fanout_events: usize,
}

impl Settings {
    pub fn full(herald: PathBuf) -> Self {
        Self {
            herald,
            backends: vec!["sled".into(), "nats".into(), "kafka".into()],
            connections: 32,
            event_bytes: 1024,
            warmup: Duration::from_secs(2),
            duration: Duration::from_secs(5),
            repetitions: 3,
            rate_fractions: vec![0.25, 0.5, 0.75],
            fanout_triggers: vec![1, 10, 100, 1000],
            fanout_events: 200,
        }
    }

    /// Seconds, not minutes: proves the tool works, measures nothing worth quoting.
    pub fn smoke(herald: PathBuf) -> Self {
        Self {
            connections: 4,
            warmup: Duration::from_millis(100),
            duration: Duration::from_millis(400),
            repetitions: 1,
            rate_fractions: vec![0.25],
            fanout_triggers: vec![1, 10],
            fanout_events: 20,
            ..Self::full(herald)
        }
    }
}
