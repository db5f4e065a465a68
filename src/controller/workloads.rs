//! Sources that run as Kubernetes workloads, not inside Herald: a ContainerSource becomes a
//! Deployment, a SinkBinding puts `K_SINK` and `K_CE_OVERRIDES` into the containers of its
//! subjects (Knative does the latter with a webhook; Herald patches the subject, and takes
//! the variables out again when the binding goes). With sender identity on, both also get
//! the source's token for the sink at `/oidc/token`, as in Knative: a projected
//! `serviceAccountToken` volume of the source's OIDC ServiceAccount, which the pods run as.

use std::collections::BTreeMap;

use crate::apiserver_source::{discover, DiscoverError};
use herald_crds::{ContainerSource, SinkBinding, SourceSpec};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::Client;
use serde_json::{json, Value};

/// The variables a binding sets; removed again on unbinding.
const BOUND_VARIABLES: [&str; 2] = ["K_SINK", "K_CE_OVERRIDES"];

/// The token volume, named as Knative names it; mounted at `/oidc`, file `token`.
const TOKEN_VOLUME: &str = "oidc-token";
const TOKEN_MOUNT_PATH: &str = "/oidc";
/// The kubelet renews a projected token at 80% of this lifetime.
const TOKEN_EXPIRATION_SECONDS: i64 = 3600;

/// A pod spec's ServiceAccount, and its deprecated alias.
const ACCOUNT_FIELDS: [&str; 2] = ["serviceAccountName", "serviceAccount"];

/// With sender identity on: who a workload's pods are and the audience of their token.
#[derive(Debug, Clone)]
pub struct TokenMount {
    /// The source's OIDC ServiceAccount (`{name}-oidc-sources.knative.dev-{kind}`).
    pub service_account: String,
    /// The sink's audience.
    pub audience: String,
}

/// The label that ties a ContainerSource's Deployment to it.
pub const CONTAINER_SOURCE_LABEL: &str = "sources.knative.dev/containerSource";

pub struct Workloads {
    client: Client,
    params: PatchParams,
}

/// Why a workload could not be run, bound or unbound.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// A SinkBinding's subject named by `name` is not there (nothing to bind or unbind).
    #[error("{kind} {namespace}/{name} does not exist")]
    SubjectMissing {
        kind: String,
        namespace: String,
        name: String,
    },
    #[error("the subject has neither name nor selector")]
    NoSubject,
    #[error("{kind} {name} has no spec.template.spec (not a PodSpecable)")]
    NotPodSpecable { kind: String, name: String },
    /// Reading, listing, applying or updating on the API server failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being done, e.g. `cannot update Deployment d`.
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Discover(#[from] DiscoverError),
    /// The Deployment or its pod template does not convert to and from JSON.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

fn api_error(what: String) -> impl FnOnce(kube::Error) -> WorkloadError {
    move |source| WorkloadError::Api { what, source }
}

/// How a workload-backed source is doing, for its status.
pub struct WorkloadState {
    /// `false` while the Deployment has no available replica (or a subject is missing).
    pub ready: bool,
    pub reason: &'static str,
    pub message: String,
}

/// `K_SINK` and `K_CE_OVERRIDES` as Knative sets them.
fn binding_env(sink: &str, spec: &dyn SourceSpec) -> Vec<(String, String)> {
    let extensions = spec.extensions();
    let mut env = vec![("K_SINK".to_owned(), sink.to_owned())];
    if !extensions.is_empty() {
        env.push((
            "K_CE_OVERRIDES".to_owned(),
            json!({ "extensions": extensions }).to_string(),
        ));
    }
    env
}

/// Sets (or, with an empty `env`, removes) the bound variables in every container of a pod
/// spec given as JSON; `true` when anything changed.
fn set_env(pod_spec: &mut Value, env: &[(String, String)]) -> bool {
    let mut changed = false;
    for list in ["containers", "initContainers"] {
        let Some(containers) = pod_spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for container in containers {
            let before = container.get("env").cloned().unwrap_or(json!([]));
            let mut vars: Vec<Value> = before
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|v| !BOUND_VARIABLES.contains(&v["name"].as_str().unwrap_or_default()))
                .collect();
            vars.extend(
                env.iter()
                    .map(|(name, value)| json!({"name": name, "value": value})),
            );
            let after = Value::Array(vars);
            if after != before {
                changed = true;
                container["env"] = after;
            }
        }
    }
    changed
}

/// Mounts (with `Some`) or removes (with `None`) the token volume in a pod spec given as
/// JSON, and makes the pods run as the source's ServiceAccount; `true` when anything changed.
/// A pod spec that names a ServiceAccount of its own (other than `default`) keeps it: its
/// token then names that account. Removing takes out only what mounting added.
fn set_token(pod_spec: &mut Value, mount: Option<&TokenMount>) -> bool {
    let before = pod_spec.clone();
    let Some(spec) = pod_spec.as_object_mut() else {
        return false;
    };
    let mut volumes: Vec<Value> = spec
        .get("volumes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|v| v["name"] != TOKEN_VOLUME)
        .collect();
    if let Some(mount) = mount {
        volumes.push(json!({"name": TOKEN_VOLUME, "projected": {
            // The API server's default, spelled out so that a second pass sees no change.
            "defaultMode": 420,
            "sources": [{"serviceAccountToken": {
                "audience": mount.audience,
                "expirationSeconds": TOKEN_EXPIRATION_SECONDS,
                "path": "token",
            }}],
        }}));
    }
    if volumes.is_empty() {
        spec.remove("volumes");
    } else {
        spec.insert("volumes".into(), Value::Array(volumes));
    }
    for list in ["containers", "initContainers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for container in containers {
            let Some(container) = container.as_object_mut() else {
                continue;
            };
            let mut mounts: Vec<Value> = container
                .get("volumeMounts")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|m| m["name"] != TOKEN_VOLUME)
                .collect();
            if mount.is_some() {
                mounts.push(
                    json!({"name": TOKEN_VOLUME, "mountPath": TOKEN_MOUNT_PATH, "readOnly": true}),
                );
            }
            if mounts.is_empty() {
                container.remove("volumeMounts");
            } else {
                container.insert("volumeMounts".into(), Value::Array(mounts));
            }
        }
    }
    // `serviceAccount` is the deprecated alias the API server keeps equal to
    // `serviceAccountName` (and takes when the latter is empty): both are set and removed.
    let current = ACCOUNT_FIELDS
        .iter()
        .find_map(|field| {
            spec.get(*field)
                .and_then(Value::as_str)
                .filter(|a| !a.is_empty())
        })
        .unwrap_or_default()
        .to_owned();
    match mount {
        Some(mount) if current.is_empty() || current == "default" => {
            for field in ACCOUNT_FIELDS {
                spec.insert(field.into(), json!(mount.service_account));
            }
        }
        Some(_) => {}
        None => {
            // Ours are named `…-oidc-sources.knative.dev-…`: nobody else's are taken out.
            if current.contains("-oidc-sources.knative.dev-") {
                for field in ACCOUNT_FIELDS {
                    spec.remove(field);
                }
            }
        }
    }
    *pod_spec != before
}

impl Workloads {
    pub fn new(client: Client, identity: &str) -> Self {
        Self {
            client,
            params: PatchParams::apply(&format!("herald-{identity}")).force(),
        }
    }

    /// Applies the ContainerSource's Deployment (server-side apply: unchanged means no
    /// write) and reports whether a replica is available.
    pub async fn container_source(
        &self,
        source: &ContainerSource,
        sink: &str,
        token: Option<&TokenMount>,
    ) -> Result<WorkloadState, WorkloadError> {
        let namespace = source.metadata.namespace.as_deref().unwrap_or("default");
        let name = source.metadata.name.as_deref().unwrap_or_default();
        let deployment_name = format!("{name}-deployment");
        let mut template = source.spec.template.clone();
        let labels = template.metadata.get_or_insert_with(Default::default);
        let labels = labels.labels.get_or_insert_with(BTreeMap::new);
        labels.insert(CONTAINER_SOURCE_LABEL.to_owned(), name.to_owned());
        let mut template_json = serde_json::to_value(&template)?;
        set_env(&mut template_json["spec"], &binding_env(sink, &source.spec));
        set_token(&mut template_json["spec"], token);
        let template = serde_json::from_value(template_json)?;
        let deployment = Deployment {
            metadata: ObjectMeta {
                name: Some(deployment_name.clone()),
                namespace: Some(namespace.to_owned()),
                labels: Some(BTreeMap::from([(
                    CONTAINER_SOURCE_LABEL.to_owned(),
                    name.to_owned(),
                )])),
                owner_references: Some(vec![OwnerReference {
                    api_version: "sources.knative.dev/v1".into(),
                    kind: "ContainerSource".into(),
                    name: name.to_owned(),
                    uid: source.metadata.uid.clone().unwrap_or_default(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]),
                ..ObjectMeta::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(1),
                selector: LabelSelector {
                    match_labels: Some(BTreeMap::from([(
                        CONTAINER_SOURCE_LABEL.to_owned(),
                        name.to_owned(),
                    )])),
                    ..LabelSelector::default()
                },
                template,
                ..DeploymentSpec::default()
            }),
            status: None,
        };
        let mut body = serde_json::to_value(&deployment)?;
        body["apiVersion"] = json!("apps/v1");
        body["kind"] = json!("Deployment");
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        let applied = api
            .patch(&deployment_name, &self.params, &Patch::Apply(body))
            .await
            .map_err(api_error(format!(
                "cannot apply Deployment {namespace}/{deployment_name}"
            )))?;
        let available = applied
            .status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0);
        Ok(if available > 0 {
            WorkloadState {
                ready: true,
                reason: "",
                message: String::new(),
            }
        } else {
            WorkloadState {
                ready: false,
                reason: "DeploymentUnavailable",
                message: format!(
                    "Deployment {namespace}/{deployment_name} has no available replica yet"
                ),
            }
        })
    }

    /// The subjects a binding names or selects.
    async fn subjects(
        &self,
        binding: &SinkBinding,
    ) -> Result<(Api<DynamicObject>, Vec<DynamicObject>), WorkloadError> {
        let subject = &binding.spec.subject;
        // Validation refuses a subject in another namespace; the binding's own is the only
        // one ever used, whatever the spec says.
        let namespace = binding.metadata.namespace.as_deref().unwrap_or("default");
        let resource = discover(&self.client, &subject.api_version, &subject.kind).await?;
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &resource);
        let objects = match (&subject.name, &subject.selector) {
            (Some(name), _) => match api.get_opt(name).await {
                Ok(Some(object)) => vec![object],
                Ok(None) => {
                    return Err(WorkloadError::SubjectMissing {
                        kind: subject.kind.clone(),
                        namespace: namespace.to_owned(),
                        name: name.clone(),
                    })
                }
                Err(e) => {
                    return Err(api_error(format!(
                        "cannot read {} {namespace}/{name}",
                        subject.kind
                    ))(e))
                }
            },
            (None, None) => return Err(WorkloadError::NoSubject),
            (None, Some(selector)) => {
                let labels = selector.to_query();
                api.list(&ListParams::default().labels(&labels))
                    .await
                    .map_err(api_error(format!("cannot list {}", subject.kind)))?
                    .items
            }
        };
        Ok((api, objects))
    }

    /// Sets the binding's variables (and, with `token`, the token volume) in its subjects
    /// (`sink = None` removes them all); returns how many subjects there are.
    pub async fn bind(
        &self,
        binding: &SinkBinding,
        sink: Option<&str>,
        token: Option<&TokenMount>,
    ) -> Result<usize, WorkloadError> {
        let (api, subjects) = self.subjects(binding).await?;
        let env = sink
            .map(|s| binding_env(s, &binding.spec))
            .unwrap_or_default();
        for subject in &subjects {
            let name = subject.metadata.name.as_deref().unwrap_or_default();
            let mut pod_spec = subject.data["spec"]["template"]["spec"].clone();
            if pod_spec.is_null() {
                return Err(WorkloadError::NotPodSpecable {
                    kind: binding.spec.subject.kind.clone(),
                    name: name.to_owned(),
                });
            }
            let env_changed = set_env(&mut pod_spec, &env);
            let token_changed = set_token(&mut pod_spec, token.filter(|_| sink.is_some()));
            if !env_changed && !token_changed {
                continue;
            }
            let mut patch = json!({"metadata": {"resourceVersion": subject.metadata.resource_version}, "spec": {"template": {"spec": {}}}});
            for list in ["containers", "initContainers"] {
                if let Some(containers) = pod_spec.get(list) {
                    patch["spec"]["template"]["spec"][list] = containers.clone();
                }
            }
            // A merge patch removes a field given as null.
            for field in ["volumes", "serviceAccountName", "serviceAccount"] {
                patch["spec"]["template"]["spec"][field] =
                    pod_spec.get(field).cloned().unwrap_or(Value::Null);
            }
            api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map_err(api_error(format!(
                    "cannot update {} {name}",
                    binding.spec.subject.kind
                )))?;
        }
        Ok(subjects.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_replaces_its_variables_and_keeps_the_others() {
        let mut pod = json!({"containers": [
            {"name": "a", "env": [{"name": "KEEP", "value": "1"}, {"name": "K_SINK", "value": "old"}]},
            {"name": "b"}
        ], "initContainers": [{"name": "init"}]});
        let env = vec![("K_SINK".to_owned(), "http://new".to_owned())];
        assert!(set_env(&mut pod, &env));
        assert_eq!(
            pod["containers"][0]["env"],
            json!([{"name": "KEEP", "value": "1"}, {"name": "K_SINK", "value": "http://new"}])
        );
        assert_eq!(
            pod["containers"][1]["env"],
            json!([{"name": "K_SINK", "value": "http://new"}])
        );
        assert_eq!(
            pod["initContainers"][0]["env"],
            json!([{"name": "K_SINK", "value": "http://new"}])
        );
        assert!(!set_env(&mut pod, &env), "a second pass changes nothing");
        assert!(set_env(&mut pod, &[]));
        assert_eq!(
            pod["containers"][0]["env"],
            json!([{"name": "KEEP", "value": "1"}])
        );
    }

    #[test]
    fn the_token_volume_is_mounted_and_taken_out_again() {
        let original = json!({
            "volumes": [{"name": "data", "emptyDir": {}}],
            "containers": [{"name": "a", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}],
            "initContainers": [{"name": "init"}],
        });
        let mount = TokenMount {
            service_account: "b-oidc-sources.knative.dev-sinkbinding".into(),
            audience: "eventing.knative.dev/broker/ns/b".into(),
        };
        let mut pod = original.clone();
        assert!(set_token(&mut pod, Some(&mount)));
        assert_eq!(pod["serviceAccountName"], json!(mount.service_account));
        assert_eq!(pod["volumes"][1]["name"], "oidc-token");
        let projected = &pod["volumes"][1]["projected"]["sources"][0]["serviceAccountToken"];
        assert_eq!(projected["audience"], "eventing.knative.dev/broker/ns/b");
        assert_eq!(projected["expirationSeconds"], 3600);
        assert_eq!(projected["path"], "token");
        for container in [&pod["containers"][0], &pod["initContainers"][0]] {
            let mounts = container["volumeMounts"].as_array().unwrap();
            assert_eq!(
                mounts.last().unwrap(),
                &json!({"name": "oidc-token", "mountPath": "/oidc", "readOnly": true})
            );
        }
        assert!(
            !set_token(&mut pod, Some(&mount)),
            "a second pass changes nothing"
        );
        assert!(set_token(&mut pod, None));
        assert_eq!(pod, original, "unbinding leaves the pod spec as it was");

        let mut own = json!({"serviceAccountName": "reader", "containers": [{"name": "a"}]});
        set_token(&mut own, Some(&mount));
        assert_eq!(
            own["serviceAccountName"], "reader",
            "a pod's own account stays"
        );
        set_token(&mut own, None);
        assert_eq!(own["serviceAccountName"], "reader");
    }
}
