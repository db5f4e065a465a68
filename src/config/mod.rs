//! Loading Knative resources from YAML files and folders, validated before anything starts.
//!
//! Every error names the file, the resource (`Kind namespace/name`) and the field path, so a
//! user can go straight to the line at fault.

#[cfg(test)]
mod fuzz;
mod load;
mod nesting;
mod refs;
mod secrets;
mod validate;

pub use load::{load_paths, parse_documents, parse_json_document};
pub use refs::{join as join_ref_uri, RefMap};
pub use secrets::check_secrets;
pub use validate::{
    broker_settings, build_desired, build_desired_lenient, referenced_broker, start_from,
    validate_cluster_workload, Desired, Rejected, TriggerKey,
};

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// A resource in a config file that Herald knows.
#[derive(Clone, Debug)]
pub enum Resource {
    Broker(herald_crds::Broker),
    Trigger(herald_crds::Trigger),
    EventType(herald_crds::EventType),
    NatsSource(herald_crds::NatsSource),
    PingSource(herald_crds::PingSource),
    /// Boxed: a pod template is far larger than the other kinds.
    ContainerSource(Box<herald_crds::ContainerSource>),
    WebhookSource(herald_crds::WebhookSource),
    KafkaSource(herald_crds::KafkaSource),
    ApiServerSource(herald_crds::ApiServerSource),
    /// Runs only under `herald controller`: it binds Kubernetes workloads.
    SinkBinding(herald_crds::SinkBinding),
}

/// Evaluates `$body` with `$r` bound to the typed object, whatever its kind.
macro_rules! on_resource {
    ($value:expr, $r:ident => $body:expr) => {
        match $value {
            Resource::Broker($r) => $body,
            Resource::Trigger($r) => $body,
            Resource::EventType($r) => $body,
            Resource::NatsSource($r) => $body,
            Resource::PingSource($r) => $body,
            Resource::ContainerSource($r) => $body,
            Resource::WebhookSource($r) => $body,
            Resource::KafkaSource($r) => $body,
            Resource::ApiServerSource($r) => $body,
            Resource::SinkBinding($r) => $body,
        }
    };
}

impl Resource {
    pub fn kind(&self) -> &'static crate::kinds::Kind {
        use crate::kinds;
        match self {
            Resource::Broker(_) => &kinds::BROKER,
            Resource::Trigger(_) => &kinds::TRIGGER,
            Resource::EventType(_) => &kinds::EVENT_TYPE,
            Resource::NatsSource(_) => &kinds::NATS_SOURCE,
            Resource::PingSource(_) => &kinds::PING_SOURCE,
            Resource::ContainerSource(_) => &kinds::CONTAINER_SOURCE,
            Resource::WebhookSource(_) => &kinds::WEBHOOK_SOURCE,
            Resource::KafkaSource(_) => &kinds::KAFKA_SOURCE,
            Resource::ApiServerSource(_) => &kinds::API_SERVER_SOURCE,
            Resource::SinkBinding(_) => &kinds::SINK_BINDING,
        }
    }

    /// Parses an object of `kind`; the error keeps the path of the field at fault.
    pub fn parse(
        kind: &crate::kinds::Kind,
        value: serde_yaml_ng::Value,
    ) -> Result<Self, serde_path_to_error::Error<serde_yaml_ng::Error>> {
        use serde_path_to_error::deserialize;
        match kind.kind {
            "Broker" => deserialize(value).map(Resource::Broker),
            "Trigger" => deserialize(value).map(Resource::Trigger),
            "EventType" => crate::catalog::parse_event_type(value).map(Resource::EventType),
            "NatsSource" => deserialize(value).map(Resource::NatsSource),
            "PingSource" => deserialize(value).map(Resource::PingSource),
            "ContainerSource" => {
                deserialize(value).map(|source| Resource::ContainerSource(Box::new(source)))
            }
            "KafkaSource" => deserialize(value).map(Resource::KafkaSource),
            "ApiServerSource" => deserialize(value).map(Resource::ApiServerSource),
            "SinkBinding" => deserialize(value).map(Resource::SinkBinding),
            _ => deserialize(value).map(Resource::WebhookSource),
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        on_resource!(self, r => &r.metadata)
    }

    pub fn meta_mut(&mut self) -> &mut ObjectMeta {
        on_resource!(self, r => &mut r.metadata)
    }

    /// The shared source fields (`sink`, `ceOverrides`), for source kinds.
    pub fn source_spec(&self) -> Option<&dyn herald_crds::SourceSpec> {
        match self {
            Resource::Broker(_) | Resource::Trigger(_) | Resource::EventType(_) => None,
            Resource::NatsSource(r) => Some(&r.spec),
            Resource::PingSource(r) => Some(&r.spec),
            Resource::ContainerSource(r) => Some(&r.spec),
            Resource::WebhookSource(r) => Some(&r.spec),
            Resource::KafkaSource(r) => Some(&r.spec),
            Resource::ApiServerSource(r) => Some(&r.spec),
            Resource::SinkBinding(r) => Some(&r.spec),
        }
    }

    /// Every destination of the resource with its field path: a trigger's subscriber and
    /// dead-letter sink, a broker's dead-letter sink, a source's sink.
    pub fn destinations_mut(&mut self) -> Vec<(&'static str, &mut herald_crds::Destination)> {
        const DEAD_LETTER_SINK: &str = "spec.delivery.deadLetterSink";
        fn dead_letter(
            delivery: Option<&mut herald_crds::DeliverySpec>,
        ) -> Option<(&'static str, &mut herald_crds::Destination)> {
            delivery
                .and_then(|d| d.dead_letter_sink.as_mut())
                .map(|d| (DEAD_LETTER_SINK, d))
        }
        match self {
            Resource::Broker(b) => dead_letter(b.spec.delivery.as_mut()).into_iter().collect(),
            Resource::EventType(_) => Vec::new(),
            Resource::Trigger(t) => {
                let spec = &mut t.spec;
                let mut all = vec![("spec.subscriber", &mut spec.subscriber)];
                all.extend(dead_letter(spec.delivery.as_mut()));
                all
            }
            Resource::NatsSource(r) => vec![("spec.sink", &mut r.spec.sink)],
            Resource::PingSource(r) => vec![("spec.sink", &mut r.spec.sink)],
            Resource::ContainerSource(r) => vec![("spec.sink", &mut r.spec.sink)],
            Resource::WebhookSource(r) => vec![("spec.sink", &mut r.spec.sink)],
            Resource::KafkaSource(r) => vec![("spec.sink", &mut r.spec.sink)],
            Resource::ApiServerSource(r) => vec![("spec.sink", &mut r.spec.sink)],
            Resource::SinkBinding(r) => vec![("spec.sink", &mut r.spec.sink)],
        }
    }

    /// The resource's namespace (`default` when unset) and name.
    pub fn namespaced_name(&self) -> (String, String) {
        let meta = self.meta();
        (
            meta.namespace
                .clone()
                .unwrap_or_else(|| herald_crds::DEFAULT_NAMESPACE.to_owned()),
            meta.name.clone().unwrap_or_default(),
        )
    }

    /// The spec alone, to tell a spec change (new generation) from a metadata change.
    pub fn spec_json(&self) -> serde_json::Value {
        on_resource!(self, r => serde_json::to_value(&r.spec)).unwrap_or_default()
    }

    /// Drops any `status` the client sent: status is Herald's to report.
    pub fn clear_status(&mut self) {
        on_resource!(self, r => r.status = None)
    }

    /// The whole object as JSON (`apiVersion`, `kind`, `metadata`, `spec`, `status`).
    pub fn to_json(&self) -> serde_json::Value {
        on_resource!(self, r => serde_json::to_value(r)).unwrap_or_default()
    }
}

/// A resource with the file it came from.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub origin: String,
    pub resource: Resource,
}

/// What is wrong with the configuration, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub origin: String,
    /// `Kind namespace/name`, when known.
    pub resource: Option<String>,
    /// JSON path of the field, when known.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(resource) = &self.resource {
            write!(f, ": {resource}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}
