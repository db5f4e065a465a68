//! What `serve` and `controller` share: the log backends, the ingress and admin listeners,
//! the runtime, and serving until SIGTERM/SIGINT with a drain.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::apiserver_source::KubeAccess;
use crate::identity::Identity;
use anyhow::Context;
use herald_broker::log::routed::{BackendChoice, RoutedLog};
use herald_broker::log::sled::SledLog;
use herald_broker::{BrokerRegistry, EventLog, Ingress, IngressAccess, IngressConfig};
use herald_sources::webhook::WebhookRegistry;
use herald_triggers::attempt::Sender;
use herald_triggers::process::Deps;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::Readiness;
use crate::cli::{Backend, DataPlaneArgs, FeatureFlag};
use crate::runtime::Runtime;
use crate::server;
use crate::source_kinds::SourceContext;
use crate::transport::Tls;
use herald::addresses::{HttpsIngress, Transport};

/// An opened data plane: backends connected, listeners bound, nothing running yet.
pub struct DataPlane {
    pub routes: Arc<RoutedLog>,
    /// The schemes the ingress serves, for the addresses `serve` advertises (the controller
    /// advertises its `--external-url`).
    pub transport: Transport,
    pub runtime: Runtime,
    pub ingress: Arc<Ingress>,
    /// Sender identity, when `--authentication-oidc enabled`.
    pub identity: Option<Arc<Identity>>,
    pub metrics: PrometheusHandle,
    pub listeners: Listeners,
}

/// The bound listeners, served by [`Listeners::serve_until_signal`].
pub struct Listeners {
    ingress: TcpListener,
    /// The HTTPS ingress, with `--tls-cert`.
    https: Option<TcpListener>,
    admin: TcpListener,
    tls: Tls,
    webhooks: Arc<WebhookRegistry>,
    max_event_bytes: usize,
    grace: std::time::Duration,
    limits: server::Limits,
}

impl DataPlane {
    /// Lets `check` refuse the configuration against the backends `args` configure before
    /// any backend is opened (so the data directory is untouched) or port bound, then
    /// connects the backends, binds the listeners and builds the runtime.
    pub async fn open(
        args: &DataPlaneArgs,
        kube: Arc<KubeAccess>,
        secrets: Arc<dyn herald_sources::secrets::SecretReader>,
        cluster: Option<ClusterIdentity>,
        check: impl FnOnce(&BackendChoice) -> anyhow::Result<()>,
    ) -> anyhow::Result<Self> {
        check(&backend_choice(args))?;
        let metrics = crate::admin::install_metrics()?;
        let limits = connection_limits(args);
        let routes = Arc::new(open_backends(args).await?);
        let log: Arc<dyn EventLog> = routes.clone();
        let tls = Tls::open(&args.tls)?;
        // Under --tls-only nothing plain is served outside: Herald's own sources post to an
        // internal loopback listener.
        let plain_addr = match tls.tls_only {
            true => SocketAddr::from(([127, 0, 0, 1], 0)),
            false => args.listen,
        };
        let ingress_listener = bind(plain_addr).await?;
        let https_listener = match &tls.server {
            Some(_) => Some(bind(args.tls.tls_listen).await?),
            None => None,
        };
        let admin_listener = bind(args.admin_listen).await?;
        let ingress_addr = ingress_listener.local_addr()?;
        let identity = open_identity(args, admin_listener.local_addr()?, &tls, cluster)?;
        // EventPolicies: compiled by the runtime on each change, asked by the ingress about
        // the subject the authenticator verified. Without authentication there is no subject
        // and policies decide nothing, so the ingress is left without the check.
        let authorizer = Arc::new(crate::policy::Authorizer::default());
        let mut access = IngressAccess::open();
        if let Some(identity) = &identity {
            access = access
                .with_authenticator(identity.authenticator())
                .with_authorizer(authorizer.clone());
        }
        let ingress = Arc::new(
            Ingress::new(
                log.clone(),
                Arc::new(BrokerRegistry::default()),
                IngressConfig {
                    max_event_bytes: args.max_event_bytes,
                    max_event_types: args.metrics_max_event_types,
                    ..IngressConfig::default()
                },
            )
            .with_access(access),
        );
        let deps = Deps {
            sender: Sender::with_trust(args.max_event_bytes, args.max_outbound, tls.trust.clone()),
            log,
            ingress: ingress.clone(),
            tokens: identity.as_ref().map(|identity| identity.token_source()),
        };
        let webhooks = Arc::new(WebhookRegistry::default());
        let mut runtime = Runtime::new(
            routes.clone(),
            deps,
            format!("http://{ingress_addr}"),
            args.max_in_flight,
            args.shutdown_grace,
            SourceContext {
                webhooks: webhooks.clone(),
                retries: args.source_retry,
                backoff: args.source_backoff_delay,
                kube,
                secrets,
                sink_clients: Arc::new(herald_tls::Clients::new(
                    tls.trust.clone(),
                    Box::new(|builder| builder),
                )),
                token_dir: Some(args.data_dir.join("oidc").join("sources")),
            },
            args.max_event_bytes,
        );
        let transport = match &https_listener {
            Some(https) => Transport {
                https: Some(HttpsIngress {
                    base_url: format!("https://{}", https.local_addr()?),
                    ca_certs: tls.ca_certs.clone(),
                }),
                strict: tls.tls_only,
            },
            None => Transport::default(),
        };
        runtime.authorizer = authorizer;
        runtime.verifier = identity.as_ref().map(|identity| identity.verifier.clone());
        runtime.set_policy_settings(crate::policy::PolicySettings {
            authentication: identity.is_some(),
            default_mode: args.default_authorization_mode,
        });
        runtime.set_catalog_options(crate::catalog::CatalogOptions {
            auto_create: args.eventtype_auto_create,
            auto_create_max: args.eventtype_auto_create_max,
        });
        Ok(Self {
            routes,
            transport,
            runtime,
            ingress,
            identity,
            metrics,
            listeners: Listeners {
                ingress: ingress_listener,
                https: https_listener,
                admin: admin_listener,
                tls,
                webhooks,
                max_event_bytes: args.max_event_bytes,
                grace: args.shutdown_grace,
                limits,
            },
        })
    }
}

impl Listeners {
    /// Serves the ingress (brokers and webhook sources) and `admin` until SIGTERM/SIGINT;
    /// then reports not ready, cancels `stop`, closes connections without a request in
    /// flight and lets open requests finish within the grace period.
    pub async fn serve_until_signal(
        self,
        ingress: Arc<Ingress>,
        in_process: axum::Router,
        admin: axum::Router,
        readiness: Readiness,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        let ingress_addr = self.ingress.local_addr()?;
        let admin_addr = self.admin.local_addr()?;
        let ingress_router = self
            .webhooks
            .router(self.max_event_bytes)
            .merge(in_process)
            .merge(ingress.router());
        let acceptor = self.tls.server.as_ref().map(|server| server.acceptor());
        let https_server = match self.https {
            Some(socket) => {
                tracing::info!(addr = %socket.local_addr()?, "ingress (https) listening");
                Some(tokio::spawn(server::serve(
                    server::Listener {
                        name: "ingress-https",
                        socket,
                        router: ingress_router.clone(),
                        reserve: None,
                        tls: acceptor.clone(),
                    },
                    self.limits,
                    stop.clone(),
                )))
            }
            None => None,
        };
        let ingress_server = tokio::spawn(server::serve(
            server::Listener {
                name: "ingress",
                socket: self.ingress,
                router: ingress_router,
                reserve: None,
                tls: None,
            },
            self.limits,
            stop.clone(),
        ));
        let admin_server = tokio::spawn(server::serve(
            server::Listener {
                name: "admin",
                socket: self.admin,
                router: admin,
                reserve: Some(crate::admin::probes_only(readiness.clone())),
                tls: acceptor.filter(|_| self.tls.admin_tls),
            },
            self.limits,
            stop.clone(),
        ));
        let reloads = self.tls.watch(stop.clone());
        match self.tls.tls_only {
            false => tracing::info!(addr = %ingress_addr, "ingress listening"),
            // Loopback only, for Herald's own sources: plain HTTP is not served outside.
            true => {
                tracing::info!(addr = %ingress_addr, tls_only = true, "internal ingress listening")
            }
        }
        tracing::info!(addr = %admin_addr, https = self.tls.admin_tls, "admin listening");
        readiness.set(true);

        let signal = shutdown_signal().await?;
        tracing::info!(signal, grace = ?self.grace, "shutting down");
        readiness.set(false);
        stop.cancel();
        let drained = tokio::time::timeout(self.grace, async {
            let _ = ingress_server.await;
            if let Some(https_server) = https_server {
                let _ = https_server.await;
            }
            let _ = admin_server.await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!("open connections did not finish within the grace period");
        }
        reloads.abort();
        Ok(())
    }
}

/// The API server whose TokenRequest and service-account issuer sender identity uses
/// (`herald controller`).
pub struct ClusterIdentity {
    pub client: kube::Client,
    /// The API server's URL, the base of its discovery document.
    pub api_server_url: String,
}

/// Herald's issuer and the ingress's verifier when `--authentication-oidc enabled`; on a
/// cluster, tokens from TokenRequest and the API server's issuer trusted too.
fn open_identity(
    args: &DataPlaneArgs,
    admin_addr: SocketAddr,
    tls: &Tls,
    cluster: Option<ClusterIdentity>,
) -> anyhow::Result<Option<Arc<Identity>>> {
    let trusted = crate::identity::trusted::parse_urls(&args.oidc_trusted_issuers)?;
    if args.authentication_oidc != FeatureFlag::Enabled {
        if !trusted.is_empty() {
            anyhow::bail!("--oidc-trusted-issuer needs --authentication-oidc enabled");
        }
        return Ok(None);
    }
    let issuer_url = args
        .oidc_issuer_url
        .clone()
        .unwrap_or_else(|| format!("http://{admin_addr}"));
    let trusted = Some((trusted, tls.trust.clone()));
    let identity = match cluster {
        None => Identity::open_trusting(&args.data_dir, &issuer_url, trusted),
        Some(cluster) => Identity::open_on_cluster(
            &args.data_dir,
            &issuer_url,
            trusted,
            cluster.client,
            &cluster.api_server_url,
        ),
    }
    .context("opening the OIDC signing key")?;
    if let Some(remote) = &identity.cluster_issuer {
        tracing::info!(api_server = %remote.base_url(), "sender identity (OIDC) on the cluster: tokens by TokenRequest; the API server's service-account issuer is trusted at ingress");
        tokio::spawn(
            remote
                .clone()
                .keep_fresh(crate::identity::remote_keys::REFRESH_EVERY),
        );
    }
    tracing::info!(issuer = %issuer_url, kid = %identity.issuer.keys().current.kid, trusted_issuers = ?args.oidc_trusted_issuers, "sender identity (OIDC) enabled");
    identity.start();
    Ok(Some(Arc::new(identity)))
}

async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

/// Raises the open-file limit and sets the listeners' limits within it; logs both.
fn connection_limits(args: &DataPlaneArgs) -> server::Limits {
    let open_files = match server::raise_soft_limit() {
        Ok((open_files, None)) => Some(open_files),
        Ok((open_files, Some(error))) => {
            tracing::warn!(soft = open_files.soft, hard = open_files.hard, %error, "cannot raise the open-file limit to the hard limit");
            Some(open_files)
        }
        Err(error) => {
            tracing::warn!(%error, "cannot read the open-file limit");
            None
        }
    };
    let max_connections = args.max_connections.unwrap_or_else(|| {
        open_files.map_or(
            DEFAULT_MAX_CONNECTIONS_UNKNOWN_LIMIT,
            server::default_max_connections,
        )
    });
    if let Some(open_files) = open_files {
        tracing::info!(
            open_files = open_files.soft,
            max_connections,
            header_read_timeout = ?args.header_read_timeout,
            idle_timeout = ?args.idle_timeout,
            "connection limits (per listener)"
        );
        let listeners = if args.tls.tls_cert.is_some() { 3 } else { 2 };
        let needed = listeners * u64::from(max_connections) + server::PROBE_RESERVE as u64;
        if needed > open_files.soft {
            tracing::warn!(
                open_files = open_files.soft,
                max_connections,
                "--max-connections on every listener exceeds the open-file limit: accepting fails with 'too many open files' before the connection limit is reached"
            );
        }
    }
    server::Limits {
        max_connections,
        timeouts: server::Timeouts {
            header_read: args.header_read_timeout,
            idle: args.idle_timeout,
        },
    }
}

/// The connection limit when the open-file limit cannot be read: that of the usual 1,024.
const DEFAULT_MAX_CONNECTIONS_UNKNOWN_LIMIT: u32 = 256;

async fn shutdown_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// The backends [`open_backends`] opens for `args`, and the default among them.
fn backend_choice(args: &DataPlaneArgs) -> BackendChoice {
    let mut configured = vec![default_backend(args)];
    if args.nats_url.is_some() {
        configured.push("nats");
    }
    if args.kafka_bootstrap.is_some() {
        configured.push("kafka");
    }
    BackendChoice::new(default_backend(args), configured)
}

fn default_backend(args: &DataPlaneArgs) -> &'static str {
    match args.backend {
        Backend::Sled => "sled",
        Backend::Nats => "nats",
        Backend::Kafka => "kafka",
    }
}

/// Opens the default backend, and NATS or Kafka too when their address is given, behind
/// one router.
async fn open_backends(args: &DataPlaneArgs) -> anyhow::Result<RoutedLog> {
    let mut backends: HashMap<String, Arc<dyn EventLog>> = HashMap::new();
    if args.backend == Backend::Sled {
        let dir = args.data_dir.join("log");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let sled = SledLog::open_with_cache(&dir, args.append_queue, args.sled_cache_bytes)
            .with_context(|| format!("cannot open the log in {}", dir.display()))?;
        backends.insert("sled".into(), Arc::new(sled));
    }
    if args.backend == Backend::Nats || args.nats_url.is_some() {
        backends.insert("nats".into(), open_nats(args).await?);
    }
    if args.backend == Backend::Kafka || args.kafka_bootstrap.is_some() {
        backends.insert("kafka".into(), open_kafka(args)?);
    }
    Ok(RoutedLog::new(default_backend(args), backends))
}

#[cfg(feature = "nats")]
async fn open_nats(args: &DataPlaneArgs) -> anyhow::Result<Arc<dyn EventLog>> {
    use herald_broker::log::nats::{NatsLog, NatsOptions, DEFAULT_PUBLISH_TIMEOUT};
    let url = args
        .nats_url
        .clone()
        .unwrap_or_else(|| crate::cli::DEFAULT_NATS_URL.to_owned());
    let options = NatsOptions {
        url: url.clone(),
        credentials_file: args.nats_credentials.clone(),
        token: args.nats_token.clone(),
        tls_ca_file: args.nats_tls_ca.clone(),
        shared_reader: args.nats_shared_reader,
        instance: Some(nats_instance(&args.data_dir)),
    };
    let nats = NatsLog::connect(&options, DEFAULT_PUBLISH_TIMEOUT)
        .await
        .with_context(|| format!("cannot connect to NATS at {url}"))?;
    Ok(Arc::new(nats))
}

/// This process's name in the NATS shared reader's leases: the host and the data directory,
/// unique among live processes (two cannot share a data directory on one host) and the same
/// after a restart, which then takes its leases back at once.
#[cfg(feature = "nats")]
fn nats_instance(data_dir: &std::path::Path) -> String {
    let host = rustix::system::uname();
    let data_dir = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    format!(
        "{}:{}",
        host.nodename().to_string_lossy(),
        data_dir.display()
    )
}

#[cfg(not(feature = "nats"))]
async fn open_nats(_: &DataPlaneArgs) -> anyhow::Result<Arc<dyn EventLog>> {
    Err(not_built("NATS", "nats", "--backend nats or --nats-url"))
}

#[cfg(feature = "kafka")]
fn open_kafka(args: &DataPlaneArgs) -> anyhow::Result<Arc<dyn EventLog>> {
    use herald_broker::log::kafka::{KafkaLog, KafkaOptions};
    let bootstrap = args
        .kafka_bootstrap
        .clone()
        .ok_or_else(|| anyhow::anyhow!("--backend kafka needs --kafka-bootstrap HOST:PORT"))?;
    let options = KafkaOptions {
        bootstrap: bootstrap.clone(),
        client_options: args.kafka_options.clone(),
        prefix: args.kafka_prefix.clone(),
        partitions: args.kafka_partitions,
        replication_factor: args.kafka_replication_factor,
        shared_reader: args.kafka_shared_reader,
    };
    let kafka = KafkaLog::connect(options)
        .with_context(|| format!("cannot set up the Kafka clients for {bootstrap}"))?;
    Ok(Arc::new(kafka))
}

#[cfg(not(feature = "kafka"))]
fn open_kafka(_: &DataPlaneArgs) -> anyhow::Result<Arc<dyn EventLog>> {
    Err(not_built(
        "Kafka",
        "kafka",
        "--backend kafka or --kafka-bootstrap",
    ))
}

/// The error of a backend this build left out.
#[cfg(not(all(feature = "nats", feature = "kafka")))]
fn not_built(backend: &str, feature: &str, flags: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{flags}: this herald is built without the {backend} backend (cargo feature `{feature}`)"
    )
}
