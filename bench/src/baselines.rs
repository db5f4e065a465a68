//! The HTTP baselines, served by the bench process itself: what this machine can do with no
//! broker in the way.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use tokio::sync::{mpsc, Semaphore};

/// Requests the bare relay holds between its 202 and their delivery; when full, the 202
/// waits for room (backpressure, as a broker's bounded queue would give).
pub const RELAY_QUEUE: usize = 1024;

/// Deliveries the bare relay has in flight to the subscriber at once.
pub const RELAY_IN_FLIGHT: usize = 64;

/// axum answering 202 without doing anything: the HTTP limit of this machine.
pub async fn bare_server() -> anyhow::Result<String> {
    let app = axum::Router::new().fallback(|| async { StatusCode::ACCEPTED });
    serve(app).await
}

/// axum answering 202 at once and forwarding each request (its `ce-` headers, content type
/// and body) to `subscriber` afterwards, over one keep-alive client, through a queue of
/// [`RELAY_QUEUE`]: the limit of "accept and deliver" with nothing stored.
pub async fn bare_relay(subscriber: &str) -> anyhow::Result<String> {
    let (queue, requests) = mpsc::channel::<(HeaderMap, Bytes)>(RELAY_QUEUE);
    tokio::spawn(forward(requests, subscriber.to_owned()));
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let queue = queue.clone();
        async move {
            match queue.send((headers, body)).await {
                Ok(()) => StatusCode::ACCEPTED,
                Err(_) => StatusCode::SERVICE_UNAVAILABLE,
            }
        }
    });
    serve(app).await
}

async fn forward(mut requests: mpsc::Receiver<(HeaderMap, Bytes)>, subscriber: String) {
    let client = reqwest::Client::new();
    let slots = Arc::new(Semaphore::new(RELAY_IN_FLIGHT));
    while let Some((headers, body)) = requests.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let headers: HeaderMap = headers
            .into_iter()
            .filter_map(|(name, value)| Some((name?, value)))
            .filter(|(name, _)| {
                name.as_str().starts_with("ce-") || name == axum::http::header::CONTENT_TYPE
            })
            .collect();
        let request = client.post(&subscriber).headers(headers).body(body);
        tokio::spawn(async move {
            let _ = request.send().await;
            drop(slot);
        });
    }
}

async fn serve(app: axum::Router) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/default/bench", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}
