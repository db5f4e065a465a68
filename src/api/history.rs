//! The last hour of Herald's own metrics, sampled from what `/metrics` renders every
//! [`INTERVAL`], kept in memory for the console's charts and rates (`/stats/v1/...`). Rates,
//! success ratios and mean latencies are computed here from consecutive samples, so the page
//! and the CLI show the same numbers.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::prom_text::{self, Sample};

/// How often the metrics are sampled.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// Samples kept: one hour at [`INTERVAL`].
pub const SAMPLES: usize = 720;
/// Most brokers plus triggers followed; later ones are left out of the history (but not out
/// of `/metrics`) until Herald restarts. With [`SAMPLES`], at most a few MiB.
pub const MAX_SERIES: usize = 128;
/// The window of the "current" rates.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

/// A broker or trigger: namespace and name.
pub type Key = Arc<(String, String)>;

#[derive(Clone, Copy, Default, Debug)]
struct BrokerCounters {
    received: f64,
    log_records: Option<f64>,
}

#[derive(Clone, Copy, Default, Debug)]
struct TriggerCounters {
    delivered: f64,
    attempts: f64,
    attempts_ok: f64,
    parked: f64,
    dead_lettered: f64,
    latency_sum: f64,
    latency_count: f64,
    lag_events: Option<f64>,
    lag_seconds: Option<f64>,
}

/// What one sample read.
#[derive(Default, Debug)]
struct Snapshot {
    /// Seconds since the epoch.
    at: f64,
    brokers: BTreeMap<Key, BrokerCounters>,
    triggers: BTreeMap<Key, TriggerCounters>,
}

/// The kept samples, oldest first.
#[derive(Default)]
struct Samples {
    snapshots: VecDeque<Snapshot>,
    /// Every key followed so far (shared by the snapshots), at most [`MAX_SERIES`].
    keys: BTreeMap<(String, String), Key>,
}

/// The history; cheap to share.
#[derive(Clone)]
pub struct History {
    samples: Arc<Mutex<Samples>>,
    /// Counts samples taken: the console's live stream waits on it.
    taken: watch::Sender<u64>,
}

impl Default for History {
    fn default() -> Self {
        Self {
            samples: Arc::default(),
            taken: watch::channel(0).0,
        }
    }
}

/// A broker's numbers over a window.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BrokerPoint {
    /// End of the window, seconds since the epoch.
    pub time: f64,
    /// Events accepted per second.
    pub ingress_per_second: f64,
    /// Records in the broker's log (its last offset), when the backend reports it.
    pub log_records: Option<f64>,
}

/// A trigger's numbers over a window.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TriggerPoint {
    pub time: f64,
    pub delivered_per_second: f64,
    /// Attempts to the subscriber answered 2xx, of all attempts in the window; none without
    /// attempts.
    pub success_ratio: Option<f64>,
    pub parked_per_second: f64,
    pub dead_lettered_per_second: f64,
    /// Mean time from ingress acceptance to delivery of the events delivered in the window.
    pub mean_latency_seconds: Option<f64>,
    pub lag_events: Option<f64>,
    pub lag_seconds: Option<f64>,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

impl History {
    /// Samples `metrics` every [`INTERVAL`] until `stop`.
    pub fn start(&self, metrics: PrometheusHandle, stop: CancellationToken) {
        let history = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = stop.cancelled() => return,
                }
                let text = metrics.render();
                history.record(now(), &text);
            }
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Samples> {
        // Each change is one push or pop: a panic cannot leave the samples half changed.
        self.samples.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A receiver that changes after each sample.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.taken.subscribe()
    }

    /// Adds a sample read from Prometheus `text` taken at `at`.
    fn record(&self, at: f64, text: &str) {
        let wanted = |name: &str| name.starts_with("herald_");
        let mut snapshot = Snapshot {
            at,
            ..Snapshot::default()
        };
        {
            let mut samples = self.lock();
            for sample in prom_text::samples(text, wanted) {
                add(&mut samples.keys, &mut snapshot, &sample);
            }
            if samples.snapshots.len() == SAMPLES {
                samples.snapshots.pop_front();
            }
            samples.snapshots.push_back(snapshot);
        }
        self.taken.send_modify(|n| *n += 1);
    }

    /// Each broker's numbers over the last [`RATE_WINDOW`] (or as much as is kept).
    pub fn current_brokers(&self) -> BTreeMap<Key, BrokerPoint> {
        let samples = self.lock();
        let Some((old, new)) = window(&samples.snapshots) else {
            return BTreeMap::new();
        };
        new.brokers
            .iter()
            .map(|(key, now)| (key.clone(), broker_point(old, new, key, now)))
            .collect()
    }

    /// Each trigger's numbers over the last [`RATE_WINDOW`] (or as much as is kept).
    pub fn current_triggers(&self) -> BTreeMap<Key, TriggerPoint> {
        let samples = self.lock();
        let Some((old, new)) = window(&samples.snapshots) else {
            return BTreeMap::new();
        };
        new.triggers
            .iter()
            .map(|(key, now)| (key.clone(), trigger_point(old, new, key, now)))
            .collect()
    }

    /// A point per sample interval since `since` (seconds since the epoch), oldest first.
    pub fn series(&self, since: f64) -> Series {
        let samples = self.lock();
        let mut series = Series::default();
        let pairs = samples
            .snapshots
            .iter()
            .zip(samples.snapshots.iter().skip(1))
            .filter(|(_, new)| new.at >= since);
        for (old, new) in pairs {
            for (key, now) in &new.brokers {
                series
                    .brokers
                    .entry(key.clone())
                    .or_default()
                    .push(broker_point(old, new, key, now));
            }
            for (key, now) in &new.triggers {
                series
                    .triggers
                    .entry(key.clone())
                    .or_default()
                    .push(trigger_point(old, new, key, now));
            }
        }
        series
    }
}

/// Points by broker and by trigger.
#[derive(Default)]
pub struct Series {
    pub brokers: BTreeMap<Key, Vec<BrokerPoint>>,
    pub triggers: BTreeMap<Key, Vec<TriggerPoint>>,
}

/// The oldest sample within [`RATE_WINDOW`] of the newest, and the newest.
fn window(snapshots: &VecDeque<Snapshot>) -> Option<(&Snapshot, &Snapshot)> {
    let new = snapshots.back()?;
    let old = snapshots
        .iter()
        .find(|s| new.at - s.at <= RATE_WINDOW.as_secs_f64() + 0.5)
        .filter(|old| old.at < new.at)
        .or_else(|| snapshots.iter().rev().nth(1))?;
    Some((old, new))
}

/// Per second, never negative (a counter that restarts counts from zero).
fn rate(old: f64, new: f64, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        return 0.0;
    }
    (new - old).max(0.0) / seconds
}

fn broker_point(old: &Snapshot, new: &Snapshot, key: &Key, now: &BrokerCounters) -> BrokerPoint {
    let before = old.brokers.get(key).copied().unwrap_or_default();
    BrokerPoint {
        time: new.at,
        ingress_per_second: rate(before.received, now.received, new.at - old.at),
        log_records: now.log_records,
    }
}

fn trigger_point(old: &Snapshot, new: &Snapshot, key: &Key, now: &TriggerCounters) -> TriggerPoint {
    let before = old.triggers.get(key).copied().unwrap_or_default();
    let seconds = new.at - old.at;
    let attempts = (now.attempts - before.attempts).max(0.0);
    let ok = (now.attempts_ok - before.attempts_ok).max(0.0);
    let latency_count = (now.latency_count - before.latency_count).max(0.0);
    let latency_sum = (now.latency_sum - before.latency_sum).max(0.0);
    TriggerPoint {
        time: new.at,
        delivered_per_second: rate(before.delivered, now.delivered, seconds),
        success_ratio: (attempts > 0.0).then(|| (ok / attempts).min(1.0)),
        parked_per_second: rate(before.parked, now.parked, seconds),
        dead_lettered_per_second: rate(before.dead_lettered, now.dead_lettered, seconds),
        mean_latency_seconds: (latency_count > 0.0).then(|| latency_sum / latency_count),
        lag_events: now.lag_events,
        lag_seconds: now.lag_seconds,
    }
}

/// The shared key of `namespace`/`name`, or `None` past [`MAX_SERIES`].
fn key_of(keys: &mut BTreeMap<(String, String), Key>, namespace: &str, name: &str) -> Option<Key> {
    let wanted = (namespace.to_owned(), name.to_owned());
    if let Some(key) = keys.get(&wanted) {
        return Some(key.clone());
    }
    if keys.len() >= MAX_SERIES {
        return None;
    }
    let key = Arc::new(wanted.clone());
    keys.insert(wanted, key.clone());
    Some(key)
}

/// Adds one line of the metrics to the snapshot.
fn add(keys: &mut BTreeMap<(String, String), Key>, snapshot: &mut Snapshot, sample: &Sample) {
    use herald_triggers::metrics as m;
    let Some(namespace) = sample.label("namespace") else {
        return;
    };
    if sample.name == herald_broker::ingress::EVENTS_RECEIVED
        || sample.name == herald_broker::log::LOG_RECORDS
    {
        let Some(broker) = sample.label("broker").filter(|b| !b.is_empty()) else {
            return;
        };
        let Some(key) = key_of(keys, namespace, broker) else {
            return;
        };
        let counters = snapshot.brokers.entry(key).or_default();
        if sample.name == herald_broker::log::LOG_RECORDS {
            counters.log_records = Some(sample.value);
        } else if sample.label("response_code") == Some("202") {
            counters.received += sample.value;
        }
        return;
    }
    let Some(trigger) = sample.label("trigger") else {
        return;
    };
    let field: fn(&mut TriggerCounters, &Sample) = match sample.name {
        n if n == m::DELIVERED => |c, s| c.delivered += s.value,
        n if n == m::PARKED => |c, s| c.parked += s.value,
        n if n == m::DEAD_LETTERED => |c, s| c.dead_lettered += s.value,
        n if n == m::LAG_EVENTS => |c, s| c.lag_events = Some(s.value),
        n if n == m::LAG_SECONDS => |c, s| c.lag_seconds = Some(s.value),
        n if n.strip_suffix("_sum") == Some(m::EVENT_LATENCY) => |c, s| c.latency_sum += s.value,
        n if n.strip_suffix("_count") == Some(m::EVENT_LATENCY) => {
            |c, s| c.latency_count += s.value
        }
        n if n == m::DISPATCH_ATTEMPTS => |c, s| {
            if s.label("destination") == Some("subscriber") {
                c.attempts += s.value;
                if s.label("response_code")
                    .is_some_and(|code| code.starts_with('2'))
                {
                    c.attempts_ok += s.value;
                }
            }
        },
        _ => return,
    };
    if let Some(key) = key_of(keys, namespace, trigger) {
        field(snapshot.triggers.entry(key).or_default(), sample);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(received: u32, delivered: u32, ok: u32, failed: u32) -> String {
        format!(
            "herald_events_received_total{{namespace=\"ns\",broker=\"b\",event_type=\"t\",response_code=\"202\"}} {received}\n\
             herald_events_received_total{{namespace=\"ns\",broker=\"b\",event_type=\"t\",response_code=\"400\"}} 99\n\
             herald_log_records{{namespace=\"ns\",broker=\"b\"}} {received}\n\
             herald_events_delivered_total{{namespace=\"ns\",trigger=\"t\"}} {delivered}\n\
             herald_dispatch_attempts_total{{namespace=\"ns\",trigger=\"t\",destination=\"subscriber\",response_code=\"200\"}} {ok}\n\
             herald_dispatch_attempts_total{{namespace=\"ns\",trigger=\"t\",destination=\"subscriber\",response_code=\"500\"}} {failed}\n\
             herald_dispatch_attempts_total{{namespace=\"ns\",trigger=\"t\",destination=\"dead_letter_sink\",response_code=\"500\"}} 50\n\
             herald_event_latency_seconds_sum{{namespace=\"ns\",trigger=\"t\"}} {}\n\
             herald_event_latency_seconds_count{{namespace=\"ns\",trigger=\"t\"}} {delivered}\n\
             herald_trigger_lag_events{{namespace=\"ns\",trigger=\"t\"}} 4\n",
            delivered as f64 * 0.5
        )
    }

    #[test]
    fn rates_ratios_and_latency_come_from_consecutive_samples() {
        let history = History::default();
        assert!(history.current_triggers().is_empty());
        history.record(1000.0, &text(0, 0, 0, 0));
        history.record(1010.0, &text(20, 10, 10, 10));
        let brokers = history.current_brokers();
        let broker = &brokers[&Arc::new(("ns".into(), "b".into()))];
        assert_eq!(broker.ingress_per_second, 2.0);
        assert_eq!(broker.log_records, Some(20.0));
        let triggers = history.current_triggers();
        let trigger = &triggers[&Arc::new(("ns".into(), "t".into()))];
        assert_eq!(trigger.delivered_per_second, 1.0);
        assert_eq!(trigger.success_ratio, Some(0.5));
        assert_eq!(trigger.mean_latency_seconds, Some(0.5));
        assert_eq!(trigger.lag_events, Some(4.0));
        let series = history.series(0.0);
        assert_eq!(series.triggers.values().next().map(Vec::len), Some(1));
    }

    #[test]
    fn keeps_one_hour_and_a_bounded_number_of_series() {
        let history = History::default();
        for i in 0..SAMPLES + 10 {
            history.record(i as f64 * 5.0, &text(i as u32, 0, 0, 0));
        }
        assert_eq!(history.lock().snapshots.len(), SAMPLES);
        let mut many = String::new();
        for i in 0..MAX_SERIES + 20 {
            many.push_str(&format!(
                "herald_events_delivered_total{{namespace=\"ns\",trigger=\"t{i}\"}} 1\n"
            ));
        }
        history.record(1e9, &many);
        assert!(history.lock().keys.len() <= MAX_SERIES);
    }
}
