//! One HTTP/1.1 connection, closed when it stalls: a request head that does not arrive within
//! the header-read timeout, or a keep-alive connection without a next request within the idle
//! timeout. On shutdown it closes at once unless a request is in flight.
//!
//! hyper's own `header_read_timeout` also runs while a keep-alive connection waits for its
//! next request, so it cannot be a short header limit and a longer idle limit at once; hence
//! the [`Activity`] below, fed by the socket (bytes read and written) and by the service
//! (requests started and answered).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The per-connection time limits.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header_read: Duration,
    pub idle: Duration,
}

/// Serves `router` on `stream` until the client leaves, a timeout closes it, or `stop` (then
/// an in-flight request still finishes and gets its answer).
pub async fn serve<S>(
    stream: S,
    router: axum::Router,
    keep_alive: bool,
    timeouts: Timeouts,
    stop: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new(timeouts));
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = Tracked {
        router,
        activity: activity.clone(),
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.keep_alive(keep_alive).header_read_timeout(None);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            waited_for = activity.expired() => {
                tracing::debug!(waited_for, "connection closed: timed out");
                return;
            }
            () = stop.cancelled(), if !stopping => {
                if !activity.busy() {
                    return;
                }
                // hyper closes it once the answer is written.
                connection.as_mut().graceful_shutdown();
                stopping = true;
            }
        }
    }
}

/// What a connection is doing, which decides its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A request head is arriving (or the connection is new and has sent nothing yet).
    Head,
    /// Requests are being answered; no deadline: the handlers bound their own waits (the
    /// request body, the log), and streamed answers (live tails) may last.
    Busy,
    /// Answered; waiting for the first byte of the next request.
    Idle,
}

struct State {
    phase: Phase,
    in_flight: usize,
    deadline: Option<Instant>,
}

/// The shared record of a connection's phase and deadline.
struct Activity {
    state: Mutex<State>,
    /// Wakes [`Activity::expired`] when the deadline may have moved earlier.
    changed: tokio::sync::Notify,
    timeouts: Timeouts,
}

impl Activity {
    fn new(timeouts: Timeouts) -> Self {
        Self {
            state: Mutex::new(State {
                phase: Phase::Head,
                in_flight: 0,
                deadline: Some(Instant::now() + timeouts.header_read),
            }),
            changed: tokio::sync::Notify::new(),
            timeouts,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is a few plain fields, valid even if a holder panicked.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Bytes arrived: on an idle connection they begin the next request's head.
    fn read(&self) {
        let mut state = self.state();
        if state.phase == Phase::Idle {
            state.phase = Phase::Head;
            state.deadline = Some(Instant::now() + self.timeouts.header_read);
            drop(state);
            self.changed.notify_one();
        }
    }

    /// Bytes left: an answer still being written to a slow reader is not idle.
    fn wrote(&self) {
        let mut state = self.state();
        if state.phase == Phase::Idle {
            state.deadline = Some(Instant::now() + self.timeouts.idle);
        }
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        let mut state = self.state();
        state.in_flight += 1;
        state.phase = Phase::Busy;
        state.deadline = None;
        InFlight {
            activity: self.clone(),
        }
    }

    fn request_finished(&self) {
        let mut state = self.state();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.phase = Phase::Idle;
            state.deadline = Some(Instant::now() + self.timeouts.idle);
            drop(state);
            self.changed.notify_one();
        }
    }

    fn busy(&self) -> bool {
        self.state().phase == Phase::Busy
    }

    /// Resolves when the deadline passes; says which limit it was.
    async fn expired(&self) -> &'static str {
        loop {
            let (phase, deadline) = {
                let state = self.state();
                (state.phase, state.deadline)
            };
            match deadline {
                Some(deadline) if Instant::now() >= deadline => {
                    return match phase {
                        Phase::Idle => "idle timeout",
                        _ => "header-read timeout",
                    }
                }
                Some(deadline) => tokio::select! {
                    () = tokio::time::sleep_until(deadline) => {}
                    () = self.changed.notified() => {}
                },
                None => self.changed.notified().await,
            }
        }
    }
}

/// A request being answered, until its answer's body is dropped (fully handed to hyper, or
/// abandoned).
struct InFlight {
    activity: Arc<Activity>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity.request_finished();
    }
}

/// The socket, reporting bytes in and out to the [`Activity`].
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.read();
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(written)) if written > 0) {
            this.activity.wrote();
        }
        poll
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(written)) if written > 0) {
            this.activity.wrote();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The router as a hyper service that marks each request in flight until its answer is done.
#[derive(Clone)]
struct Tracked {
    router: axum::Router,
    activity: Arc<Activity>,
}

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.request_started();
        let mut router = self.router.clone();
        Box::pin(async move {
            // A Router is always ready (axum documents it), so no poll_ready first.
            let response = tower_service::Service::call(&mut router, request)
                .await
                .unwrap_or_else(|never| match never {});
            Ok(response.map(|body| TrackedBody {
                body,
                _in_flight: in_flight,
            }))
        })
    }
}

/// An answer's body carrying its request's [`InFlight`] mark.
struct TrackedBody {
    body: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        hyper::body::Body::poll_frame(Pin::new(&mut self.get_mut().body), cx)
    }

    fn is_end_stream(&self) -> bool {
        hyper::body::Body::is_end_stream(&self.body)
    }

    fn size_hint(&self) -> SizeHint {
        hyper::body::Body::size_hint(&self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real time (no paused clock, which would need tokio's test-util for the whole build);
    // only lower bounds are asserted, which a busy machine cannot break.
    const TIMEOUTS: Timeouts = Timeouts {
        header_read: Duration::from_millis(200),
        idle: Duration::from_millis(600),
    };

    async fn expiry(activity: &Activity) -> (Duration, &'static str) {
        let start = Instant::now();
        let limit = activity.expired().await;
        (start.elapsed(), limit)
    }

    #[tokio::test]
    async fn a_new_connection_has_the_header_read_timeout() {
        let activity = Activity::new(TIMEOUTS);
        let (waited, limit) = expiry(&activity).await;
        assert_eq!(limit, "header-read timeout");
        assert!(
            waited >= TIMEOUTS.header_read - Duration::from_millis(5),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn an_answered_connection_gets_the_idle_timeout_until_its_next_byte() {
        let activity = Arc::new(Activity::new(TIMEOUTS));
        drop(activity.request_started());
        let (waited, limit) = expiry(&activity).await;
        assert_eq!(limit, "idle timeout");
        assert!(
            waited >= TIMEOUTS.idle - Duration::from_millis(5),
            "{waited:?}"
        );

        drop(activity.request_started());
        activity.read();
        assert_eq!(
            expiry(&activity).await.1,
            "header-read timeout",
            "the first byte starts the head's clock"
        );
    }

    #[tokio::test]
    async fn a_request_in_flight_has_no_deadline() {
        let activity = Arc::new(Activity::new(TIMEOUTS));
        let in_flight = activity.request_started();
        assert!(activity.busy());
        let waiting = tokio::time::timeout(TIMEOUTS.idle * 2, activity.expired()).await;
        assert!(waiting.is_err(), "expired while a request was in flight");
        drop(in_flight);
        assert!(!activity.busy());
        assert_eq!(expiry(&activity).await.1, "idle timeout");
    }

    #[tokio::test]
    async fn writing_an_answer_moves_the_idle_deadline() {
        let activity = Arc::new(Activity::new(TIMEOUTS));
        drop(activity.request_started());
        let now = Instant::now();
        activity.wrote();
        assert!(activity.state().deadline >= Some(now + TIMEOUTS.idle));
    }
}
