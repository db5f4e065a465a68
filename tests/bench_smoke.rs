//! herald-bench in its smoke mode: it runs end to end on every backend and its report parses.
//! Not a performance assertion: the numbers are only checked to exist.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "test code"
)]

use herald_bench::{report, Settings};

async fn smoke(backend: &str) {
    let settings = Settings::smoke(env!("CARGO_BIN_EXE_herald").into());
    let run = report::run_backend(&settings, backend)
        .await
        .expect("the smoke run completes");
    let dir = tempfile::tempdir().unwrap();
    let paths = report::write(&run, dir.path()).unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&paths[0]).unwrap()).expect("the JSON report parses");
    assert_eq!(json["backend"], backend);
    for field in [
        "herald_ingress_rps",
        "baseline_http_rps",
        "ratio_to_http_baseline",
    ] {
        assert!(
            json[field].as_f64().is_some_and(|v| v > 0.0),
            "{field} in {json}"
        );
    }
    assert!(json["machine"]["cores"].as_u64().is_some_and(|c| c > 0));
    let open = json["open_loop"].as_array().unwrap();
    assert!(
        open.iter()
            .all(|p| p["ingress_202"]["samples"].as_u64() > Some(0)),
        "{open:?}"
    );
    for field in ["idle_rss_bytes", "overload_peak_rss_bytes"] {
        assert!(
            json["memory"][field].as_u64().is_some_and(|v| v > 0),
            "memory.{field} in {json}"
        );
    }
    let fanout = json["fanout"].as_array().unwrap();
    assert_eq!(fanout.len(), 2);
    assert!(
        fanout.iter().all(|p| p["complete"] == true),
        "every fan-out delivery arrived: {fanout:?}"
    );
    let markdown = std::fs::read_to_string(&paths[1]).unwrap();
    assert!(markdown.contains("| ingress throughput"), "{markdown}");
    if backend == "nats" {
        assert!(json["baseline_nats_publish_rps"]
            .as_f64()
            .is_some_and(|v| v > 0.0));
    }
    if backend == "kafka" {
        assert!(json["baseline_kafka_produce_rps"]
            .as_f64()
            .is_some_and(|v| v > 0.0));
        assert!(markdown.contains("raw Kafka produce"), "{markdown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_smoke_kafka() {
    smoke("kafka").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_smoke_sled() {
    smoke("sled").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_smoke_nats() {
    smoke("nats").await;
}
