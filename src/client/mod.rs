//! The `herald` CLI as a client of the admin API: `send`, `apply`, `get`, `describe`,
//! `delete`, `dlq` and `tail`. Exit codes: 0 done, 1 refused or failed, 2 bad usage.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the CLI's output"
)]

mod dlq;
mod events;
mod resources;
mod run;
mod table;
mod token;

use std::process::ExitCode;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::cli::{Command, DlqCommand, Output, ServerArgs};

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error (its `Status` message).
    #[error("{message} ({code})")]
    Refused { code: u16, message: String },
    #[error("cannot reach Herald at {server}: {error}")]
    Unreachable { server: String, error: String },
    /// The command was used wrongly.
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Other(String),
}

impl ClientError {
    fn exit_code(&self) -> ExitCode {
        match self {
            ClientError::Usage(_) => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Refused { code: 404, .. })
    }
}

/// Runs a client command; errors are printed to stderr.
pub fn run(command: Command) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let done = match command {
            Command::Send(args) => events::send(args).await,
            Command::Tail(args) => events::tail(args).await,
            Command::Run(args) => return run::run(args).await,
            Command::Token(args) => token::token(args).await,
            Command::Apply(args) => resources::apply(args).await,
            Command::Get(args) => resources::get(args).await,
            Command::Describe(args) => resources::describe(args).await,
            Command::Delete(args) => resources::delete(args).await,
            Command::Dlq { command } => match command {
                DlqCommand::List(args) => dlq::list(args).await,
                DlqCommand::Show(args) => dlq::show(args).await,
                DlqCommand::Redrive(args) => dlq::redrive(args).await,
                DlqCommand::Purge(args) => dlq::purge(args).await,
            },
            Command::Serve(_)
            | Command::Controller(_)
            | Command::Filter { .. }
            | Command::Crds { .. } => Err(ClientError::Other("not a client command".into())),
        };
        done.map(|()| ExitCode::SUCCESS)
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            error.exit_code()
        }
    }
}

/// The admin API of one Herald.
pub struct Api {
    http: reqwest::Client,
    server: String,
    token: Option<String>,
    pub namespace: String,
}

impl Api {
    pub fn new(args: &ServerArgs) -> Result<Self, ClientError> {
        Ok(Self {
            http: http_client(args.ca_file.as_deref())?,
            server: args.server.trim_end_matches('/').to_owned(),
            token: crate::cli::token(args.token.as_deref()).map(str::to_owned),
            namespace: args.namespace.clone(),
        })
    }

    /// The HTTP client, for requests beside the admin API's (`herald send`).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, format!("{}{path}", self.server));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request
    }

    /// Sends and returns the JSON answer, or the server's error message.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, ClientError> {
        let response = request.send().await.map_err(|e| ClientError::Unreachable {
            server: self.server.clone(),
            error: herald_triggers::attempt::describe(&e),
        })?;
        let status = response.status();
        let (body, complete) = read_bounded(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| ClientError::Unreachable {
                server: self.server.clone(),
                error: herald_triggers::attempt::describe(&e),
            })?;
        if !complete {
            return Err(ClientError::Other(format!(
                "the answer of {} is larger than {MAX_ANSWER_BYTES} bytes",
                self.server
            )));
        }
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        Err(refused(status, &value, &body))
    }

    pub async fn call(&self, method: Method, path: &str) -> Result<Value, ClientError> {
        self.send(self.request(method, path)).await
    }

    pub async fn call_json(
        &self,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Result<Value, ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Other(e.to_string()))?;
        self.send(
            self.request(method, path)
                .header("content-type", "application/json")
                .body(body),
        )
        .await
    }
}

/// The largest admin API answer the CLI reads (a long dead-letter list is a few MiB).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;
/// Error answers (a broker's refusal) are read up to this and cut there.
pub const MAX_ERROR_BYTES: usize = 64 * 1024;

/// The body of `response`, at most `limit` bytes, and whether that was all of it.
pub async fn read_bounded(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, false));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, true))
}

fn refused(status: StatusCode, value: &Value, body: &[u8]) -> ClientError {
    let message = value
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    ClientError::Refused {
        code: status.as_u16(),
        message: if message.is_empty() {
            status.to_string()
        } else {
            message
        },
    }
}

/// Prints a value as YAML or JSON; tables are each command's own.
pub fn print_structured(output: Output, value: &Value) -> Result<(), ClientError> {
    match output {
        Output::Json => {
            println!(
                "{}",
                serde_json::to_string_pretty(value)
                    .map_err(|e| ClientError::Other(e.to_string()))?
            );
        }
        Output::Yaml | Output::Table => {
            print!(
                "{}",
                serde_yaml_ng::to_string(value).map_err(|e| ClientError::Other(e.to_string()))?
            );
        }
    }
    Ok(())
}

/// A string at a JSON pointer, or "".
pub fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The `status` of the `Ready` condition, or "Unknown".
pub fn ready(object: &Value) -> String {
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|conditions| {
            conditions
                .iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        })
        .map(|c| {
            let status = text(c, "/status");
            match c.get("reason").and_then(Value::as_str) {
                Some(reason) if status != "True" => format!("{status} ({reason})"),
                _ => status.to_owned(),
            }
        })
        .unwrap_or_else(|| "Unknown".into())
}

/// The CLI's HTTP client: it trusts the system roots, and `--ca-file` for an https server.
fn http_client(ca_file: Option<&std::path::Path>) -> Result<reqwest::Client, ClientError> {
    let usage = |error: herald_tls::TlsError| ClientError::Usage(format!("--ca-file: {error}"));
    let trust = herald_tls::TrustBundles::load(ca_file.into_iter().map(Into::into).collect())
        .map_err(usage)?;
    herald_tls::Clients::new(std::sync::Arc::new(trust), Box::new(|builder| builder))
        .get(None)
        .map_err(usage)
}
