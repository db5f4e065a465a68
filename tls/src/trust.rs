//! What Herald's clients trust: the system roots and Mozilla's, plus trust bundles from
//! files and folders (Knative's `/knative-custom-certs` and labelled ConfigMaps), reloaded.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustls::RootCertStore;

use crate::pem::{certificates, read_file};
use crate::TlsError;

/// Most files read from one trust-bundle folder (sorted by name; the rest are ignored and
/// logged).
pub const MAX_FILES_PER_FOLDER: usize = 256;

/// The roots every HTTPS client starts from.
pub struct TrustBundles {
    paths: Vec<PathBuf>,
    /// System and Mozilla roots, read once per process.
    base: &'static RootCertStore,
    state: Mutex<State>,
    /// Bumped on each change, so that cached clients are rebuilt.
    generation: AtomicU64,
}

struct State {
    /// The bytes of every bundle file last tried.
    read: Vec<(PathBuf, Vec<u8>)>,
    roots: Arc<RootCertStore>,
}

impl TrustBundles {
    /// The system and Mozilla roots plus every bundle in `paths` (PEM files, or folders of
    /// them); a bad bundle is an error here.
    pub fn load(paths: Vec<PathBuf>) -> Result<Self, TlsError> {
        let base = system_roots();
        let read = read_all(&paths)?;
        let roots = Arc::new(with_bundles(base, &read)?);
        Ok(Self {
            paths,
            base,
            state: Mutex::new(State { read, roots }),
            generation: AtomicU64::new(0),
        })
    }

    /// Reads the bundles again; `true` when they changed and were taken. On an error the
    /// previous roots stay.
    pub fn reload(&self) -> Result<bool, TlsError> {
        if self.paths.is_empty() {
            return Ok(false);
        }
        let read = read_all(&self.paths)?;
        let mut state = self.state();
        if state.read == read {
            return Ok(false);
        }
        let roots = with_bundles(self.base, &read);
        state.read = read;
        state.roots = Arc::new(roots?);
        drop(state);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(true)
    }

    /// The roots now, and the generation they belong to.
    pub fn roots(&self) -> (u64, Arc<RootCertStore>) {
        let state = self.state();
        (self.generation.load(Ordering::Acquire), state.roots.clone())
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The system's trust store and Mozilla's roots (those Herald's clients used before), read
/// once.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: std::sync::OnceLock<RootCertStore> = std::sync::OnceLock::new();
    ROOTS.get_or_init(read_system_roots)
}

fn read_system_roots() -> RootCertStore {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let native = rustls_native_certs::load_native_certs();
    if let Some(error) = native.errors.first() {
        tracing::debug!(%error, "some system certificates could not be read");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, ignored, "system trust roots");
    roots
}

fn with_bundles(
    base: &RootCertStore,
    read: &[(PathBuf, Vec<u8>)],
) -> Result<RootCertStore, TlsError> {
    let mut roots = base.clone();
    for (path, pem) in read {
        let what = path.display().to_string();
        for cert in certificates(pem, &what)? {
            roots.add(cert).map_err(|error| TlsError::Invalid {
                what: what.clone(),
                message: format!("not a usable CA certificate: {error}"),
            })?;
        }
    }
    Ok(roots)
}

/// Every bundle file of `paths` with its bytes: a file as is, a folder's regular files
/// (not hidden: a mounted Secret's `..data` links) sorted by name.
fn read_all(paths: &[PathBuf]) -> Result<Vec<(PathBuf, Vec<u8>)>, TlsError> {
    let mut read = Vec::new();
    for path in paths {
        let is_dir = std::fs::metadata(path)
            .map_err(|source| TlsError::Read {
                path: path.clone(),
                source,
            })?
            .is_dir();
        if !is_dir {
            read.push((path.clone(), read_file(path)?));
            continue;
        }
        for file in folder_files(path)? {
            let bytes = read_file(&file)?;
            read.push((file, bytes));
        }
    }
    Ok(read)
}

fn folder_files(dir: &Path) -> Result<Vec<PathBuf>, TlsError> {
    let read_error = |source| TlsError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        // Follows symlinks: a mounted Secret's keys are links into `..data`.
        if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            files.push(path);
        }
    }
    files.sort();
    if files.len() > MAX_FILES_PER_FOLDER {
        tracing::warn!(
            folder = %dir.display(),
            files = files.len(),
            read = MAX_FILES_PER_FOLDER,
            "too many files in a trust-bundle folder: the first ones by name are read"
        );
        files.truncate(MAX_FILES_PER_FOLDER);
    }
    Ok(files)
}
