//! Desired states from YAML for unit tests of the control plane's modules (config, policy,
//! runtime), kept here so that no module needs the runtime for them.
#![allow(
    clippy::unwrap_used,
    reason = "test support: a failed step is a failed test"
)]

use super::{build_desired, parse_documents, Desired, RefMap};

/// The desired state of a YAML text (which must be valid).
pub fn desired(yaml: &str) -> Desired {
    build_desired(
        parse_documents("test.yaml", yaml).unwrap(),
        &RefMap::default(),
    )
    .unwrap()
}

pub const BROKER: &str = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b}\n";

/// A trigger `name` of broker `b` with the given `spec` fields after `broker: b`.
pub fn trigger(name: &str, spec: &str) -> String {
    format!("---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: {name}}}\nspec: {{broker: b, {spec}}}\n")
}
