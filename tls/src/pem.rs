//! Reading PEM certificates and keys, bounded.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::TlsError;

/// The largest PEM file or `CACerts` value read (1 MiB: a few thousand certificates, far
/// more than any chain or bundle).
pub const MAX_PEM_BYTES: usize = 1 << 20;

/// A file's bytes, refusing one larger than [`MAX_PEM_BYTES`] without reading it all.
pub fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    let read_error = |source| TlsError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() > MAX_PEM_BYTES {
        return Err(TlsError::TooLarge {
            what: path.display().to_string(),
            max: MAX_PEM_BYTES,
        });
    }
    Ok(bytes)
}

/// Every certificate of a PEM text (other sections are skipped); at least one.
pub fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem {
            what: what.to_owned(),
            message: error.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what: what.to_owned(),
        });
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) of a PEM text.
pub fn private_key(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            what: what.to_owned(),
        },
        other => TlsError::Pem {
            what: what.to_owned(),
            message: other.to_string(),
        },
    })
}

/// A destination's `CACerts` (Knative's field): PEM CA certificates, checked when the
/// resource is loaded so that a bad value is a load error, not a failed delivery.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CaCerts(Arc<str>);

impl CaCerts {
    /// Checks that `pem` holds at least one certificate usable as a trust anchor.
    pub fn parse(pem: &str) -> Result<Self, TlsError> {
        let what = "CACerts";
        if pem.len() > MAX_PEM_BYTES {
            return Err(TlsError::TooLarge {
                what: what.to_owned(),
                max: MAX_PEM_BYTES,
            });
        }
        let mut roots = rustls::RootCertStore::empty();
        for cert in certificates(pem.as_bytes(), what)? {
            roots.add(cert).map_err(|error| TlsError::Invalid {
                what: what.to_owned(),
                message: format!("not a usable CA certificate: {error}"),
            })?;
        }
        Ok(Self(pem.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The certificates (parsed when a client is built, rarely).
    pub(crate) fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        certificates(self.0.as_bytes(), "CACerts")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cacerts_without_a_certificate_are_refused() {
        let error = CaCerts::parse("hello").unwrap_err();
        assert!(matches!(error, TlsError::NoCertificate { .. }), "{error}");
    }

    #[test]
    fn cacerts_with_a_broken_certificate_are_refused() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let error = CaCerts::parse(pem).unwrap_err();
        assert!(error.to_string().starts_with("CACerts"), "{error}");
    }

    #[test]
    fn a_key_file_without_a_key_says_so() {
        let error = private_key(b"nothing", "key.pem").unwrap_err();
        assert_eq!(error.to_string(), "key.pem: no PEM private key in it");
    }

    #[test]
    fn an_oversized_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.pem");
        std::fs::write(&path, vec![b'a'; MAX_PEM_BYTES + 1]).unwrap();
        assert!(matches!(read_file(&path), Err(TlsError::TooLarge { .. })));
    }
}
