//! The CustomResourceDefinitions of every kind Herald serves, generated from the types in
//! this crate: `herald crds` prints them, `crds/manifests/` holds them (a test keeps the
//! committed files equal to what the types generate).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Every CRD, brokers and triggers first.
pub fn all() -> Vec<CustomResourceDefinition> {
    let crds = vec![
        spec_optional(crate::Broker::crd()),
        crate::Trigger::crd(),
        crate::EventType::crd(),
        crate::PingSource::crd(),
        crate::ContainerSource::crd(),
        also_served(
            crate::KafkaSource::crd(),
            crate::kafka_source::ALSO_SERVED_VERSION,
        ),
        crate::ApiServerSource::crd(),
        crate::SinkBinding::crd(),
        crate::WebhookSource::crd(),
        crate::NatsSource::crd(),
        spec_optional(crate::Channel::crd()),
        spec_optional(crate::InMemoryChannel::crd()),
        spec_optional(crate::KafkaChannel::crd()),
        crate::Subscription::crd(),
        crate::Sequence::crd(),
        crate::Parallel::crd(),
        crate::EventTransform::crd(),
        crate::RequestReply::crd(),
        crate::EventPolicy::crd(),
    ];
    crds.into_iter().map(source_labels).collect()
}

/// Knative's labels on every source kind (its `sources.*` groups), by which `kn source list`
/// and Knative's aggregated roles find sources.
fn source_labels(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    if crd.spec.group.starts_with("sources.") {
        let labels = crd.metadata.labels.get_or_insert_with(Default::default);
        for label in ["duck.knative.dev/source", "eventing.knative.dev/source"] {
            labels.insert(label.to_owned(), "true".to_owned());
        }
    }
    crd
}

/// The file a CRD is kept in: `{plural}.{group}.yaml`, as Kubernetes names the CRD itself.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

/// One CRD as YAML.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_yaml_ng::Error> {
    serde_yaml_ng::to_string(crd)
}

/// Knative accepts a Broker (or a channel) without `spec` (everything in it has a default); the derived
/// schema would require it.
fn spec_optional(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        let schema = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut());
        if let Some(required) = schema.and_then(|s| s.required.as_mut()) {
            required.retain(|field| field != "spec");
        }
    }
    crd
}

/// Serves the CRD's schema under a second version too, stored as the first (the schemas are
/// the same, so the API server converts by changing `apiVersion` only).
fn also_served(mut crd: CustomResourceDefinition, version: &str) -> CustomResourceDefinition {
    let mut other = crd.spec.versions[0].clone();
    other.name = version.to_owned();
    other.storage = false;
    crd.spec.versions.push(other);
    crd
}
