//! KafkaSource (`sources.knative.dev/v1`): records of Kafka topics into a sink, with Knative's
//! mapping. A record that already is a CloudEvent (binary `ce_` headers or structured
//! `application/cloudevents+json`) passes through unchanged; any other becomes
//! `dev.knative.kafka.event` with `source`, `subject`, `id`, `time`, the key as `key` and
//! `partitionkey`, and each header as a `kafkaheader…` extension (key and header bytes that
//! are not UTF-8 or are control characters become U+FFFD: CloudEvents strings forbid them).
//!
//! Records are sent one at a time, in order; an offset is committed only after the sink took
//! its event (a sink that keeps failing holds the source back, it does not skip).

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use bytes::Bytes;
use herald_broker::event::lossy_string;
use herald_broker::kafka_binding::{self, KafkaRecord};
use herald_broker::log::kafka::kafka_record;
use herald_broker::CloudEvent;
use herald_crds::{FieldError, KafkaSourceSpec};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message, Timestamp};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::secrets::SecretReader;
use crate::{SinkClient, Source, SourceError};

/// The type of records that are not CloudEvents.
pub const KAFKA_EVENT_TYPE: &str = "dev.knative.kafka.event";
/// Waits between rounds of sending one event when the sink keeps refusing it.
const RESEND_BACKOFF_MAX: Duration = Duration::from_secs(30);

pub fn validate(spec: &KafkaSourceSpec) -> Result<(), FieldError> {
    if spec.bootstrap_servers.iter().all(|s| s.trim().is_empty()) {
        return Err(FieldError::new(
            "spec.bootstrapServers",
            "at least one host:port is required",
        ));
    }
    if spec.topics.is_empty() {
        return Err(FieldError::new(
            "spec.topics",
            "at least one topic is required",
        ));
    }
    for (i, topic) in spec.topics.iter().enumerate() {
        let valid = !topic.is_empty()
            && topic
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid {
            return Err(FieldError::new(
                format!("spec.topics[{i}]"),
                format!("{topic:?} is not a Kafka topic name"),
            ));
        }
    }
    if let Some(offset) = &spec.initial_offset {
        if offset != "earliest" && offset != "latest" {
            return Err(FieldError::new(
                "spec.initialOffset",
                format!("{offset:?}: use earliest or latest"),
            ));
        }
    }
    if let Some(ordering) = &spec.ordering {
        if ordering != "ordered" && ordering != "unordered" {
            return Err(FieldError::new(
                "spec.ordering",
                format!("{ordering:?}: use ordered or unordered"),
            ));
        }
    }
    if matches!(spec.consumers, Some(n) if n < 1) {
        return Err(FieldError::new("spec.consumers", "must be 1 or more"));
    }
    if let Some(net) = &spec.net {
        crate::kafka_net::validate(net)?;
    }
    Ok(())
}

pub struct KafkaSource {
    pub namespace: String,
    pub name: String,
    pub spec: KafkaSourceSpec,
    /// Where the values of `spec.net`'s Secrets are read, each time the source starts.
    pub secrets: Arc<dyn SecretReader>,
}

/// A record with CloudEvents headers that do not make a valid event (it is skipped).
#[derive(Debug, thiserror::Error)]
#[error("an invalid CloudEvent: {0}")]
pub struct InvalidRecord(#[source] herald_broker::InvalidEvent);

impl KafkaSource {
    fn group(&self) -> String {
        self.spec.consumer_group.clone().unwrap_or_else(|| {
            herald_broker::log::names::kafka::source_group(&self.namespace, &self.name)
        })
    }

    /// The event for one record, Knative's way.
    pub fn event(
        &self,
        topic: &str,
        message: &BorrowedMessage<'_>,
    ) -> Result<CloudEvent, InvalidRecord> {
        let record = kafka_record(message);
        if record.is_cloudevent() {
            return kafka_binding::decode(&record)
                .map(|r| r.event)
                .map_err(InvalidRecord);
        }
        let millis = match message.timestamp() {
            Timestamp::CreateTime(ms) | Timestamp::LogAppendTime(ms) => Some(ms),
            Timestamp::NotAvailable => None,
        };
        Ok(self.wrap(
            topic,
            message.partition(),
            message.offset(),
            millis,
            &record,
        ))
    }

    fn wrap(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        timestamp_millis: Option<i64>,
        record: &KafkaRecord,
    ) -> CloudEvent {
        let mut event = CloudEvent::new();
        event.set("specversion", "1.0");
        event.set("type", KAFKA_EVENT_TYPE);
        event.set(
            "source",
            format!(
                "/apis/v1/namespaces/{}/kafkasources/{}#{topic}",
                self.namespace, self.name
            ),
        );
        event.set("subject", format!("partition:{partition}#{offset}"));
        event.set("id", format!("partition:{partition}/offset:{offset}"));
        if let Some(time) = timestamp_millis.and_then(chrono::DateTime::from_timestamp_millis) {
            event.set(
                "time",
                time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            );
        }
        if let Some(key) = &record.key {
            let key = lossy_string(key);
            event.set("key", key.as_str());
            event.set("partitionkey", key);
        }
        for (name, value) in &record.headers {
            if name.eq_ignore_ascii_case("content-type") {
                continue;
            }
            let sanitized: String = name
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .map(|c| c.to_ascii_lowercase())
                .collect();
            event.set(format!("kafkaheader{sanitized}"), lossy_string(value));
        }
        if let Some(content_type) = record.content_type() {
            event.set("datacontenttype", content_type);
        }
        event.set_data(
            record
                .value
                .clone()
                .or(Some(Bytes::new()))
                .filter(|d| !d.is_empty()),
        );
        event
    }

    /// Sends until the sink takes it or shutdown; `false` on shutdown.
    async fn deliver(
        &self,
        sink: &SinkClient,
        event: CloudEvent,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut waits = ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(RESEND_BACKOFF_MAX)
            .without_max_times()
            .build();
        loop {
            let wait = waits.next().unwrap_or(RESEND_BACKOFF_MAX);
            match sink.send(event.clone()).await {
                Ok(()) => return true,
                Err(error) => {
                    tracing::warn!(source = %self.describe(), id = %event.id(), %error, retry_in = ?wait, "the sink did not take the event; trying again")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => return false,
            }
        }
    }
}

/// A client creation error without the value of the setting it names: that value may come
/// from a Secret (rdkafka's message of a refused setting ends with it).
fn without_setting_value(error: rdkafka::error::KafkaError) -> String {
    match error {
        rdkafka::error::KafkaError::ClientConfig(_, description, key, _) => {
            format!("the Kafka client refused the setting {key}: {description}")
        }
        other => other.to_string(),
    }
}

#[async_trait::async_trait]
impl Source for KafkaSource {
    fn describe(&self) -> String {
        format!("KafkaSource {}/{}", self.namespace, self.name)
    }

    async fn run(&self, sink: SinkClient, shutdown: CancellationToken) -> Result<(), SourceError> {
        let mut config = ClientConfig::new();
        if let Some(net) = &self.spec.net {
            let settings =
                crate::kafka_net::client_settings(&self.namespace, net, self.secrets.as_ref())
                    .await
                    .map_err(|e| SourceError::Secret(e.to_string()))?;
            for (key, value) in settings {
                config.set(key, value);
            }
        }
        let consumer: StreamConsumer = config
            .set("bootstrap.servers", self.spec.bootstrap_servers.join(","))
            .set("group.id", self.group())
            .set("enable.auto.commit", "false")
            .set(
                "auto.offset.reset",
                self.spec.initial_offset.as_deref().unwrap_or("latest"),
            )
            .set("max.poll.interval.ms", "86400000")
            .create()
            .map_err(|e| SourceError::Connect(without_setting_value(e)))?;
        let topics: Vec<&str> = self.spec.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| SourceError::Connect(e.to_string()))?;
        loop {
            let message = tokio::select! {
                message = consumer.recv() => message.map_err(|e| SourceError::Input(e.to_string()))?,
                _ = shutdown.cancelled() => return Ok(()),
            };
            let topic = message.topic().to_owned();
            match self.event(&topic, &message) {
                Ok(event) => {
                    if !self.deliver(&sink, event, &shutdown).await {
                        return Ok(());
                    }
                }
                Err(error) => {
                    tracing::warn!(source = %self.describe(), %topic, partition = message.partition(), offset = message.offset(), %error, "record skipped");
                }
            }
            let mut done = TopicPartitionList::new();
            done.add_partition_offset(
                &topic,
                message.partition(),
                Offset::Offset(message.offset() + 1),
            )
            .map_err(|e| SourceError::Input(e.to_string()))?;
            consumer
                .commit(&done, CommitMode::Async)
                .map_err(|e| SourceError::Input(e.to_string()))?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_records_get_knatives_mapping() {
        let source = KafkaSource {
            namespace: "ns".into(),
            name: "orders".into(),
            spec: KafkaSourceSpec::default(),
            secrets: Arc::new(crate::secrets::LocalSecrets::default()),
        };
        let record = KafkaRecord {
            key: Some(b"customer-1".to_vec()),
            headers: vec![
                ("content-type".into(), b"application/json".to_vec()),
                ("X-Trace_Id".into(), b"abc".to_vec()),
            ],
            value: Some(Bytes::from_static(br#"{"total": 12.50}"#)),
        };
        let event = source.wrap("orders", 3, 42, Some(1_767_225_600_000), &record);
        assert_eq!(event.event_type(), KAFKA_EVENT_TYPE);
        assert_eq!(
            event.text("source").unwrap(),
            "/apis/v1/namespaces/ns/kafkasources/orders#orders"
        );
        assert_eq!(event.text("subject").unwrap(), "partition:3#42");
        assert_eq!(event.id(), "partition:3/offset:42");
        assert_eq!(event.text("time").unwrap(), "2026-01-01T00:00:00.000Z");
        assert_eq!(event.text("key").unwrap(), "customer-1");
        assert_eq!(event.text("partitionkey").unwrap(), "customer-1");
        assert_eq!(event.text("kafkaheaderxtraceid").unwrap(), "abc");
        assert_eq!(event.text("datacontenttype").unwrap(), "application/json");
        assert_eq!(event.data().unwrap().as_ref(), br#"{"total": 12.50}"#);
        assert!(event.validate().is_ok());
    }

    #[test]
    fn binary_keys_and_headers_make_valid_events() {
        let source = KafkaSource {
            namespace: "ns".into(),
            name: "orders".into(),
            spec: KafkaSourceSpec::default(),
            secrets: Arc::new(crate::secrets::LocalSecrets::default()),
        };
        let record = KafkaRecord {
            // A big-endian integer key and a header with a line break.
            key: Some(vec![0, 0, 0, 42]),
            headers: vec![("note".into(), b"a\nb".to_vec())],
            value: None,
        };
        let event = source.wrap("orders", 0, 1, None, &record);
        assert_eq!(event.text("key").unwrap(), "\u{fffd}\u{fffd}\u{fffd}*");
        assert_eq!(event.text("kafkaheadernote").unwrap(), "a\u{fffd}b");
        event.validate().unwrap();
    }

    #[test]
    fn validation_names_the_field() {
        let ok = KafkaSourceSpec {
            bootstrap_servers: vec!["127.0.0.1:9092".into()],
            topics: vec!["orders".into()],
            ..KafkaSourceSpec::default()
        };
        assert!(validate(&ok).is_ok());
        let field = |spec: KafkaSourceSpec| validate(&spec).unwrap_err().path;
        assert_eq!(
            field(KafkaSourceSpec {
                topics: vec![],
                ..ok.clone()
            }),
            "spec.topics"
        );
        assert_eq!(
            field(KafkaSourceSpec {
                topics: vec!["a b".into()],
                ..ok.clone()
            }),
            "spec.topics[0]"
        );
        assert_eq!(
            field(KafkaSourceSpec {
                initial_offset: Some("oldest".into()),
                ..ok.clone()
            }),
            "spec.initialOffset"
        );
        assert_eq!(
            field(KafkaSourceSpec {
                bootstrap_servers: vec![],
                ..ok
            }),
            "spec.bootstrapServers"
        );
    }
}
