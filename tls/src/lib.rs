//! Transport encryption for Herald (Knative's `transport-encryption`): HTTPS listeners whose
//! certificate is reloaded from its files without a restart ([`server`]), and HTTP clients
//! that verify HTTPS destinations against the system roots, configured trust bundles and a
//! destination's `CACerts` ([`trust`], [`clients`]).
#![forbid(unsafe_code)]

pub mod clients;
mod error;
pub mod pem;
pub mod reload;
pub mod server;
pub mod trust;

pub use clients::Clients;
pub use error::TlsError;
pub use pem::CaCerts;
pub use server::{MinVersion, ServerTls};
pub use tokio_rustls::TlsAcceptor;
pub use trust::TrustBundles;

use std::sync::Arc;

/// The one crypto provider of Herald's TLS: ring, as the rest of the tree uses.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
