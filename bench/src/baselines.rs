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

/// The `ce-` headers of a request, the CloudEvent's attributes in binary mode.
fn event_headers(headers: &HeaderMap) -> impl Iterator<Item = (&str, &[u8])> {
    headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("ce-"))
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
}

/// axum relaying each request's body (with its `ce-` headers) to Kafka through the bench's
/// raw producer (`acks=all`, idempotent, Herald's linger) and answering 202 once the delivery
/// report came: HTTP plus produce with no broker logic, the ceiling of a Kafka ingress on
/// these cores.
pub async fn kafka_relay(bootstrap: &str, payload: &[u8]) -> anyhow::Result<String> {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::FutureRecord;
    const TOPIC: &str = "bench-relay";
    let producer = crate::raw::kafka_producer(bootstrap, TOPIC, payload).await?;
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let producer = producer.clone();
        async move {
            let mut kafka_headers = OwnedHeaders::new();
            for (key, value) in event_headers(&headers) {
                kafka_headers = kafka_headers.insert(Header {
                    key,
                    value: Some(value),
                });
            }
            let record = FutureRecord::<(), [u8]>::to(TOPIC)
                .payload(body.as_ref())
                .headers(kafka_headers);
            match producer
                .send(record, std::time::Duration::from_secs(5))
                .await
            {
                Ok(_) => StatusCode::ACCEPTED,
                Err(_) => StatusCode::SERVICE_UNAVAILABLE,
            }
        }
    });
    serve(app).await
}

/// axum relaying each request's body (with its `ce-` headers) to JetStream and answering
/// 202 once the stream's ack came: HTTP plus publish with no broker logic.
pub async fn nats_relay(url: &str) -> anyhow::Result<String> {
    let js = crate::raw::jetstream(url).await?;
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let js = js.clone();
        async move {
            let mut nats_headers = async_nats::HeaderMap::new();
            for (key, value) in event_headers(&headers) {
                if let Ok(value) = std::str::from_utf8(value) {
                    nats_headers.insert(key, value);
                }
            }
            let published = match js
                .publish_with_headers(crate::raw::NATS_SUBJECT, nats_headers, body)
                .await
            {
                Ok(ack) => ack.await.is_ok(),
                Err(_) => false,
            };
            if published {
                StatusCode::ACCEPTED
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    });
    serve(app).await
}

async fn serve(app: axum::Router) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/default/bench", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}
