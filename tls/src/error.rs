use std::path::PathBuf;

/// Why TLS material could not be used. A reload that fails keeps what was loaded before.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} is larger than {max} bytes")]
    TooLarge { what: String, max: usize },
    #[error("{what}: not valid PEM: {message}")]
    Pem { what: String, message: String },
    #[error("{what}: no PEM certificate in it")]
    NoCertificate { what: String },
    #[error("{what}: no PEM private key in it")]
    NoKey { what: String },
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}
