//! Herald's own signing keys: an ECDSA P-256 key (ES256) made on first start and kept in the
//! data directory, readable by its owner only, and the public keys (JWKS) that verify it.
//!
//! Rotation: move `signing-key.p8` to `previous-signing-key.p8` and restart. A new key is made;
//! the previous one's public key stays in the JWKS and is still accepted at ingress, so tokens
//! signed before the restart verify until they expire (one hour); then delete the file.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{DecodingKey, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

/// The directory under `--data-dir` that holds the keys.
pub const KEY_DIR: &str = "oidc";
pub const CURRENT_KEY_FILE: &str = "signing-key.p8";
pub const PREVIOUS_KEY_FILE: &str = "previous-signing-key.p8";
/// A PKCS#8 P-256 key is about 140 bytes; anything much larger is not one.
const MAX_KEY_FILE_BYTES: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is readable by others (mode {mode:o}); make it 0600")]
    Exposed { path: PathBuf, mode: u32 },
    #[error("{path} is not a PKCS#8 ECDSA P-256 key: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("the system's random number generator failed")]
    Random,
}

/// A public key as a JWK's fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    /// The RFC 7638 thumbprint, base64url.
    pub kid: String,
    /// The curve point's coordinates, base64url.
    pub x: String,
    pub y: String,
}

impl PublicKey {
    fn of(pair: &EcdsaKeyPair) -> Self {
        // An uncompressed P-256 point: 0x04, then 32 bytes of x and 32 of y.
        let point = pair.public_key().as_ref();
        let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
        let y = URL_SAFE_NO_PAD.encode(&point[33..65]);
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
        Self {
            kid: URL_SAFE_NO_PAD.encode(digest.as_ref()),
            x,
            y,
        }
    }

    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "EC", "crv": "P-256", "x": self.x, "y": self.y,
            "kid": self.kid, "use": "sig", "alg": "ES256",
        })
    }

    pub fn decoding_key(&self) -> Option<DecodingKey> {
        DecodingKey::from_ec_components(&self.x, &self.y).ok()
    }
}

/// The key tokens are signed with, and the previous one kept for verification.
pub struct KeyRing {
    pub signing: EncodingKey,
    pub current: PublicKey,
    pub previous: Option<PublicKey>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("current", &self.current.kid)
            .field("previous", &self.previous.as_ref().map(|k| &k.kid))
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// Reads the keys under `data_dir/oidc`, making the signing key on first start.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, KeyError> {
        let dir = data_dir.join(KEY_DIR);
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| KeyError::Io {
                path: dir.clone(),
                source,
            })?;
        let current_path = dir.join(CURRENT_KEY_FILE);
        let pkcs8 = match read_key(&current_path)? {
            Some(pkcs8) => pkcs8,
            None => create_key(&current_path)?,
        };
        let current = pair(&current_path, &pkcs8)?;
        let previous_path = dir.join(PREVIOUS_KEY_FILE);
        let previous = match read_key(&previous_path)? {
            Some(pkcs8) => Some(PublicKey::of(&pair(&previous_path, &pkcs8)?)),
            None => None,
        };
        Ok(Self {
            signing: EncodingKey::from_ec_der(&pkcs8),
            current: PublicKey::of(&current),
            previous,
        })
    }

    /// Every public key that verifies Herald's tokens, current first.
    pub fn public_keys(&self) -> impl Iterator<Item = &PublicKey> {
        std::iter::once(&self.current).chain(self.previous.as_ref())
    }

    /// The JWKS document served at the issuer's `jwks_uri`.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": self.public_keys().map(PublicKey::jwk).collect::<Vec<_>>() })
    }
}

fn pair(path: &Path, pkcs8: &[u8]) -> Result<EcdsaKeyPair, KeyError> {
    EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8,
        &SystemRandom::new(),
    )
    .map_err(|e| KeyError::Invalid {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// The key file's bytes, or `None` when there is none; refuses a file others can read.
fn read_key(path: &Path) -> Result<Option<Vec<u8>>, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io(error)),
    };
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Exposed {
            path: path.to_owned(),
            mode,
        });
    }
    if metadata.len() > MAX_KEY_FILE_BYTES {
        return Err(KeyError::Invalid {
            path: path.to_owned(),
            reason: format!("larger than {MAX_KEY_FILE_BYTES} bytes"),
        });
    }
    fs::read(path).map(Some).map_err(io)
}

/// Makes a key and writes it with mode 0600 (to a temporary file renamed into place, so a
/// crash leaves no half key).
fn create_key(path: &Path) -> Result<Vec<u8>, KeyError> {
    let document =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map_err(|_| KeyError::Random)?;
    let temporary = path.with_extension("tmp");
    let io = |source| KeyError::Io {
        path: temporary.clone(),
        source,
    };
    let _ = fs::remove_file(&temporary);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(io)?;
    file.write_all(document.as_ref()).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&temporary, path).map_err(io)?;
    tracing::info!(path = %path.display(), "made the OIDC signing key");
    Ok(document.as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_with_mode_0600_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = KeyRing::load_or_create(dir.path()).unwrap();
        let path = dir.path().join(KEY_DIR).join(CURRENT_KEY_FILE);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = KeyRing::load_or_create(dir.path()).unwrap();
        assert_eq!(first.current, again.current);
        assert_eq!(first.jwks()["keys"].as_array().unwrap().len(), 1);

        // Rotation: the previous key stays in the JWKS.
        fs::rename(&path, dir.path().join(KEY_DIR).join(PREVIOUS_KEY_FILE)).unwrap();
        let rotated = KeyRing::load_or_create(dir.path()).unwrap();
        assert_ne!(rotated.current, first.current);
        assert_eq!(rotated.previous.as_ref(), Some(&first.current));
        assert_eq!(rotated.jwks()["keys"].as_array().unwrap().len(), 2);

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            KeyRing::load_or_create(dir.path()),
            Err(KeyError::Exposed { .. })
        ));
    }
}
