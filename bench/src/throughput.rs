//! Herald's closed-loop ingress at one connection count, repeated: the measure the ingress,
//! relay and catalog rows share.

use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use crate::load::{closed_loop, median};
use crate::processes::{cpu_per_1000, FastSubscriber, Herald};
use crate::Settings;

/// How long the accepted events of a closed-loop run may take to reach the subscriber.
pub(crate) const DRAIN_DEADLINE: Duration = Duration::from_secs(120);

/// Herald's closed-loop ingress (median of the repetitions).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Throughput {
    pub events_per_second: f64,
    /// Herald's CPU time (user + system) per 1,000 accepted events, from the start of the
    /// load until every accepted event reached the subscriber (with a trigger).
    pub cpu_seconds_per_1000: Option<f64>,
    /// Every accepted event reached the subscriber within the drain deadline.
    pub delivered_all: bool,
    /// With a trigger: accepted events per second from the start of the load (warm-up
    /// included) until the last of them reached the subscriber: accept and deliver.
    pub delivered_per_second: Option<f64>,
}

/// Closed-loop ingress of `herald` (median of the repetitions) and its CPU per event; with a
/// `subscriber`, the CPU count runs until every accepted event was delivered.
pub(crate) async fn throughput(
    herald: &Herald,
    url: &str,
    pool: &[reqwest::Client],
    payload: &Bytes,
    settings: &Settings,
    subscriber: Option<&FastSubscriber>,
) -> Throughput {
    let (mut rates, mut cpus, mut delivered_all) = (Vec::new(), Vec::new(), true);
    let mut delivered_rates = Vec::new();
    for _ in 0..settings.repetitions {
        let delivered_before = subscriber.map_or(0, FastSubscriber::count);
        let before = herald.cpu_seconds();
        let started = std::time::Instant::now();
        let rate = closed_loop(
            url,
            pool,
            payload.clone(),
            settings.warmup,
            settings.duration,
        )
        .await;
        if let Some(subscriber) = subscriber {
            delivered_all &= subscriber
                .wait_for(delivered_before + rate.total, DRAIN_DEADLINE)
                .await;
            delivered_rates.push(rate.total as f64 / started.elapsed().as_secs_f64());
        }
        rates.push(rate.per_second);
        cpus.extend(cpu_per_1000(before, herald.cpu_seconds(), rate.total));
    }
    Throughput {
        events_per_second: median(rates),
        cpu_seconds_per_1000: (!cpus.is_empty()).then(|| median(cpus)),
        delivered_all,
        delivered_per_second: (!delivered_rates.is_empty()).then(|| median(delivered_rates)),
    }
}
