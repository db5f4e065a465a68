//! Loading Knative resources from YAML files and folders, validated before anything starts.
//!
//! Every error names the file, the resource (`Kind namespace/name`) and the field path, so a
//! user can go straight to the line at fault.

pub mod event_type;
pub mod flows;
#[cfg(test)]
mod fuzz;
mod load;
mod nesting;
mod plan;
pub mod policy_plan;
mod refs;
pub mod request_reply_plan;
mod resource;
mod secrets;
pub mod testing;
pub mod transform_plan;
mod trust;
mod validate;

pub use load::{json_document, load_paths, parse_documents, parse_json_document};
pub use plan::{
    BrokerPlan, Desired, EventTypePlan, SchemaSource, SourcePlan, Target, TriggerKey,
    TriggerSpecPlan,
};
pub use refs::{join as join_ref_uri, RefMap};
pub use resource::Resource;
pub use secrets::check_secrets;
pub use validate::{build_desired, build_desired_lenient, validate_cluster_workload, Rejected};

use std::fmt;

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
