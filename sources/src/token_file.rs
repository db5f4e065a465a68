//! A ContainerSource's token file off the cluster. On Kubernetes, Knative mounts the source's
//! OIDC token at the fixed path `/oidc/token`; a child process of `herald serve` cannot be
//! given that path, so Herald writes the token under its data directory and names the file
//! in [`TOKEN_FILE_ENV`]. The file is replaced atomically (write a temporary file, rename)
//! whenever half of the token's remaining lifetime has passed, so a reader never sees a
//! partial token and always finds one that is still valid.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use tokio_util::sync::CancellationToken;

use crate::SinkClient;

/// The variable that names the token file.
pub const TOKEN_FILE_ENV: &str = "K_OIDC_TOKEN_FILE";
/// The shortest wait between two rewrites (also the wait after a failed one).
const MIN_REFRESH: Duration = Duration::from_secs(10);
/// A token whose expiry cannot be read is rewritten this often.
const UNKNOWN_EXPIRY_REFRESH: Duration = Duration::from_secs(60);

/// Writes `token` to `path` with mode 0600, replacing any earlier file atomically; the
/// directory is created (mode 0700) when missing.
pub async fn write(path: &Path, token: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    tokio::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .await?;
    let temporary = path.with_extension("tmp");
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .await?;
    tokio::io::AsyncWriteExt::write_all(&mut file, token.as_bytes()).await?;
    file.sync_all().await?;
    drop(file);
    tokio::fs::rename(&temporary, path).await
}

/// How long until `token` (a JWT) expires, from its `exp` claim; `None` when it has none
/// that can be read.
fn expires_in(token: &str) -> Option<Duration> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_i64()?;
    let now = chrono::Utc::now().timestamp();
    Some(Duration::from_secs(u64::try_from(exp - now).unwrap_or(0)))
}

/// When to rewrite a token that expires in `left`: after half of it, at least `MIN_REFRESH`.
fn refresh_after(token: &str) -> Duration {
    expires_in(token)
        .map_or(UNKNOWN_EXPIRY_REFRESH, |left| left / 2)
        .max(MIN_REFRESH)
}

/// The token file of a source: `{dir}/{namespace}/{name}/token`.
pub fn path_of(dir: &Path, namespace: &str, name: &str) -> PathBuf {
    dir.join(namespace).join(name).join("token")
}

/// Why a token file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error(transparent)]
    Token(#[from] crate::SinkError),
    #[error("cannot write the token file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Writes the sink's token to `path` once; returns it. `Ok(None)`: the sink gets no token.
pub async fn write_current(
    sink: &SinkClient,
    path: &Path,
) -> Result<Option<std::sync::Arc<str>>, TokenFileError> {
    let Some(token) = sink.bearer_token().await else {
        return Ok(None);
    };
    let token = token?;
    write(path, &token)
        .await
        .map_err(|source| TokenFileError::Write {
            path: path.to_owned(),
            source,
        })?;
    Ok(Some(token))
}

/// Keeps `path` holding a valid token until `shutdown`, then removes it.
pub async fn keep_fresh(
    sink: SinkClient,
    path: PathBuf,
    first: std::sync::Arc<str>,
    shutdown: CancellationToken,
) {
    let mut wait = refresh_after(&first);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => break,
        }
        wait = match write_current(&sink, &path).await {
            Ok(Some(token)) => refresh_after(&token),
            Ok(None) => UNKNOWN_EXPIRY_REFRESH,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot refresh the source's token file; retrying");
                MIN_REFRESH
            }
        };
    }
    let _ = tokio::fs::remove_file(&path).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn jwt(exp: i64) -> String {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.sig",
            engine.encode(r#"{"alg":"ES256"}"#),
            engine.encode(format!(r#"{{"exp":{exp}}}"#))
        )
    }

    #[test]
    fn refreshed_at_half_the_remaining_lifetime() {
        let now = chrono::Utc::now().timestamp();
        let wait = refresh_after(&jwt(now + 3600));
        assert!(
            wait <= Duration::from_secs(1800) && wait >= Duration::from_secs(1790),
            "{wait:?}"
        );
        assert_eq!(refresh_after(&jwt(now - 5)), MIN_REFRESH);
        assert_eq!(refresh_after("not-a-jwt"), UNKNOWN_EXPIRY_REFRESH);
    }

    #[tokio::test]
    async fn written_private_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_of(dir.path(), "ns", "src");
        write(&path, "one").await.unwrap();
        write(&path, "two").await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!path.with_extension("tmp").exists());
    }
}
