//! Event sources: each source turns something outside Herald into CloudEvents and sends them
//! to its sink (a broker's address or any URL) with Knative's source retry policy.
//!
//! Every source implements [`Source`] in a module of its own; what they share (overrides,
//! `id`/`time` defaults, retries) lives in [`sink`].
#![forbid(unsafe_code)]

pub mod container;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod kafka_net;
#[cfg(feature = "nats")]
pub mod nats;
pub mod ping;
pub mod secrets;
pub mod sink;
pub mod token_file;
pub mod webhook;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

pub use sink::{SinkClient, SinkError, SinkToken};

/// A running source: it sends events to `sink` until `shutdown` is cancelled.
#[async_trait]
pub trait Source: Send + Sync {
    /// `Kind namespace/name`, for logs.
    fn describe(&self) -> String;

    async fn run(&self, sink: SinkClient, shutdown: CancellationToken) -> Result<(), SourceError>;
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("the source's input failed: {0}")]
    Input(String),
    /// The source may not read what it is asked to (Knative's `SufficientPermissions`).
    #[error("insufficient permissions: {0}")]
    Forbidden(String),
    /// A Secret the source needs is missing or unusable (KafkaSource `spec.net`); the
    /// message names the field, the Secret and the key, never a value.
    #[error("{0}")]
    Secret(String),
}

/// The condition reason of a source that may not read what it is asked to.
pub const INSUFFICIENT_PERMISSION: &str = "InsufficientPermission";
/// The condition reason of a source whose Secrets cannot be read.
pub const SECRET_UNAVAILABLE: &str = "SecretUnavailable";

impl SourceError {
    /// The `reason` of the source's `Ready=False` condition while this error lasts.
    pub fn reason(&self) -> &'static str {
        match self {
            SourceError::Forbidden(_) => INSUFFICIENT_PERMISSION,
            SourceError::Secret(_) => SECRET_UNAVAILABLE,
            SourceError::Connect(_) | SourceError::Input(_) => "Failing",
        }
    }
}
