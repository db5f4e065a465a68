//! WebhookSource: HTTP requests on the ingress listener as events (`herald_sources::webhook`).

use std::sync::Arc;

use herald_crds::source::SourceSpec;
use herald_crds::{FieldError, WebhookSourceSpec};
use herald_sources::webhook::WebhookSource;
use herald_sources::Source;

use super::{SourceContext, SourceKind, SourceRunner};

impl SourceKind for herald_crds::WebhookSource {
    fn spec(&self) -> &dyn SourceSpec {
        &self.spec
    }

    fn plan(&self, namespace: &str, name: &str) -> Result<Arc<dyn SourceRunner>, FieldError> {
        herald_sources::webhook::validate(&self.spec)?;
        Ok(Arc::new(Webhook {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            spec: self.spec.clone(),
        }))
    }
}

struct Webhook {
    namespace: String,
    name: String,
    spec: WebhookSourceSpec,
}

impl SourceRunner for Webhook {
    fn start(&self, ctx: &SourceContext) -> Arc<dyn Source> {
        Arc::new(WebhookSource {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            spec: self.spec.clone(),
            registry: ctx.webhooks.clone(),
        })
    }
}
