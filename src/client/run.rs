//! `herald run --sink REF -- CMD...`: Knative's SinkBinding for a local program.

use std::collections::BTreeMap;
use std::process::ExitCode;

use reqwest::Method;

use super::{text, Api, ClientError};
use crate::cli::RunArgs;
use crate::kinds::BROKER;

/// Resolves the sink, runs the program with `K_SINK` and friends, and exits with its code.
/// SIGTERM and SIGINT are passed on to the program.
pub async fn run(args: RunArgs) -> Result<ExitCode, ClientError> {
    let sink = resolve_sink(&args).await?;
    let mut overrides = BTreeMap::new();
    for pair in &args.ce_overrides {
        let (name, value) = pair.split_once('=').ok_or_else(|| {
            ClientError::Usage(format!("--ce-override {pair:?}: expected NAME=VALUE"))
        })?;
        overrides.insert(name.to_owned(), value.to_owned());
    }
    let (program, program_args) = args
        .command
        .split_first()
        .ok_or_else(|| ClientError::Usage("give the program to run after --".into()))?;
    let env = herald_sources::container::binding_env(&sink, &overrides, "herald-run");
    let mut child = tokio::process::Command::new(program)
        .args(program_args)
        .envs(env)
        .spawn()
        .map_err(|e| ClientError::Usage(format!("cannot run {program}: {e}")))?;
    use rustix::process::{kill_process, Pid, Signal};
    use tokio::signal::unix::{signal, SignalKind};
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| ClientError::Other(e.to_string()))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| ClientError::Other(e.to_string()))?;
    let status = loop {
        let forward = tokio::select! {
            status = child.wait() => break status,
            _ = term.recv() => Signal::TERM,
            _ = int.recv() => Signal::INT,
        };
        if let Some(pid) = child.id().and_then(|id| Pid::from_raw(id.try_into().ok()?)) {
            // A child that exited meanwhile is reaped by the next wait.
            let _ = kill_process(pid, forward);
        }
    }
    .map_err(|e| ClientError::Other(format!("{program}: {e}")))?;
    Ok(match status.code() {
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

async fn resolve_sink(args: &RunArgs) -> Result<String, ClientError> {
    if args.sink.starts_with("http://") || args.sink.starts_with("https://") {
        return Ok(args.sink.clone());
    }
    let Some(reference) = args.sink.strip_prefix("broker:") else {
        return Err(ClientError::Usage(format!(
            "--sink {:?}: use broker:NAME, broker:NAMESPACE/NAME or an http(s) URL",
            args.sink
        )));
    };
    let api = Api::new(&args.server)?;
    let (namespace, name) = reference
        .split_once('/')
        .unwrap_or((api.namespace.as_str(), reference));
    let broker = api
        .call(Method::GET, &BROKER.object_path(namespace, name))
        .await?;
    let url = text(&broker, "/status/address/url");
    if url.is_empty() {
        return Err(ClientError::Other(format!(
            "broker {namespace}/{name} has no address yet"
        )));
    }
    Ok(url.to_owned())
}
