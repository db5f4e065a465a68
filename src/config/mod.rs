//! Loading Knative resources from YAML files and folders, validated before anything starts.
//!
//! Every error names the file, the resource (`Kind namespace/name`) and the field path, so a
//! user can go straight to the line at fault.

mod load;
mod validate;

pub use load::{load_paths, parse_documents};
pub use validate::{broker_settings, build_desired, start_from, Desired, TriggerKey};

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// A resource in a config file that Herald knows.
#[derive(Clone, Debug)]
pub enum Resource {
    Broker(herald_crds::Broker),
    Trigger(herald_crds::Trigger),
    NatsSource(herald_crds::NatsSource),
}

impl Resource {
    pub fn kind(&self) -> &'static crate::kinds::Kind {
        match self {
            Resource::Broker(_) => &crate::kinds::BROKER,
            Resource::Trigger(_) => &crate::kinds::TRIGGER,
            Resource::NatsSource(_) => &crate::kinds::NATS_SOURCE,
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Resource::Broker(r) => &r.metadata,
            Resource::Trigger(r) => &r.metadata,
            Resource::NatsSource(r) => &r.metadata,
        }
    }

    pub fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Resource::Broker(r) => &mut r.metadata,
            Resource::Trigger(r) => &mut r.metadata,
            Resource::NatsSource(r) => &mut r.metadata,
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
        let spec = match self {
            Resource::Broker(r) => serde_json::to_value(&r.spec),
            Resource::Trigger(r) => serde_json::to_value(&r.spec),
            Resource::NatsSource(r) => serde_json::to_value(&r.spec),
        };
        spec.unwrap_or_default()
    }

    /// Drops any `status` the client sent: status is Herald's to report.
    pub fn clear_status(&mut self) {
        match self {
            Resource::Broker(r) => r.status = None,
            Resource::Trigger(r) => r.status = None,
            Resource::NatsSource(r) => r.status = None,
        }
    }

    /// The whole object as JSON (`apiVersion`, `kind`, `metadata`, `spec`, `status`).
    pub fn to_json(&self) -> serde_json::Value {
        let value = match self {
            Resource::Broker(r) => serde_json::to_value(r),
            Resource::Trigger(r) => serde_json::to_value(r),
            Resource::NatsSource(r) => serde_json::to_value(r),
        };
        value.unwrap_or_default()
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
