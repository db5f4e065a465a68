//! What the `--tls-*` flags make: the listeners' certificate (reloaded), the trust bundles
//! every outgoing client starts from (reloaded), and the CA bundle advertised with https
//! addresses.

use std::sync::Arc;

use anyhow::Context;
use herald_tls::{MinVersion, ServerTls, TrustBundles};
use tokio_util::sync::CancellationToken;

use crate::cli::{TlsArgs, TlsVersion};

pub struct Tls {
    /// The HTTPS listeners' certificate, with `--tls-cert`.
    pub server: Option<Arc<ServerTls>>,
    pub trust: Arc<TrustBundles>,
    /// `--tls-ca-certs`, checked.
    pub ca_certs: Option<String>,
    pub tls_only: bool,
    pub admin_tls: bool,
    interval: std::time::Duration,
}

impl Tls {
    /// Reads every file the flags name; any error stops the start.
    pub fn open(args: &TlsArgs) -> anyhow::Result<Self> {
        let server = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => {
                let min = match args.tls_min_version {
                    TlsVersion::Tls12 => MinVersion::Tls12,
                    TlsVersion::Tls13 => MinVersion::Tls13,
                };
                Some(Arc::new(
                    ServerTls::load(cert, key, min).context("--tls-cert/--tls-key")?,
                ))
            }
            _ => None,
        };
        let trust = Arc::new(
            TrustBundles::load(args.tls_trust_bundles.clone()).context("--tls-trust-bundle")?,
        );
        let ca_certs = match &args.tls_ca_certs {
            None => None,
            Some(path) => {
                let pem = herald_tls::pem::read_file(path).context("--tls-ca-certs")?;
                let pem = String::from_utf8(pem)
                    .with_context(|| format!("--tls-ca-certs: {} is not text", path.display()))?;
                herald_tls::CaCerts::parse(&pem)
                    .with_context(|| format!("--tls-ca-certs {}", path.display()))?;
                Some(pem)
            }
        };
        Ok(Self {
            server,
            trust,
            ca_certs,
            tls_only: args.tls_only,
            admin_tls: args.admin_tls,
            interval: args.tls_reload_interval,
        })
    }

    /// Reads the certificate and trust bundles every `--tls-reload-interval` until `stop`.
    pub fn watch(&self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(herald_tls::reload::watch(
            self.server.clone(),
            self.trust.clone(),
            self.interval,
            stop,
        ))
    }
}
