//! The CloudEvents Kafka protocol binding, on plain header pairs so that it is testable without
//! a broker: binary mode (`ce_` headers, `content-type`, the value is the data unchanged, the
//! key is the `partitionkey` extension) and structured mode (`application/cloudevents+json`).
//!
//! Herald's own records also keep the pass-through HTTP headers of the request that brought
//! the event (`traceparent`, ...) as `herald_http_` headers; other consumers ignore them.

use bytes::Bytes;

use crate::event::{CloudEvent, InvalidEvent};
use crate::record::Record;

const CE_PREFIX: &str = "ce_";
const HTTP_PREFIX: &str = "herald_http_";
const CONTENT_TYPE: &str = "content-type";
/// The extension whose value becomes the record key (Knative's partitioning).
pub const PARTITION_KEY: &str = "partitionkey";

/// A Kafka record's parts, as Herald writes or reads them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KafkaRecord {
    pub key: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub value: Option<Bytes>,
}

impl KafkaRecord {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Whether the record is a CloudEvent in either mode.
    pub fn is_cloudevent(&self) -> bool {
        self.header("ce_specversion").is_some() || self.is_structured()
    }

    fn is_structured(&self) -> bool {
        self.header(CONTENT_TYPE)
            .and_then(|v| std::str::from_utf8(v).ok())
            .is_some_and(|ct| {
                crate::json::media_type_essence(ct).starts_with("application/cloudevents")
            })
    }

    /// The record's `content-type` header as text.
    pub fn content_type(&self) -> Option<&str> {
        self.header(CONTENT_TYPE)
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// Binary mode.
pub fn encode(record: &Record) -> KafkaRecord {
    let event = &record.event;
    let mut headers = Vec::with_capacity(event.attributes().len() + record.headers.len());
    for (name, value) in event.attributes() {
        let text = value.as_text().into_owned().into_bytes();
        if name == "datacontenttype" {
            headers.push((CONTENT_TYPE.to_owned(), text));
        } else {
            headers.push((format!("{CE_PREFIX}{name}"), text));
        }
    }
    for (name, value) in &record.headers {
        headers.push((format!("{HTTP_PREFIX}{name}"), value.clone().into_bytes()));
    }
    KafkaRecord {
        key: event
            .text(PARTITION_KEY)
            .map(|k| k.into_owned().into_bytes()),
        headers,
        value: event.data().cloned(),
    }
}

/// A CloudEvent record (binary or structured) back into an event and its stored headers.
pub fn decode(record: &KafkaRecord) -> Result<Record, InvalidEvent> {
    let event = if record.is_structured() {
        crate::json::parse_event(record.value.as_deref().unwrap_or_default())?
    } else {
        let mut event = CloudEvent::new();
        for (name, value) in &record.headers {
            let Some(attribute) = name.strip_prefix(CE_PREFIX) else {
                continue;
            };
            let text = String::from_utf8(value.clone())
                .map_err(|_| InvalidEvent::new(attribute, "the header value is not UTF-8"))?;
            event.set(attribute.to_ascii_lowercase(), text);
        }
        if let Some(content_type) = record.content_type() {
            event.set("datacontenttype", content_type);
        }
        event.set_data(record.value.clone());
        event
    };
    event.validate()?;
    let headers = record
        .headers
        .iter()
        .filter_map(|(name, value)| {
            let name = name.strip_prefix(HTTP_PREFIX)?;
            Some((name.to_owned(), String::from_utf8(value.clone()).ok()?))
        })
        .collect();
    Ok(Record { event, headers })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        let mut event = CloudEvent::new();
        event.set("specversion", "1.0");
        event.set("id", "1");
        event.set("source", "/s");
        event.set("type", "t");
        event.set("partitionkey", "customer-7");
        event.set("datacontenttype", "application/json");
        event.set_data(Some(Bytes::from_static(br#"{"a": 1.50}"#)));
        Record {
            event,
            headers: vec![("traceparent".into(), "00-abc".into())],
        }
    }

    #[test]
    fn binary_round_trip_keeps_data_key_and_headers() {
        let record = sample();
        let kafka = encode(&record);
        assert_eq!(kafka.key.as_deref(), Some(&b"customer-7"[..]));
        assert_eq!(kafka.value.as_deref(), Some(&br#"{"a": 1.50}"#[..]));
        assert_eq!(kafka.content_type(), Some("application/json"));
        assert!(kafka.header("ce_id").is_some() && kafka.is_cloudevent());
        assert_eq!(decode(&kafka).unwrap(), record);
    }

    #[test]
    fn structured_records_and_plain_ones() {
        let structured = KafkaRecord {
            headers: vec![(
                "content-type".into(),
                b"application/cloudevents+json".to_vec(),
            )],
            value: Some(Bytes::from_static(
                br#"{"specversion":"1.0","id":"x","source":"/s","type":"t","data":{"k":true}}"#,
            )),
            ..KafkaRecord::default()
        };
        assert!(structured.is_cloudevent());
        let record = decode(&structured).unwrap();
        assert_eq!(record.event.id(), "x");
        assert_eq!(record.event.data().unwrap().as_ref(), br#"{"k":true}"#);
        let plain = KafkaRecord {
            value: Some(Bytes::from_static(b"hello")),
            ..KafkaRecord::default()
        };
        assert!(!plain.is_cloudevent());
        assert!(decode(&plain).is_err());
    }
}
