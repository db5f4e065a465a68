//! One implementation of [`SourceKind`] per kind of event source, each in its own file: the
//! kind's own checks, and what runs it. Validation (`config::validate`) calls
//! [`SourceKind::plan`] once; the runtime starts what the plan holds without parsing again.
//!
//! A new source kind is its CRD type (in `herald-crds`), a file here, and its line in the
//! registry of kinds (`config::resource`) with its [`crate::kinds::Kind`].

mod api_server;
mod container;
mod kafka;
mod nats;
mod ping;
mod sink_binding;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use herald_crds::source::SourceSpec;
use herald_crds::FieldError;
use herald_sources::webhook::WebhookRegistry;
use herald_sources::Source;

use crate::apiserver_source::KubeAccess;

/// A kind of source, implemented on its CRD type.
pub trait SourceKind {
    /// The fields every source shares (`sink`, `ceOverrides`).
    fn spec(&self) -> &dyn SourceSpec;

    /// Checks the kind's own fields (errors name the field) and keeps them, parsed, in what
    /// runs the source named `namespace/name`.
    fn plan(&self, namespace: &str, name: &str) -> Result<Arc<dyn SourceRunner>, FieldError>;
}

impl<T: SourceKind> SourceKind for Box<T> {
    fn spec(&self) -> &dyn SourceSpec {
        self.as_ref().spec()
    }

    fn plan(&self, namespace: &str, name: &str) -> Result<Arc<dyn SourceRunner>, FieldError> {
        self.as_ref().plan(namespace, name)
    }
}

/// Makes a checked source's running [`Source`], with what it needs from the rest of Herald.
pub trait SourceRunner: Send + Sync {
    fn start(&self, ctx: &SourceContext) -> Arc<dyn Source>;
}

/// What sources need from the rest of Herald.
#[derive(Clone)]
pub struct SourceContext {
    /// Webhook sources register here; the ingress listener serves them.
    pub webhooks: Arc<WebhookRegistry>,
    /// Knative's source delivery policy: retries after the first attempt...
    pub retries: u32,
    /// ...waiting `backoff·2^(k-1)` before retry k.
    pub backoff: Duration,
    /// The Kubernetes API, for ApiServerSources.
    pub kube: Arc<KubeAccess>,
    /// Where KafkaSources' Secrets are read: files and environment (serve), the API server
    /// (controller).
    #[cfg_attr(
        not(feature = "kafka"),
        allow(dead_code, reason = "only KafkaSource reads Secrets")
    )]
    pub secrets: Arc<dyn herald_sources::secrets::SecretReader>,
    /// The clients of sinks, per sink `CACerts` (HTTPS sinks).
    pub sink_clients: Arc<herald_tls::Clients>,
    /// Where ContainerSources' token files are written (`{data-dir}/oidc/sources`); `None`
    /// where no ContainerSource runs as a process.
    pub token_dir: Option<std::path::PathBuf>,
}

/// Refuses a source kind this build left out (`built` is false), naming the cargo feature.
#[cfg_attr(
    all(feature = "nats", feature = "kafka"),
    allow(dead_code, reason = "every source kind is built")
)]
fn not_built(kind: &str, built: bool, feature: &str) -> Result<(), FieldError> {
    if built {
        return Ok(());
    }
    Err(FieldError::new(
        "kind",
        format!("this herald is built without {kind}s (cargo feature `{feature}`)"),
    ))
}
