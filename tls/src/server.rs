//! The certificate an HTTPS listener serves, swapped atomically when its files change.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::pem::{certificates, private_key, read_file};
use crate::TlsError;

/// The lowest TLS version the listeners accept (Knative's default: 1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MinVersion {
    Tls12,
    #[default]
    Tls13,
}

/// A listener's certificate chain and key from PEM files, and the TLS acceptor serving them.
pub struct ServerTls {
    cert: PathBuf,
    key: PathBuf,
    resolver: Arc<Resolver>,
    acceptor: TlsAcceptor,
    /// The bytes of the files last tried (loaded or refused), so that a change is tried once.
    last_tried: Mutex<(Vec<u8>, Vec<u8>)>,
}

/// What [`ServerTls::reload`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reload {
    Unchanged,
    Loaded,
}

impl ServerTls {
    /// Loads the chain (`cert`, leaf first) and its `key`; every error is fatal here, unlike
    /// in [`ServerTls::reload`].
    pub fn load(cert: &Path, key: &Path, min: MinVersion) -> Result<Self, TlsError> {
        let (cert_pem, key_pem) = (read_file(cert)?, read_file(key)?);
        let certified = certified_key(cert, &cert_pem, key, &key_pem)?;
        let resolver = Arc::new(Resolver {
            current: RwLock::new(Arc::new(certified)),
        });
        let versions: &[&rustls::SupportedProtocolVersion] = match min {
            MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            MinVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let mut config = ServerConfig::builder_with_provider(crate::provider())
            .with_protocol_versions(versions)
            .map_err(|error| TlsError::Invalid {
                what: "TLS versions".into(),
                message: error.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        // Herald's listeners speak HTTP/1.1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            resolver,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            last_tried: Mutex::new((cert_pem, key_pem)),
        })
    }

    /// The acceptor of every listener serving this certificate.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// Reads the files again; when they changed and hold a valid chain with its key, new
    /// handshakes get the new certificate. A bad or half-written pair is an error, the old
    /// certificate stays, and the same bytes are not tried again.
    pub fn reload(&self) -> Result<Reload, TlsError> {
        let (cert_pem, key_pem) = (read_file(&self.cert)?, read_file(&self.key)?);
        {
            let mut last = self
                .last_tried
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if last.0 == cert_pem && last.1 == key_pem {
                return Ok(Reload::Unchanged);
            }
            *last = (cert_pem.clone(), key_pem.clone());
        }
        let certified = certified_key(&self.cert, &cert_pem, &self.key, &key_pem)?;
        *self
            .resolver
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(certified);
        Ok(Reload::Loaded)
    }

    /// Where the chain is read from, for logs.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }
}

/// The chain and its key, checked to belong together.
fn certified_key(
    cert: &Path,
    cert_pem: &[u8],
    key: &Path,
    key_pem: &[u8],
) -> Result<CertifiedKey, TlsError> {
    let chain = certificates(cert_pem, &cert.display().to_string())?;
    let key_der = private_key(key_pem, &key.display().to_string())?;
    CertifiedKey::from_der(chain, key_der, &crate::provider()).map_err(|error| TlsError::Invalid {
        what: format!("{} with {}", cert.display(), key.display()),
        message: error.to_string(),
    })
}

/// Hands every handshake the current certificate.
#[derive(Debug)]
struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone(),
        )
    }
}
