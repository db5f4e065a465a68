//! One run per backend, and its report.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use crate::baselines::{bare_relay, bare_server};
use crate::load::{clients, closed_loop, median, open_loop, Percentiles};
use crate::processes::{FastSubscriber, Herald};
use crate::recovery::RecoveryPoint;
use crate::throughput::{throughput, Throughput};
use crate::{raw, Settings};

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

/// Closed-loop ingress at one connection count, with the baselines at the same count.
#[derive(Clone, Debug, Serialize)]
pub struct IngressPoint {
    pub connections: usize,
    /// A bare axum server answering 202: the HTTP limit of this machine.
    pub bare_http_rps: f64,
    /// A bare relay: 202 at once, then forwarded to the same subscriber.
    pub bare_relay_rps: f64,
    /// The broker's own client, this many sends at a time, each awaiting its ack (NATS:
    /// JetStream publishes; Kafka: acks=all idempotent produces).
    pub raw_awaited_rps: Option<f64>,
    /// A bare axum server relaying each request to the broker's own client and answering 202
    /// after its ack: HTTP plus the client, no broker logic (NATS and Kafka).
    pub relay_to_client_rps: Option<f64>,
    /// CPU time of the raw producer's process (the bench itself) per 1,000 records (Kafka).
    pub raw_cpu_seconds_per_1000: Option<f64>,
    /// Herald with a broker and no trigger: the durable path alone.
    pub no_trigger: Throughput,
    /// Herald with one trigger to the subscriber.
    pub one_trigger: Throughput,
}

#[derive(Clone, Debug, Serialize)]
pub struct RatePoint {
    pub rate_per_second: f64,
    /// The rate as a fraction of the measured maximum (none for the fixed low rate).
    pub fraction_of_max: Option<f64>,
    /// From each request's send (see [`crate::load::OpenLoop`]).
    pub ingress_202: Percentiles,
    /// How late the load generator sent against its schedule.
    pub generator_lateness: Percentiles,
    pub end_to_end: Percentiles,
    pub failures: u64,
}

/// Herald with one broker and one trigger, doing nothing.
#[derive(Clone, Debug, Serialize)]
pub struct IdlePoint {
    pub rss_bytes: u64,
    pub window_seconds: f64,
    pub cpu_seconds: f64,
    /// `cpu_seconds` scaled to a 60 s window.
    pub cpu_seconds_per_minute: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct FanoutPoint {
    pub triggers: usize,
    pub events: usize,
    pub deliveries_per_second: f64,
    /// Wall time per event to reach every trigger's subscriber, in microseconds.
    pub dispatch_cost_us_per_event: f64,
    pub complete: bool,
    /// Herald's resident memory once every delivery arrived.
    pub rss_bytes: u64,
    /// Herald's threads once every delivery arrived (librdkafka's clients have their own).
    pub threads: u64,
    /// Flags this fan-out ran with beyond the backend's own (on NATS and Kafka, the largest
    /// trigger count is measured again with the backend's shared reader).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
}

/// Herald's memory under overload.
#[derive(Clone, Debug, Serialize)]
pub struct MemoryPoint {
    /// The open-loop rate offered: [`OVERLOAD_FACTOR`] times the measured maximum.
    pub overload_rate_per_second: f64,
    /// The largest resident memory sampled while that rate was offered.
    pub overload_peak_rss_bytes: u64,
    /// Requests of the overload that did not get a 202 (503s, refused connections).
    pub overload_failures: u64,
}

/// One goal as measured: what, the value, the target, and whether it is met.
#[derive(Clone, Debug, Serialize)]
pub struct Goal {
    pub measure: String,
    pub value: String,
    pub target: String,
    pub met: bool,
}

/// The overload offered when measuring memory, as a multiple of the maximum throughput.
pub const OVERLOAD_FACTOR: f64 = 10.0;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub date: String,
    pub backend: String,
    pub machine: Machine,
    pub settings: Settings,
    pub ingress: Vec<IngressPoint>,
    /// Raw JetStream publishes from one pipelining publisher (NATS only).
    pub raw_pipelined_rps: Option<f64>,
    /// Open loop at [`Settings::low_rate`] (each part is absent when not measured: see
    /// [`Settings::phases`]).
    pub low_rate: Option<RatePoint>,
    pub open_loop: Vec<RatePoint>,
    pub idle: Option<IdlePoint>,
    pub memory: Option<MemoryPoint>,
    pub fanout: Vec<FanoutPoint>,
    /// Restart after SIGKILL with a filled log (embedded log only), or why it failed.
    pub recovery: Option<Result<RecoveryPoint, String>>,
    /// Ingress without and with the event catalog's checks (issue 20), in the same run.
    pub catalog: Option<crate::catalog::CatalogPoint>,
    /// Ingress over HTTP and HTTPS on the embedded log, in the same run (issue 21), or why
    /// it could not be measured.
    pub tls: Option<Result<crate::tls::TlsPoint, String>>,
    /// Ingress without authentication, with an OIDC token, and with a token and an
    /// EventPolicy, on the embedded log in the same run (issue 21), or why not measured.
    pub access: Option<Result<crate::access::AccessPoint, String>>,
    /// Every goal of issue 16 this report measures, and whether it is met.
    pub goals: Vec<Goal>,
}

impl Report {
    /// The highest closed-loop rate of Herald with one trigger.
    pub fn max_rate(&self) -> f64 {
        max_rate(&self.ingress)
    }
}

fn max_rate(ingress: &[IngressPoint]) -> f64 {
    ingress
        .iter()
        .map(|p| p.one_trigger.events_per_second)
        .fold(0.0, f64::max)
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
    let pools: Vec<_> = settings.connections.iter().map(|&c| clients(c)).collect();
    let (first_pool, largest_pool) = match (pools.first(), pools.last()) {
        (Some(first), Some(last)) => (first, last),
        _ => anyhow::bail!("no connection count to measure"),
    };
    let closed = |url: String, pool: &[reqwest::Client]| {
        let (pool, payload) = (pool.to_vec(), payload.clone());
        async move {
            let rate = closed_loop(&url, &pool, payload, settings.warmup, settings.duration);
            Ok(rate.await.per_second)
        }
    };

    let measured = |phase: &str| settings.measures(phase);
    // Baselines first, at every connection count.
    let mut ingress = Vec::new();
    let mut raw_pipelined_rps = None;
    if measured("ingress") {
        let bare = bare_server().await?;
        let relay_subscriber = FastSubscriber::start().await?;
        let relay = bare_relay(&relay_subscriber.url).await?;
        let client_relay = match (&nats, &kafka) {
            (Some(server), _) => Some(crate::baselines::nats_relay(&server.url()).await?),
            (None, Some(server)) => {
                Some(crate::baselines::kafka_relay(&server.bootstrap(), &payload).await?)
            }
            (None, None) => None,
        };
        for (&connections, pool) in settings.connections.iter().zip(&pools) {
            let bare_http_rps =
                median_of(settings.repetitions, || closed(bare.clone(), pool)).await?;
            let bare_relay_rps =
                median_of(settings.repetitions, || closed(relay.clone(), pool)).await?;
            let relay_to_client_rps = match &client_relay {
                Some(url) => {
                    Some(median_of(settings.repetitions, || closed(url.clone(), pool)).await?)
                }
                None => None,
            };
            let (mut raw_awaited_rps, mut raw_cpu_seconds_per_1000) = (None, None);
            if let Some(url) = nats.as_ref().map(|server| server.url()) {
                let rate = median_of(settings.repetitions, || async {
                    let rate = raw::nats_awaited_rate(
                        &url,
                        connections,
                        payload.clone(),
                        settings.warmup,
                        settings.duration,
                    );
                    Ok(rate.await?.per_second)
                });
                raw_awaited_rps = Some(rate.await?);
            }
            if let Some(bootstrap) = kafka.as_ref().map(|server| server.bootstrap()) {
                let (mut rates, mut cpus) = (Vec::new(), Vec::new());
                for _ in 0..settings.repetitions {
                    let (rate, cpu) = raw::kafka_produce_rate(
                        &bootstrap,
                        connections,
                        payload.clone(),
                        settings.warmup,
                        settings.duration,
                    )
                    .await?;
                    rates.push(rate.per_second);
                    cpus.extend(cpu);
                }
                raw_awaited_rps = Some(median(rates));
                raw_cpu_seconds_per_1000 = (!cpus.is_empty()).then(|| median(cpus));
            }
            ingress.push(IngressPoint {
                connections,
                bare_http_rps,
                bare_relay_rps,
                raw_awaited_rps,
                relay_to_client_rps,
                raw_cpu_seconds_per_1000,
                no_trigger: Throughput::default(),
                one_trigger: Throughput::default(),
            });
        }
        raw_pipelined_rps = match nats.as_ref().map(|server| server.url()) {
            Some(url) => Some(
                median_of(settings.repetitions, || {
                    raw::nats_pipelined_rate(
                        &url,
                        payload.clone(),
                        settings.warmup,
                        settings.duration,
                    )
                })
                .await?,
            ),
            None => None,
        };
    }

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

    // The durable path alone: a broker with no trigger.
    if measured("ingress") {
        let herald = Herald::start(&settings.herald, &config(0, ""), &args_for_run())?;
        let url = format!("{}/default/bench", herald.ingress);
        for (point, pool) in ingress.iter_mut().zip(&pools) {
            point.no_trigger = throughput(&herald, &url, pool, &payload, settings, None).await;
        }
    }

    // The event catalog's checks against none, on the first connection count.
    let catalog = crate::catalog::measure(
        settings,
        &args_for_run(),
        first_pool,
        settings.connections.first().copied().unwrap_or_default(),
    )
    .await?;

    // The embedded log's costs per event against the same run's plain ingress, on the first
    // connection count: transport encryption, then sender identity and EventPolicy.
    let first_count = settings.connections.first().copied().unwrap_or_default();
    let per_event_costs = backend == "sled" && measured("ingress");
    let reason = |error: anyhow::Error| format!("{error:#}");
    let tls = match per_event_costs {
        true => Some(
            crate::tls::measure(settings, &args_for_run(), &payload, first_pool, first_count)
                .await
                .map_err(reason),
        ),
        false => None,
    };
    let access = match per_event_costs {
        true => Some(
            crate::access::measure(settings, &args_for_run(), &payload, first_pool, first_count)
                .await
                .map_err(reason),
        ),
        false => None,
    };

    // One trigger: idle first, then full load, then fixed rates and overload.
    let (mut idle_point, mut low_rate, mut open, mut memory) = (None, None, Vec::new(), None);
    if measured("ingress") || measured("latency") || measured("resources") {
        let subscriber = FastSubscriber::start().await?;
        let herald = Herald::start(
            &settings.herald,
            &config(1, &subscriber.url),
            &args_for_run(),
        )?;
        let url = format!("{}/default/bench", herald.ingress);
        if measured("resources") {
            idle_point = Some(idle(&herald, settings).await);
        }
        for (point, pool) in ingress.iter_mut().zip(&pools) {
            point.one_trigger =
                throughput(&herald, &url, pool, &payload, settings, Some(&subscriber)).await;
        }
        // Open-loop rates are fractions of the maximum at the first connection count (32,
        // as the measurements of issue 16 were made).
        let max_rate = ingress
            .first()
            .map_or(0.0, |p| p.one_trigger.events_per_second);
        if measured("latency") {
            low_rate = Some(
                rate_point(
                    &url,
                    largest_pool,
                    &payload,
                    settings.low_rate,
                    None,
                    &subscriber,
                    settings,
                )
                .await,
            );
            // Without the ingress maximum there is nothing to take fractions of.
            for &fraction in settings.rate_fractions.iter().filter(|_| max_rate > 0.0) {
                open.push(
                    rate_point(
                        &url,
                        largest_pool,
                        &payload,
                        max_rate * fraction,
                        Some(fraction),
                        &subscriber,
                        settings,
                    )
                    .await,
                );
            }
        }
        if measured("resources") && max_rate > 0.0 {
            memory = Some(
                overload(
                    &herald,
                    &url,
                    largest_pool,
                    payload.clone(),
                    max_rate,
                    settings,
                )
                .await,
            );
        }
    }

    let mut fanout = Vec::new();
    // On NATS and Kafka the largest count runs again with the shared reader (one reader per
    // broker instead of a durable consumer or consumer group per trigger).
    let shared_flag = match backend {
        "nats" => Some("--nats-shared-reader"),
        "kafka" => Some("--kafka-shared-reader"),
        _ => None,
    };
    let shared_reader = shared_flag
        .zip(settings.fanout_triggers.iter().max())
        .map(|(flag, &most)| (most, vec![flag.to_owned()]));
    let runs: Vec<(usize, Vec<String>)> = settings
        .fanout_triggers
        .iter()
        .map(|&triggers| (triggers, Vec::new()))
        .chain(shared_reader)
        .filter(|_| measured("fanout"))
        .collect();
    for (triggers, flags) in runs {
        let subscriber = FastSubscriber::start().await?;
        let mut args = args_for_run();
        // The shared reader gets a nats-server of its own: on the first one, the durable
        // consumers the earlier runs left would be taken over first (about 60 ms each).
        let fresh_nats =
            (!flags.is_empty() && nats.is_some()).then(herald_broker::testing::NatsServer::start);
        if let Some(server) = &fresh_nats {
            args = vec![
                "--backend".into(),
                "nats".into(),
                "--nats-url".into(),
                server.url(),
            ];
        }
        args.extend(flags.iter().cloned());
        let herald = Herald::start(&settings.herald, &config(triggers, &subscriber.url), &args)?;
        let mut point = fan_out(
            &herald,
            &subscriber,
            triggers,
            first_pool,
            &payload,
            settings,
        )
        .await;
        point.flags = flags;
        fanout.push(point);
    }

    let recovery = match backend {
        "sled" if measured("recovery") => Some(
            crate::recovery::measure(
                &settings.herald,
                &config(0, ""),
                largest_pool,
                payload.clone(),
                settings.recovery_events,
                settings.recovery_fill_limit,
            )
            .await
            // The rest of the report stands without it.
            .map_err(|error| format!("{error:#}")),
        ),
        _ => None,
    };

    let report = Report {
        date: chrono::Utc::now().format("%Y-%m-%d").to_string(),
        backend: backend.to_owned(),
        machine: Machine::describe(),
        settings: settings.clone(),
        ingress,
        raw_pipelined_rps,
        low_rate,
        open_loop: open,
        idle: idle_point,
        memory,
        fanout,
        recovery,
        catalog: Some(catalog),
        tls,
        access,
        // Filled by the caller from the measures (`table::goals`).
        goals: Vec::new(),
    };
    Ok(report)
}

/// Resident memory after start, and CPU over [`Settings::idle_window`] with nothing sent.
async fn idle(herald: &Herald, settings: &Settings) -> IdlePoint {
    // Start-up work (opening the log, starting the trigger) is not idleness.
    tokio::time::sleep(settings.warmup).await;
    let rss_bytes = herald.rss_bytes().unwrap_or_default();
    let before = herald.cpu_seconds().unwrap_or_default();
    tokio::time::sleep(settings.idle_window).await;
    let cpu_seconds = herald.cpu_seconds().unwrap_or_default() - before;
    let window_seconds = settings.idle_window.as_secs_f64();
    IdlePoint {
        rss_bytes,
        window_seconds,
        cpu_seconds,
        cpu_seconds_per_minute: cpu_seconds * 60.0 / window_seconds.max(1e-9),
    }
}

/// Open loop at `rate`: ingress 202 and end-to-end latency.
async fn rate_point(
    url: &str,
    pool: &[reqwest::Client],
    payload: &Bytes,
    rate: f64,
    fraction_of_max: Option<f64>,
    subscriber: &FastSubscriber,
    settings: &Settings,
) -> RatePoint {
    // A pause so that deliveries of the previous phase do not count here.
    tokio::time::sleep(settings.warmup).await;
    subscriber.take_latencies();
    let run = open_loop(url, pool, payload.clone(), rate, settings.duration).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    RatePoint {
        rate_per_second: rate,
        fraction_of_max,
        ingress_202: Percentiles::of(run.latencies),
        generator_lateness: Percentiles::of(run.lateness),
        end_to_end: Percentiles::of(subscriber.take_latencies()),
        failures: run.failures,
    }
}

/// Sends [`Settings::fanout_events`] to a Herald with `triggers` triggers and times until
/// every trigger's delivery arrived.
async fn fan_out(
    herald: &Herald,
    subscriber: &FastSubscriber,
    triggers: usize,
    pool: &[reqwest::Client],
    payload: &Bytes,
    settings: &Settings,
) -> FanoutPoint {
    let url = format!("{}/default/bench", herald.ingress);
    let started = std::time::Instant::now();
    let per_client = settings.fanout_events.div_ceil(pool.len());
    let sends: Vec<_> = pool
        .iter()
        .map(|client| {
            let (client, url, payload) = (client.clone(), url.clone(), payload.clone());
            tokio::spawn(async move {
                for _ in 0..per_client {
                    let _ = crate::load::send(&client, &url, &payload).await;
                }
            })
        })
        .collect();
    for send in sends {
        let _ = send.await;
    }
    let events = per_client * pool.len();
    let expected = (events * triggers) as u64;
    let complete = subscriber
        .wait_for(expected, Duration::from_secs(120))
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    FanoutPoint {
        triggers,
        events,
        deliveries_per_second: subscriber.count() as f64 / elapsed,
        dispatch_cost_us_per_event: elapsed * 1e6 / events as f64,
        complete,
        rss_bytes: herald.rss_bytes().unwrap_or_default(),
        threads: crate::processes::threads(herald.pid()).unwrap_or_default(),
        flags: Vec::new(),
    }
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
    let failures = loop {
        tokio::select! {
            done = &mut load => break done.failures,
            _ = sample.tick() => peak = peak.max(herald.rss_bytes().unwrap_or_default()),
        }
    };
    peak = peak.max(herald.rss_bytes().unwrap_or_default());
    MemoryPoint {
        overload_rate_per_second: rate,
        overload_peak_rss_bytes: peak,
        overload_failures: failures,
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

/// Writes `<dir>/<date>-<backend>.json` and `.md` (the `markdown` table); returns the paths.
pub fn write(report: &Report, markdown: &str, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let stem = dir.join(format!("{}-{}", report.date, report.backend));
    let json = stem.with_extension("json");
    let md = stem.with_extension("md");
    std::fs::write(&json, serde_json::to_vec_pretty(report)?)?;
    std::fs::write(&md, markdown)?;
    Ok(vec![json, md])
}
