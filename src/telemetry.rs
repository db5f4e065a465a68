//! Logging to stderr and, with `--otlp-endpoint`, span export over OTLP/HTTP (protobuf).

use std::io::IsTerminal;

use anyhow::Context as _;
use herald_broker::trace::{SpanContexts, TraceParent};
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The OTLP/HTTP path for traces, appended to a collector's base address.
const TRACES_PATH: &str = "/v1/traces";

/// Herald's crates: only their spans are exported (not those of hyper, sled or the clients).
const EXPORTED_TARGETS: [&str; 4] = [
    "herald",
    "herald_broker",
    "herald_triggers",
    "herald_sources",
];

/// Keeps the exporter alive; [`Telemetry::shutdown`] flushes the spans still queued.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    #[allow(
        clippy::print_stderr,
        reason = "the log is shut down: stderr is what is left"
    )]
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(error) = provider.shutdown() {
                eprintln!("warning: flushing spans to the OTLP endpoint failed: {error}");
            }
        }
    }
}

/// Installs the global subscriber: `RUST_LOG`-filtered logs on stderr, plus span export when
/// `otlp_endpoint` is given (must be called outside the tokio runtime: the exporter's HTTP
/// client runs on its own thread).
pub fn init(otlp_endpoint: Option<&str>) -> anyhow::Result<Telemetry> {
    // A global filter, not a per-layer one: events must not depend on which thread first
    // registered their callsite (per-layer filters dropped a log line while librdkafka's
    // threads were logging).
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let Some(endpoint) = otlp_endpoint else {
        tracing_subscriber::registry()
            .with(filter)
            .with(logs)
            .init();
        return Ok(Telemetry { provider: None });
    };
    let endpoint = traces_url(endpoint);
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint.clone())
        .build()
        .with_context(|| format!("--otlp-endpoint {endpoint}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("herald")
                .build(),
        )
        .build();
    let exported = EXPORTED_TARGETS
        .iter()
        .fold(Targets::new(), |targets, target| {
            targets.with_target(*target, LevelFilter::INFO)
        });
    let spans = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("herald"))
        .with_filter(exported);
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(spans)
        .init();
    herald_broker::trace::install(Box::new(OtelBridge));
    tracing::info!(%endpoint, "exporting spans over OTLP/HTTP");
    Ok(Telemetry {
        provider: Some(provider),
    })
}

/// `http://collector:4318` → `http://collector:4318/v1/traces`; a URL already ending in
/// `/v1/traces` is kept.
fn traces_url(endpoint: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    if trimmed.ends_with(TRACES_PATH) {
        trimmed.to_owned()
    } else {
        format!("{trimmed}{TRACES_PATH}")
    }
}

/// Reads and sets span contexts through `tracing-opentelemetry`.
struct OtelBridge;

impl SpanContexts for OtelBridge {
    fn set_parent(&self, span: &tracing::Span, parent: &TraceParent) {
        let (Ok(trace_id), Ok(span_id)) = (
            TraceId::from_hex(&parent.trace_id),
            SpanId::from_hex(&parent.span_id),
        ) else {
            return;
        };
        let remote = SpanContext::new(
            trace_id,
            span_id,
            TraceFlags::new(parent.flags),
            true,
            TraceState::default(),
        );
        // Fails only when the span is disabled for the exporter; it then has no identity.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }

    fn context_of(&self, span: &tracing::Span) -> Option<TraceParent> {
        let context = span.context();
        let own = context.span();
        let own = own.span_context();
        own.is_valid().then(|| TraceParent {
            trace_id: own.trace_id().to_string(),
            span_id: own.span_id().to_string(),
            flags: own.trace_flags().to_u8(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_path_is_added_once() {
        assert_eq!(
            traces_url("http://collector:4318"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://c.example/otlp/v1/traces"),
            "https://c.example/otlp/v1/traces"
        );
    }
}
