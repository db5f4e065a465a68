//! Destinations on a cluster: a `ref` to a Service becomes
//! `http://{name}.{namespace}.svc.{cluster domain}`, a `ref` to any other addressable its
//! `status.address.url`, and its `status.address.audience` (if any) the destination's
//! audience, so that senders' tokens name it (Knative's resolver does the same). Refs to Brokers, channels, Sequences and Parallels stay: the
//! runtime sends those to Herald's own ingress.

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
    pub field: String,
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
            if is_herald_own(&reference) {
                continue;
            }
            let namespace = reference.namespace.as_deref().unwrap_or(&namespace);
            let (base, audience) =
                self.address_of(&reference, namespace)
                    .await
                    .map_err(|error| Unresolved {
                        field: field.clone(),
                        message: error.to_string(),
                    })?;
            let uri = crate::config::join_ref_uri(&base, destination.uri.as_deref()).map_err(
                |message| Unresolved {
                    field: field.clone(),
                    message,
                },
            )?;
            *destination = Destination {
                reference: None,
                uri: Some(uri),
                audience: audience.or_else(|| destination.audience.clone()),
                ..destination.clone()
            };
        }
        Ok(())
    }

    /// The URL of what `reference` names, and its audience when it advertises one.
    async fn address_of(
        &self,
        reference: &KReference,
        namespace: &str,
    ) -> Result<(String, Option<String>), ResolveError> {
        let what = format!("{} {namespace}/{}", reference.kind, reference.name);
        if reference.api_version == "v1" && reference.kind == "Service" {
            return match self.services.exists(namespace, &reference.name) {
                Ok(true) => Ok((
                    format!(
                        "http://{}.{namespace}.svc.{}",
                        reference.name, self.cluster_domain
                    ),
                    None,
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
        let address = &object.data["status"]["address"];
        let audience = address["audience"]
            .as_str()
            .filter(|a| !a.is_empty())
            .map(str::to_owned);
        if let Some(audience) = &audience {
            herald_crds::validation::validate_audience("status.address.audience", audience)
                .map_err(|error| ResolveError::BadAudience {
                    what: what.clone(),
                    message: error.to_string(),
                })?;
        }
        match address["url"].as_str() {
            Some(url) => Ok((url.to_owned(), audience)),
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
    /// Its advertised audience would not fit in a token (too long, control characters).
    #[error("{what}: {message}")]
    BadAudience { what: String, message: String },
}

/// Brokers, channels, Sequences and Parallels are Herald's own: the runtime sends to them.
fn is_herald_own(reference: &KReference) -> bool {
    herald_crds::OwnAddressable::of(reference).is_some()
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
        assert!(is_herald_own(&reference(
            "eventing.knative.dev/v1",
            "Broker"
        )));
        assert!(!is_herald_own(&reference("v1", "Service")));
        assert!(!is_herald_own(&reference(
            "serving.knative.dev/v1",
            "Service"
        )));
    }
}
