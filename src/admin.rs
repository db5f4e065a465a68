//! The admin listener: health and readiness probes and Prometheus `/metrics` (the resource
//! API is merged in by `serve`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use herald_broker::EventLog;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;

/// Ready once the listeners serve and the resources run; not ready while shutting down, nor
/// while the log cannot persist appends (the embedded log after a disk error).
#[derive(Clone)]
pub struct Readiness {
    serving: Arc<AtomicBool>,
    /// The resources run (`serve` starts them before it listens; the controller after its
    /// first reconcile, so a new replica gets no traffic before it knows its brokers).
    synced: Arc<AtomicBool>,
    log: Option<Arc<dyn EventLog>>,
}

impl Default for Readiness {
    fn default() -> Self {
        Self {
            serving: Arc::new(AtomicBool::new(false)),
            synced: Arc::new(AtomicBool::new(true)),
            log: None,
        }
    }
}

/// Why `/readyz` says not ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotReady {
    /// Starting, syncing or shutting down.
    NotServing,
    /// The event log cannot store appends; ingress answers 503 meanwhile.
    LogCannotPersist,
}

impl NotReady {
    fn reason(self) -> &'static str {
        match self {
            NotReady::NotServing => "not serving",
            NotReady::LogCannotPersist => "the event log cannot persist events",
        }
    }
}

impl Readiness {
    /// Not ready until [`Readiness::mark_synced`] as well.
    pub fn until_synced() -> Self {
        let readiness = Self::default();
        readiness.synced.store(false, Ordering::SeqCst);
        readiness
    }

    pub fn set(&self, ready: bool) {
        self.serving.store(ready, Ordering::SeqCst);
    }

    pub fn mark_synced(&self) {
        self.synced.store(true, Ordering::SeqCst);
    }

    /// Also not ready while `log` cannot persist.
    pub fn with_log(mut self, log: Arc<dyn EventLog>) -> Self {
        self.log = Some(log);
        self
    }

    pub fn check(&self) -> Result<(), NotReady> {
        if !(self.serving.load(Ordering::SeqCst) && self.synced.load(Ordering::SeqCst)) {
            return Err(NotReady::NotServing);
        }
        if self.log.as_ref().is_some_and(|log| !log.can_persist()) {
            return Err(NotReady::LogCannotPersist);
        }
        Ok(())
    }
}

/// Installs the Prometheus recorder for this process (once) and returns what renders it.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&LATENCY_BUCKETS)?
        .install_recorder()?;
    metrics_process::Collector::default().describe();
    Ok(handle)
}

/// Seconds: 1 ms to 30 s, as Knative's 5 ms to 10 s with both ends widened.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

pub fn router(readiness: Readiness, metrics: PrometheusHandle) -> Router {
    probes(readiness).route(
        "/metrics",
        get(move || {
            metrics_process::Collector::default().collect();
            let text = metrics.render();
            async move { ([("content-type", "text/plain; version=0.0.4")], text) }
        }),
    )
}

/// What the admin listener serves beyond its connection limit: the probes, so that a full
/// listener is not mistaken for a dead process, and 503 for everything else.
pub fn probes_only(readiness: Readiness) -> Router {
    probes(readiness).fallback(|| async {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "1")],
            Json(json!({
                "apiVersion": "v1",
                "kind": "Status",
                "status": "Failure",
                "message": "the admin listener is at its connection limit (--max-connections): only /healthz and /readyz are served until a connection closes",
                "reason": "ServiceUnavailable",
                "code": 503,
            })),
        )
    })
}

fn probes(readiness: Readiness) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route(
            "/readyz",
            get(move || {
                let ready = readiness.check();
                async move {
                    match ready {
                        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ready" }))),
                        Err(why) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            Json(json!({ "status": "not ready", "reason": why.reason() })),
                        ),
                    }
                }
            }),
        )
}
