//! Values of Kubernetes Secrets that a source needs (KafkaSource `spec.net`). Where they come
//! from depends on where Herald runs: [`LocalSecrets`] reads files and environment variables
//! under `herald serve`; `herald controller` reads Secrets through the API server. Values are
//! handed to the client library only: never logged, never part of an error message.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

/// At most this many bytes per value: Kubernetes' limit of a whole Secret (1 MiB).
pub const MAX_SECRET_VALUE_BYTES: usize = 1024 * 1024;

/// The environment variable prefix of [`LocalSecrets`].
pub const ENV_PREFIX: &str = "HERALD_SECRET_";

/// One key of one Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretKeyRef {
    pub namespace: String,
    pub name: String,
    pub key: String,
}

impl fmt::Display for SecretKeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "key {:?} of Secret {}/{}",
            self.key, self.namespace, self.name
        )
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    /// The Secret or its key does not exist; `looked` says where it was looked for.
    #[error("{what} does not exist ({looked})")]
    NotFound { what: String, looked: String },
    /// It exists but cannot be read (permissions, size, I/O).
    #[error("{what} cannot be read: {why}")]
    Unreadable { what: String, why: String },
}

/// Reads the value of a Secret's key.
#[async_trait]
pub trait SecretReader: Send + Sync {
    async fn read(&self, reference: &SecretKeyRef) -> Result<Vec<u8>, SecretError>;
}

/// Secrets off the cluster: the file `DIR/<namespace>/<secret>/<key>` under `--secrets-dir`
/// (the layout of a mounted Secret, one folder per namespace), else the environment variable
/// `HERALD_SECRET_<NAMESPACE>_<SECRET>_<KEY>` ([`LocalSecrets::variable`]).
#[derive(Debug, Clone, Default)]
pub struct LocalSecrets {
    dir: Option<PathBuf>,
}

impl LocalSecrets {
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir }
    }

    /// The variable of a key: upper-cased, every character but letters and digits as `_`.
    pub fn variable(reference: &SecretKeyRef) -> String {
        let part = |text: &str| -> String {
            text.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        format!(
            "{ENV_PREFIX}{}_{}_{}",
            part(&reference.namespace),
            part(&reference.name),
            part(&reference.key)
        )
    }

    fn file(&self, reference: &SecretKeyRef) -> Option<PathBuf> {
        // The parts were checked to be names (no `/`, never `.` or `..`) when the resource
        // loaded; checked again here so that no reference can leave the folder.
        let safe =
            |part: &str| !part.is_empty() && !part.contains('/') && part != "." && part != "..";
        if !(safe(&reference.namespace) && safe(&reference.name) && safe(&reference.key)) {
            return None;
        }
        self.dir.as_ref().map(|dir| {
            dir.join(&reference.namespace)
                .join(&reference.name)
                .join(&reference.key)
        })
    }
}

#[async_trait]
impl SecretReader for LocalSecrets {
    async fn read(&self, reference: &SecretKeyRef) -> Result<Vec<u8>, SecretError> {
        let what = reference.to_string();
        if let Some(path) = self.file(reference) {
            match read_bounded(&path) {
                Ok(value) => return Ok(value),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(SecretError::Unreadable {
                        what,
                        why: format!("{}: {error}", path.display()),
                    })
                }
            }
        }
        let variable = Self::variable(reference);
        if let Some(value) = std::env::var_os(&variable) {
            let value = value.into_encoded_bytes();
            if value.len() > MAX_SECRET_VALUE_BYTES {
                return Err(SecretError::Unreadable {
                    what,
                    why: format!("${variable} is longer than {MAX_SECRET_VALUE_BYTES} bytes"),
                });
            }
            return Ok(value);
        }
        let looked = match self.file(reference) {
            Some(path) => format!("no file {} and no variable ${variable}", path.display()),
            None => format!("no --secrets-dir and no variable ${variable}"),
        };
        Err(SecretError::NotFound { what, looked })
    }
}

/// A file's bytes, refused when longer than [`MAX_SECRET_VALUE_BYTES`].
fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut value = Vec::new();
    file.take(MAX_SECRET_VALUE_BYTES as u64 + 1)
        .read_to_end(&mut value)?;
    if value.len() > MAX_SECRET_VALUE_BYTES {
        return Err(std::io::Error::other(format!(
            "longer than {MAX_SECRET_VALUE_BYTES} bytes"
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(key: &str) -> SecretKeyRef {
        SecretKeyRef {
            namespace: "team-a".into(),
            name: "kafka.auth".into(),
            key: key.into(),
        }
    }

    #[tokio::test]
    async fn files_first_then_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("team-a/kafka.auth");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("user"), "from-file").unwrap();
        let secrets = LocalSecrets::new(Some(dir.path().to_owned()));
        assert_eq!(
            secrets.read(&reference("user")).await.unwrap(),
            b"from-file"
        );
        let variable = LocalSecrets::variable(&reference("sasl_password.txt"));
        assert_eq!(
            variable,
            "HERALD_SECRET_TEAM_A_KAFKA_AUTH_SASL_PASSWORD_TXT"
        );
        #[allow(
            clippy::disallowed_methods,
            reason = "a variable only this test reads; the environment is the behaviour under test"
        )]
        std::env::set_var(&variable, "from-env");
        assert_eq!(
            secrets.read(&reference("sasl_password.txt")).await.unwrap(),
            b"from-env"
        );
        let missing = secrets.read(&reference("other")).await.unwrap_err();
        let text = missing.to_string();
        assert!(
            text.contains("key \"other\" of Secret team-a/kafka.auth does not exist")
                && text.contains("team-a/kafka.auth/other")
                && text.contains("$HERALD_SECRET_TEAM_A_KAFKA_AUTH_OTHER"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn no_reference_leaves_the_folder_and_values_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = LocalSecrets::new(Some(dir.path().join("secrets")));
        std::fs::write(dir.path().join("outside"), "x").unwrap();
        let escape = SecretKeyRef {
            namespace: "..".into(),
            name: "secrets".into(),
            key: "outside".into(),
        };
        assert!(matches!(
            secrets.read(&escape).await,
            Err(SecretError::NotFound { .. })
        ));
        let folder = dir.path().join("secrets/team-a/kafka.auth");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("big"), vec![b'a'; MAX_SECRET_VALUE_BYTES + 1]).unwrap();
        let error = secrets.read(&reference("big")).await.unwrap_err();
        assert!(matches!(error, SecretError::Unreadable { .. }), "{error}");
    }
}
