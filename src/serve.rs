//! `herald serve`: config files and the admin API → the data plane, until SIGTERM/SIGINT.

use std::path::PathBuf;
use std::sync::Arc;

use crate::apiserver_source::KubeAccess;
use anyhow::Context;
use herald_broker::log::routed::KAFKA_BROKER_CLASS;
use herald_crds::channel::KAFKA_CHANNEL_API_VERSION;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, Readiness};
use crate::annotations;
use crate::api::ApiState;
use crate::cli::ServeArgs;
use crate::config::{
    build_desired, check_secrets, load_paths, ConfigError, Loaded, RefMap, Resource,
};
use crate::control::{ControlError, ControlPlane};
use crate::dataplane::DataPlane;
use crate::store::ResourceStore;
use herald_broker::log::routed::BackendChoice;
use herald_sources::secrets::{LocalSecrets, SecretReader};

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    crate::api::check_exposure(
        args.data.admin_listen,
        args.admin_token.as_deref(),
        args.admin_roles.is_some(),
    )
    .map_err(anyhow::Error::msg)?;
    let admin_roles = match &args.admin_roles {
        None => None,
        Some(_) if args.data.authentication_oidc != crate::cli::FeatureFlag::Enabled => {
            anyhow::bail!("--admin-roles needs --authentication-oidc enabled: its tokens are verified with Herald's issuer and the trusted ones")
        }
        Some(path) => Some(crate::api::roles::AdminRoles::load(path)?),
    };
    if args.admin_token.is_some() && crate::cli::token(args.admin_token.as_deref()).is_none() {
        tracing::warn!("--admin-token is blank, which counts as none: the admin API is open to anyone on this host");
    }
    // Validate everything before a port is bound or the data dir is written to.
    let store = ResourceStore::open(
        &args.data.data_dir.join("resources"),
        load_paths(&args.config)?,
    )?;
    let refs = RefMap::parse(&args.resolve)?;
    let secrets: Arc<dyn SecretReader> = Arc::new(LocalSecrets::new(args.secrets_dir.clone()));
    let loaded = store.loaded();
    check_secrets(&loaded, secrets.as_ref()).await?;
    let desired = build_desired(loaded, &refs)?;
    tracing::info!(
        brokers = desired.brokers.len(),
        triggers = desired.triggers.len(),
        "configuration loaded"
    );
    desired.log_waiting_triggers();
    let kube = Arc::new(KubeAccess::from_kubeconfig(args.data.kubeconfig.clone()));
    let DataPlane {
        routes,
        mut runtime,
        ingress,
        identity,
        metrics,
        listeners,
        transport,
        ..
    } = DataPlane::open(&args.data, kube, secrets.clone(), None, |choice| {
        Ok(check_broker_classes(&store.loaded(), choice)?)
    })
    .await?;
    runtime.set_transport(transport);
    // Consumers exist before the first event can be accepted, so no trigger misses one.
    runtime
        .reconcile(&desired)
        .await
        .context("starting brokers and triggers")?;
    let in_process = runtime.in_process_router();
    let control = Arc::new(tokio::sync::RwLock::new(ControlPlane::new(
        store, runtime, desired, refs, secrets,
    )));

    let readiness = Readiness::default().with_log(routes);
    let stop_serving = CancellationToken::new();
    let reloads = tokio::spawn(reload_on_sighup(
        args.config.clone(),
        control.clone(),
        stop_serving.clone(),
    ));
    let history = crate::api::history::History::default();
    history.start(metrics.clone(), stop_serving.clone());
    let api = crate::api::router(ApiState {
        control: control.clone(),
        ingress: ingress.clone(),
        shutdown: stop_serving.clone(),
        history,
    });
    let mut api = admin::router(readiness.clone(), metrics)
        .merge(api)
        .merge(crate::console::router());
    if let Some(identity) = &identity {
        api = api.merge(crate::api::oidc::token_router(identity.clone()));
    }
    let admin_oidc = match (admin_roles, &identity) {
        (Some(roles), Some(identity)) => {
            tracing::info!(audience = %roles.audience(), "admin API: OIDC tokens with --admin-roles");
            Some(crate::api::AdminOidc {
                verifier: identity.verifier.clone(),
                roles,
            })
        }
        _ => None,
    };
    let mut admin_router = crate::api::protect(api, args.admin_token.as_deref(), admin_oidc);
    if let Some(identity) = identity {
        admin_router = admin_router.merge(crate::api::oidc::public_router(identity));
    }
    listeners
        .serve_until_signal(ingress, in_process, admin_router, readiness, stop_serving)
        .await?;
    reloads.abort();
    control.write().await.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Reads the config files again on each SIGHUP and applies them as the admin API applies a
/// change: all or nothing. A file with an error is logged and changes nothing.
async fn reload_on_sighup(
    config: Vec<PathBuf>,
    control: Arc<tokio::sync::RwLock<ControlPlane>>,
    stop: CancellationToken,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP: config reloads are off");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            received = hangups.recv() => if received.is_none() { return },
        }
        let outcome = match load_paths(&config) {
            Ok(files) => control.write().await.reload_files(files).await,
            Err(error) => Err(ControlError::Invalid(error)),
        };
        match outcome {
            Ok(changes) => tracing::info!(
                added = changes.added,
                changed = changes.changed,
                removed = changes.removed,
                "configuration reloaded"
            ),
            Err(error) => tracing::error!(
                %error,
                "configuration not reloaded: nothing was changed"
            ),
        }
    }
}

/// Every broker's class must name a configured backend; the error names the file, the
/// broker and the annotation.
fn check_broker_classes(loaded: &[Loaded], choice: &BackendChoice) -> Result<(), ConfigError> {
    for Loaded { origin, resource } in loaded {
        if let Some(field) = crate::config::flows::kafka_channel_field(resource) {
            // A KafkaChannel's stream is on the Kafka backend.
            if choice.backend_for_class(Some(KAFKA_BROKER_CLASS)).is_err() {
                let (namespace, name) = resource.namespaced_name();
                return Err(ConfigError {
                    origin: origin.clone(),
                    resource: Some(format!("{} {namespace}/{name}", resource.kind().kind)),
                    field: Some(field.to_owned()),
                    message: format!("KafkaChannel ({KAFKA_CHANNEL_API_VERSION}) needs the Kafka backend: run with --backend kafka, or give --kafka-bootstrap; InMemoryChannel runs on any backend"),
                });
            }
        }
        let Resource::Broker(broker) = resource else {
            continue;
        };
        choice
            .backend_for_class(annotations::broker_class(&broker.metadata))
            .map_err(|message| {
                let (namespace, name) = resource.namespaced_name();
                ConfigError {
                    origin: origin.clone(),
                    resource: Some(format!("Broker {namespace}/{name}")),
                    field: Some(annotations::field(annotations::BROKER_CLASS_ANNOTATION)),
                    message: message.to_string(),
                }
            })?;
    }
    Ok(())
}
