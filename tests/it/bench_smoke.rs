//! herald-bench in its smoke mode: it runs end to end on every backend, measures everything
//! it reports, and its report parses. Not a performance assertion: the numbers are only
//! checked to exist.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "test code"
)]

use crate::common::{self, Server};
use herald_bench::{report, table, Settings};

fn positive(value: &serde_json::Value) -> bool {
    value.as_f64().is_some_and(|v| v > 0.0)
}

async fn smoke(backend: &str) {
    let settings = Settings::smoke(env!("CARGO_BIN_EXE_herald").into());
    let mut run = report::run_backend(&settings, backend)
        .await
        .expect("the smoke run completes");
    run.goals = table::goals(&run);
    let dir = tempfile::tempdir().unwrap();
    let paths = report::write(&run, &table::markdown(&run), dir.path()).unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&paths[0]).unwrap()).expect("the JSON report parses");
    assert_eq!(json["backend"], backend);
    assert!(json["machine"]["cores"].as_u64().is_some_and(|c| c > 0));
    let ingress = json["ingress"].as_array().unwrap();
    assert_eq!(ingress.len(), settings.connections.len(), "{json}");
    for point in ingress {
        for field in ["bare_http_rps", "bare_relay_rps"] {
            assert!(positive(&point[field]), "{field} in {point}");
        }
        for herald in ["no_trigger", "one_trigger"] {
            assert!(
                positive(&point[herald]["events_per_second"]),
                "{herald} in {point}"
            );
            assert!(
                point[herald]["cpu_seconds_per_1000"].as_f64().is_some(),
                "{herald} CPU in {point}"
            );
        }
        assert_eq!(point["one_trigger"]["delivered_all"], true, "{point}");
        let raw = &point["raw_awaited_rps"];
        assert_eq!(positive(raw), backend != "sled", "{point}");
        assert_eq!(
            point["raw_cpu_seconds_per_1000"].as_f64().is_some(),
            backend == "kafka",
            "{point}"
        );
    }
    assert_eq!(positive(&json["raw_pipelined_rps"]), backend == "nats");
    assert!(json["low_rate"]["ingress_202"]["samples"].as_u64() > Some(0));
    let open = json["open_loop"].as_array().unwrap();
    assert!(
        open.iter()
            .all(|p| p["ingress_202"]["samples"].as_u64() > Some(0)),
        "{open:?}"
    );
    assert!(positive(&json["idle"]["rss_bytes"]), "{json}");
    assert!(json["idle"]["cpu_seconds_per_minute"].as_f64().is_some());
    assert!(json["memory"]["overload_peak_rss_bytes"].as_u64() > Some(0));
    let fanout = json["fanout"].as_array().unwrap();
    // 1 and 10 triggers; on NATS and Kafka the 10 again with the shared reader.
    let shared_flag = match backend {
        "nats" => Some("--nats-shared-reader"),
        "kafka" => Some("--kafka-shared-reader"),
        _ => None,
    };
    if let Some(flag) = shared_flag {
        assert_eq!(fanout.len(), 3, "{fanout:?}");
        assert_eq!(fanout[2]["triggers"], 10, "{fanout:?}");
        assert_eq!(fanout[2]["flags"][0], flag, "{fanout:?}");
    } else {
        assert_eq!(fanout.len(), 2, "{fanout:?}");
    }
    assert!(
        fanout
            .iter()
            .all(|p| p["complete"] == true && p["rss_bytes"].as_u64() > Some(0)),
        "every fan-out delivery arrived: {fanout:?}"
    );
    if backend == "sled" {
        // Serialized as a Result: `Ok` holds the measurement, `Err` why it failed.
        let recovery = &json["recovery"]["Ok"];
        assert!(
            recovery.is_object(),
            "the recovery failed: {}",
            json["recovery"]
        );
        // Every event asked for, unless the fill ran into its time limit on a busy machine (the
        // report then says how many it wrote).
        let filled_all = recovery["events"] == settings.recovery_events;
        let ran_out_of_time =
            recovery["fill_seconds"].as_f64() >= Some(settings.recovery_fill_limit.as_secs_f64());
        assert!(
            positive(&recovery["events"]) && (filled_all || ran_out_of_time),
            "{recovery}"
        );
        assert!(positive(&recovery["ready_seconds"]), "{recovery}");
        assert!(
            recovery["first_accept_seconds"].as_f64() >= recovery["ready_seconds"].as_f64(),
            "{recovery}"
        );
        // HTTPS against HTTP ingress in the same run (issue 21).
        let tls = &json["tls"]["Ok"];
        for scheme in ["http", "https"] {
            assert!(positive(&tls[scheme]["events_per_second"]), "{json}");
            assert!(
                tls[scheme]["cpu_seconds_per_1000"].as_f64().is_some(),
                "{tls}"
            );
        }
        // Token and EventPolicy checks against no authentication in the same run (issue 21).
        let access = &json["access"]["Ok"];
        for case in ["plain", "token", "policy"] {
            assert!(positive(&access[case]["events_per_second"]), "{json}");
        }
        let markdown = std::fs::read_to_string(&paths[1]).unwrap();
        assert!(
            markdown.contains("EventPolicy (from.sub, filters)"),
            "{markdown}"
        );
    } else {
        assert!(json["recovery"].is_null(), "{json}");
        assert!(json["tls"].is_null(), "{json}");
        assert!(json["access"].is_null(), "{json}");
    }
    let goals = json["goals"].as_array().unwrap();
    assert!(goals.iter().all(|g| g["met"].is_boolean()), "{goals:?}");
    let markdown = std::fs::read_to_string(&paths[1]).unwrap();
    assert!(markdown.contains("| closed-loop ingress"), "{markdown}");
    assert!(markdown.contains("the goal line"), "{markdown}");
    assert!(markdown.contains("vs a bare relay"), "{markdown}");
    assert_eq!(
        markdown.contains("| closed-loop ingress over HTTPS (TLS 1.3, keep-alive)"),
        backend == "sled",
        "{markdown}"
    );
    let expected_goals = match backend {
        // 2 ratios × 2 counts, end to end at the goal line, idle RSS and CPU, recovery.
        "sled" => 8,
        // 2 ratios × 2 counts against raw JetStream, idle RSS and CPU.
        "nats" => 6,
        // 2 ratios × 2 counts against the raw producer, CPU × 2 counts, low-rate p50, idle.
        _ => 9,
    };
    assert_eq!(goals.len(), expected_goals, "{markdown}");
    assert_eq!(
        markdown.matches(": met |").count() + markdown.matches(": **not met** |").count(),
        expected_goals,
        "{markdown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_smoke_kafka() {
    if common::skip_without(&[Server::Kafka]) {
        return;
    }
    smoke("kafka").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_smoke_sled() {
    smoke("sled").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_smoke_nats() {
    if common::skip_without(&[Server::Nats]) {
        return;
    }
    smoke("nats").await;
}
