//! Loading Knative resources from YAML files and folders, validated before anything starts.
//!
//! Every error names the file, the resource (`Kind namespace/name`) and the field path, so a
//! user can go straight to the line at fault.

mod load;
mod validate;

pub use load::{load_paths, parse_documents};
pub use validate::{broker_settings, build_desired, Desired, TriggerKey};

use std::fmt;

/// A resource in a config file that Herald knows.
#[derive(Clone, Debug)]
pub enum Resource {
    Broker(herald_crds::Broker),
    Trigger(herald_crds::Trigger),
    NatsSource(herald_crds::NatsSource),
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
