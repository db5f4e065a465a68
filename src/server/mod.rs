//! Herald's HTTP/1.1 listeners: a bounded number of connections per listener, header-read and
//! idle timeouts per connection, and a shutdown that closes idle connections at once.
//!
//! Written on hyper instead of `axum::serve`, which has neither a connection limit nor
//! timeouts: half a request head would hold a connection, and shutdown, forever.

mod connection;
mod open_files;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use connection::Timeouts;
pub use open_files::{raise_soft_limit, OpenFiles};

/// Connections the admin listener takes beyond its limit, for `/healthz` and `/readyz` only,
/// so probes still answer while it is full.
pub const PROBE_RESERVE: usize = 16;

/// The default connection limit per listener: a quarter of the open-file limit (two
/// listeners take half; the log, outbound requests and the rest keep the other half), at most
/// 10,000.
pub fn default_max_connections(open_files: OpenFiles) -> u32 {
    const CEILING: u64 = 10_000;
    u32::try_from((open_files.soft / 4).clamp(1, CEILING)).unwrap_or(1)
}

/// The limits of every listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: u32,
    pub timeouts: Timeouts,
}

/// One listener and what it serves.
pub struct Listener {
    /// `ingress` or `admin`: in logs and in the `herald_http_connections` gauge.
    pub name: &'static str,
    pub socket: TcpListener,
    pub router: axum::Router,
    /// What connections beyond the limit get: up to [`PROBE_RESERVE`] of them are served by
    /// this router, one request each. None: they wait until a connection closes.
    pub reserve: Option<axum::Router>,
    /// HTTPS: each connection's TLS handshake first, within the header-read timeout and
    /// holding its connection slot.
    pub tls: Option<herald_tls::TlsAcceptor>,
}

/// Accepts and serves connections until `stop`; then stops accepting and returns once every
/// connection has closed: idle ones at once, busy ones when their answer is written.
pub async fn serve(listener: Listener, limits: Limits, stop: CancellationToken) {
    let Listener {
        name,
        socket,
        router,
        reserve,
        tls,
    } = listener;
    let slots = Arc::new(Semaphore::new(limits.max_connections as usize));
    let reserve = reserve.map(|router| (router, Arc::new(Semaphore::new(PROBE_RESERVE))));
    let mut full_warnings = RateLimited::default();
    let mut accept_errors = RateLimited::default();
    loop {
        let Some(slot) = next_slot(&slots, reserve.as_ref(), &stop, || {
            if full_warnings.allow() {
                warn_full(name, limits.max_connections, reserve.is_some());
            }
        })
        .await
        else {
            break;
        };
        let stream = tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) if is_per_connection(&error) => continue,
                Err(error) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    if accept_errors.allow() {
                        tracing::error!(listener = name, %error, "cannot accept connections");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(250)) => continue,
                        () = stop.cancelled() => break,
                    }
                }
            },
            () = stop.cancelled() => break,
        };
        let (router, keep_alive, permit) = match slot {
            Slot::Full(permit) => (router.clone(), true, permit),
            // One request each, so the reserve frees up at once.
            Slot::Reserve(permit, router) => (router, false, permit),
        };
        let stop = stop.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _open = Open::new(name, permit);
            match tls {
                None => connection::serve(stream, router, keep_alive, limits.timeouts, stop).await,
                Some(tls) => {
                    let handshake =
                        tokio::time::timeout(limits.timeouts.header_read, tls.accept(stream));
                    let stream = tokio::select! {
                        done = handshake => match done {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(error)) => {
                                tracing::debug!(listener = name, %error, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(listener = name, "TLS handshake timed out");
                                return;
                            }
                        },
                        () = stop.cancelled() => return,
                    };
                    connection::serve(stream, router, keep_alive, limits.timeouts, stop).await;
                }
            }
        });
    }
    drop(socket);
    // Every permit back means every connection closed.
    let _ = slots.acquire_many(limits.max_connections).await;
    if let Some((_, reserve)) = reserve {
        let _ = reserve.acquire_many(PROBE_RESERVE as u32).await;
    }
}

/// A connection slot: within the limit, or from the probes' reserve with its router.
enum Slot {
    Full(OwnedSemaphorePermit),
    Reserve(OwnedSemaphorePermit, axum::Router),
}

/// A free connection slot, waiting for one when all are taken (and calling `on_full` then).
/// None on `stop`.
async fn next_slot(
    slots: &Arc<Semaphore>,
    reserve: Option<&(axum::Router, Arc<Semaphore>)>,
    stop: &CancellationToken,
    on_full: impl FnOnce(),
) -> Option<Slot> {
    if let Ok(permit) = slots.clone().try_acquire_owned() {
        return Some(Slot::Full(permit));
    }
    on_full();
    if let Some((router, reserve)) = reserve {
        if let Ok(permit) = reserve.clone().try_acquire_owned() {
            return Some(Slot::Reserve(permit, router.clone()));
        }
    }
    let reserved = async {
        match reserve {
            Some((router, reserve)) => match reserve.clone().acquire_owned().await {
                Ok(permit) => Some(Slot::Reserve(permit, router.clone())),
                Err(_) => None,
            },
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        permit = slots.clone().acquire_owned() => permit.ok().map(Slot::Full),
        slot = reserved => slot,
        () = stop.cancelled() => None,
    }
}

/// Errors of one incoming connection, not of the listener.
fn is_per_connection(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    )
}

/// An open connection: counted in the gauge, holding its slot until closed.
struct Open {
    name: &'static str,
    _permit: OwnedSemaphorePermit,
}

impl Open {
    fn new(name: &'static str, permit: OwnedSemaphorePermit) -> Self {
        metrics::gauge!(OPEN_CONNECTIONS, "listener" => name).increment(1.0);
        Self {
            name,
            _permit: permit,
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::gauge!(OPEN_CONNECTIONS, "listener" => self.name).decrement(1.0);
    }
}

const OPEN_CONNECTIONS: &str = "herald_http_connections";

/// Says that a listener reached its limit and what that means for new connections.
fn warn_full(name: &'static str, limit: u32, reserve: bool) {
    if reserve {
        tracing::warn!(
            listener = name,
            limit,
            reserve = PROBE_RESERVE,
            "connection limit reached (--max-connections): further connections get only /healthz and /readyz, and then wait until one closes"
        );
    } else {
        tracing::warn!(
            listener = name,
            limit,
            "connection limit reached (--max-connections): new connections wait until one closes"
        );
    }
}

/// Lets something happen at most once per [`RateLimited::EVERY`].
#[derive(Default)]
struct RateLimited {
    last: Option<Instant>,
}

impl RateLimited {
    const EVERY: Duration = Duration::from_secs(10);

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        if self.last.is_some_and(|last| now < last + Self::EVERY) {
            return false;
        }
        self.last = Some(now);
        true
    }
}
