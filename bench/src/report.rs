//! One run per backend, and its report.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use crate::load::{
    clients, closed_loop, kafka_produce_rate, median, nats_publish_rate, open_loop, Percentiles,
};
use crate::processes::{bare_server, FastSubscriber, Herald};
use crate::Settings;

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub model: String,
}

impl Machine {
    pub fn describe() -> Self {
        let model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        Self {
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            model,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct RatePoint {
    pub rate_per_second: f64,
    pub ingress_202: Percentiles,
    pub end_to_end: Percentiles,
    pub failures: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct FanoutPoint {
    pub triggers: usize,
    pub events: usize,
    pub deliveries_per_second: f64,
    /// Wall time per event to reach every trigger's subscriber, in microseconds.
    pub dispatch_cost_us_per_event: f64,
    pub complete: bool,
}

/// Herald's memory at rest and under overload.
#[derive(Clone, Debug, Serialize)]
pub struct MemoryPoint {
    /// Resident memory with one broker and trigger, after start, before any event.
    pub idle_rss_bytes: u64,
    /// The open-loop rate offered: [`OVERLOAD_FACTOR`] times the measured maximum.
    pub overload_rate_per_second: f64,
    /// The largest resident memory sampled while that rate was offered.
    pub overload_peak_rss_bytes: u64,
    /// Requests of the overload that did not get a 202 (503s, refused connections).
    pub overload_failures: u64,
}

/// The overload offered when measuring memory, as a multiple of the maximum throughput.
pub const OVERLOAD_FACTOR: f64 = 10.0;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub date: String,
    pub backend: String,
    pub machine: Machine,
    pub settings: Settings,
    /// A bare axum server answering 202: the HTTP limit of this machine, same run.
    pub baseline_http_rps: f64,
    /// Raw JetStream publishes with acks to the same nats-server (NATS only).
    pub baseline_nats_publish_rps: Option<f64>,
    /// Raw Kafka produces with acks=all to the same broker (Kafka only).
    pub baseline_kafka_produce_rps: Option<f64>,
    pub herald_ingress_rps: f64,
    pub ratio_to_http_baseline: f64,
    pub ratio_to_nats_baseline: Option<f64>,
    pub ratio_to_kafka_baseline: Option<f64>,
    pub open_loop: Vec<RatePoint>,
    pub memory: MemoryPoint,
    pub fanout: Vec<FanoutPoint>,
}

fn config(triggers: usize, subscriber: &str) -> String {
    let mut text = String::from("apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: bench}\nspec: {delivery: {retry: 3}}\n");
    for i in 0..triggers {
        text.push_str(&format!(
            "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: t{i}}}\nspec: {{broker: bench, subscriber: {{uri: '{subscriber}'}}}}\n"
        ));
    }
    text
}

/// Runs every measurement for one backend (`sled`, `nats` or `kafka`).
pub async fn run_backend(settings: &Settings, backend: &str) -> anyhow::Result<Report> {
    let payload = Bytes::from(vec![b'x'; settings.event_bytes]);
    let nats = (backend == "nats").then(herald_broker::testing::NatsServer::start);
    let kafka = (backend == "kafka").then(herald_broker::testing::KafkaServer::start);
    let backend_args: Vec<String> = match (&nats, &kafka) {
        (Some(server), _) => vec![
            "--backend".into(),
            "nats".into(),
            "--nats-url".into(),
            server.url(),
        ],
        (None, Some(server)) => vec![
            "--backend".into(),
            "kafka".into(),
            "--kafka-bootstrap".into(),
            server.bootstrap(),
        ],
        (None, None) => vec!["--backend".into(), "sled".into()],
    };
    let pool = clients(settings.connections);

    let bare = bare_server().await?;
    let baseline_http_rps = median_of(settings.repetitions, || async {
        Ok(closed_loop(
            &bare,
            &pool,
            payload.clone(),
            settings.warmup,
            settings.duration,
        )
        .await)
    })
    .await?;
    let baseline_nats_publish_rps = match nats.as_ref().map(|server| server.url()) {
        Some(url) => Some(
            median_of(settings.repetitions, || {
                nats_publish_rate(
                    &url,
                    settings.connections,
                    payload.clone(),
                    settings.warmup,
                    settings.duration,
                )
            })
            .await?,
        ),
        None => None,
    };
    let baseline_kafka_produce_rps = match kafka.as_ref().map(|server| server.bootstrap()) {
        Some(bootstrap) => Some(
            median_of(settings.repetitions, || {
                kafka_produce_rate(
                    &bootstrap,
                    settings.connections,
                    payload.clone(),
                    settings.warmup,
                    settings.duration,
                )
            })
            .await?,
        ),
        None => None,
    };

    let subscriber = FastSubscriber::start().await?;
    // Each Herald of a run gets topics and consumer groups of its own on Kafka: a killed
    // predecessor's group members would otherwise hold up the next one's start by a session
    // timeout.
    let mut started = 0;
    let mut args_for_run = || {
        started += 1;
        let mut args = backend_args.clone();
        if kafka.is_some() {
            args.extend(["--kafka-prefix".into(), format!("bench{started}.")]);
        }
        args
    };
    let herald = Herald::start(
        &settings.herald,
        &config(1, &subscriber.url),
        &args_for_run(),
    )?;
    let url = format!("{}/default/bench", herald.ingress);
    tokio::time::sleep(settings.warmup).await;
    let idle_rss_bytes = herald.rss_bytes().unwrap_or_default();
    let herald_ingress_rps = median_of(settings.repetitions, || async {
        Ok(closed_loop(
            &url,
            &pool,
            payload.clone(),
            settings.warmup,
            settings.duration,
        )
        .await)
    })
    .await?;
    let mut open = Vec::new();
    for fraction in &settings.rate_fractions {
        let rate = (herald_ingress_rps * fraction).max(1.0);
        // A pause so that deliveries of the previous phase do not count here.
        tokio::time::sleep(settings.warmup).await;
        subscriber.take_latencies();
        let (latencies, failures) =
            open_loop(&url, &pool, payload.clone(), rate, settings.duration).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        open.push(RatePoint {
            rate_per_second: rate,
            ingress_202: Percentiles::of(latencies),
            end_to_end: Percentiles::of(subscriber.take_latencies()),
            failures,
        });
    }
    let memory = overload(
        &herald,
        &url,
        &pool,
        payload.clone(),
        herald_ingress_rps,
        settings,
    )
    .await
    .with_idle(idle_rss_bytes);
    drop(herald);

    let mut fanout = Vec::new();
    for &triggers in &settings.fanout_triggers {
        let subscriber = FastSubscriber::start().await?;
        let herald = Herald::start(
            &settings.herald,
            &config(triggers, &subscriber.url),
            &args_for_run(),
        )?;
        let url = format!("{}/default/bench", herald.ingress);
        let started = std::time::Instant::now();
        let per_client = settings.fanout_events.div_ceil(pool.len());
        let mut sends = Vec::new();
        for client in &pool {
            let (client, url, payload) = (client.clone(), url.clone(), payload.clone());
            sends.push(tokio::spawn(async move {
                for _ in 0..per_client {
                    let _ = client
                        .post(&url)
                        .header("ce-specversion", "1.0")
                        .header("ce-id", crate::processes::now_nanos().to_string())
                        .header("ce-source", "/bench")
                        .header("ce-type", "fanout")
                        .body(payload.clone())
                        .send()
                        .await;
                }
            }));
        }
        for send in sends {
            let _ = send.await;
        }
        let events = per_client * pool.len();
        let expected = (events * triggers) as u64;
        let complete = subscriber
            .wait_for(expected, Duration::from_secs(120))
            .await;
        let elapsed = started.elapsed().as_secs_f64();
        fanout.push(FanoutPoint {
            triggers,
            events,
            deliveries_per_second: subscriber
                .received
                .load(std::sync::atomic::Ordering::Relaxed)
                as f64
                / elapsed,
            dispatch_cost_us_per_event: elapsed * 1e6 / events as f64,
            complete,
        });
    }

    Ok(Report {
        date: chrono::Utc::now().format("%Y-%m-%d").to_string(),
        backend: backend.to_owned(),
        machine: Machine::describe(),
        settings: settings.clone(),
        ratio_to_http_baseline: herald_ingress_rps / baseline_http_rps.max(1e-9),
        ratio_to_nats_baseline: baseline_nats_publish_rps.map(|b| herald_ingress_rps / b.max(1e-9)),
        ratio_to_kafka_baseline: baseline_kafka_produce_rps
            .map(|b| herald_ingress_rps / b.max(1e-9)),
        baseline_kafka_produce_rps,
        baseline_http_rps,
        baseline_nats_publish_rps,
        herald_ingress_rps,
        open_loop: open,
        memory,
        fanout,
    })
}

/// Offers [`OVERLOAD_FACTOR`] times the maximum rate for the run's duration while sampling
/// Herald's resident memory.
async fn overload(
    herald: &Herald,
    url: &str,
    pool: &[reqwest::Client],
    payload: Bytes,
    max_rate: f64,
    settings: &Settings,
) -> MemoryPoint {
    let rate = (max_rate * OVERLOAD_FACTOR).max(1.0);
    let load = open_loop(url, pool, payload, rate, settings.duration);
    tokio::pin!(load);
    let mut peak = 0;
    let mut sample = tokio::time::interval(Duration::from_millis(100));
    let (_, failures) = loop {
        tokio::select! {
            done = &mut load => break done,
            _ = sample.tick() => peak = peak.max(herald.rss_bytes().unwrap_or_default()),
        }
    };
    peak = peak.max(herald.rss_bytes().unwrap_or_default());
    MemoryPoint {
        idle_rss_bytes: 0,
        overload_rate_per_second: rate,
        overload_peak_rss_bytes: peak,
        overload_failures: failures,
    }
}

impl MemoryPoint {
    fn with_idle(self, idle_rss_bytes: u64) -> Self {
        Self {
            idle_rss_bytes,
            ..self
        }
    }
}

/// The median of `repetitions` runs of a rate measurement.
async fn median_of<F, Fut>(repetitions: usize, mut measure: F) -> anyhow::Result<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<f64>>,
{
    let mut rates = Vec::with_capacity(repetitions);
    for _ in 0..repetitions {
        rates.push(measure().await?);
    }
    Ok(median(rates))
}

/// The markdown table of a report.
pub fn markdown(report: &Report) -> String {
    let mut out = format!(
        "### {} backend, {} ({} cores, {})\n\n| measure | value | baseline | ratio |\n| --- | --- | --- | --- |\n",
        report.backend, report.date, report.machine.cores, report.machine.model
    );
    out.push_str(&format!(
        "| ingress throughput, {} B events, {} connections | {:.0} events/s | bare HTTP 202: {:.0} req/s | {:.2} |\n",
        report.settings.event_bytes, report.settings.connections, report.herald_ingress_rps, report.baseline_http_rps, report.ratio_to_http_baseline
    ));
    if let (Some(base), Some(ratio)) = (
        report.baseline_nats_publish_rps,
        report.ratio_to_nats_baseline,
    ) {
        out.push_str(&format!("| ingress throughput vs raw JetStream publish | {:.0} events/s | {base:.0} msgs/s | {ratio:.2} |\n", report.herald_ingress_rps));
    }
    if let (Some(base), Some(ratio)) = (
        report.baseline_kafka_produce_rps,
        report.ratio_to_kafka_baseline,
    ) {
        out.push_str(&format!("| ingress throughput vs raw Kafka produce (acks=all) | {:.0} events/s | {base:.0} records/s | {ratio:.2} |\n", report.herald_ingress_rps));
    }
    for point in &report.open_loop {
        out.push_str(&format!(
            "| open loop at {:.0}/s: ingress 202 p50 / p99 / p99.9 | {:.2} / {:.2} / {:.2} ms | | |\n| open loop at {:.0}/s: end to end p50 / p99 / p99.9 | {:.2} / {:.2} / {:.2} ms | | |\n",
            point.rate_per_second, point.ingress_202.p50_ms, point.ingress_202.p99_ms, point.ingress_202.p999_ms,
            point.rate_per_second, point.end_to_end.p50_ms, point.end_to_end.p99_ms, point.end_to_end.p999_ms
        ));
    }
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    out.push_str(&format!(
        "| resident memory, idle (one broker, one trigger) | {:.1} MiB | | |\n| resident memory, peak under {:.0}x overload ({:.0}/s offered, {} not accepted) | {:.1} MiB | | |\n",
        mib(report.memory.idle_rss_bytes), OVERLOAD_FACTOR, report.memory.overload_rate_per_second,
        report.memory.overload_failures, mib(report.memory.overload_peak_rss_bytes)
    ));
    for point in &report.fanout {
        out.push_str(&format!(
            "| fan-out to {} triggers ({} events) | {:.0} deliveries/s, {:.0} µs per event{} | | |\n",
            point.triggers, point.events, point.deliveries_per_second, point.dispatch_cost_us_per_event,
            if point.complete { "" } else { " (incomplete)" }
        ));
    }
    out
}

/// Writes `<dir>/<date>-<backend>.json` and `.md`; returns the paths.
pub fn write(report: &Report, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let stem = dir.join(format!("{}-{}", report.date, report.backend));
    let json = stem.with_extension("json");
    let md = stem.with_extension("md");
    std::fs::write(&json, serde_json::to_vec_pretty(report)?)?;
    std::fs::write(&md, markdown(report))?;
    Ok(vec![json, md])
}
