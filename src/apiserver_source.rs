//! ApiServerSource: changes of Kubernetes objects as CloudEvents, the way Knative's
//! apiserver adapter sends them (event types, `source`, `subject`, extensions, data).
//! It lives in the binary, not in `herald-sources`, which stays free of kube-runtime.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use herald_broker::CloudEvent;
use herald_crds::{ApiServerSourceSpec, FieldError};
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use kube::runtime::watcher::{self, watcher};
use kube::Client;
use tokio_util::sync::CancellationToken;

use herald_sources::{SinkClient, Source, SourceError};

mod access;
use access::{Access, ServiceAccount, WATCH_VERBS};

/// The event types of each mode (Knative's `dev.knative.apiserver.*`).
const RESOURCE_TYPE_PREFIX: &str = "dev.knative.apiserver.resource.";
const REF_TYPE_PREFIX: &str = "dev.knative.apiserver.ref.";

/// How Herald reaches the Kubernetes API: a client made once, on first use, from a
/// kubeconfig file (or the usual inference: `KUBECONFIG`, `~/.kube/config`, in-cluster).
pub struct KubeAccess {
    kubeconfig: Option<PathBuf>,
    client: tokio::sync::OnceCell<(Client, String)>,
    /// Whether each source's ServiceAccount must be allowed to read what it watches
    /// (the controller's identity is not the source owner's; see [`access`]).
    check_service_accounts: bool,
}

impl KubeAccess {
    pub fn from_kubeconfig(kubeconfig: Option<PathBuf>) -> Self {
        Self {
            kubeconfig,
            client: tokio::sync::OnceCell::new(),
            check_service_accounts: false,
        }
    }

    /// The controller's connected client. Sources run only if their ServiceAccount may read
    /// what they watch: Herald's own rights are wider than any one source owner's.
    pub fn for_controller(client: Client, server_url: String) -> Self {
        Self {
            kubeconfig: None,
            client: tokio::sync::OnceCell::new_with(Some((client, server_url))),
            check_service_accounts: true,
        }
    }

    /// The client and the API server's URL.
    pub async fn client(&self) -> Result<(Client, String), KubeConfigError> {
        self.client
            .get_or_try_init(|| async {
                let config = load_config(self.kubeconfig.as_deref()).await?;
                let url = config
                    .cluster_url
                    .to_string()
                    .trim_end_matches('/')
                    .to_owned();
                let client = Client::try_from(config).map_err(KubeConfigError::Client)?;
                Ok((client, url))
            })
            .await
            .cloned()
    }
}

/// A kubeconfig file's current context, or the inferred configuration without one
/// (`KUBECONFIG`, `~/.kube/config`, then the in-cluster service account).
pub async fn load_config(
    kubeconfig: Option<&std::path::Path>,
) -> Result<kube::Config, KubeConfigError> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path).map_err(|source| KubeConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|source| KubeConfigError::Invalid {
                    path: path.to_owned(),
                    source,
                })
        }
        None => kube::Config::infer()
            .await
            .map_err(KubeConfigError::NotFound),
    }
}

/// Why Herald has no Kubernetes client.
#[derive(Debug, thiserror::Error)]
pub enum KubeConfigError {
    #[error("cannot read the kubeconfig {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("kubeconfig {}: {source}", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("no Kubernetes configuration found: {0}")]
    NotFound(#[source] kube::config::InferConfigError),
    #[error("{0}")]
    Client(#[source] kube::Error),
}

/// The API server does not know a kind (or cannot be asked).
#[derive(Debug, thiserror::Error)]
#[error("cannot find {kind} in {api_version}: {source}")]
pub struct DiscoverError {
    kind: String,
    api_version: String,
    #[source]
    source: kube::Error,
}

/// The API resource (plural, scope) of `kind` in `api_version` (`v1`, `apps/v1`), asked of
/// the API server's discovery.
pub async fn discover(
    client: &Client,
    api_version: &str,
    kind: &str,
) -> Result<ApiResource, DiscoverError> {
    let (group, version) = match api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    };
    let gvk = GroupVersionKind::gvk(group, version, kind);
    kube::discovery::pinned_kind(client, &gvk)
        .await
        .map(|(resource, _)| resource)
        .map_err(|source| DiscoverError {
            kind: kind.to_owned(),
            api_version: api_version.to_owned(),
            source,
        })
}

pub struct ApiServerSource {
    pub namespace: String,
    pub name: String,
    pub spec: ApiServerSourceSpec,
    pub kube: Arc<KubeAccess>,
    /// `spec.filters`, compiled: events it fails are not sent.
    pub filter: herald_triggers::Filter,
}

/// Checks what the API server's schema cannot: selector operators with their values, and
/// `spec.filters` as a Trigger's (same dialects, nesting limit and errors); returns the
/// compiled filters.
pub fn validate(spec: &ApiServerSourceSpec) -> Result<herald_triggers::Filter, FieldError> {
    let filter = herald_triggers::filter::compile_filters(&spec.filters)?;
    if spec.resources.is_empty() {
        return Err(FieldError::new(
            "spec.resources",
            "list at least one resource",
        ));
    }
    if let Some(mode) = &spec.mode {
        if mode != "Reference" && mode != "Resource" {
            return Err(FieldError::new(
                "spec.mode",
                format!("{mode:?} is not a mode: use Reference or Resource"),
            ));
        }
    }
    let selectors = spec
        .resources
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("spec.resources[{i}].selector"), r.selector.as_ref()))
        .chain(std::iter::once((
            "spec.namespaceSelector".to_owned(),
            spec.namespace_selector.as_ref(),
        )));
    for (i, resource) in spec.resources.iter().enumerate() {
        herald_crds::validation::validate_api_version_kind(
            &format!("spec.resources[{i}]"),
            &resource.api_version,
            &resource.kind,
        )?;
    }
    for (path, selector) in selectors {
        let Some(selector) = selector else { continue };
        for (j, requirement) in selector.match_expressions.iter().enumerate() {
            let field = format!("{path}.matchExpressions[{j}]");
            let needs_values = match requirement.operator.as_str() {
                "In" | "NotIn" => true,
                "Exists" | "DoesNotExist" => false,
                other => {
                    return Err(FieldError::new(
                        format!("{field}.operator"),
                        format!(
                            "{other:?} is not an operator: use In, NotIn, Exists or DoesNotExist"
                        ),
                    ))
                }
            };
            if needs_values == requirement.values.is_empty() {
                return Err(FieldError::new(
                    format!("{field}.values"),
                    if needs_values {
                        "In and NotIn need values"
                    } else {
                        "Exists and DoesNotExist take no values"
                    },
                ));
            }
        }
    }
    Ok(filter)
}

/// One watched kind in one namespace.
struct Watched {
    resource: ApiResource,
    namespace: String,
    selector: String,
}

/// What happened to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Add,
    Update,
    Delete,
}

impl Change {
    fn name(self) -> &'static str {
        match self {
            Change::Add => "add",
            Change::Update => "update",
            Change::Delete => "delete",
        }
    }
}

impl ApiServerSource {
    /// The account the source reads as, when the controller must check its permissions.
    fn service_account(&self) -> Option<ServiceAccount> {
        self.kube.check_service_accounts.then(|| ServiceAccount {
            namespace: self.namespace.clone(),
            name: self
                .spec
                .service_account_name
                .clone()
                .unwrap_or_else(|| "default".into()),
        })
    }

    /// The namespaces to watch: the source's own, or those the selector picks.
    async fn namespaces(&self, client: &Client) -> Result<Vec<String>, SourceError> {
        let Some(selector) = &self.spec.namespace_selector else {
            return Ok(vec![self.namespace.clone()]);
        };
        if let Some(account) = self.service_account() {
            let list = Access {
                verb: "list",
                group: "",
                resource: "namespaces",
                namespace: None,
            };
            account.require(client, &[list]).await?;
        }
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        let list = api
            .list(&ListParams::default().labels(&selector.to_query()))
            .await
            .map_err(|e| SourceError::Connect(format!("cannot list namespaces: {e}")))?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect())
    }

    async fn watched(&self, client: &Client) -> Result<Vec<Watched>, SourceError> {
        let namespaces = self.namespaces(client).await?;
        let mut watched = Vec::new();
        for resource in &self.spec.resources {
            let found = discover(client, &resource.api_version, &resource.kind)
                .await
                .map_err(|e| SourceError::Input(e.to_string()))?;
            let selector = resource
                .selector
                .as_ref()
                .map(|s| s.to_query())
                .unwrap_or_default();
            for namespace in &namespaces {
                watched.push(Watched {
                    resource: found.clone(),
                    namespace: namespace.clone(),
                    selector: selector.clone(),
                });
            }
        }
        Ok(watched)
    }

    /// Only objects an owner of the configured kind controls, when `owner` is set.
    fn owned(&self, object: &DynamicObject) -> bool {
        let Some(owner) = &self.spec.owner else {
            return true;
        };
        object
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.api_version == owner.api_version && r.kind == owner.kind)
    }

    fn event(
        &self,
        server_url: &str,
        resource: &ApiResource,
        object: &DynamicObject,
        change: Change,
    ) -> CloudEvent {
        let namespace = object.metadata.namespace.clone().unwrap_or_default();
        let name = object.metadata.name.clone().unwrap_or_default();
        let api_version = &resource.api_version;
        // Knative's subject: a core kind reads `/apis/v1/...`; a bare group gets
        // `/versionUnknown` appended.
        let version_path = if api_version.contains('.') && !api_version.contains('/') {
            format!("{api_version}/versionUnknown")
        } else {
            api_version.clone()
        };
        let (prefix, data) = if self.spec.sends_resources() {
            let mut value = serde_json::to_value(object).unwrap_or_default();
            if let Some(map) = value.as_object_mut() {
                map.insert("apiVersion".into(), api_version.clone().into());
                map.insert("kind".into(), resource.kind.clone().into());
            }
            (RESOURCE_TYPE_PREFIX, value)
        } else {
            (
                REF_TYPE_PREFIX,
                serde_json::json!({
                    "apiVersion": api_version,
                    "kind": resource.kind,
                    "name": name,
                    "namespace": namespace,
                }),
            )
        };
        let mut event = CloudEvent::new();
        event.set("specversion", "1.0");
        event.set("id", uuid::Uuid::new_v4().to_string());
        event.set("type", format!("{prefix}{}", change.name()));
        event.set("source", server_url.to_owned());
        event.set(
            "subject",
            format!(
                "/apis/{version_path}/namespaces/{namespace}/{}/{name}",
                resource.plural
            ),
        );
        event.set("datacontenttype", "application/json");
        event.set("kind", resource.kind.clone());
        event.set("apiversion", api_version.clone());
        event.set("name", name);
        event.set("namespace", namespace);
        event.set_data(Some(Bytes::from(data.to_string())));
        event
    }
}

/// Tells adds from updates and notices deletes missed while a watch was re-listing.
#[derive(Default)]
struct Seen {
    /// uid → resourceVersion, per watched stream.
    versions: HashMap<String, String>,
    /// uids listed since the stream's last `Init`.
    relisted: HashSet<String>,
    /// Last known object per uid, to report deletes found by a re-list.
    objects: HashMap<String, DynamicObject>,
}

impl Seen {
    /// `None` when nothing changed (the same version seen again after a re-list).
    fn applied(&mut self, object: &DynamicObject) -> Option<Change> {
        let uid = object.metadata.uid.clone().unwrap_or_default();
        let version = object.metadata.resource_version.clone().unwrap_or_default();
        self.objects.insert(uid.clone(), object.clone());
        match self.versions.insert(uid, version.clone()) {
            None => Some(Change::Add),
            Some(old) if old != version => Some(Change::Update),
            Some(_) => None,
        }
    }

    fn deleted(&mut self, object: &DynamicObject) {
        let uid = object.metadata.uid.clone().unwrap_or_default();
        self.versions.remove(&uid);
        self.objects.remove(&uid);
    }

    /// Objects known before a re-list that it did not list again: deleted meanwhile.
    fn vanished(&mut self) -> Vec<DynamicObject> {
        let gone: Vec<String> = self
            .versions
            .keys()
            .filter(|uid| !self.relisted.contains(*uid))
            .cloned()
            .collect();
        gone.into_iter()
            .filter_map(|uid| {
                self.versions.remove(&uid);
                self.objects.remove(&uid)
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl Source for ApiServerSource {
    fn describe(&self) -> String {
        format!("ApiServerSource {}/{}", self.namespace, self.name)
    }

    async fn run(&self, sink: SinkClient, shutdown: CancellationToken) -> Result<(), SourceError> {
        let (client, server_url) = self
            .kube
            .client()
            .await
            .map_err(|e| SourceError::Connect(format!("no Kubernetes API: {e}")))?;
        let watched = self.watched(&client).await?;
        if let Some(account) = self.service_account() {
            let wanted: Vec<Access> = watched
                .iter()
                .flat_map(|w| {
                    WATCH_VERBS.iter().map(|verb| Access {
                        verb,
                        group: &w.resource.group,
                        resource: &w.resource.plural,
                        namespace: Some(&w.namespace),
                    })
                })
                .collect();
            account.require(&client, &wanted).await?;
        }
        let mut streams =
            futures_util::stream::select_all(watched.into_iter().enumerate().map(|(index, w)| {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(client.clone(), &w.namespace, &w.resource);
                let config = watcher::Config::default().labels(&w.selector);
                let resource = w.resource;
                watcher(api, config)
                    .map(move |event| (index, resource.clone(), event))
                    .boxed()
            }));
        let mut seen: HashMap<usize, Seen> = HashMap::new();
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                next = streams.next() => next,
            };
            let Some((index, resource, event)) = next else {
                return Err(SourceError::Input("the watch ended".into()));
            };
            let seen = seen.entry(index).or_default();
            let changes: Vec<(DynamicObject, Change)> = match event {
                Err(error) => {
                    // Permissions do not come back by retrying the watch: fail, so that the
                    // status says so and the supervisor retries with backoff.
                    if let Some(message) = access::forbidden(&error) {
                        return Err(SourceError::Forbidden(message));
                    }
                    tracing::warn!(source = %self.describe(), %error, "watch failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    }
                    Vec::new()
                }
                Ok(watcher::Event::Init) => {
                    seen.relisted.clear();
                    Vec::new()
                }
                Ok(watcher::Event::InitApply(object)) => {
                    seen.relisted
                        .insert(object.metadata.uid.clone().unwrap_or_default());
                    seen.applied(&object)
                        .map(|c| (object, c))
                        .into_iter()
                        .collect()
                }
                Ok(watcher::Event::InitDone) => seen
                    .vanished()
                    .into_iter()
                    .map(|object| (object, Change::Delete))
                    .collect(),
                Ok(watcher::Event::Apply(object)) => seen
                    .applied(&object)
                    .map(|c| (object, c))
                    .into_iter()
                    .collect(),
                Ok(watcher::Event::Delete(object)) => {
                    seen.deleted(&object);
                    vec![(object, Change::Delete)]
                }
            };
            for (object, change) in changes {
                if !self.owned(&object) {
                    continue;
                }
                let event = self.event(&server_url, &resource, &object, change);
                // As Knative's adapter: filters see the event before `ceOverrides`.
                if !self.filter.matches(&event) {
                    continue;
                }
                // Like Knative's adapter: a change the sink refuses is logged, not retried
                // forever; the watch goes on.
                if let Err(error) = sink.send(event).await {
                    tracing::warn!(source = %self.describe(), %error, "event not delivered to the sink");
                }
            }
        }
    }
}
