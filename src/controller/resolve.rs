//! Destinations on a cluster: a `ref` to a Service becomes
//! `http://{name}.{namespace}.svc.{cluster domain}`, a `ref` to any other addressable its
//! `status.address.url`. Broker refs stay: the runtime sends those to Herald's own ingress.

use crate::apiserver_source::{discover, DiscoverError};
use herald_crds::{Destination, KReference};
use kube::api::{Api, DynamicObject};
use kube::Client;

use super::cache::{NotWatched, Services};

use crate::config::Resource;

pub struct Resolver {
    client: Client,
    cluster_domain: String,
    /// The Services of the watched namespaces, kept by the controller's watch.
    services: Services,
}

/// A destination that could not be resolved: its field path and why.
#[derive(Debug, Clone)]
pub struct Unresolved {
    pub field: &'static str,
    pub message: String,
}

impl Resolver {
    pub fn new(client: Client, cluster_domain: String, services: Services) -> Self {
        Self {
            client,
            cluster_domain,
            services,
        }
    }

    /// Rewrites every non-Broker `ref` of `resource` into a `uri`.
    pub async fn resolve(&self, resource: &mut Resource) -> Result<(), Unresolved> {
        let (namespace, _) = resource.namespaced_name();
        for (field, destination) in resource.destinations_mut() {
            let Some(reference) = destination.reference.clone() else {
                continue;
            };
            if is_broker(&reference) {
                continue;
            }
            let namespace = reference.namespace.as_deref().unwrap_or(&namespace);
            let base = self
                .url_of(&reference, namespace)
                .await
                .map_err(|error| Unresolved {
                    field,
                    message: error.to_string(),
                })?;
            let uri = crate::config::join_ref_uri(&base, destination.uri.as_deref())
                .map_err(|message| Unresolved { field, message })?;
            *destination = Destination {
                reference: None,
                uri: Some(uri),
                ..destination.clone()
            };
        }
        Ok(())
    }

    async fn url_of(
        &self,
        reference: &KReference,
        namespace: &str,
    ) -> Result<String, ResolveError> {
        let what = format!("{} {namespace}/{}", reference.kind, reference.name);
        if reference.api_version == "v1" && reference.kind == "Service" {
            return match self.services.exists(namespace, &reference.name) {
                Ok(true) => Ok(format!(
                    "http://{}.{namespace}.svc.{}",
                    reference.name, self.cluster_domain
                )),
                Ok(false) => Err(ResolveError::Missing(what)),
                Err(source) => Err(ResolveError::NotWatched { what, source }),
            };
        }
        let resource = discover(&self.client, &reference.api_version, &reference.kind).await?;
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &resource);
        let object = match api.get_opt(&reference.name).await {
            Ok(Some(object)) => object,
            Ok(None) => return Err(ResolveError::Missing(what)),
            Err(source) => return Err(ResolveError::Read { what, source }),
        };
        match object.data["status"]["address"]["url"].as_str() {
            Some(url) => Ok(url.to_owned()),
            None => Err(ResolveError::NotAddressable(what)),
        }
    }
}

/// Why a destination's `ref` has no URL; each names the object (`Kind namespace/name`).
#[derive(Debug, thiserror::Error)]
enum ResolveError {
    #[error("{0} does not exist")]
    Missing(String),
    #[error("{what} cannot be resolved: {source}")]
    NotWatched {
        what: String,
        #[source]
        source: NotWatched,
    },
    #[error(transparent)]
    Discover(#[from] DiscoverError),
    #[error("cannot read {what}: {source}")]
    Read {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{0} is not addressable yet (no status.address.url)")]
    NotAddressable(String),
}

fn is_broker(reference: &KReference) -> bool {
    reference.kind == "Broker" && reference.api_version.starts_with("eventing.knative.dev/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_knative_brokers_stay_refs() {
        let reference = |api_version: &str, kind: &str| KReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: "x".into(),
            namespace: None,
        };
        assert!(is_broker(&reference("eventing.knative.dev/v1", "Broker")));
        assert!(!is_broker(&reference("v1", "Service")));
        assert!(!is_broker(&reference("serving.knative.dev/v1", "Service")));
    }
}
