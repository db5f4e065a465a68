//! KafkaSource: Kafka topics as events, Knative's record mapping (`herald_sources::kafka`,
//! cargo feature `kafka`).

use std::sync::Arc;

use herald_crds::source::SourceSpec;
use herald_crds::{FieldError, KafkaSourceSpec};

use super::{SourceKind, SourceRunner};

impl SourceKind for herald_crds::KafkaSource {
    fn spec(&self) -> &dyn SourceSpec {
        &self.spec
    }

    fn plan(&self, namespace: &str, name: &str) -> Result<Arc<dyn SourceRunner>, FieldError> {
        #[cfg(feature = "kafka")]
        herald_sources::kafka::validate(&self.spec)?;
        #[cfg(not(feature = "kafka"))]
        super::not_built("KafkaSource", false, "kafka")?;
        Ok(Arc::new(Kafka {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            spec: self.spec.clone(),
        }))
    }
}

#[cfg_attr(
    not(feature = "kafka"),
    allow(dead_code, reason = "refused by validation in a build without Kafka")
)]
struct Kafka {
    namespace: String,
    name: String,
    spec: KafkaSourceSpec,
}

#[cfg(feature = "kafka")]
impl SourceRunner for Kafka {
    fn start(&self, ctx: &super::SourceContext) -> Arc<dyn herald_sources::Source> {
        Arc::new(herald_sources::kafka::KafkaSource {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            spec: self.spec.clone(),
            secrets: ctx.secrets.clone(),
        })
    }
}

#[cfg(not(feature = "kafka"))]
impl SourceRunner for Kafka {
    fn start(&self, _: &super::SourceContext) -> Arc<dyn herald_sources::Source> {
        unreachable!("a KafkaSource is refused by validation in a build without Kafka")
    }
}
