//! PingSource: events on a cron schedule (`herald_sources::ping`).

use std::sync::Arc;

use herald_crds::source::SourceSpec;
use herald_crds::FieldError;
use herald_sources::ping::PingSource;
use herald_sources::Source;

use super::{SourceContext, SourceKind, SourceRunner};

impl SourceKind for herald_crds::PingSource {
    fn spec(&self) -> &dyn SourceSpec {
        &self.spec
    }

    fn plan(&self, namespace: &str, name: &str) -> Result<Arc<dyn SourceRunner>, FieldError> {
        Ok(Arc::new(PingSource::new(namespace, name, &self.spec)?))
    }
}

impl SourceRunner for PingSource {
    fn start(&self, _: &SourceContext) -> Arc<dyn Source> {
        Arc::new(self.clone())
    }
}
