//! `herald controller`: Knative resources on a Kubernetes API server drive the same runtime
//! as `herald serve`; the Lease holder writes their status and finalizers.

mod cache;
mod identities;
mod leader;
mod reconcile;
mod resolve;
mod secrets;
mod workloads;
mod writeback;

use std::sync::Arc;
use std::time::Duration;

use crate::apiserver_source::{load_config, KubeAccess};
use anyhow::Context;
use kube::Client;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, Readiness};
use crate::cli::ControllerArgs;
use crate::dataplane::{ClusterIdentity, DataPlane};

/// Reconcile this often even without changes: source health and backend recoveries show
/// up in status without an API event.
const RESYNC: Duration = Duration::from_secs(10);

pub async fn run(args: ControllerArgs) -> anyhow::Result<()> {
    let config = load_config(args.data.kubeconfig.as_deref()).await?;
    let server_url = config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_owned();
    let client = Client::try_from(config).context("cannot make a Kubernetes client")?;
    let kube = Arc::new(KubeAccess::for_controller(
        client.clone(),
        server_url.clone(),
    ));
    let secrets = Arc::new(secrets::ClusterSecrets::new(client.clone()));
    let DataPlane {
        mut runtime,
        routes,
        ingress,
        identity: sender_identity,
        metrics,
        listeners,
        ..
    } = DataPlane::open(
        &args.data,
        kube,
        secrets,
        Some(ClusterIdentity {
            client: client.clone(),
            api_server_url: server_url.clone(),
        }),
        |_| Ok(()),
    )
    .await?;
    // A trigger can leave the desired state for a while (its broker or subscriber is gone):
    // only its finalizer deletes its position and parked events.
    runtime.keep_state_of_removed_triggers();

    let identity = match &args.identity {
        Some(identity) => identity.clone(),
        None => hostname(),
    };
    let leadership = leader::elect(
        client.clone(),
        &args.lease_namespace,
        &args.lease_name,
        &identity,
        args.lease_duration,
    )
    .await
    .with_context(|| {
        format!(
            "cannot take part in leader election (Lease {}/{})",
            args.lease_namespace, args.lease_name
        )
    })?;
    let watched = match args.namespaces.is_empty() {
        true => "all".to_owned(),
        false => args.namespaces.join(","),
    };
    tracing::info!(api = %server_url, %identity, namespaces = %watched, "controller started");

    let stop = CancellationToken::new();
    let readiness = Readiness::until_synced().with_log(routes.clone());
    let synced = readiness.clone();
    let scope = cache::Scope::new(&args.namespaces);
    let cache = cache::Cache::start(&client, &scope, sender_identity.is_some(), &stop);
    let in_process = runtime.in_process_router();
    let mut reconciler = reconcile::Reconciler {
        runtime,
        routes,
        resolver: resolve::Resolver::new(
            client.clone(),
            args.cluster_domain.clone(),
            cache.services.clone(),
        ),
        writer: writeback::Writer::new(client.clone(), &identity),
        workloads: workloads::Workloads::new(client.clone(), &identity),
        identities: sender_identity
            .is_some()
            .then(|| identities::Identities::new(client.clone(), cache.service_accounts.clone())),
        external_url: args.external_url.trim_end_matches('/').to_owned(),
        delete_broker_logs: args.delete_broker_logs,
    };
    let mut is_leader = leadership.is_leader.clone();
    let control_stop = stop.clone();
    let control = tokio::spawn(async move {
        cache.wait_for_first_lists().await;
        let mut was_leader = false;
        loop {
            let leader = *is_leader.borrow_and_update();
            if leader != was_leader {
                tracing::info!(leader, "leadership changed");
                was_leader = leader;
            }
            reconciler.reconcile(&cache.objects(), leader).await;
            synced.mark_synced();
            tokio::select! {
                _ = control_stop.cancelled() => break,
                _ = cache.changed.notified() => {}
                _ = is_leader.changed() => {}
                _ = tokio::time::sleep(RESYNC) => {}
            }
        }
        reconciler.runtime
    });

    let mut admin_router = admin::router(readiness.clone(), metrics);
    if let Some(sender_identity) = sender_identity {
        admin_router = admin_router.merge(crate::api::oidc::public_router(sender_identity));
    }
    listeners
        .serve_until_signal(ingress, in_process, admin_router, readiness, stop.clone())
        .await?;
    let mut runtime = control.await.context("the controller loop failed")?;
    runtime.shutdown().await;
    leadership.release().await;
    tracing::info!("stopped");
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| format!("herald-{}", std::process::id()))
}
