//! `herald serve`: config → log → listeners → dispatchers, until SIGTERM/SIGINT.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use herald_broker::log::kafka::{KafkaLog, KafkaOptions};
use herald_broker::log::nats::{NatsLog, NatsOptions, DEFAULT_PUBLISH_TIMEOUT};
use herald_broker::log::routed::RoutedLog;
use herald_broker::log::sled::SledLog;
use herald_broker::{BrokerRegistry, EventLog, Ingress, IngressConfig};
use herald_crds::BROKER_CLASS_ANNOTATION;
use herald_sources::webhook::WebhookRegistry;
use herald_triggers::attempt::Sender;
use herald_triggers::process::Deps;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, Readiness};
use crate::api::ApiState;
use crate::cli::{Backend, ServeArgs, DEFAULT_NATS_URL};
use crate::config::{build_desired, load_paths};
use crate::control::ControlPlane;
use crate::runtime::Runtime;
use crate::sources::SourceContext;
use crate::store::ResourceStore;

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    crate::api::check_exposure(args.admin_listen, args.admin_token.as_deref())
        .map_err(anyhow::Error::msg)?;
    let metrics = admin::install_metrics()?;
    // Validate everything before a port is bound or the data dir is written to.
    let store = ResourceStore::open(&args.data_dir.join("resources"), load_paths(&args.config)?)?;
    let desired = build_desired(store.loaded())?;
    tracing::info!(
        brokers = desired.brokers.len(),
        triggers = desired.triggers.len(),
        "configuration loaded"
    );

    let routes = Arc::new(open_backends(&args).await?);
    // Every broker's class must name a configured backend, checked before any port is bound.
    for (key, broker) in &desired.brokers {
        routes.backend_for_class(broker_class(broker)).map_err(|message| {
            anyhow::anyhow!("Broker {key}: field metadata.annotations[{BROKER_CLASS_ANNOTATION}]: {message}")
        })?;
    }
    let log: Arc<dyn EventLog> = routes.clone();

    let ingress_listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let admin_listener = TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.admin_listen))?;
    let ingress_addr = ingress_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;

    let ingress = Arc::new(Ingress::new(
        log.clone(),
        Arc::new(BrokerRegistry::default()),
        IngressConfig {
            max_event_bytes: args.max_event_bytes,
            ..IngressConfig::default()
        },
    ));
    let deps = Deps {
        sender: Sender::new(args.max_event_bytes, args.max_outbound)?,
        log: log.clone(),
        ingress: ingress.clone(),
    };
    let webhooks = Arc::new(WebhookRegistry::default());
    let mut runtime = Runtime::new(
        routes,
        deps,
        format!("http://{ingress_addr}"),
        args.max_in_flight,
        args.shutdown_grace,
        SourceContext {
            webhooks: webhooks.clone(),
            retries: args.source_retry,
            backoff: args.source_backoff_delay,
        },
    );
    // Consumers exist before the first event can be accepted, so no trigger misses one.
    runtime
        .reconcile(&desired)
        .await
        .context("starting brokers and triggers")?;
    let control = Arc::new(tokio::sync::Mutex::new(ControlPlane::new(
        store, runtime, desired,
    )));

    let readiness = Readiness::default();
    let stop_serving = CancellationToken::new();
    let ingress_server = tokio::spawn(serve(
        ingress_listener,
        webhooks
            .clone()
            .router(args.max_event_bytes)
            .merge(ingress.clone().router()),
        stop_serving.clone(),
    ));
    let api = crate::api::router(ApiState {
        control: control.clone(),
        ingress: ingress.clone(),
        shutdown: stop_serving.clone(),
    });
    let admin_router = crate::api::protect(
        admin::router(readiness.clone(), metrics).merge(api),
        args.admin_token.clone(),
    );
    let admin_server = tokio::spawn(serve(admin_listener, admin_router, stop_serving.clone()));
    tracing::info!(addr = %ingress_addr, "ingress listening");
    tracing::info!(addr = %admin_addr, "admin listening");
    readiness.set(true);

    let signal = shutdown_signal().await?;
    tracing::info!(signal, grace = ?args.shutdown_grace, "shutting down");
    readiness.set(false);
    stop_serving.cancel();
    let drained = tokio::time::timeout(args.shutdown_grace, async {
        let _ = ingress_server.await;
        let _ = admin_server.await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!("open connections did not finish within the grace period");
    }
    control.lock().await.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

async fn serve(listener: TcpListener, router: axum::Router, stop: CancellationToken) {
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
    if let Err(error) = result {
        tracing::error!(%error, "server failed");
    }
}

async fn shutdown_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// Opens the default backend, and NATS too when `--nats-url` is given, behind one router.
async fn open_backends(args: &ServeArgs) -> anyhow::Result<RoutedLog> {
    let mut backends: HashMap<String, Arc<dyn EventLog>> = HashMap::new();
    if args.backend == Backend::Sled {
        let dir = args.data_dir.join("log");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let sled = SledLog::open(&dir, args.append_queue)
            .with_context(|| format!("cannot open the log in {}", dir.display()))?;
        backends.insert("sled".into(), Arc::new(sled));
    }
    if args.backend == Backend::Nats || args.nats_url.is_some() {
        let url = args
            .nats_url
            .clone()
            .unwrap_or_else(|| DEFAULT_NATS_URL.to_owned());
        let options = NatsOptions {
            url: url.clone(),
            credentials_file: args.nats_credentials.clone(),
            token: args.nats_token.clone(),
            tls_ca_file: args.nats_tls_ca.clone(),
        };
        let nats = NatsLog::connect(&options, DEFAULT_PUBLISH_TIMEOUT)
            .await
            .with_context(|| format!("cannot connect to NATS at {url}"))?;
        backends.insert("nats".into(), Arc::new(nats));
    }
    if args.backend == Backend::Kafka || args.kafka_bootstrap.is_some() {
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
        };
        let kafka = KafkaLog::connect(options)
            .with_context(|| format!("cannot set up the Kafka clients for {bootstrap}"))?;
        backends.insert("kafka".into(), Arc::new(kafka));
    }
    let default = match args.backend {
        Backend::Sled => "sled",
        Backend::Nats => "nats",
        Backend::Kafka => "kafka",
    };
    Ok(RoutedLog::new(default, backends))
}

/// A broker's `eventing.knative.dev/broker.class` annotation, if set.
pub fn broker_class(broker: &herald_crds::Broker) -> Option<&str> {
    broker
        .metadata
        .annotations
        .as_ref()?
        .get(BROKER_CLASS_ANNOTATION)
        .map(String::as_str)
}
