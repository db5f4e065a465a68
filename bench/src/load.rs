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
async fn send(client: &reqwest::Client, url: &str, payload: &Bytes) -> Result<(), ()> {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed).to_string();
    let response = client
        .post(url)
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "/bench")
        .header("ce-type", "dev.herald.bench")
        .header("ce-benchsent", now_nanos().to_string())
        .header("content-type", "application/octet-stream")
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

/// Requests per second over `duration` after `warmup`, each connection sending back to back.
pub async fn closed_loop(
    url: &str,
    clients: &[reqwest::Client],
    payload: Bytes,
    warmup: Duration,
    duration: Duration,
) -> f64 {
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

/// Runs each worker's operation back to back for `warmup + duration` and returns the
/// successful operations per second of the measured part.
async fn measure_rate<W, F>(workers: Vec<W>, warmup: Duration, duration: Duration) -> f64
where
    W: Fn() -> F + Send + 'static,
    F: std::future::Future<Output = bool> + Send,
{
    let ok = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_at = Instant::now() + warmup + duration;
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|operation| {
            let (ok, measuring) = (ok.clone(), measuring.clone());
            tokio::spawn(async move {
                while Instant::now() < stop_at {
                    if operation().await && measuring.load(Ordering::Relaxed) {
                        ok.fetch_add(1, Ordering::Relaxed);
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
    ok.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
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

/// Sends at `rate` per second for `duration`; returns the 202 latencies and the failures.
pub async fn open_loop(
    url: &str,
    clients: &[reqwest::Client],
    payload: Bytes,
    rate: f64,
    duration: Duration,
) -> (Vec<u64>, u64) {
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
            let result = send(&client, &url, &payload).await;
            if result.is_err() {
                failures.fetch_add(1, Ordering::Relaxed);
            }
            (scheduled.elapsed().as_nanos() as u64, result.is_ok())
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Ok((nanos, true)) = task.await {
            latencies.push(nanos);
        }
    }
    (latencies, failures.load(Ordering::Relaxed))
}

/// JetStream publishes per second with acks awaited, `clients` publishers in parallel.
pub async fn nats_publish_rate(
    url: &str,
    publishers: usize,
    payload: Bytes,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<f64> {
    let client = async_nats::connect(url).await?;
    let js = async_nats::jetstream::new(client);
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: "BENCH_BASELINE".into(),
        subjects: vec!["bench.baseline".into()],
        ..Default::default()
    })
    .await?;
    let workers: Vec<_> = (0..publishers.max(1))
        .map(|_| {
            let (js, payload) = (js.clone(), payload.clone());
            move || {
                let (js, payload) = (js.clone(), payload.clone());
                async move {
                    match js.publish("bench.baseline", payload).await {
                        Ok(ack) => ack.await.is_ok(),
                        Err(_) => false,
                    }
                }
            }
        })
        .collect();
    Ok(measure_rate(workers, warmup, duration).await)
}

/// Kafka produces per second with `acks=all` (idempotent, as Herald's producer), each awaited,
/// `clients` producers' worth of concurrent sends on one client.
pub async fn kafka_produce_rate(
    bootstrap: &str,
    clients: usize,
    payload: Bytes,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<f64> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let mut config = rdkafka::ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    let admin: AdminClient<DefaultClientContext> = config.create()?;
    let topic = "bench-baseline";
    admin
        .create_topics(
            [&NewTopic::new(topic, 10, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await?;
    let producer: FutureProducer = config
        .clone()
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()?;
    let workers: Vec<_> = (0..clients.max(1))
        .map(|_| {
            let (producer, payload) = (producer.clone(), payload.clone());
            move || {
                let (producer, payload) = (producer.clone(), payload.clone());
                async move {
                    producer
                        .send(
                            FutureRecord::<(), [u8]>::to(topic).payload(payload.as_ref()),
                            Duration::from_secs(5),
                        )
                        .await
                        .is_ok()
                }
            }
        })
        .collect();
    Ok(measure_rate(workers, warmup, duration).await)
}

/// The median of repeated measurements.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or_default()
}
