//! ContainerSource under `herald serve`: its container's command as a child process
//! (`herald_sources::container`). Under `herald controller` it is a Deployment instead.

use std::sync::Arc;

use herald_crds::source::SourceSpec;
use herald_crds::FieldError;
use herald_sources::container::ContainerSource;
use herald_sources::Source;

use super::{SourceContext, SourceKind, SourceRunner};

impl SourceKind for herald_crds::ContainerSource {
    fn spec(&self) -> &dyn SourceSpec {
        &self.spec
    }

    fn plan(&self, namespace: &str, name: &str) -> Result<Arc<dyn SourceRunner>, FieldError> {
        Ok(Arc::new(ContainerSource::new(namespace, name, &self.spec)?))
    }
}

impl SourceRunner for ContainerSource {
    fn start(&self, ctx: &SourceContext) -> Arc<dyn Source> {
        match &ctx.token_dir {
            Some(dir) => Arc::new(self.clone().with_token_dir(dir.clone())),
            None => Arc::new(self.clone()),
        }
    }
}
