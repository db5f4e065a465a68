//! The CloudEvents JSON event format (structured and batched modes), keeping data bytes as sent.

use std::collections::BTreeMap;

use base64::Engine;
use bytes::Bytes;
use serde_json::value::RawValue;

use crate::event::{AttrValue, CloudEvent, InvalidEvent};

/// A media type without parameters, lower-cased (`Application/JSON; charset=utf-8` → `application/json`).
pub fn media_type_essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether a media type carries JSON (`application/json`, `text/json`, `*/*+json`).
pub fn is_json_media_type(content_type: &str) -> bool {
    let essence = media_type_essence(content_type);
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

/// Parses one event in the JSON format. With JSON data the raw text of the `data` member is
/// kept byte for byte.
pub fn parse_event(bytes: &[u8]) -> Result<CloudEvent, InvalidEvent> {
    let members: BTreeMap<String, &RawValue> = serde_json::from_slice(bytes)
        .map_err(|e| InvalidEvent::new("", format!("body is not a JSON object: {e}")))?;
    event_from_members(members)
}

/// Parses a batch (`application/cloudevents-batch+json`): a JSON array of events.
/// All or nothing: the error names the index of the first invalid event.
pub fn parse_batch(bytes: &[u8]) -> Result<Vec<CloudEvent>, (Option<usize>, InvalidEvent)> {
    let items: Vec<BTreeMap<String, &RawValue>> = serde_json::from_slice(bytes).map_err(|e| {
        (
            None,
            InvalidEvent::new(
                "",
                format!("body is not a JSON array of event objects: {e}"),
            ),
        )
    })?;
    items
        .into_iter()
        .enumerate()
        .map(|(index, members)| {
            let event = event_from_members(members).map_err(|e| (Some(index), e))?;
            event.validate().map_err(|e| (Some(index), e))?;
            Ok(event)
        })
        .collect()
}

fn event_from_members(members: BTreeMap<String, &RawValue>) -> Result<CloudEvent, InvalidEvent> {
    let mut attributes = BTreeMap::new();
    let mut data_raw: Option<&RawValue> = None;
    let mut data_base64: Option<String> = None;
    for (name, raw) in members {
        match name.as_str() {
            "data" => data_raw = Some(raw).filter(|r| r.get() != "null"),
            "data_base64" => {
                data_base64 = serde_json::from_str::<Option<String>>(raw.get())
                    .map_err(|_| InvalidEvent::new("data_base64", "must be a base64 string"))?
            }
            _ => {
                let value: serde_json::Value = serde_json::from_str(raw.get())
                    .map_err(|e| InvalidEvent::new(name.clone(), format!("invalid JSON: {e}")))?;
                let value = match value {
                    serde_json::Value::Null => continue,
                    serde_json::Value::String(s) => AttrValue::String(s),
                    serde_json::Value::Bool(b) => AttrValue::Boolean(b),
                    serde_json::Value::Number(n) => {
                        AttrValue::Integer(n.as_i64().ok_or_else(|| {
                            InvalidEvent::new(name.clone(), format!("{n} is not an integer"))
                        })?)
                    }
                    _ => {
                        return Err(InvalidEvent::new(
                            name,
                            "attribute values must be strings, integers or booleans",
                        ))
                    }
                };
                attributes.insert(name, value);
            }
        }
    }
    let data = match (data_raw, data_base64) {
        (Some(_), Some(_)) => {
            return Err(InvalidEvent::new(
                "data_base64",
                "data and data_base64 must not both be present",
            ))
        }
        (None, Some(b64)) => Some(Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|e| InvalidEvent::new("data_base64", format!("invalid base64: {e}")))?,
        )),
        (Some(raw), None) => {
            let content_type = attributes.get("datacontenttype").map(AttrValue::as_text);
            let json_data = content_type.as_deref().is_none_or(is_json_media_type);
            if json_data {
                if content_type.is_none() {
                    // The JSON format implies application/json for JSON data; binary mode
                    // needs it spelled out as the Content-Type.
                    attributes.insert(
                        "datacontenttype".into(),
                        AttrValue::String("application/json".into()),
                    );
                }
                Some(Bytes::copy_from_slice(raw.get().as_bytes()))
            } else {
                match serde_json::from_str::<String>(raw.get()) {
                    Ok(text) => Some(Bytes::from(text)),
                    Err(_) => Some(Bytes::copy_from_slice(raw.get().as_bytes())),
                }
            }
        }
        (None, None) => None,
    };
    Ok(CloudEvent::from_parts(attributes, data))
}

/// Serialises an event in the JSON format: JSON data inline as sent, text as a string,
/// anything else as `data_base64`.
pub fn to_json(event: &CloudEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + event.data().map_or(0, |d| d.len() * 4 / 3));
    out.push(b'{');
    let mut first = true;
    let mut member = |out: &mut Vec<u8>, name: &str, value: &[u8]| {
        if !first {
            out.push(b',');
        }
        first = false;
        // Names are validated ASCII; serde_json escapes them anyway.
        out.extend_from_slice(serde_json::to_string(name).unwrap_or_default().as_bytes());
        out.push(b':');
        out.extend_from_slice(value);
    };
    for (name, value) in event.attributes() {
        let encoded = serde_json::to_vec(value).unwrap_or_default();
        member(&mut out, name, &encoded);
    }
    if let Some(data) = event.data() {
        let json_type = event
            .data_content_type()
            .as_deref()
            .is_none_or(is_json_media_type);
        // Inline only a JSON value with nothing around it: reading it back keeps the value's
        // text alone, so surrounding whitespace would be lost (found by fuzzing).
        let exact_json = || {
            serde_json::from_slice::<&RawValue>(data).is_ok_and(|raw| raw.get().len() == data.len())
        };
        if json_type && exact_json() {
            member(&mut out, "data", data);
        } else if let (false, Ok(text)) = (json_type, std::str::from_utf8(data)) {
            member(
                &mut out,
                "data",
                serde_json::to_string(text).unwrap_or_default().as_bytes(),
            );
        } else {
            let b64 = base64::engine::general_purpose::STANDARD.encode(data);
            member(
                &mut out,
                "data_base64",
                serde_json::to_string(&b64).unwrap_or_default().as_bytes(),
            );
        }
    }
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_data_bytes_are_kept_exactly() {
        let body = br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{ "b" : 1.50,  "a":[1, 2] }}"#;
        let event = parse_event(body).unwrap();
        assert_eq!(
            event.data().unwrap().as_ref(),
            br#"{ "b" : 1.50,  "a":[1, 2] }"#
        );
        assert_eq!(event.data_content_type().unwrap(), "application/json");
        let again = parse_event(&to_json(&event)).unwrap();
        assert_eq!(again, event);
    }

    #[test]
    fn text_and_binary_data() {
        let body = br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"text/plain","data":"h\u00e9llo"}"#;
        let event = parse_event(body).unwrap();
        assert_eq!(event.data().unwrap().as_ref(), "héllo".as_bytes());
        let body = br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"application/octet-stream","data_base64":"AAEC/w=="}"#;
        let event = parse_event(body).unwrap();
        assert_eq!(event.data().unwrap().as_ref(), &[0, 1, 2, 255]);
        let again = parse_event(&to_json(&event)).unwrap();
        assert_eq!(again, event);
    }

    #[test]
    fn typed_extensions() {
        let body = br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","count":3,"flag":true,"gone":null}"#;
        let event = parse_event(body).unwrap();
        assert_eq!(event.attribute("count"), Some(&AttrValue::Integer(3)));
        assert_eq!(event.attribute("flag"), Some(&AttrValue::Boolean(true)));
        assert_eq!(event.attribute("gone"), None);
        let err =
            parse_event(br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","obj":{}}"#)
                .unwrap_err();
        assert_eq!(err.attribute, "obj");
    }

    #[test]
    fn json_data_with_surrounding_whitespace_keeps_its_bytes() {
        let mut event =
            parse_event(br#"{"specversion":"1.0","id":"1","source":"/s","type":"t"}"#).unwrap();
        for data in [&b"\n{\"a\": 1}"[..], b"[1] ", b"\t\"x\"\r\n"] {
            event.set_data(Some(Bytes::copy_from_slice(data)));
            assert_eq!(parse_event(&to_json(&event)).unwrap().data(), event.data());
        }
    }

    #[test]
    fn deeply_nested_json_is_data_or_an_error_never_a_crash() {
        // On a tokio worker's stack size, where ingress decodes events.
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| {
                let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
                // Data is kept as bytes, whatever its depth: serde_json skips it without
                // recursing.
                let event = format!(
                    r#"{{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{deep}}}"#
                );
                let parsed = parse_event(event.as_bytes()).unwrap();
                assert_eq!(parsed.data().unwrap().as_ref(), deep.as_bytes());
                assert_eq!(parse_event(&to_json(&parsed)).unwrap(), parsed);
                let (index, _) =
                    parse_batch(format!("[{event},{{\"x\":{deep}}}]").as_bytes()).unwrap_err();
                assert_eq!(index, Some(1), "the deep member is refused as an attribute");
                // An attribute is parsed as a value: serde_json's recursion limit refuses it.
                let err = parse_event(
                    format!(
                        r#"{{"specversion":"1.0","id":"1","source":"/s","type":"t","x":{deep}}}"#
                    )
                    .as_bytes(),
                )
                .unwrap_err();
                assert_eq!(err.attribute, "x");
                let err = parse_event(deep.as_bytes()).unwrap_err();
                assert!(err.reason.contains("not a JSON object"), "{err}");
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn batch_names_the_bad_index() {
        let body = br#"[{"specversion":"1.0","id":"1","source":"/s","type":"t"},{"specversion":"1.0","id":"2","source":"/s"}]"#;
        let (index, err) = parse_batch(body).unwrap_err();
        assert_eq!(index, Some(1));
        assert_eq!(err.attribute, "type");
    }
}
