//! Command-line interface. Every `serve` flag is also an environment variable `HERALD_<FLAG>`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// Where `--backend nats` looks for NATS when no `--nats-url` is given.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

#[derive(Parser, Debug)]
#[command(
    name = "herald",
    version,
    about = "An event broker and trigger system that speaks Knative Eventing"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Parsed once at start; the size of `serve`'s flags does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run brokers and triggers declared in Knative YAML files.
    Serve(ServeArgs),
    /// Work with trigger filters.
    Filter {
        #[command(subcommand)]
        command: FilterCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum FilterCommand {
    /// Evaluate a trigger's filters against one event: prints PASS or FAIL and the element
    /// that decided. Exit code 0 for pass, 1 for fail, 2 for invalid input.
    Test(FilterTestArgs),
}

#[derive(Parser, Debug, Clone)]
pub struct FilterTestArgs {
    /// A YAML/JSON file holding the Trigger (the first Trigger in it is used).
    #[arg(long)]
    pub trigger: PathBuf,
    /// The event in CloudEvents JSON (structured) form; `-` reads standard input.
    #[arg(long, default_value = "-")]
    pub event: String,
}

/// The log backend.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The embedded sled log in --data-dir.
    Sled,
    /// NATS JetStream at --nats-url.
    Nats,
}

#[derive(Parser, Debug, Clone)]
pub struct ServeArgs {
    /// A YAML/JSON file or a folder of them (repeatable; env: comma-separated).
    #[arg(long = "config", env = "HERALD_CONFIG", value_delimiter = ',')]
    pub config: Vec<PathBuf>,

    /// Ingress address; port 0 picks a free port (the chosen address is logged).
    #[arg(long, env = "HERALD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Admin address: /healthz, /readyz.
    #[arg(long, env = "HERALD_ADMIN_LISTEN", default_value = "127.0.0.1:8081")]
    pub admin_listen: SocketAddr,

    /// Where the log, offsets and parked events are kept.
    #[arg(long, env = "HERALD_DATA_DIR", default_value = "./herald-data")]
    pub data_dir: PathBuf,

    /// Log backend.
    #[arg(long, env = "HERALD_BACKEND", value_enum, default_value_t = Backend::Sled)]
    pub backend: Backend,

    /// NATS server: the log of `--backend nats` (default nats://127.0.0.1:4222), or, with
    /// another default backend, of brokers of class NatsJetStreamBroker.
    #[arg(long, env = "HERALD_NATS_URL")]
    pub nats_url: Option<String>,

    /// NATS credentials file (JWT and NKey seed).
    #[arg(long, env = "HERALD_NATS_CREDENTIALS")]
    pub nats_credentials: Option<PathBuf>,

    /// NATS authentication token.
    #[arg(long, env = "HERALD_NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<String>,

    /// PEM file of CA certificates for NATS over TLS (makes TLS required).
    #[arg(long, env = "HERALD_NATS_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,

    /// Largest accepted request body in bytes (413 above it).
    #[arg(long, env = "HERALD_MAX_EVENT_BYTES", default_value_t = herald_broker::ingress::DEFAULT_MAX_EVENT_BYTES)]
    pub max_event_bytes: usize,

    /// Deliveries in flight per trigger.
    #[arg(long, env = "HERALD_MAX_IN_FLIGHT", default_value_t = herald_triggers::plan::DEFAULT_MAX_IN_FLIGHT)]
    pub max_in_flight: usize,

    /// Outbound requests (to subscribers and dead-letter sinks) in flight, all triggers together.
    #[arg(long, env = "HERALD_MAX_OUTBOUND", default_value_t = herald_triggers::attempt::DEFAULT_MAX_OUTBOUND)]
    pub max_outbound: usize,

    /// Bound of the log's append queue; a full queue answers 503 with Retry-After.
    #[arg(long, env = "HERALD_APPEND_QUEUE", default_value_t = herald_broker::log::sled::DEFAULT_QUEUE_CAPACITY)]
    pub append_queue: usize,

    /// How long shutdown waits for in-flight requests and deliveries (e.g. 30s, 500ms).
    #[arg(long, env = "HERALD_SHUTDOWN_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// Export spans over OTLP/HTTP (protobuf) to this collector, e.g. http://127.0.0.1:4318
    /// (`/v1/traces` is added). Off by default.
    #[arg(long, env = "HERALD_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}
