//! The markdown table of a report, each row with its goal (issue 16) where it has one, and
//! the list of those goals for the JSON report.

use crate::report::{Goal, RatePoint, Report, OVERLOAD_FACTOR};
use crate::GOAL_FRACTION;

/// A line of the table.
struct Row {
    measure: String,
    value: String,
    baseline: String,
    ratio: String,
    /// The target and whether it is met.
    goal: Option<(String, bool)>,
}

impl Row {
    fn new(measure: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            measure: measure.into(),
            value: value.into(),
            baseline: String::new(),
            ratio: String::new(),
            goal: None,
        }
    }

    /// Compared with `baseline` (its value is `base`): the ratio `value / base`.
    fn against(mut self, baseline: impl Into<String>, value: f64, base: f64) -> Self {
        self.baseline = baseline.into();
        self.ratio = format!("{:.2}", ratio(value, base));
        self
    }

    fn goal(mut self, target: impl Into<String>, met: bool) -> Self {
        self.goal = Some((target.into(), met));
        self
    }

    /// The goal `ratio ≥ bound`, when `applies`.
    fn ratio_at_least(self, applies: bool, value: f64, base: f64, bound: f64) -> Self {
        if applies {
            self.goal(format!("≥ {bound:.2}"), ratio(value, base) >= bound)
        } else {
            self
        }
    }
}

fn ratio(value: f64, base: f64) -> f64 {
    value / base.max(1e-9)
}

const MIB: f64 = 1024.0 * 1024.0;

/// Idle resident memory goal: 30 MB.
const IDLE_RSS_GOAL_BYTES: u64 = 30_000_000;
/// "Near zero" idle CPU: 0.1 % of one core, i.e. one 10 ms clock tick per 10 s window.
const IDLE_CPU_GOAL_SECONDS_PER_MINUTE: f64 = 0.06;

/// The fan-out goal: this many triggers deliver at least [`FANOUT_GOAL_FACTOR`] times the
/// deliveries per second measured on [`FANOUT_BEFORE_DATE`].
const FANOUT_GOAL_TRIGGERS: usize = 1000;
const FANOUT_GOAL_FACTOR: f64 = 2.0;
const FANOUT_BEFORE_DATE: &str = "2026-11-26";

/// Deliveries per second to [`FANOUT_GOAL_TRIGGERS`] triggers on [`FANOUT_BEFORE_DATE`]
/// (bench/results/2026-11-26-*.md), when issue 16 was filed.
/// `, with --flag` for a measurement made with flags beyond the backend's own.
fn with_flags(flags: &[String]) -> String {
    if flags.is_empty() {
        String::new()
    } else {
        format!(", with {}", flags.join(" "))
    }
}

fn fanout_before(backend: &str) -> Option<f64> {
    match backend {
        "sled" => Some(9896.0),
        "nats" => Some(6432.0),
        "kafka" => Some(3478.0),
        _ => None,
    }
}

fn rows(report: &Report) -> Vec<Row> {
    let (sled, nats, kafka) = (
        report.backend == "sled",
        report.backend == "nats",
        report.backend == "kafka",
    );
    let bytes = report.settings.event_bytes;
    let mut rows = Vec::new();
    for point in &report.ingress {
        let c = point.connections;
        // The embedded log's goals: 60 % of bare HTTP at 32 connections, 80 % at 256.
        let http_goal = if c <= 32 { 0.60 } else { 0.80 };
        let bare = format!("bare HTTP 202: {:.0} req/s", point.bare_http_rps);
        for (label, herald) in [
            ("no trigger (the durable path alone)", &point.no_trigger),
            ("one trigger", &point.one_trigger),
        ] {
            let rps = herald.events_per_second;
            rows.push(
                Row::new(
                    format!("closed-loop ingress, {bytes} B events, {label}, {c} connections"),
                    format!("{rps:.0} events/s"),
                )
                .against(&bare, rps, point.bare_http_rps)
                .ratio_at_least(sled, rps, point.bare_http_rps, http_goal),
            );
        }
        let relay = format!(
            "bare relay (202, then forwarded): {:.0} req/s",
            point.bare_relay_rps
        );
        let rps = point.one_trigger.events_per_second;
        rows.push(
            Row::new(
                format!("closed-loop ingress, one trigger, {c} connections, vs a bare relay"),
                format!("{rps:.0} events/s"),
            )
            .against(&relay, rps, point.bare_relay_rps),
        );
        if let Some(delivered) = point.one_trigger.delivered_per_second {
            rows.push(
                Row::new(
                    format!("accept and deliver, one trigger, {c} connections (accepted events per second until the last was delivered), vs a bare relay"),
                    format!("{delivered:.0} events/s"),
                )
                .against(&relay, delivered, point.bare_relay_rps),
            );
        }
        if let Some(raw) = point.raw_awaited_rps {
            let (baseline, bound) = if nats {
                (
                    format!("raw JetStream publish, {c} acks awaited at a time: {raw:.0} msgs/s"),
                    0.60,
                )
            } else {
                (format!("raw produce (acks=all, idempotent), {c} awaited at a time: {raw:.0} records/s"), 0.95)
            };
            for (label, herald) in [
                ("no trigger", &point.no_trigger),
                ("one trigger", &point.one_trigger),
            ] {
                let rps = herald.events_per_second;
                rows.push(
                    Row::new(
                        format!("closed-loop ingress, {label}, {c} connections, vs the broker's own client"),
                        format!("{rps:.0} events/s"),
                    )
                    .against(&baseline, rps, raw)
                    .ratio_at_least(true, rps, raw, bound),
                );
            }
        }
        if let Some(relay) = point.relay_to_client_rps {
            let baseline = if nats {
                format!("HTTP relay to JetStream (202 after the ack): {relay:.0} req/s")
            } else {
                format!("HTTP relay to the raw producer (202 after the delivery report): {relay:.0} req/s")
            };
            for (label, herald) in [
                ("no trigger", &point.no_trigger),
                ("one trigger", &point.one_trigger),
            ] {
                let rps = herald.events_per_second;
                rows.push(
                    Row::new(
                        format!("closed-loop ingress, {label}, {c} connections, vs HTTP plus the broker's own client (the ceiling on these cores)"),
                        format!("{rps:.0} events/s"),
                    )
                    .against(&baseline, rps, relay),
                );
            }
        }
        let cpu = |cpu: Option<f64>| cpu.map_or("n/a".to_owned(), |s| format!("{s:.3}"));
        let mut row = Row::new(
            format!("CPU-seconds per 1,000 events, {c} connections: no trigger / one trigger (end to end)"),
            format!(
                "{} / {} s{}",
                cpu(point.no_trigger.cpu_seconds_per_1000),
                cpu(point.one_trigger.cpu_seconds_per_1000),
                if point.one_trigger.delivered_all { "" } else { " (not all delivered)" }
            ),
        );
        if let (Some(raw), Some(herald)) = (
            point.raw_cpu_seconds_per_1000,
            point.one_trigger.cpu_seconds_per_1000,
        ) {
            row = row.against(format!("raw producer's process: {raw:.3} s"), herald, raw);
        }
        if let (true, Some(herald)) = (kafka, point.one_trigger.cpu_seconds_per_1000) {
            row = row.goal("< 0.15 s (one trigger)", herald < 0.15);
        }
        rows.push(row);
    }
    if let Some(raw) = report.raw_pipelined_rps {
        let rps = report.max_rate();
        rows.push(
            Row::new(
                "closed-loop ingress, one trigger, best connection count, vs pipelined JetStream",
                format!("{rps:.0} events/s"),
            )
            .against(
                format!(
                    "raw JetStream publish, pipelined (≤ {} acks outstanding): {raw:.0} msgs/s",
                    crate::raw::NATS_PIPELINE_WINDOW
                ),
                rps,
                raw,
            ),
        );
    }
    if let Some(low) = &report.low_rate {
        let mut row = Row::new(
            format!(
                "ingress 202 at a low fixed rate ({:.0}/s): p50 / p99 / p99.9 (from each send; the load generator sent p50 / p99 {:.2} / {:.2} ms late)",
                low.rate_per_second,
                low.generator_lateness.p50_ms,
                low.generator_lateness.p99_ms
            ),
            latencies(&low.ingress_202),
        );
        if kafka {
            row = row.goal("p50 ≤ 2 ms", low.ingress_202.p50_ms <= 2.0);
        }
        rows.push(row);
    }
    for point in &report.open_loop {
        rows.extend(open_loop_rows(point, sled));
    }
    if let Some(idle) = &report.idle {
        rows.push(
            Row::new(
                "resident memory, idle (one broker, one trigger)",
                format!("{:.1} MiB", idle.rss_bytes as f64 / MIB),
            )
            .goal("< 30 MB", idle.rss_bytes < IDLE_RSS_GOAL_BYTES),
        );
        rows.push(
            Row::new(
                format!(
                    "CPU, idle (one broker, one trigger), over {:.0} s, per minute",
                    idle.window_seconds
                ),
                format!("{:.3} s", idle.cpu_seconds_per_minute),
            )
            .goal(
                format!("near zero (≤ {IDLE_CPU_GOAL_SECONDS_PER_MINUTE} s)"),
                // CPU times are differences of clock-tick totals read as floats: one tick
                // in 10 s may come out as 0.06000000000000001.
                idle.cpu_seconds_per_minute <= IDLE_CPU_GOAL_SECONDS_PER_MINUTE + 1e-9,
            ),
        );
    }
    if let Some(memory) = &report.memory {
        rows.push(Row::new(
            format!(
                "resident memory, peak under {OVERLOAD_FACTOR:.0}x overload ({:.0}/s offered, {} not accepted)",
                memory.overload_rate_per_second, memory.overload_failures
            ),
            format!("{:.1} MiB", memory.overload_peak_rss_bytes as f64 / MIB),
        ));
    }
    let most = report.fanout.iter().map(|p| p.triggers).max();
    for point in report.fanout.iter().filter(|p| Some(p.triggers) == most) {
        rows.push(Row::new(
            format!(
                "resident memory with {} triggers (after their fan-out){}",
                point.triggers,
                with_flags(&point.flags)
            ),
            format!(
                "{:.1} MiB, {} threads",
                point.rss_bytes as f64 / MIB,
                point.threads
            ),
        ));
    }
    for point in &report.fanout {
        let mut row = Row::new(
            format!(
                "fan-out to {} triggers ({} events){}",
                point.triggers,
                point.events,
                with_flags(&point.flags)
            ),
            format!(
                "{:.0} deliveries/s, {:.0} µs per event{}",
                point.deliveries_per_second,
                point.dispatch_cost_us_per_event,
                if point.complete { "" } else { " (incomplete)" }
            ),
        );
        if let (FANOUT_GOAL_TRIGGERS, Some(before)) =
            (point.triggers, fanout_before(&report.backend))
        {
            row = row
                .against(
                    format!("{FANOUT_BEFORE_DATE}: {before:.0} deliveries/s"),
                    point.deliveries_per_second,
                    before,
                )
                .goal(
                    format!("≥ {FANOUT_GOAL_FACTOR:.2}"),
                    point.complete
                        && ratio(point.deliveries_per_second, before) >= FANOUT_GOAL_FACTOR,
                );
        }
        rows.push(row);
    }
    if let Some(Err(error)) = &report.recovery {
        rows.push(
            Row::new(
                "restart after SIGKILL of the embedded log",
                format!("failed: {error}"),
            )
            .goal("< 2 s", false),
        );
    }
    if let Some(Ok(recovery)) = &report.recovery {
        let asked = if recovery.planned_events < recovery.requested_events {
            format!(
                "; {} asked for, half the free disk allowed {}",
                recovery.requested_events, recovery.planned_events
            )
        } else {
            String::new()
        };
        let what = format!(
            "restart after SIGKILL with {} events ({:.2} GiB, filled in {:.0} s{asked}) in the embedded log",
            recovery.events,
            recovery.data_dir_bytes as f64 / (1024.0 * MIB),
            recovery.fill_seconds
        );
        rows.push(
            Row::new(
                format!("{what}: spawn to /readyz 200"),
                format!("{:.3} s", recovery.ready_seconds),
            )
            .goal("< 2 s", recovery.ready_seconds < 2.0),
        );
        rows.push(Row::new(
            format!("{what}: spawn to first 202"),
            format!("{:.3} s", recovery.first_accept_seconds),
        ));
    }
    if let Some(catalog) = &report.catalog {
        rows.extend(catalog_rows(catalog, bytes));
    }
    match &report.tls {
        Some(Ok(point)) => rows.push(tls_row(point, bytes)),
        Some(Err(error)) => rows.push(Row::new(
            "closed-loop ingress over HTTPS".to_owned(),
            format!("not measured: {error}"),
        )),
        None => {}
    }
    match &report.access {
        Some(Ok(point)) => rows.extend(access_rows(point, bytes)),
        Some(Err(error)) => rows.push(Row::new(
            "closed-loop ingress with an OIDC token".to_owned(),
            format!("not measured: {error}"),
        )),
        None => {}
    }
    rows
}

/// Token verification and the EventPolicy check against the same run's Herald without
/// authentication (issue 21): throughput and the extra CPU per event.
fn access_rows(point: &crate::access::AccessPoint, bytes: usize) -> Vec<Row> {
    let plain = &point.plain;
    [
        ("an OIDC token checked (no EventPolicy)", &point.token),
        (
            "an OIDC token and an EventPolicy (from.sub, filters) checked",
            &point.policy,
        ),
    ]
    .into_iter()
    .map(|(label, checked)| {
        Row::new(
            format!(
                "closed-loop ingress with {label}, {bytes} B events, no trigger, {} connections",
                point.connections
            ),
            format!(
                "{:.0} events/s{}",
                checked.events_per_second,
                extra_cpu(checked, plain)
            ),
        )
        .against(
            format!(
                "no authentication, same run: {:.0} events/s",
                plain.events_per_second
            ),
            checked.events_per_second,
            plain.events_per_second,
        )
    })
    .collect()
}

/// `, +x µs CPU per event` of `with` over `without`, when both were measured.
fn extra_cpu(
    with: &crate::throughput::Throughput,
    without: &crate::throughput::Throughput,
) -> String {
    match (with.cpu_seconds_per_1000, without.cpu_seconds_per_1000) {
        (Some(with), Some(without)) => {
            format!(", {:+.1} µs CPU per event", (with - without) * 1000.0)
        }
        _ => String::new(),
    }
}

/// HTTPS ingress against the same run's plain HTTP on the same Herald (issue 21):
/// throughput and the extra CPU per event.
fn tls_row(point: &crate::tls::TlsPoint, bytes: usize) -> Row {
    let (http, https) = (&point.http, &point.https);
    let extra = extra_cpu(https, http);
    Row::new(
        format!(
            "closed-loop ingress over HTTPS (TLS 1.3, keep-alive), {bytes} B events, no trigger, {} connections",
            point.connections
        ),
        format!("{:.0} events/s{extra}", https.events_per_second),
    )
    .against(
        format!("HTTP, same run: {:.0} events/s", http.events_per_second),
        https.events_per_second,
        http.events_per_second,
    )
}

/// The event catalog's checks against the same run's plain broker (issue 20): throughput and
/// the extra CPU per event.
fn catalog_rows(point: &crate::catalog::CatalogPoint, bytes: usize) -> Vec<Row> {
    let c = point.connections;
    let plain = &point.plain;
    let baseline = format!(
        "no checks, same run: {:.0} events/s",
        plain.events_per_second
    );
    let mut rows = Vec::new();
    for (label, checked) in [
        ("schema validation (enforce)", &point.schema_enforced),
        ("duplicate window", &point.duplicate_window),
    ] {
        let extra = extra_cpu(checked, plain);
        rows.push(
            Row::new(
                format!("closed-loop ingress, {bytes} B JSON events, no trigger, {c} connections, {label}"),
                format!("{:.0} events/s{extra}", checked.events_per_second),
            )
            .against(&baseline, checked.events_per_second, plain.events_per_second),
        );
    }
    rows
}

fn latencies(p: &crate::load::Percentiles) -> String {
    format!("{:.2} / {:.2} / {:.2} ms", p.p50_ms, p.p99_ms, p.p999_ms)
}

/// The open-loop rows at one rate; at [`GOAL_FRACTION`] on the embedded log, with the
/// end-to-end latency goal.
fn open_loop_rows(point: &RatePoint, sled: bool) -> [Row; 2] {
    let goal_line = point.fraction_of_max == Some(GOAL_FRACTION);
    let at = format!(
        "open loop at {:.0}/s ({:.0} % of the maximum at the first connection count{})",
        point.rate_per_second,
        point.fraction_of_max.unwrap_or_default() * 100.0,
        if goal_line { ", the goal line" } else { "" }
    );
    let mut end_to_end = Row::new(
        format!("{at}: end to end p50 / p99 / p99.9"),
        latencies(&point.end_to_end),
    );
    if goal_line && sled {
        let e = &point.end_to_end;
        end_to_end = end_to_end.goal(
            "p99 < 5 ms, p99.9 < 20 ms",
            e.samples > 0 && e.p99_ms < 5.0 && e.p999_ms < 20.0,
        );
    }
    [
        Row::new(
            format!("{at}: ingress 202 p50 / p99 / p99.9"),
            latencies(&point.ingress_202),
        ),
        end_to_end,
    ]
}

/// Every goal the report measures.
pub fn goals(report: &Report) -> Vec<Goal> {
    rows(report)
        .into_iter()
        .filter_map(|row| {
            let (target, met) = row.goal?;
            let value = if row.ratio.is_empty() {
                row.value
            } else {
                format!("{} ({})", row.ratio, row.value)
            };
            Some(Goal {
                measure: row.measure,
                value,
                target,
                met,
            })
        })
        .collect()
}

/// The markdown table of a report.
pub fn markdown(report: &Report) -> String {
    let mut out = format!(
        "### {} backend, {} ({} cores, {})\n\n| measure | value | baseline (same run) | ratio | goal |\n| --- | --- | --- | --- | --- |\n",
        report.backend, report.date, report.machine.cores, report.machine.model
    );
    for row in rows(report) {
        let goal = match row.goal {
            Some((target, true)) => format!("{target}: met"),
            Some((target, false)) => format!("{target}: **not met**"),
            None => String::new(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {goal} |\n",
            row.measure, row.value, row.baseline, row.ratio
        ));
    }
    let met = report.goals.iter().filter(|g| g.met).count();
    out.push_str(&format!("\nGoals met: {met} of {}.\n", report.goals.len()));
    out
}
