//! Every Herald kind on the API server, kept in memory by kube-runtime reflectors; any
//! change wakes the reconciler.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::kinds::{Kind, KINDS};

/// How long start-up waits for a kind's first list before reconciling without it (its
/// CRD may not be installed).
const FIRST_LIST_WAIT: Duration = Duration::from_secs(10);

pub struct Cache {
    /// One store per kind and watched namespace (or per kind, watching all).
    stores: Vec<(&'static Kind, Store<DynamicObject>)>,
    /// Every Service Herald watches, for resolving `ref`s to them.
    pub services: Services,
    /// With sender identity on: the senders' ServiceAccounts (labelled
    /// `eventing.knative.dev/oidc=enabled`) of the watched namespaces.
    pub service_accounts: Vec<Store<ServiceAccount>>,
    /// Notified on every change of any watched object.
    pub changed: Arc<Notify>,
}

/// Drives a watch until `stop`, waking the reconciler on every event.
fn follow<T, E: std::fmt::Display>(
    stream: impl futures_util::Stream<Item = Result<T, E>> + Send + 'static,
    what: &'static str,
    changed: &Arc<Notify>,
    stop: &CancellationToken,
) where
    T: Send,
{
    let (changed, stop) = (changed.clone(), stop.clone());
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            let item = tokio::select! {
                _ = stop.cancelled() => return,
                item = stream.next() => item,
            };
            match item {
                Some(Ok(_)) => changed.notify_one(),
                Some(Err(error)) => {
                    tracing::warn!(kind = what, %error, "watch failed; retrying with backoff")
                }
                None => return,
            }
        }
    });
}

/// The namespaces the controller watches: all, or the listed ones (`--namespace`).
#[derive(Clone, Debug)]
pub struct Scope {
    namespaces: Vec<String>,
}

impl Scope {
    pub fn new(namespaces: &[String]) -> Self {
        let mut namespaces: Vec<String> = namespaces
            .iter()
            .filter(|n| !n.is_empty())
            .cloned()
            .collect();
        namespaces.sort();
        namespaces.dedup();
        Self { namespaces }
    }

    pub fn includes(&self, namespace: &str) -> bool {
        self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == namespace)
    }

    /// One `Api` per watched namespace, or one for all namespaces; `make` gets `None` for all.
    fn apis<K>(&self, make: impl Fn(Option<&str>) -> Api<K>) -> Vec<Api<K>> {
        if self.namespaces.is_empty() {
            return vec![make(None)];
        }
        self.namespaces.iter().map(|n| make(Some(n))).collect()
    }
}

/// The Services of the watched namespaces.
#[derive(Clone)]
pub struct Services {
    scope: Scope,
    stores: Vec<Store<Service>>,
}

impl Services {
    /// Whether Service `namespace/name` exists; an error when Herald does not watch its
    /// namespace.
    pub fn exists(&self, namespace: &str, name: &str) -> Result<bool, NotWatched> {
        if !self.scope.includes(namespace) {
            return Err(NotWatched {
                namespace: namespace.to_owned(),
                watched: self.scope.namespaces.join(","),
            });
        }
        let key = ObjectRef::new(name).within(namespace);
        Ok(self.stores.iter().any(|store| store.get(&key).is_some()))
    }
}

/// A namespace outside `--namespace`: Herald has no cache of its objects.
#[derive(Debug, thiserror::Error)]
#[error("namespace {namespace} is not watched (--namespace {watched})")]
pub struct NotWatched {
    namespace: String,
    /// The watched namespaces, comma-separated.
    watched: String,
}

/// A typed `Api` in one namespace, or in all.
fn typed_api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// The API resource of one of Herald's kinds.
pub fn api_resource(kind: &Kind) -> ApiResource {
    ApiResource {
        group: kind.group.to_owned(),
        version: kind.version.to_owned(),
        api_version: kind.api_version(),
        kind: kind.kind.to_owned(),
        plural: kind.plural.to_owned(),
    }
}

impl Cache {
    /// Starts one watch per kind and watched namespace (or per kind, in every namespace),
    /// until `stop`.
    pub fn start(
        client: &Client,
        scope: &Scope,
        sender_identity: bool,
        stop: &CancellationToken,
    ) -> Self {
        let changed = Arc::new(Notify::new());
        let mut stores = Vec::new();
        for kind in KINDS {
            let resource = api_resource(kind);
            let apis = scope.apis(|namespace| match namespace {
                Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
                None => Api::all_with(client.clone(), &resource),
            });
            for api in apis {
                let writer = reflector::store::Writer::new(resource.clone());
                stores.push((kind, writer.as_reader()));
                let stream = watcher(api, watcher::Config::default())
                    .default_backoff()
                    .reflect(writer);
                follow(stream, kind.kind, &changed, stop);
            }
        }
        // Service refs resolve from these stores (no request per ref and pass), and a
        // Service that appears brings its triggers up at once.
        let mut services = Services {
            scope: scope.clone(),
            stores: Vec::new(),
        };
        for api in scope.apis(|namespace| typed_api::<Service>(client, namespace)) {
            let (store, writer) = reflector::store::<Service>();
            services.stores.push(store);
            let stream = watcher(api, watcher::Config::default())
                .default_backoff()
                .reflect(writer);
            follow(stream, "Service", &changed, stop);
        }
        // ContainerSources are ready when their Deployment is: its changes wake us too.
        for api in scope.apis(|namespace| typed_api::<Deployment>(client, namespace)) {
            let config =
                watcher::Config::default().labels(super::workloads::CONTAINER_SOURCE_LABEL);
            follow(
                watcher(api, config).default_backoff(),
                "Deployment",
                &changed,
                stop,
            );
        }
        // Senders' ServiceAccounts: one that appears (or goes) changes OIDCIdentityCreated.
        let mut service_accounts = Vec::new();
        if sender_identity {
            let (label, value) = crate::identity::naming::OIDC_LABEL;
            for api in scope.apis(|namespace| typed_api::<ServiceAccount>(client, namespace)) {
                let (store, writer) = reflector::store::<ServiceAccount>();
                service_accounts.push(store);
                let config = watcher::Config::default().labels(&format!("{label}={value}"));
                let stream = watcher(api, config).default_backoff().reflect(writer);
                follow(stream, "ServiceAccount", &changed, stop);
            }
        }
        Self {
            stores,
            services,
            service_accounts,
            changed,
        }
    }

    /// Waits until every kind has been listed once, or [`FIRST_LIST_WAIT`] per kind.
    pub async fn wait_for_first_lists(&self) {
        for store in &self.services.stores {
            if tokio::time::timeout(FIRST_LIST_WAIT, store.wait_until_ready())
                .await
                .is_err()
            {
                tracing::warn!("Services not listed yet; going on without them");
            }
        }
        for store in &self.service_accounts {
            if tokio::time::timeout(FIRST_LIST_WAIT, store.wait_until_ready())
                .await
                .is_err()
            {
                tracing::warn!("ServiceAccounts not listed yet; going on without them");
            }
        }
        for (kind, store) in &self.stores {
            if tokio::time::timeout(FIRST_LIST_WAIT, store.wait_until_ready())
                .await
                .is_err()
            {
                tracing::warn!(
                    kind = kind.kind,
                    "not listed yet (is its CRD installed?); going on without it"
                );
            }
        }
    }

    /// Every object of every kind, as last seen.
    pub fn objects(&self) -> Vec<(&'static Kind, Arc<DynamicObject>)> {
        self.stores
            .iter()
            .flat_map(|(kind, store)| store.state().into_iter().map(move |o| (*kind, o)))
            .collect()
    }
}
