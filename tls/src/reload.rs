//! Polling TLS files for changes: a certificate rotated on disk (cert-manager, a renewed
//! Let's Encrypt certificate, a mounted Secret) is served without a restart.
//!
//! Polling rather than inotify: mounted Secrets change through symlink swaps that watchers
//! miss or report oddly, and reading two small files every few seconds costs nothing.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::server::Reload;
use crate::{ServerTls, TrustBundles};

/// How often the files are read by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// Reads the listener certificate and the trust bundles every `interval` until `stop`,
/// logging each change and each refused file (the old material stays in use).
pub async fn watch(
    server: Option<Arc<ServerTls>>,
    trust: Arc<TrustBundles>,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => return,
        }
        let (server, trust) = (server.clone(), trust.clone());
        // File reads block; off the runtime's workers.
        let polled = tokio::task::spawn_blocking(move || {
            if let Some(server) = server {
                match server.reload() {
                    Ok(Reload::Loaded) => tracing::info!(
                        cert = %server.cert_path().display(),
                        "TLS certificate reloaded"
                    ),
                    Ok(Reload::Unchanged) => {}
                    Err(error) => tracing::error!(
                        %error,
                        "TLS certificate not reloaded: the previous one is still served"
                    ),
                }
            }
            match trust.reload() {
                Ok(true) => tracing::info!("TLS trust bundles reloaded"),
                Ok(false) => {}
                Err(error) => tracing::error!(
                    %error,
                    "TLS trust bundles not reloaded: the previous ones are still trusted"
                ),
            }
        })
        .await;
        if let Err(error) = polled {
            tracing::error!(%error, "reading the TLS files failed");
        }
    }
}
