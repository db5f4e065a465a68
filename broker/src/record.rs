//! What a log stores per event: the event and the pass-through headers of its request.
//!
//! Encoding: one version byte, a big-endian u32 length, a JSON header (attributes, headers,
//! whether data is present), then the data bytes as they are. Data is never inside JSON, so
//! it is neither escaped nor re-encoded.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::event::{AttrValue, CloudEvent};

const FORMAT_VERSION: u8 = 1;

/// The extension ingress stamps on every record with the time it accepted it (Knative's);
/// logs read it to start a consumer from a time.
pub const ARRIVAL_TIME_EXTENSION: &str = "knativearrivaltime";

/// An event as stored in a broker's log.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub event: CloudEvent,
    /// Request headers forwarded to subscribers (`traceparent`, `x-request-id`, `knative-*`, ...).
    pub headers: Vec<(String, String)>,
}

/// The JSON header as written: borrows from the record, so encoding copies nothing twice.
#[derive(Serialize)]
struct MetaRef<'a> {
    #[serde(rename = "a")]
    attributes: &'a BTreeMap<String, AttrValue>,
    #[serde(rename = "h", skip_serializing_if = "<[_]>::is_empty")]
    headers: &'a [(String, String)],
    #[serde(rename = "d")]
    has_data: bool,
}

/// The JSON header as read back.
#[derive(Deserialize)]
struct Meta {
    #[serde(rename = "a")]
    attributes: BTreeMap<String, AttrValue>,
    #[serde(rename = "h", default, skip_serializing_if = "Vec::is_empty")]
    headers: Vec<(String, String)>,
    #[serde(rename = "d")]
    has_data: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record is truncated or has an unknown format")]
    Malformed,
    #[error("record header is not valid: {0}")]
    Header(#[from] serde_json::Error),
}

impl Record {
    pub fn new(event: CloudEvent) -> Self {
        Self {
            event,
            headers: Vec::new(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let meta = MetaRef {
            attributes: self.event.attributes(),
            headers: &self.headers,
            has_data: self.event.data().is_some(),
        };
        let meta = serde_json::to_vec(&meta).unwrap_or_default();
        let data = self.event.data().map(|d| d.as_ref()).unwrap_or_default();
        let mut out = Vec::with_capacity(5 + meta.len() + data.len());
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&(meta.len() as u32).to_be_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(data);
        out
    }

    /// Decodes a stored record; `bytes` is sliced, not copied, for the data.
    pub fn decode(bytes: Bytes) -> Result<Self, RecordError> {
        if bytes.len() < 5 || bytes[0] != FORMAT_VERSION {
            return Err(RecordError::Malformed);
        }
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        let end = 5usize
            .checked_add(len)
            .filter(|end| *end <= bytes.len())
            .ok_or(RecordError::Malformed)?;
        let meta: Meta = serde_json::from_slice(&bytes[5..end])?;
        let data = meta.has_data.then(|| bytes.slice(end..));
        Ok(Self {
            event: CloudEvent::from_parts(meta.attributes, data),
            headers: meta.headers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_empty_and_absent_data_apart() {
        let mut event = CloudEvent::new();
        event.set("id", "1");
        event.set("count", AttrValue::Integer(7));
        for data in [
            None,
            Some(Bytes::new()),
            Some(Bytes::from_static(b"\x00\xffraw")),
        ] {
            event.set_data(data);
            let record = Record {
                event: event.clone(),
                headers: vec![("traceparent".into(), "00-x".into())],
            };
            assert_eq!(
                Record::decode(Bytes::from(record.encode())).unwrap(),
                record
            );
        }
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(Record::decode(Bytes::from_static(b"\x01\x00\x00\x00\x09{}")).is_err());
        assert!(Record::decode(Bytes::from_static(b"")).is_err());
    }
}
