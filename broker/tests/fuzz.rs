//! Fuzz targets of the CloudEvents HTTP binding and JSON format (see `herald_broker::fuzz`):
//! no input panics or takes long, and every event that decodes survives encoding and
//! decoding again, in binary and in structured mode.

use bytes::Bytes;
use herald_broker::binding::{decode_binary, decode_request, encode_binary, encode_structured};
use herald_broker::fuzz::{inputs, run};
use herald_broker::json::{parse_batch, parse_event, to_json};
use herald_broker::CloudEvent;
use http::{HeaderMap, HeaderName, HeaderValue};

const HTTP_TOKENS: &[&str] = &[
    "\n\n",
    "\nce-",
    "ce-specversion: 1.0\n",
    "ce-id: ",
    "ce-source: ",
    "ce-type: ",
    "ce-time: 2024-01-02T03:04:05Z\n",
    "content-type: ",
    "application/cloudevents+json",
    "application/cloudevents-batch+json",
    "application/json",
    "text/plain; charset=utf-8",
    "\"specversion\":\"1.0\"",
    "\"data\":",
    "\"data_base64\":",
    "\"datacontenttype\":",
    "knativebrokerttl",
    "traceparent",
];

const JSON_TOKENS: &[&str] = &[
    "\"specversion\":\"1.0\",",
    "\"specversion\":\"0.3\",",
    "\"id\":",
    "\"source\":",
    "\"type\":",
    "\"data\":",
    "\"data_base64\":\"AAEC\"",
    "\"datacontenttype\":\"text/plain\"",
    "\"datacontenttype\":\"application/json\"",
    "\"time\":\"2024-01-02T03:04:05Z\"",
    "{\"a\":",
    "[{",
    "}]",
    "},{",
    "1.50",
    "1E+2",
    "\\\"",
    "\\n",
];

/// A fuzz input as an HTTP request: `name: value` lines, a blank line, the body. Lines that
/// are not valid headers are skipped, as a server never sees them.
fn request(input: &[u8]) -> (HeaderMap, Bytes) {
    let split = input.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(at) => (&input[..at], &input[at + 2..]),
        None => (input, &[][..]),
    };
    let mut headers = HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii();
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    (headers, Bytes::copy_from_slice(body))
}

/// The event again after the JSON format: equal in every attribute and byte of data, but
/// for the `datacontenttype` the format implies for JSON data that had none.
fn structured_round_trip(event: &CloudEvent) -> Result<(), String> {
    let mut again = parse_event(&encode_structured(event).body)
        .map_err(|e| format!("{event:?} does not decode from its JSON form: {e}"))?;
    if event.data_content_type().is_none()
        && again.data_content_type().as_deref() == Some("application/json")
    {
        again.remove("datacontenttype");
    }
    if &again != event {
        return Err(format!("JSON round trip changed {event:?} into {again:?}"));
    }
    Ok(())
}

/// The event again after binary mode: every attribute as text (binary mode has no types)
/// and the data unchanged.
fn binary_round_trip(event: &CloudEvent) -> Result<(), String> {
    let encoded = encode_binary(event);
    let mut headers = HeaderMap::new();
    for (name, value) in encoded.headers {
        headers.append(name, value);
    }
    let again = decode_binary(&headers, encoded.body)
        .map_err(|e| format!("{event:?} does not decode from binary mode: {e}"))?;
    let texts = |e: &CloudEvent| -> Vec<(String, String)> {
        e.attributes()
            .iter()
            .map(|(name, value)| (name.clone(), value.as_text().into_owned()))
            .collect()
    };
    // An empty body is no data: binary mode cannot tell empty data from none.
    let data = |e: &CloudEvent| e.data().filter(|d| !d.is_empty()).cloned();
    if texts(&again) != texts(event) || data(&again) != data(event) {
        return Err(format!(
            "binary round trip changed {event:?} into {again:?}"
        ));
    }
    Ok(())
}

#[test]
fn fuzz_http_binding() {
    run(
        "http_binding",
        inputs("http_binding", HTTP_TOKENS),
        |input| {
            let (headers, body) = request(input);
            if let Ok(events) = decode_request(&headers, body) {
                for event in &events {
                    event
                        .validate()
                        .map_err(|e| format!("decoded but invalid: {e}"))?;
                    structured_round_trip(event)?;
                    binary_round_trip(event)?;
                }
            }
            Ok(())
        },
    );
}

#[test]
fn fuzz_json_format() {
    run("json_format", inputs("json_format", JSON_TOKENS), |input| {
        if let Ok(event) = parse_event(input) {
            if event.validate().is_ok() {
                structured_round_trip(&event)?;
            } else {
                // Invalid events are refused, but what was read must still write back.
                let again = parse_event(&to_json(&event)).map_err(|e| e.to_string())?;
                if again != event {
                    return Err(format!("JSON round trip changed {event:?} into {again:?}"));
                }
            }
        }
        if let Ok(events) = parse_batch(input) {
            for event in &events {
                structured_round_trip(event)?;
            }
        }
        Ok(())
    });
}
