//! `send` (one CloudEvent to a broker's ingress) and `tail` (a broker's live events).

use std::io::{Read, Write};

use herald_broker::header_text;
use reqwest::Method;
use serde_json::Value;

use super::{text, Api, ClientError};
use crate::cli::{Output, SendArgs, TailArgs};
use crate::kinds::BROKER;

pub async fn send(args: SendArgs) -> Result<(), ClientError> {
    let api = Api::new(&args.server)?;
    let data = match (&args.data, &args.data_file) {
        (Some(data), _) => Some(data.clone().into_bytes()),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|e| ClientError::Usage(format!("cannot read standard input: {e}")))?;
            Some(bytes)
        }
        (None, Some(path)) => Some(
            std::fs::read(path)
                .map_err(|e| ClientError::Usage(format!("cannot read {}: {e}", path.display())))?,
        ),
        (None, None) => None,
    };
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut request_headers = vec![
        ("ce-specversion".to_owned(), "1.0".to_owned()),
        ("ce-id".to_owned(), id.clone()),
        ("ce-source".to_owned(), args.source.clone()),
        ("ce-type".to_owned(), args.event_type.clone()),
    ];
    for extension in &args.extensions {
        let (name, value) = extension.split_once('=').ok_or_else(|| {
            ClientError::Usage(format!("--ext {extension:?}: expected NAME=VALUE"))
        })?;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(ClientError::Usage(format!(
                "--ext {name:?}: extension names are lowercase letters and digits"
            )));
        }
        request_headers.push((format!("ce-{name}"), value.to_owned()));
    }
    let content_type = args.content_type.clone().or_else(|| {
        data.as_ref().map(|bytes| {
            if serde_json::from_slice::<Value>(bytes).is_ok() {
                "application/json".to_owned()
            } else {
                "text/plain".to_owned()
            }
        })
    });
    let broker = api
        .call(
            Method::GET,
            &BROKER.object_path(&api.namespace, &args.broker),
        )
        .await?;
    let url = text(&broker, "/status/address/url");
    if url.is_empty() {
        return Err(ClientError::Other(format!(
            "broker {}/{} has no address yet",
            api.namespace, args.broker
        )));
    }
    let mut request = api.http().post(url);
    for (name, value) in request_headers {
        let attribute = name.strip_prefix("ce-").unwrap_or(&name);
        let encoded = header_text::encode(attribute, &value).map_err(|e| {
            ClientError::Usage(format!("{attribute} {value:?} cannot be sent: {e}"))
        })?;
        request = request.header(name, encoded);
    }
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(data) = data {
        request = request.body(data);
    }
    let response = request.send().await.map_err(|e| ClientError::Unreachable {
        server: url.to_owned(),
        error: e.to_string(),
    })?;
    let status = response.status();
    let body = super::read_bounded(response, super::MAX_ERROR_BYTES)
        .await
        .map(|(body, _)| String::from_utf8_lossy(&body).into_owned())
        .unwrap_or_default();
    if !status.is_success() {
        return Err(ClientError::Refused {
            code: status.as_u16(),
            message: format!(
                "broker {}/{} refused event {id}: {}",
                api.namespace,
                args.broker,
                body.trim()
            ),
        });
    }
    println!(
        "event {id} sent to broker {}/{}: {status}",
        api.namespace, args.broker
    );
    Ok(())
}

/// Bound of one unfinished server-sent-events line held by `tail`.
const MAX_TAIL_LINE_BYTES: usize = 64 << 20;

pub async fn tail(args: TailArgs) -> Result<(), ClientError> {
    let api = Api::new(&args.server)?;
    let mut path = format!(
        "{}/events?follow=true",
        BROKER.object_path(&api.namespace, &args.broker)
    );
    if let Some(filter) = &args.filter {
        path.push_str("&filter=");
        path.push_str(&percent_encode_query(filter));
    }
    let response =
        api.request(Method::GET, &path)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable {
                server: args.server.server.clone(),
                error: e.to_string(),
            })?;
    if !response.status().is_success() {
        let status = response.status();
        let body = super::read_bounded(response, super::MAX_ERROR_BYTES)
            .await
            .map(|(body, _)| body)
            .unwrap_or_default();
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        return Err(super::refused(status, &value, &body));
    }
    eprintln!(
        "following broker {}/{} (Ctrl-C to stop)",
        api.namespace, args.broker
    );
    let mut response = response;
    let mut pending = String::new();
    let mut event_name = String::new();
    let mut data = String::new();
    let stdout = std::io::stdout();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ClientError::Unreachable {
            server: args.server.server.clone(),
            error: e.to_string(),
        })?
    {
        pending.push_str(&String::from_utf8_lossy(&chunk));
        // An event line is one CloudEvent; anything far beyond the ingress limit is not one.
        if pending.len() > MAX_TAIL_LINE_BYTES {
            return Err(ClientError::Other(
                "the tail sent a line over 64 MiB without an end".into(),
            ));
        }
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            let line = line.trim_end_matches(['\r', '\n']);
            if let Some(rest) = line.strip_prefix("event:") {
                event_name = rest.trim().to_owned();
            } else if let Some(rest) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
            } else if line.is_empty() && !data.is_empty() {
                let mut out = stdout.lock();
                match (event_name.as_str(), args.output) {
                    ("cloudevent", Output::Json) => {
                        let _ = writeln!(out, "{data}");
                    }
                    ("cloudevent", _) => {
                        let event: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
                        let _ = writeln!(
                            out,
                            "{}  {}  {}  {}",
                            text(&event, "/knativearrivaltime"),
                            text(&event, "/type"),
                            text(&event, "/source"),
                            text(&event, "/id")
                        );
                    }
                    _ => eprintln!("{data}"),
                }
                let _ = out.flush();
                data.clear();
                event_name.clear();
            }
        }
    }
    Ok(())
}

/// A query parameter value: unreserved characters as is, the rest percent-escaped.
fn percent_encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 2);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(percent_encode_query("type = 'x'"), "type%20%3D%20%27x%27");
    }
}
