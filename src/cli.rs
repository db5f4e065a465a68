//! Command-line interface. Every `serve` flag is also an environment variable `HERALD_<FLAG>`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// Where `--backend nats` looks for NATS when no `--nats-url` is given.
#[cfg(feature = "nats")]
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
    /// Run Herald: brokers, triggers and sources from Knative YAML files and the admin API.
    Serve(ServeArgs),
    /// Run Herald on Kubernetes: brokers, triggers and sources from Knative resources on the
    /// API server, with Knative-shaped status.
    Controller(ControllerArgs),
    /// Work with trigger filters.
    Filter {
        #[command(subcommand)]
        command: FilterCommand,
    },
    /// Send one CloudEvent to a broker (like `kn event send`); prints Herald's answer.
    Send(SendArgs),
    /// Create or replace the resources in YAML/JSON files, like `kubectl apply`.
    Apply(ApplyArgs),
    /// List resources, or show one.
    Get(GetArgs),
    /// Show a trigger in detail: status, filters, delivery, lag, parked events, last errors.
    Describe(DescribeArgs),
    /// Delete a resource.
    Delete(DeleteArgs),
    /// A trigger's dead-letter store: list, show, redrive, purge parked events.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Follow the events a broker accepts, optionally filtered with CESQL.
    Tail(TailArgs),
    /// Print the CustomResourceDefinitions of every kind Herald serves (or write one file per
    /// CRD into a folder).
    Crds {
        /// Write `{plural}.{group}.yaml` files into this folder instead of printing.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Get a token from Herald's issuer for a sender and an audience (`POST
    /// /apis/herald.dev/v1/oidc/token`, behind the admin token) and print it, for
    /// `curl -H "Authorization: Bearer $(herald token ...)"`.
    Token(TokenArgs),
    /// Run a program with the environment Knative's SinkBinding gives it (`K_SINK`,
    /// `K_CE_OVERRIDES`, `K_COMPONENT`), so existing Knative adapters run unchanged.
    Run(RunArgs),
}

#[derive(Parser, Debug, Clone)]
pub struct TokenArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// The token's audience: a broker's (`eventing.knative.dev/broker/NAMESPACE/NAME`, or use
    /// --broker), a subscriber's, or the admin API's (herald-admin).
    #[arg(long, required_unless_present = "broker", conflicts_with = "broker")]
    pub audience: Option<String>,
    /// The audience of this broker in --namespace.
    #[arg(long)]
    pub broker: Option<String>,
    /// The token's subject, as is.
    #[arg(
        long,
        required_unless_present = "service_account",
        conflicts_with = "service_account"
    )]
    pub subject: Option<String>,
    /// A ServiceAccount NAMESPACE/NAME: the subject `system:serviceaccount:NAMESPACE:NAME`.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub service_account: Option<String>,
    /// How long the token lives, in seconds (1 to 3600; default 3600).
    #[arg(long)]
    pub expiration_seconds: Option<u64>,
}

#[derive(Parser, Debug, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Where the program sends events: `broker:NAME` (or `broker:NAMESPACE/NAME`, looked up
    /// through the admin API) or a URL.
    #[arg(long)]
    pub sink: String,
    /// An extension the program should set on every event, `name=value` (repeatable; passed
    /// in `K_CE_OVERRIDES`).
    #[arg(long = "ce-override", value_name = "NAME=VALUE")]
    pub ce_overrides: Vec<String>,
    /// The program's sender identity, `NAMESPACE/NAME` (a ServiceAccount): when the sink
    /// broker has an audience (sender identity is on), the program finds a token for it in
    /// the file `K_OIDC_TOKEN_FILE` names, kept fresh until it exits.
    #[arg(long = "service-account", value_name = "NAMESPACE/NAME")]
    pub service_account: Option<String>,
    /// The program and its arguments, after `--`.
    #[arg(required = true, last = true)]
    pub command: Vec<String>,
}

/// How the CLI reaches a running Herald's admin API.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// The admin API of a running `herald serve`.
    #[arg(
        long,
        env = "HERALD_SERVER",
        default_value = "http://127.0.0.1:8081",
        global = true
    )]
    pub server: String,
    /// Bearer token for the admin API.
    #[arg(
        long,
        env = "HERALD_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
    /// Namespace of the resources.
    #[arg(short, long, default_value = "default", global = true)]
    pub namespace: String,
    /// PEM CA certificates to trust (besides the system roots) when --server is https, and
    /// when `herald send` posts to an https broker address.
    #[arg(long, env = "HERALD_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
}

/// A Knative feature flag's value.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FeatureFlag {
    #[default]
    Disabled,
    Enabled,
}

/// How results are printed.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Output {
    /// Columns for people.
    #[default]
    Table,
    Yaml,
    /// For scripts.
    Json,
}

#[derive(Parser, Debug, Clone)]
pub struct SendArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// The broker to send to.
    #[arg(long)]
    pub broker: String,
    /// The event's `type`.
    #[arg(long = "type")]
    pub event_type: String,
    /// The event's `source`.
    #[arg(long, default_value = "herald-cli")]
    pub source: String,
    /// The event's `id` (default: a new UUID).
    #[arg(long)]
    pub id: Option<String>,
    /// The data, as given.
    #[arg(long, conflicts_with = "data_file")]
    pub data: Option<String>,
    /// Read the data from this file (`-` for standard input).
    #[arg(long)]
    pub data_file: Option<PathBuf>,
    /// The data's media type (default: application/json when the data parses as JSON, else
    /// text/plain).
    #[arg(long)]
    pub content_type: Option<String>,
    /// An extension attribute, `name=value` (repeatable).
    #[arg(long = "ext", value_name = "NAME=VALUE")]
    pub extensions: Vec<String>,
}

#[derive(Parser, Debug, Clone)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// A YAML/JSON file or a folder of them (repeatable).
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Parser, Debug, Clone)]
pub struct GetArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// brokers, triggers, sources, or a source kind (natssources).
    pub kind: String,
    /// One resource by name.
    pub name: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Parser, Debug, Clone)]
pub struct DescribeArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// `trigger` (or `broker`, or a source kind).
    pub kind: String,
    pub name: String,
}

#[derive(Parser, Debug, Clone)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// broker, trigger, or a source kind.
    pub kind: String,
    pub name: String,
}

#[derive(Subcommand, Debug, Clone)]
pub enum DlqCommand {
    /// The parked events with their failures.
    List(DlqListArgs),
    /// One parked event: the event, its headers and its failure.
    Show(DlqIdsArgs),
    /// Deliver parked events again through the trigger (all with --all).
    Redrive(DlqIdsArgs),
    /// Delete parked events for good (all with --all).
    Purge(DlqIdsArgs),
}

#[derive(Parser, Debug, Clone)]
pub struct DlqListArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[arg(long)]
    pub trigger: String,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Parser, Debug, Clone)]
pub struct DlqIdsArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[arg(long)]
    pub trigger: String,
    /// Parked event ids, as `herald dlq list` prints them.
    pub ids: Vec<String>,
    /// Every parked event of the trigger.
    #[arg(long, conflicts_with = "ids")]
    pub all: bool,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Parser, Debug, Clone)]
pub struct TailArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[arg(long)]
    pub broker: String,
    /// Only events matching this CESQL expression.
    #[arg(long)]
    pub filter: Option<String>,
    /// Print each event as one JSON line instead of a summary line.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
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
    /// Apache Kafka at --kafka-bootstrap.
    Kafka,
}

#[derive(Parser, Debug, Clone)]
pub struct ServeArgs {
    /// A YAML/JSON file or a folder of them (repeatable; env: comma-separated).
    #[arg(long = "config", env = "HERALD_CONFIG", value_delimiter = ',')]
    pub config: Vec<PathBuf>,

    /// Where a `ref` to a Kubernetes object points off the cluster:
    /// API_VERSION/KIND/[NAMESPACE/]NAME=URL, e.g. v1/Service/default/display=http://127.0.0.1:9000
    /// (repeatable; env: comma-separated). The namespace defaults to `default`.
    #[arg(long = "resolve", env = "HERALD_RESOLVE", value_delimiter = ',')]
    pub resolve: Vec<String>,

    /// Where the Secrets that KafkaSources name (`spec.net`) are read off the cluster: the file
    /// DIR/NAMESPACE/SECRET/KEY (a mounted Secret's layout, per namespace); without such a
    /// file, the variable HERALD_SECRET_<NAMESPACE>_<SECRET>_<KEY>.
    #[arg(long, env = "HERALD_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,

    /// Bearer token every admin API call must carry (all but /healthz, /readyz, /metrics);
    /// required when --admin-listen is not a loopback address.
    #[arg(long, env = "HERALD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// A YAML file of role bindings: the admin API then also takes OIDC tokens (Herald's or a
    /// trusted issuer's, for the file's `audience`, default herald-admin) and allows each
    /// subject what its role (viewer, editor, admin) allows in each namespace; read at start.
    /// Needs --authentication-oidc enabled.
    #[arg(long, env = "HERALD_ADMIN_ROLES")]
    pub admin_roles: Option<PathBuf>,

    #[command(flatten)]
    pub data: DataPlaneArgs,
}

/// `herald controller`: the data plane of `serve`, driven by Knative resources on a
/// Kubernetes API server instead of files and the admin API.
#[derive(Parser, Debug, Clone)]
pub struct ControllerArgs {
    /// The base URL brokers are addressed at from inside the cluster (the Service in front
    /// of Herald's ingress), e.g. http://herald-ingress.herald.svc.cluster.local; a Broker's
    /// `status.address.url` is `{external-url}/{namespace}/{name}`.
    #[arg(long, env = "HERALD_EXTERNAL_URL")]
    pub external_url: String,

    /// The cluster's DNS domain, for `ref`s to Services.
    #[arg(long, env = "HERALD_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,

    /// Watch only this namespace (repeatable; env: comma-separated). Default: every
    /// namespace. With it Herald needs permissions in these namespaces only (a RoleBinding
    /// per namespace instead of a ClusterRoleBinding).
    #[arg(long = "namespace", env = "HERALD_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,

    /// The coordination.k8s.io Lease whose holder writes status and finalizers.
    #[arg(long, env = "HERALD_LEASE_NAME", default_value = "herald-controller")]
    pub lease_name: String,

    /// The Lease's namespace (in a pod: its own, from the downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,

    /// This replica's name in the Lease (default: the host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// How long a Lease holds without renewal; another replica takes over after it.
    #[arg(long, env = "HERALD_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,

    /// When a Broker is deleted, delete its log too (topic, JetStream stream or the embedded
    /// log's segment files, with every trigger position and parked event of it), through a
    /// finalizer. Off by
    /// default: a deleted Broker's events stay where they were.
    #[arg(long, env = "HERALD_DELETE_BROKER_LOGS")]
    pub delete_broker_logs: bool,

    #[command(flatten)]
    pub data: DataPlaneArgs,
}

/// What runs events: listeners, the log backend, delivery limits. Shared by `serve` and
/// `controller`.
#[derive(clap::Args, Debug, Clone)]
pub struct DataPlaneArgs {
    /// A kubeconfig for the Kubernetes API (ApiServerSource; the controller's API server).
    /// Default: the usual inference (`KUBECONFIG`, `~/.kube/config`, in-cluster).
    #[arg(long, env = "HERALD_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Ingress address; port 0 picks a free port (the chosen address is logged).
    #[arg(long, env = "HERALD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Admin address: the resource API, /healthz, /readyz, /metrics.
    #[arg(long, env = "HERALD_ADMIN_LISTEN", default_value = "127.0.0.1:8081")]
    pub admin_listen: SocketAddr,

    /// Where the log, offsets and parked events are kept.
    #[arg(long, env = "HERALD_DATA_DIR", default_value = "./herald-data")]
    pub data_dir: PathBuf,

    /// Log backend.
    #[arg(long, env = "HERALD_BACKEND", value_enum, default_value_t = Backend::Sled)]
    pub backend: Backend,

    /// Kafka bootstrap servers (`host:port[,host:port]`): the log of `--backend kafka`, or,
    /// with another default backend, of brokers of class Kafka.
    #[arg(long, env = "HERALD_KAFKA_BOOTSTRAP")]
    pub kafka_bootstrap: Option<String>,

    /// A librdkafka setting for every Kafka client, `key=value` (repeatable; env:
    /// comma-separated), e.g. security.protocol=SASL_SSL, sasl.mechanism=SCRAM-SHA-512.
    #[arg(long = "kafka-option", env = "HERALD_KAFKA_OPTIONS", value_delimiter = ',', value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub kafka_options: Vec<(String, String)>,

    /// Partitions of new broker topics (Knative's default 10; per broker:
    /// `herald.dev/partitions`).
    #[arg(long, env = "HERALD_KAFKA_PARTITIONS", default_value_t = 10)]
    pub kafka_partitions: i32,

    /// Replication factor of new topics; -1 (default) takes the cluster's
    /// default.replication.factor (per broker: `herald.dev/replicas`).
    #[arg(long, env = "HERALD_KAFKA_REPLICATION_FACTOR", default_value_t = -1, allow_negative_numbers = true)]
    pub kafka_replication_factor: i32,

    /// Put before every Kafka topic and consumer group Herald creates, so that several Herald
    /// installations can share one cluster (topic characters, at most 100).
    #[arg(long, env = "HERALD_KAFKA_PREFIX", default_value = "", value_parser = parse_kafka_prefix)]
    pub kafka_prefix: String,

    /// Read each Kafka broker's topic once for all of its triggers (one consumer group per
    /// broker, which several Herald processes share), with trigger positions in a compacted
    /// topic of their own, instead of a consumer group and client per trigger.
    #[arg(long, env = "HERALD_KAFKA_SHARED_READER")]
    pub kafka_shared_reader: bool,

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

    /// Read each NATS broker's stream once for all of its triggers, with trigger positions in
    /// a stream of their own, instead of a durable consumer per trigger. For one Herald
    /// process per NATS: several would each deliver every event.
    #[arg(long, env = "HERALD_NATS_SHARED_READER")]
    pub nats_shared_reader: bool,

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

    /// Bytes of page cache of the embedded log's sled database, which holds trigger offsets
    /// and parked events (sled's own default is 1 GiB).
    #[arg(long, env = "HERALD_SLED_CACHE_BYTES", default_value_t = herald_broker::log::sled::DEFAULT_CACHE_BYTES)]
    pub sled_cache_bytes: u64,

    /// Distinct event types per broker that get their own `event_type` label on
    /// `herald_events_received_total`; later types are counted as `_other`.
    #[arg(long, env = "HERALD_METRICS_MAX_EVENT_TYPES", default_value_t = herald_broker::type_labels::DEFAULT_MAX_EVENT_TYPES)]
    pub metrics_max_event_types: usize,

    /// Record the types every broker accepts as EventTypes (Knative's `eventtype-auto-create`);
    /// a Broker's `herald.dev/eventtype-auto-create: enabled|disabled` overrides it.
    #[arg(long, env = "HERALD_EVENTTYPE_AUTO_CREATE")]
    pub eventtype_auto_create: bool,

    /// Auto-created EventTypes kept per broker; later new types are not recorded and
    /// `herald_eventtypes_not_recorded_total` counts them.
    #[arg(long, env = "HERALD_EVENTTYPE_AUTO_CREATE_MAX", default_value_t = herald_broker::catalog::discovered::DEFAULT_MAX_DISCOVERED, value_parser = parse_auto_create_max)]
    pub eventtype_auto_create_max: usize,

    /// Knative's `authentication-oidc`: deliveries carry the sender's token for the target's
    /// audience, brokers and channels advertise an audience and require a valid token (401).
    #[arg(long, env = "HERALD_AUTHENTICATION_OIDC", value_enum, default_value_t = FeatureFlag::Disabled)]
    pub authentication_oidc: FeatureFlag,

    /// The `iss` of Herald's own tokens and the base of its discovery document; default: the
    /// admin listener's `http://host:port`.
    #[arg(long, env = "HERALD_OIDC_ISSUER_URL")]
    pub oidc_issuer_url: Option<String>,

    /// Another OIDC issuer whose tokens the ingress (and the admin API, with --admin-roles)
    /// accepts too: an https URL whose discovery document and JWKS are fetched over HTTPS,
    /// trusted like every outgoing request (--tls-trust-bundle); repeatable, at most 16; env:
    /// comma-separated. Needs --authentication-oidc enabled.
    #[arg(
        long = "oidc-trusted-issuer",
        env = "HERALD_OIDC_TRUSTED_ISSUERS",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub oidc_trusted_issuers: Vec<String>,

    /// Knative's `default-authorization-mode`: who may send to a broker or channel that no
    /// EventPolicy applies to, when OIDC authentication is on: allow-all, deny-all, or
    /// allow-same-namespace (subjects `system:serviceaccount:{its namespace}:...`).
    #[arg(long, env = "HERALD_DEFAULT_AUTHORIZATION_MODE", default_value = "allow-same-namespace", value_parser = parse_default_mode)]
    pub default_authorization_mode: crate::policy::DefaultMode,

    /// Open connections per listener (ingress, admin). At the limit the listener stops
    /// accepting until one closes; the admin listener keeps 16 more connections for /healthz
    /// and /readyz. Default: a quarter of the open-file limit, at most 10000.
    #[arg(long, env = "HERALD_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,

    /// How long a client may take to send a request's headers, from the connection's start
    /// or the request's first byte; then the connection is closed.
    #[arg(long, env = "HERALD_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub header_read_timeout: Duration,

    #[command(flatten)]
    pub tls: TlsArgs,

    /// How long a keep-alive connection may wait for its next request before it is closed.
    #[arg(long, env = "HERALD_IDLE_TIMEOUT", default_value = "120s", value_parser = parse_positive_duration)]
    pub idle_timeout: Duration,

    /// How long shutdown waits for in-flight requests and deliveries (e.g. 30s, 500ms).
    #[arg(long, env = "HERALD_SHUTDOWN_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// Retries of a source's delivery to its sink after the first attempt (Knative's 5).
    #[arg(long, env = "HERALD_SOURCE_RETRY", default_value_t = 5)]
    pub source_retry: u32,

    /// First wait between a source's delivery attempts, doubled each retry (Knative's 50ms).
    #[arg(long, env = "HERALD_SOURCE_BACKOFF_DELAY", default_value = "50ms", value_parser = humantime::parse_duration)]
    pub source_backoff_delay: Duration,

    /// Export spans over OTLP/HTTP (protobuf) to this collector, e.g. http://127.0.0.1:4318
    /// (`/v1/traces` is added). Off by default.
    #[arg(long, env = "HERALD_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

/// An `--admin-token` (or `--token`) as used: surrounding whitespace (a newline from a
/// Secret file) dropped, and a blank one counting as none.
pub fn token(given: Option<&str>) -> Option<&str> {
    given.map(str::trim).filter(|token| !token.is_empty())
}

/// `--default-authorization-mode`, in any case (as Knative's config-features values).
fn parse_default_mode(text: &str) -> Result<crate::policy::DefaultMode, String> {
    text.parse()
}

/// `--eventtype-auto-create-max`: 1 to 1000000.
fn parse_auto_create_max(text: &str) -> Result<usize, String> {
    text.parse::<usize>()
        .ok()
        .filter(|n| (1..=1_000_000).contains(n))
        .ok_or_else(|| format!("{text:?} is not a number from 1 to 1000000"))
}

/// A duration above zero, e.g. `10s`, `500ms`.
fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(duration) if duration.is_zero() => Err("must be more than 0".to_owned()),
        Ok(duration) => Ok(duration),
        Err(error) => Err(error.to_string()),
    }
}

/// A `--kafka-prefix` that leaves every topic name legal.
fn parse_kafka_prefix(text: &str) -> Result<String, String> {
    herald_broker::log::names::kafka::validate_prefix(text)
        .map(|()| text.to_owned())
        .map_err(|e| e.to_string())
}

/// `key=value`
fn parse_key_value(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected KEY=VALUE"))?;
    if key.trim().is_empty() {
        return Err(format!("{text:?}: the key is empty"));
    }
    Ok((key.trim().to_owned(), value.to_owned()))
}

/// Transport encryption (Knative's `transport-encryption`): without `--tls-cert` it is
/// disabled; with it the ingress serves HTTPS beside HTTP (permissive); with `--tls-only`,
/// HTTPS only (strict).
#[derive(clap::Args, Debug, Clone)]
pub struct TlsArgs {
    /// PEM certificate chain (leaf first) of the HTTPS listeners; read again every
    /// --tls-reload-interval and served without a restart when it changed.
    #[arg(long, env = "HERALD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, env = "HERALD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// HTTPS ingress address (brokers, channels, flows, transforms, webhook sources), beside
    /// the plain --listen; port 0 picks a free port (logged).
    #[arg(long, env = "HERALD_TLS_LISTEN", default_value = "127.0.0.1:8443")]
    pub tls_listen: SocketAddr,

    /// Strict mode: plain HTTP is not served at ingress and only https addresses are
    /// advertised. --listen is then not opened (Herald's own sources reach its brokers
    /// through an internal loopback listener).
    #[arg(long, env = "HERALD_TLS_ONLY", requires = "tls_cert")]
    pub tls_only: bool,

    /// Serve the admin API over HTTPS (with --tls-cert) instead of HTTP.
    #[arg(long, env = "HERALD_ADMIN_TLS", requires = "tls_cert")]
    pub admin_tls: bool,

    /// Lowest TLS version the listeners accept (Knative's default: 1.3).
    #[arg(
        long,
        env = "HERALD_TLS_MIN_VERSION",
        value_enum,
        default_value = "1.3"
    )]
    pub tls_min_version: TlsVersion,

    /// PEM CA bundle that verifies --tls-cert, advertised as `CACerts` with the https
    /// addresses (Knative's `ca.crt`); read at start.
    #[arg(long, env = "HERALD_TLS_CA_CERTS", requires = "tls_cert")]
    pub tls_ca_certs: Option<PathBuf>,

    /// PEM CA certificates every outgoing HTTPS request trusts besides the system roots: a
    /// file, or a folder of them (repeatable; env: comma-separated); reloaded like
    /// --tls-cert.
    #[arg(
        long = "tls-trust-bundle",
        env = "HERALD_TLS_TRUST_BUNDLES",
        value_delimiter = ','
    )]
    pub tls_trust_bundles: Vec<PathBuf>,

    /// How often --tls-cert, --tls-key and the trust bundles are read for changes.
    #[arg(long, env = "HERALD_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = parse_positive_duration)]
    pub tls_reload_interval: Duration,
}

/// A TLS protocol version.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    #[value(name = "1.2")]
    Tls12,
    #[value(name = "1.3")]
    Tls13,
}
