//! Load generators: closed loop (as fast as the server answers) and open loop (a fixed rate,
//! latency measured from the scheduled send time, so a slow server cannot hide its queueing).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use crate::processes::now_nanos;

/// Keep-alive clients, one connection each.
pub fn clients(connections: usize) -> Vec<reqwest::Client> {
    (0..connections.max(1))
        .map(|_| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default()
        })
        .collect()
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// One binary-mode event of `payload` bytes, stamped with its send time.
pub async fn send(client: &reqwest::Client, url: &str, payload: &Bytes) -> Result<(), ()> {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed).to_string();
    let response = client
        .post(url)
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "/bench")
        .header("ce-type", "dev.herald.bench")
        .header("ce-benchsent", now_nanos().to_string())
        // JSON payloads (the catalog's measurement) are sent as JSON.
        .header(
            "content-type",
            if payload.first() == Some(&b'{') {
                "application/json"
            } else {
                "application/octet-stream"
            },
        )
        .body(payload.clone())
        .send()
        .await
        .map_err(|_| ())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(())
    }
}

/// What a closed-loop measurement counted.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rate {
    /// Successful operations per second after the warm-up.
    pub per_second: f64,
    /// Successful operations in all, warm-up included.
    pub total: u64,
}

/// Requests per second over `duration` after `warmup`, each connection sending back to back.
pub async fn closed_loop(
    url: &str,
    clients: &[reqwest::Client],
    payload: Bytes,
    warmup: Duration,
    duration: Duration,
) -> Rate {
    let workers: Vec<_> = clients
        .iter()
        .map(|client| {
            let (client, url, payload) = (client.clone(), url.to_owned(), payload.clone());
            move || {
                let (client, url, payload) = (client.clone(), url.clone(), payload.clone());
                async move { send(&client, &url, &payload).await.is_ok() }
            }
        })
        .collect();
    measure_rate(workers, warmup, duration).await
}

/// Runs each worker's operation back to back for `warmup + duration` and counts the
/// successful operations, those of the measured part apart.
pub async fn measure_rate<W, F>(workers: Vec<W>, warmup: Duration, duration: Duration) -> Rate
where
    W: Fn() -> F + Send + 'static,
    F: std::future::Future<Output = bool> + Send,
{
    let (ok, measured) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_at = Instant::now() + warmup + duration;
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|operation| {
            let (ok, measured, measuring) = (ok.clone(), measured.clone(), measuring.clone());
            tokio::spawn(async move {
                while Instant::now() < stop_at {
                    if operation().await {
                        ok.fetch_add(1, Ordering::Relaxed);
                        if measuring.load(Ordering::Relaxed) {
                            measured.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    for task in tasks {
        let _ = task.await;
    }
    Rate {
        per_second: measured.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64(),
        total: ok.load(Ordering::Relaxed),
    }
}

/// Sends up to `count` events over all `clients` at once, as fast as they are accepted, for
/// at most `limit`; returns how many got a 202.
pub async fn fill(
    url: &str,
    clients: &[reqwest::Client],
    payload: Bytes,
    count: u64,
    limit: Duration,
) -> u64 {
    let (claimed, accepted) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stop_at = Instant::now() + limit;
    let tasks: Vec<_> = clients
        .iter()
        .map(|client| {
            let (client, url, payload) = (client.clone(), url.to_owned(), payload.clone());
            let (claimed, accepted) = (claimed.clone(), accepted.clone());
            tokio::spawn(async move {
                while Instant::now() < stop_at && claimed.fetch_add(1, Ordering::Relaxed) < count {
                    if send(&client, &url, &payload).await.is_ok() {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    accepted.load(Ordering::Relaxed)
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Percentiles {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
}

impl Percentiles {
    pub fn of(mut nanos: Vec<u64>) -> Self {
        if nanos.is_empty() {
            return Self::default();
        }
        nanos.sort_unstable();
        let at =
            |q: f64| nanos[((nanos.len() as f64 * q) as usize).min(nanos.len() - 1)] as f64 / 1e6;
        Self {
            samples: nanos.len(),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
        }
    }
}

/// What an open-loop run measured.
#[derive(Debug, Default)]
pub struct OpenLoop {
    /// From the moment each request was handed to its client to its 202, in nanoseconds.
    pub latencies: Vec<u64>,
    /// How late each request left against its schedule, in nanoseconds: tokio's timer wakes
    /// at whole milliseconds, so without this split up to 1 ms of the generator's own timing
    /// would count as Herald's. Requests are never held back by earlier answers (each is its
    /// own task), so measuring from the send hides no queueing in the system under test.
    pub lateness: Vec<u64>,
    pub failures: u64,
}

/// Sends at `rate` per second for `duration`, each request as its own task.
pub async fn open_loop(
    url: &str,
    clients: &[reqwest::Client],
    payload: Bytes,
    rate: f64,
    duration: Duration,
) -> OpenLoop {
    let total = (rate * duration.as_secs_f64()).max(1.0) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let start = tokio::time::Instant::now();
    let failures = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let scheduled = start + interval * i as u32;
        tokio::time::sleep_until(scheduled).await;
        let client = clients[i as usize % clients.len()].clone();
        let (url, payload, failures) = (url.to_owned(), payload.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            let sent = tokio::time::Instant::now();
            let result = send(&client, &url, &payload).await;
            if result.is_err() {
                failures.fetch_add(1, Ordering::Relaxed);
            }
            let late = sent.saturating_duration_since(scheduled).as_nanos() as u64;
            (sent.elapsed().as_nanos() as u64, late, result.is_ok())
        }));
    }
    let mut run = OpenLoop::default();
    for task in tasks {
        if let Ok((nanos, late, ok)) = task.await {
            run.lateness.push(late);
            if ok {
                run.latencies.push(nanos);
            }
        }
    }
    run.failures = failures.load(Ordering::Relaxed);
    run
}

/// The median of repeated measurements.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or_default()
}
