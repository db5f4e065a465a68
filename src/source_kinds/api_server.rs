//! ApiServerSource: changes of Kubernetes objects as events (`crate::apiserver_source`).

use std::sync::Arc;

use herald_crds::source::SourceSpec;
use herald_crds::{ApiServerSourceSpec, FieldError};
use herald_sources::Source;

use super::{SourceContext, SourceKind, SourceRunner};
use crate::apiserver_source::ApiServerSource;

impl SourceKind for herald_crds::ApiServerSource {
    fn spec(&self) -> &dyn SourceSpec {
        &self.spec
    }

    fn plan(&self, namespace: &str, name: &str) -> Result<Arc<dyn SourceRunner>, FieldError> {
        let filter = crate::apiserver_source::validate(&self.spec)?;
        Ok(Arc::new(ApiServer {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            spec: self.spec.clone(),
            filter,
        }))
    }
}

struct ApiServer {
    namespace: String,
    name: String,
    spec: ApiServerSourceSpec,
    /// `spec.filters`, compiled.
    filter: herald_triggers::Filter,
}

impl SourceRunner for ApiServer {
    fn start(&self, ctx: &SourceContext) -> Arc<dyn Source> {
        Arc::new(ApiServerSource {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            filter: self.filter.clone(),
            spec: self.spec.clone(),
            kube: ctx.kube.clone(),
        })
    }
}
