//! herald-bench: Herald's throughput, latency and resources with baselines measured in the
//! same run, each number next to its goal (issue 16) where it has one.
//!
//! For each backend it starts Herald, a fast built-in subscriber and a load generator, and
//! measures closed-loop ingress (with no trigger and with one) at several connection counts
//! with Herald's CPU per event, open-loop latency at fixed rates (ingress 202 and
//! ingress→subscriber), idle memory and CPU, memory under overload and with 1,000 triggers,
//! fan-out to 1…1,000 triggers and, on the embedded log, recovery after SIGKILL. Baselines in
//! the same run: a bare axum server answering 202 (this machine's HTTP limit), a bare relay
//! (202, then forwarded to the subscriber), and the brokers' own clients (raw JetStream
//! publishes, raw Kafka produces). Reports are JSON plus a markdown table.
#![forbid(unsafe_code)]

pub mod access;
pub mod baselines;
pub mod catalog;
pub mod load;
pub mod processes;
pub mod raw;
pub mod recovery;
pub mod report;
pub mod table;
pub mod throughput;
pub mod tls;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

/// What to run and how long.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    #[serde(skip)]
    pub herald: PathBuf,
    pub backends: Vec<String>,
    /// The parts of the run to measure (see [`PHASES`]); all by default.
    pub phases: Vec<String>,
    /// Closed-loop connection counts; each is also the concurrency of the raw client baselines.
    pub connections: Vec<usize>,
    pub event_bytes: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub repetitions: usize,
    /// Open-loop rates as fractions of the measured maximum throughput.
    pub rate_fractions: Vec<f64>,
    /// The open-loop rate of the ingress p50 goal, events per second.
    pub low_rate: f64,
    /// How long Herald is watched doing nothing (idle CPU).
    pub idle_window: Duration,
    pub fanout_triggers: Vec<usize>,
    pub fanout_events: usize,
    /// Events written into the embedded log before the kill of the recovery measurement.
    pub recovery_events: u64,
    /// The most time the recovery fill may take; it stops there with what it has.
    pub recovery_fill_limit: Duration,
}

/// The parts of a run: closed-loop ingress with its baselines; open-loop latency (the fixed
/// low rate, and fractions of the ingress maximum when that was measured); idle and
/// overload memory and CPU; fan-out; recovery (embedded log only).
pub const PHASES: [&str; 5] = ["ingress", "latency", "resources", "fanout", "recovery"];

impl Settings {
    /// Whether `phase` (one of [`PHASES`]) is measured.
    pub fn measures(&self, phase: &str) -> bool {
        self.phases.iter().any(|p| p == phase)
    }
}

/// The open-loop fraction of the maximum at which the latency goals hold.
pub const GOAL_FRACTION: f64 = 0.5;

impl Settings {
    pub fn full(herald: PathBuf) -> Self {
        Self {
            herald,
            backends: vec!["sled".into(), "nats".into(), "kafka".into()],
            phases: PHASES.iter().map(|&p| p.to_owned()).collect(),
            connections: vec![32, 256],
            event_bytes: 1024,
            warmup: Duration::from_secs(2),
            duration: Duration::from_secs(5),
            repetitions: 3,
            rate_fractions: vec![0.25, GOAL_FRACTION, 0.75],
            low_rate: 200.0,
            idle_window: Duration::from_secs(10),
            fanout_triggers: vec![1, 10, 100, 1000],
            fanout_events: 200,
            recovery_events: 1_000_000,
            recovery_fill_limit: Duration::from_secs(180),
        }
    }

    /// Seconds, not minutes: proves the tool works, measures nothing worth quoting.
    pub fn smoke(herald: PathBuf) -> Self {
        Self {
            connections: vec![4, 16],
            warmup: Duration::from_millis(100),
            duration: Duration::from_millis(400),
            repetitions: 1,
            rate_fractions: vec![GOAL_FRACTION],
            idle_window: Duration::from_secs(1),
            fanout_triggers: vec![1, 10],
            fanout_events: 20,
            recovery_events: 2_000,
            recovery_fill_limit: Duration::from_secs(20),
            ..Self::full(herald)
        }
    }
}
