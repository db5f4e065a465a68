//! The NatsSource: core NATS subscriptions or a JetStream durable consumer, each message sent
//! to the sink as a CloudEvent.
//!
//! A message whose payload is a CloudEvent in the JSON format (the NATS protocol binding's
//! structured mode) passes through unchanged. Any other payload is wrapped as
//! `dev.herald.nats.message` with `source` `nats://{server}/{subject}`, `subject` the NATS
//! subject, the payload as data and the message's `Content-Type` header, if any.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::jetstream::{self, AckKind};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use herald_broker::{json, CloudEvent};
use herald_crds::NatsSourceSpec;
use tokio_util::sync::CancellationToken;

use crate::{SinkClient, Source, SourceError};

/// The type of wrapped (non-CloudEvent) messages.
pub const MESSAGE_TYPE: &str = "dev.herald.nats.message";

pub struct NatsSource {
    pub namespace: String,
    pub name: String,
    pub spec: NatsSourceSpec,
}

/// Turns a NATS message into the event to send.
pub fn to_event(
    server: &str,
    subject: &str,
    payload: &Bytes,
    content_type: Option<&str>,
    id: String,
) -> CloudEvent {
    if payload.first() == Some(&b'{') {
        if let Ok(event) = json::parse_event(payload) {
            if event.validate().is_ok() {
                return event;
            }
        }
    }
    let host = server
        .split("://")
        .nth(1)
        .unwrap_or(server)
        .trim_end_matches('/');
    let mut event = CloudEvent::new();
    event.set("specversion", "1.0");
    event.set("id", id);
    event.set("type", MESSAGE_TYPE);
    event.set("source", format!("nats://{host}/{subject}"));
    event.set("subject", subject);
    if let Some(content_type) = content_type {
        event.set("datacontenttype", content_type);
    }
    event.set_data((!payload.is_empty()).then(|| payload.clone()));
    event
}

fn content_type(headers: &Option<async_nats::HeaderMap>) -> Option<&str> {
    headers.as_ref()?.get("Content-Type").map(|v| v.as_str())
}

#[async_trait]
impl Source for NatsSource {
    fn describe(&self) -> String {
        format!("NatsSource {}/{}", self.namespace, self.name)
    }

    async fn run(&self, sink: SinkClient, shutdown: CancellationToken) -> Result<(), SourceError> {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(self.spec.url.as_str())
            .await
            .map_err(|e| SourceError::Connect(e.to_string()))?;
        match &self.spec.jetstream {
            None => self.run_core(client, sink, shutdown).await,
            Some(js) => {
                let durable = js.durable.clone().unwrap_or_else(|| {
                    herald_broker::log::names::nats::source_durable(&self.namespace, &self.name)
                });
                self.run_jetstream(client, &js.stream, &durable, sink, shutdown)
                    .await
            }
        }
    }
}

impl NatsSource {
    /// Core NATS: at most once by nature; a message the sink refuses after the retries is
    /// logged and dropped.
    async fn run_core(
        &self,
        client: async_nats::Client,
        sink: SinkClient,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError> {
        let mut subscriptions = Vec::new();
        for subject in &self.spec.subjects {
            let subscription = match &self.spec.queue_group {
                Some(group) => client.queue_subscribe(subject.clone(), group.clone()).await,
                None => client.subscribe(subject.clone()).await,
            }
            .map_err(|e| SourceError::Input(e.to_string()))?;
            subscriptions.push(subscription);
        }
        let mut messages = futures_util::stream::select_all(subscriptions);
        tracing::info!(source = %self.describe(), subjects = ?self.spec.subjects, sink = sink.url(), "NATS source started");
        loop {
            let message = tokio::select! {
                message = messages.next() => message,
                _ = shutdown.cancelled() => return Ok(()),
            };
            let Some(message) = message else {
                return Err(SourceError::Input("the subscriptions ended".into()));
            };
            let id = uuid::Uuid::new_v4().to_string();
            let event = to_event(
                &self.spec.url,
                message.subject.as_str(),
                &message.payload,
                content_type(&message.headers),
                id,
            );
            if let Err(error) = sink.send(event).await {
                tracing::error!(source = %self.describe(), subject = %message.subject, %error, "message dropped");
            }
        }
    }

    /// JetStream: a message is acknowledged only once the sink accepted its event; otherwise
    /// it is redelivered after a pause.
    async fn run_jetstream(
        &self,
        client: async_nats::Client,
        stream: &str,
        durable: &str,
        sink: SinkClient,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError> {
        let input = |e: &dyn std::fmt::Display| SourceError::Input(e.to_string());
        let js = jetstream::new(client);
        let stream_handle = js.get_stream(stream).await.map_err(|e| input(&e))?;
        let consumer: jetstream::consumer::PullConsumer = stream_handle
            .get_or_create_consumer(
                durable,
                pull::Config {
                    durable_name: Some(durable.to_owned()),
                    ack_policy: AckPolicy::Explicit,
                    filter_subjects: self.spec.subjects.clone(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| input(&e))?;
        let mut messages = consumer.messages().await.map_err(|e| input(&e))?;
        tracing::info!(source = %self.describe(), stream, durable, sink = sink.url(), "NATS JetStream source started");
        loop {
            let message = tokio::select! {
                message = messages.next() => message,
                _ = shutdown.cancelled() => return Ok(()),
            };
            let message = match message {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    tracing::warn!(source = %self.describe(), %error, "JetStream read failed");
                    continue;
                }
                None => return Err(SourceError::Input("the consumer ended".into())),
            };
            let id = match message.info() {
                Ok(info) => format!("{}-{}", info.stream, info.stream_sequence),
                Err(_) => uuid::Uuid::new_v4().to_string(),
            };
            let event = to_event(
                &self.spec.url,
                message.subject.as_str(),
                &message.payload,
                content_type(&message.headers),
                id,
            );
            let acked = match sink.send(event).await {
                Ok(()) => message.ack().await,
                Err(error) => {
                    tracing::warn!(source = %self.describe(), %error, "sink refused the event; it will be redelivered");
                    message
                        .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                        .await
                }
            };
            if let Err(error) = acked {
                tracing::warn!(source = %self.describe(), %error, "acknowledging the message failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudevents_pass_through_and_other_payloads_are_wrapped() {
        let ce = Bytes::from_static(
            br#"{"specversion":"1.0","id":"x1","source":"/s","type":"t","data":{"a":1}}"#,
        );
        let event = to_event(
            "nats://127.0.0.1:4222",
            "orders.new",
            &ce,
            None,
            "ignored".into(),
        );
        assert_eq!(
            (event.id().as_ref(), event.event_type().as_ref()),
            ("x1", "t")
        );
        let plain = Bytes::from_static(b"hello");
        let event = to_event(
            "nats://127.0.0.1:4222",
            "orders.new",
            &plain,
            Some("text/plain"),
            "id-1".into(),
        );
        assert_eq!(event.event_type(), MESSAGE_TYPE);
        assert_eq!(
            event.text("source").unwrap(),
            "nats://127.0.0.1:4222/orders.new"
        );
        assert_eq!(event.text("subject").unwrap(), "orders.new");
        assert_eq!(event.data_content_type().unwrap(), "text/plain");
        assert_eq!(event.data().unwrap().as_ref(), b"hello");
        event.validate().unwrap();
        // Invalid CloudEvent JSON is just a payload.
        let bad = Bytes::from_static(br#"{"specversion":"1.0"}"#);
        assert_eq!(
            to_event("nats://h:1", "s", &bad, None, "i".into()).event_type(),
            MESSAGE_TYPE
        );
    }
}
