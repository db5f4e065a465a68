//! SinkBinding: it binds Kubernetes workloads, so only `herald controller` runs it (see
//! `controller::workloads`); `herald serve` refuses it with the way to do it locally.

use std::sync::Arc;

use herald_crds::source::SourceSpec;
use herald_crds::FieldError;

use super::{SourceKind, SourceRunner};

impl SourceKind for herald_crds::SinkBinding {
    fn spec(&self) -> &dyn SourceSpec {
        &self.spec
    }

    fn plan(&self, _: &str, _: &str) -> Result<Arc<dyn SourceRunner>, FieldError> {
        Err(FieldError::new(
            "kind",
            "a SinkBinding binds Kubernetes workloads: it runs under `herald controller`; for a local program use `herald run --sink broker:NAME -- PROGRAM`",
        ))
    }
}
