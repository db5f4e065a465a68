//! NatsSource: core NATS subjects or a JetStream consumer as events (`herald_sources::nats`,
//! cargo feature `nats`).

use std::sync::Arc;

use herald_crds::source::SourceSpec;
use herald_crds::{FieldError, NatsSourceSpec};

use super::{SourceKind, SourceRunner};

impl SourceKind for herald_crds::NatsSource {
    fn spec(&self) -> &dyn SourceSpec {
        &self.spec
    }

    fn plan(&self, namespace: &str, name: &str) -> Result<Arc<dyn SourceRunner>, FieldError> {
        super::not_built("NatsSource", cfg!(feature = "nats"), "nats")?;
        validate(&self.spec)?;
        Ok(Arc::new(Nats {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            spec: self.spec.clone(),
        }))
    }
}

#[cfg_attr(
    not(feature = "nats"),
    allow(dead_code, reason = "refused by validation in a build without NATS")
)]
struct Nats {
    namespace: String,
    name: String,
    spec: NatsSourceSpec,
}

#[cfg(feature = "nats")]
impl SourceRunner for Nats {
    fn start(&self, _: &super::SourceContext) -> Arc<dyn herald_sources::Source> {
        Arc::new(herald_sources::nats::NatsSource {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            spec: self.spec.clone(),
        })
    }
}

#[cfg(not(feature = "nats"))]
impl SourceRunner for Nats {
    fn start(&self, _: &super::SourceContext) -> Arc<dyn herald_sources::Source> {
        unreachable!("a NatsSource is refused by validation in a build without NATS")
    }
}

/// Checks a NatsSource's own fields.
fn validate(spec: &NatsSourceSpec) -> Result<(), FieldError> {
    if !["nats://", "tls://", "ws://", "wss://"]
        .iter()
        .any(|scheme| spec.url.starts_with(scheme))
    {
        return Err(FieldError::new(
            "spec.url",
            format!("{:?} is not a NATS URL (nats://host:port)", spec.url),
        ));
    }
    if spec.subjects.is_empty() {
        return Err(FieldError::new(
            "spec.subjects",
            "at least one subject is required",
        ));
    }
    for (i, subject) in spec.subjects.iter().enumerate() {
        if subject.is_empty() || subject.contains(char::is_whitespace) {
            return Err(FieldError::new(
                format!("spec.subjects[{i}]"),
                format!("{subject:?} is not a NATS subject"),
            ));
        }
    }
    if let Some(js) = &spec.jetstream {
        if js.stream.is_empty() {
            return Err(FieldError::new(
                "spec.jetstream.stream",
                "the stream name is required",
            ));
        }
    }
    Ok(())
}
