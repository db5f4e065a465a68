//! HTTP clients per trust set: the roots of [`TrustBundles`] plus a destination's
//! `CACerts`. Built on first use, cached (bounded), rebuilt when the bundles change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustls::RootCertStore;

use crate::{CaCerts, TlsError, TrustBundles};

/// Most clients kept for distinct `CACerts`; when full the cache starts again (destinations
/// with their own CA are few).
pub const MAX_CLIENTS: usize = 64;

/// Shapes every client (timeouts, pool, redirects): the caller's settings.
pub type Configure = dyn Fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder + Send + Sync;

/// The clients of one component (deliveries, source sinks).
pub struct Clients {
    trust: Arc<TrustBundles>,
    configure: Box<Configure>,
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    generation: u64,
    plain: Option<reqwest::Client>,
    with_ca: HashMap<CaCerts, reqwest::Client>,
}

impl Clients {
    pub fn new(trust: Arc<TrustBundles>, configure: Box<Configure>) -> Self {
        Self {
            trust,
            configure,
            cache: Mutex::default(),
        }
    }

    /// The client for a destination with `ca_certs` (or without).
    pub fn get(&self, ca_certs: Option<&CaCerts>) -> Result<reqwest::Client, TlsError> {
        let generation = self.trust.generation();
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if cache.generation != generation {
            *cache = Cache {
                generation,
                ..Cache::default()
            };
        }
        let cached = match ca_certs {
            None => cache.plain.as_ref(),
            Some(ca) => cache.with_ca.get(ca),
        };
        if let Some(client) = cached {
            return Ok(client.clone());
        }
        // Built under the lock: rare, and two deliveries must not build the same client.
        let (_, roots) = self.trust.roots();
        let client = self.build(&roots, ca_certs)?;
        match ca_certs {
            None => cache.plain = Some(client.clone()),
            Some(ca) => {
                if cache.with_ca.len() >= MAX_CLIENTS {
                    cache.with_ca.clear();
                }
                cache.with_ca.insert(ca.clone(), client.clone());
            }
        }
        Ok(client)
    }

    fn build(
        &self,
        roots: &RootCertStore,
        ca_certs: Option<&CaCerts>,
    ) -> Result<reqwest::Client, TlsError> {
        let mut roots = roots.clone();
        if let Some(ca) = ca_certs {
            for cert in ca.certificates()? {
                roots.add(cert).map_err(|error| TlsError::Invalid {
                    what: "CACerts".into(),
                    message: error.to_string(),
                })?;
            }
        }
        let config = rustls::ClientConfig::builder_with_provider(crate::provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|error| TlsError::Invalid {
                what: "TLS versions".into(),
                message: error.to_string(),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let builder = reqwest::Client::builder().use_preconfigured_tls(config);
        Ok((self.configure)(builder).build()?)
    }
}
