//! A real HTTP subscriber that records what it receives and answers from a script.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpSocket;
use tokio::sync::Notify;

use super::DEADLINE;

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            delay: Duration::ZERO,
        }
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// A request as the subscriber saw it.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn ce(&self, attribute: &str) -> Option<&str> {
        self.header(&format!("ce-{attribute}"))
    }
}

#[derive(Default)]
struct State {
    received: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Option<Reply>>,
    arrived: Notify,
    /// Requests being answered now, and the most at once.
    in_flight: std::sync::atomic::AtomicUsize,
    max_in_flight: std::sync::atomic::AtomicUsize,
}

pub struct Subscriber {
    pub port: u16,
    state: Arc<State>,
    server: tokio::task::JoinHandle<()>,
    /// `http`, or `https` for [`Subscriber::start_tls`].
    scheme: &'static str,
}

impl Subscriber {
    /// Starts on a free port.
    pub async fn start() -> Subscriber {
        Self::start_on(0).await
    }

    /// Starts on `port` (0 picks one); used to bring a "down" subscriber up later.
    pub async fn start_on(port: u16) -> Subscriber {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(([127, 0, 0, 1], port).into()).unwrap();
        let listener = socket.listen(1024).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let handler_state = state.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let state = handler_state.clone();
            async move { answer(state, headers, body).await }
        });
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Subscriber {
            port,
            state,
            server,
            scheme: "http",
        }
    }

    /// Starts on a free port, serving HTTPS with `leaf` (its own accept loop: axum::serve
    /// has no TLS).
    pub async fn start_tls(leaf: &super::certs::Leaf) -> Subscriber {
        let tls = herald_tls::ServerTls::load(&leaf.cert, &leaf.key, herald_tls::MinVersion::Tls12)
            .expect("the test's certificate");
        let acceptor = tls.acceptor();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let handler_state = state.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let state = handler_state.clone();
            async move { answer(state, headers, body).await }
        });
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    // A client that does not trust the certificate ends here.
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request| {
                        let mut app = app.clone();
                        async move { tower_service::Service::call(&mut app, request).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Subscriber {
            port,
            state,
            server,
            scheme: "https",
        }
    }

    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}/", self.scheme, self.port)
    }

    /// Answers the next requests with these replies, in order; then the default (200).
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    pub fn set_default(&self, reply: Reply) {
        *self.state.default.lock().unwrap() = Some(reply);
    }

    /// Every `ce-id` received, in arrival order.
    pub fn ids(&self) -> Vec<String> {
        self.received()
            .iter()
            .filter_map(|r| r.ce("id").map(str::to_owned))
            .collect()
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived; returns all received so far.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let notified = self.state.arrived.notified();
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "timed out waiting for {n} requests; got {}",
                    self.received().len()
                );
            }
        }
    }

    /// Waits for a request whose `ce-id` is `id` (binary mode); returns everything received.
    pub async fn wait_for_id(&self, id: &str) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let notified = self.state.arrived.notified();
            let got = self.received();
            if got.iter().any(|r| r.ce("id") == Some(id)) {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "timed out waiting for event {id}; got {} requests",
                    got.len()
                );
            }
        }
    }

    /// The most requests this subscriber was answering at the same time.
    pub fn max_concurrent(&self) -> usize {
        self.state
            .max_in_flight
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn stop(self) {
        self.server.abort();
    }
}

async fn answer(state: Arc<State>, headers: HeaderMap, body: Bytes) -> Response {
    use std::sync::atomic::Ordering::SeqCst;
    let now = state.in_flight.fetch_add(1, SeqCst) + 1;
    state.max_in_flight.fetch_max(now, SeqCst);
    let response = respond(&state, headers, body).await;
    state.in_flight.fetch_sub(1, SeqCst);
    response
}

async fn respond(state: &State, headers: HeaderMap, body: Bytes) -> Response {
    state.received.lock().unwrap().push(Received {
        at: Instant::now(),
        headers,
        body,
    });
    state.arrived.notify_waiters();
    let reply = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .or_else(|| state.default.lock().unwrap().clone())
        .unwrap_or_else(|| Reply::status(200));
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(
            axum::http::HeaderName::try_from(name).unwrap(),
            axum::http::HeaderValue::from_str(&value).unwrap(),
        );
    }
    response
}
