//! The CloudEvents HTTP protocol binding: requests in (binary, structured, batched) and
//! requests out (binary or structured).

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::event::{AttrValue, CloudEvent, InvalidEvent};
use crate::header_text;
use crate::json;

/// A request body that could not be turned into events; `index` is set for batch members.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{source}", index.map(|i| format!("event {i} of the batch: ")).unwrap_or_default())]
pub struct DecodeError {
    pub index: Option<usize>,
    pub source: InvalidEvent,
}

impl From<InvalidEvent> for DecodeError {
    fn from(source: InvalidEvent) -> Self {
        Self {
            index: None,
            source,
        }
    }
}

/// The content mode of an incoming request, from its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentMode {
    Binary,
    Structured,
    Batched,
}

pub fn content_mode(headers: &HeaderMap) -> ContentMode {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("application/cloudevents-batch") {
        ContentMode::Batched
    } else if content_type.starts_with("application/cloudevents") {
        ContentMode::Structured
    } else {
        ContentMode::Binary
    }
}

/// Whether a response looks like it carries a CloudEvent at all (a reply candidate).
pub fn has_cloudevent_markers(headers: &HeaderMap) -> bool {
    headers.contains_key("ce-specversion") || content_mode(headers) != ContentMode::Binary
}

/// Decodes a request into one or more validated events.
pub fn decode_request(headers: &HeaderMap, body: Bytes) -> Result<Vec<CloudEvent>, DecodeError> {
    match content_mode(headers) {
        ContentMode::Batched => {
            require_json_format(headers)?;
            json::parse_batch(&body).map_err(|(index, source)| DecodeError { index, source })
        }
        ContentMode::Structured => {
            require_json_format(headers)?;
            let event = json::parse_event(&body)?;
            event.validate()?;
            Ok(vec![event])
        }
        ContentMode::Binary => {
            let event = decode_binary(headers, body)?;
            event.validate()?;
            Ok(vec![event])
        }
    }
}

fn require_json_format(headers: &HeaderMap) -> Result<(), InvalidEvent> {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if json::media_type_essence(content_type).ends_with("+json") {
        Ok(())
    } else {
        Err(InvalidEvent::new(
            "datacontenttype",
            format!("unsupported event format {content_type:?}: only the JSON format is supported"),
        ))
    }
}

/// Binary mode: `ce-*` headers are attributes (read by [`header_text::decode`]), Content-Type
/// is `datacontenttype`, the body is the data.
pub fn decode_binary(headers: &HeaderMap, body: Bytes) -> Result<CloudEvent, InvalidEvent> {
    let mut event = CloudEvent::new();
    for (name, value) in headers {
        let Some(attribute) = name.as_str().strip_prefix("ce-") else {
            continue;
        };
        event.set(attribute, header_text::decode(attribute, value.as_bytes()));
    }
    if event.attribute("specversion").is_none() {
        return Err(InvalidEvent::new(
            "specversion",
            "required attribute is missing (no ce-specversion header and not a structured content type)",
        ));
    }
    if let Some(content_type) = headers.get(http::header::CONTENT_TYPE) {
        let text = content_type
            .to_str()
            .map_err(|_| InvalidEvent::new("datacontenttype", "Content-Type is not valid ASCII"))?;
        event.set("datacontenttype", text);
    }
    event.set_data((!body.is_empty()).then_some(body));
    Ok(event)
}

/// An outgoing HTTP request body with the headers that describe it.
pub struct EncodedRequest {
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

/// Binary mode: every attribute as a `ce-` header except `datacontenttype` (the Content-Type).
pub fn encode_binary(event: &CloudEvent) -> EncodedRequest {
    let mut headers = Vec::with_capacity(event.attributes().len() + 1);
    for (name, value) in event.attributes() {
        if name == "datacontenttype" {
            if let Ok(v) = HeaderValue::from_str(&value.as_text()) {
                headers.push((http::header::CONTENT_TYPE, v));
            }
            continue;
        }
        let Ok(header) = HeaderName::try_from(format!("ce-{name}")) else {
            continue;
        };
        if let Ok(v) = header_text::encode(name, &value.as_text()) {
            headers.push((header, v));
        }
    }
    EncodedRequest {
        headers,
        body: event.data().cloned().unwrap_or_default(),
    }
}

/// Structured mode in the JSON format.
pub fn encode_structured(event: &CloudEvent) -> EncodedRequest {
    EncodedRequest {
        headers: vec![(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/cloudevents+json; charset=utf-8"),
        )],
        body: Bytes::from(json::to_json(event)),
    }
}

impl From<bool> for AttrValue {
    fn from(value: bool) -> Self {
        AttrValue::Boolean(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(
                HeaderName::try_from(*k).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn binary_round_trip_with_escapes() {
        let h = headers(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "a%20b"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
            ("ce-myext", "caf%C3%A9%25"),
            ("content-type", "application/octet-stream"),
        ]);
        let body = Bytes::from_static(&[0, 159, 146, 150]);
        let events = decode_request(&h, body.clone()).unwrap();
        let event = &events[0];
        assert_eq!(event.id(), "a b");
        assert_eq!(event.text("myext").unwrap(), "café%");
        assert_eq!(event.data(), Some(&body));
        let out = encode_binary(event);
        let mut back = HeaderMap::new();
        for (k, v) in out.headers {
            back.insert(k, v);
        }
        assert_eq!(&decode_binary(&back, out.body).unwrap(), event);
    }

    #[test]
    fn missing_specversion_in_binary_mode() {
        let err = decode_request(&headers(&[("ce-id", "1")]), Bytes::new()).unwrap_err();
        assert_eq!(err.source.attribute, "specversion");
    }

    #[test]
    fn control_characters_are_refused_in_every_content_mode() {
        for (header, value) in [
            ("ce-id", "a%00b"),
            ("ce-myext", "a%0Ab"),
            ("ce-subject", "%7F"),
        ] {
            let mut pairs = vec![
                ("ce-specversion", "1.0"),
                ("ce-id", "1"),
                ("ce-source", "/s"),
                ("ce-type", "t"),
            ];
            pairs.retain(|(name, _)| *name != header);
            pairs.push((header, value));
            let err = decode_request(&headers(&pairs), Bytes::new()).unwrap_err();
            assert_eq!(
                (err.index, err.source.attribute.as_str()),
                (None, header.trim_start_matches("ce-")),
                "{err}"
            );
        }
        let structured = headers(&[("content-type", "application/cloudevents+json")]);
        let body = r#"{"specversion":"1.0","id":"a\u0000b","source":"/s","type":"t"}"#;
        let err = decode_request(&structured, Bytes::from(body)).unwrap_err();
        assert_eq!((err.index, err.source.attribute.as_str()), (None, "id"));
        let batch = headers(&[("content-type", "application/cloudevents-batch+json")]);
        let body = r#"[{"specversion":"1.0","id":"1","source":"/s","type":"t"},{"specversion":"1.0","id":"2","source":"/s","type":"t","myext":"\u009f"}]"#;
        let err = decode_request(&batch, Bytes::from(body)).unwrap_err();
        assert_eq!(
            (err.index, err.source.attribute.as_str()),
            (Some(1), "myext")
        );
        assert!(err.to_string().starts_with("event 1 of the batch"), "{err}");
    }
}
