//! ContainerSource (`sources.knative.dev/v1`) outside Kubernetes: the template's first
//! container runs as a child process with the environment Knative's SinkBinding injects
//! (`K_SINK`, `K_CE_OVERRIDES`, `K_COMPONENT`), restarted with backoff whenever it exits.
//! With sender identity on, `K_OIDC_TOKEN_FILE` names a file holding its token for the sink
//! (`crate::token_file`).
//! Its output goes to Herald's log, tagged with the source.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use herald_crds::{ContainerSourceSpec, FieldError};
use rustix::process::{kill_process, Pid, Signal};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::{token_file, SinkClient, Source, SourceError};

/// How long a stopped program gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Restart backoff: from 1 s, doubling to 30 s; reset once a run lasted this long.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const RESTART_BACKOFF: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_secs(1))
    .with_max_delay(MAX_BACKOFF)
    .without_max_times();

/// The environment Knative's SinkBinding gives a workload.
pub fn binding_env(
    sink: &str,
    overrides: &BTreeMap<String, String>,
    component: &str,
) -> Vec<(String, String)> {
    let overrides = serde_json::json!({ "extensions": overrides });
    vec![
        ("K_SINK".into(), sink.to_owned()),
        ("K_CE_OVERRIDES".into(), overrides.to_string()),
        ("K_COMPONENT".into(), component.to_owned()),
    ]
}

/// What runs: the first container's command, arguments and plain environment.
#[derive(Debug, Clone)]
pub struct ContainerSource {
    pub namespace: String,
    pub name: String,
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Ignored outside Kubernetes (warned about at start).
    image: Option<String>,
    /// Where token files go (`{data-dir}/oidc/sources`): with sender identity on, the
    /// program finds its token for the sink at the path in `K_OIDC_TOKEN_FILE`.
    token_dir: Option<PathBuf>,
}

pub fn validate(spec: &ContainerSourceSpec) -> Result<(), FieldError> {
    ContainerSource::new("", "", spec).map(|_| ())
}

impl ContainerSource {
    pub fn new(
        namespace: &str,
        name: &str,
        spec: &ContainerSourceSpec,
    ) -> Result<Self, FieldError> {
        let base = "spec.template.spec.containers[0]";
        let container = spec
            .template
            .spec
            .as_ref()
            .and_then(|pod| pod.containers.first())
            .ok_or_else(|| {
                FieldError::new("spec.template.spec.containers", "one container is required")
            })?;
        let mut command = container.command.clone().unwrap_or_default();
        if command.is_empty() {
            let image = container.image.as_deref().unwrap_or("the image");
            return Err(FieldError::new(
                format!("{base}.command"),
                format!(
                    "required outside Kubernetes: Herald runs the command as a child process and does not pull {image}; give its program as command (and args), or run the image's program yourself under `herald run --sink broker:NAMESPACE/BROKER -- PROGRAM ARGS...`, which sets K_SINK and K_CE_OVERRIDES as Knative's SinkBinding does; on a cluster, herald controller runs the image as a Deployment"
                ),
            ));
        }
        let program = command.remove(0);
        let mut args = command;
        args.extend(container.args.clone().unwrap_or_default());
        let mut env = Vec::new();
        for (i, var) in container.env.iter().flatten().enumerate() {
            if var.value_from.is_some() {
                return Err(FieldError::new(
                    format!("{base}.env[{i}].valueFrom"),
                    "outside Kubernetes only plain values are supported",
                ));
            }
            env.push((var.name.clone(), var.value.clone().unwrap_or_default()));
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            program,
            args,
            env,
            image: container.image.clone(),
            token_dir: None,
        })
    }

    /// Gives the program a token file under `dir` when its sink takes a token.
    pub fn with_token_dir(mut self, dir: PathBuf) -> Self {
        self.token_dir = Some(dir);
        self
    }

    /// Writes the token file, when the sink takes a token, and keeps it fresh until
    /// `shutdown`; returns its path.
    async fn token_file(
        &self,
        sink: &SinkClient,
        shutdown: &CancellationToken,
    ) -> Result<Option<PathBuf>, SourceError> {
        let Some(dir) = &self.token_dir else {
            return Ok(None);
        };
        let path = token_file::path_of(
            &std::path::absolute(dir).unwrap_or_else(|_| dir.clone()),
            &self.namespace,
            &self.name,
        );
        let first = token_file::write_current(sink, &path)
            .await
            .map_err(|e| SourceError::Input(e.to_string()))?;
        let Some(first) = first else {
            return Ok(None);
        };
        tokio::spawn(token_file::keep_fresh(
            sink.clone(),
            path.clone(),
            first,
            shutdown.clone(),
        ));
        Ok(Some(path))
    }

    fn spawn(&self, sink: &SinkClient, token_file: Option<&Path>) -> std::io::Result<Child> {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .envs(binding_env(sink.url(), sink.overrides(), "containersource"));
        if let Some(path) = token_file {
            command.env(token_file::TOKEN_FILE_ENV, path);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command.spawn()
    }
}

/// Forwards a program's output lines to Herald's log.
fn forward(output: impl AsyncRead + Unpin + Send + 'static, source: String, stream: &'static str) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(output).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(%source, stream, "{line}");
        }
    });
}

/// SIGTERM, then SIGKILL after the grace period.
pub async fn stop_child(child: &mut Child) {
    if let Some(pid) = child.id().and_then(|id| Pid::from_raw(id.try_into().ok()?)) {
        // A child that exited meanwhile is reaped by the wait below.
        let _ = kill_process(pid, Signal::TERM);
    }
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

#[async_trait::async_trait]
impl Source for ContainerSource {
    fn describe(&self) -> String {
        format!("ContainerSource {}/{}", self.namespace, self.name)
    }

    async fn run(&self, sink: SinkClient, shutdown: CancellationToken) -> Result<(), SourceError> {
        let source = self.describe();
        if let Some(image) = &self.image {
            tracing::warn!(%source, %image, "the image is ignored outside Kubernetes: the command runs as a local process");
        }
        // The refresher stops (and removes the file) when this run ends, however it ends.
        let run_over = shutdown.child_token();
        let _stop_refresher = run_over.clone().drop_guard();
        let token_file = self.token_file(&sink, &run_over).await?;
        let mut backoff = RESTART_BACKOFF.build();
        loop {
            let started = Instant::now();
            match self.spawn(&sink, token_file.as_deref()) {
                Ok(mut child) => {
                    tracing::info!(%source, program = %self.program, pid = child.id(), "started");
                    if let Some(out) = child.stdout.take() {
                        forward(out, source.clone(), "stdout");
                    }
                    if let Some(err) = child.stderr.take() {
                        forward(err, source.clone(), "stderr");
                    }
                    tokio::select! {
                        status = child.wait() => {
                            tracing::warn!(%source, status = ?status.map(|s| s.to_string()), "exited; restarting");
                        }
                        _ = shutdown.cancelled() => {
                            stop_child(&mut child).await;
                            return Ok(());
                        }
                    }
                }
                Err(error) => {
                    tracing::error!(%source, program = %self.program, %error, "cannot start");
                }
            }
            if started.elapsed() >= MAX_BACKOFF {
                backoff = RESTART_BACKOFF.build();
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff.next().unwrap_or(MAX_BACKOFF)) => {}
                _ = shutdown.cancelled() => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, EnvVar, EnvVarSource, PodSpec, PodTemplateSpec};

    fn spec(container: Container) -> ContainerSourceSpec {
        ContainerSourceSpec {
            template: PodTemplateSpec {
                spec: Some(PodSpec {
                    containers: vec![container],
                    ..PodSpec::default()
                }),
                ..PodTemplateSpec::default()
            },
            ..ContainerSourceSpec::default()
        }
    }

    #[test]
    fn command_args_and_env() {
        let source = ContainerSource::new(
            "ns",
            "c",
            &spec(Container {
                command: Some(vec!["python3".into(), "-u".into()]),
                args: Some(vec!["adapter.py".into()]),
                env: Some(vec![EnvVar {
                    name: "MODE".into(),
                    value: Some("fast".into()),
                    ..EnvVar::default()
                }]),
                ..Container::default()
            }),
        )
        .unwrap();
        assert_eq!(source.program, "python3");
        assert_eq!(source.args, ["-u", "adapter.py"]);
        assert_eq!(source.env, [("MODE".to_owned(), "fast".to_owned())]);
        let env = binding_env(
            "http://h/ns/b",
            &BTreeMap::from([("team".into(), "a".into())]),
            "x",
        );
        assert_eq!(env[1].1, r#"{"extensions":{"team":"a"}}"#);
    }

    #[test]
    fn what_cannot_run_here_is_an_error() {
        let image_only = Container {
            image: Some("ghcr.io/x/adapter".into()),
            ..Container::default()
        };
        let error = validate(&spec(image_only)).unwrap_err();
        assert_eq!(error.path, "spec.template.spec.containers[0].command");
        for hint in [
            "ghcr.io/x/adapter",
            "herald run --sink broker:",
            "herald controller",
        ] {
            assert!(
                error.message.contains(hint),
                "{hint:?} in {}",
                error.message
            );
        }
        let from_secret = Container {
            command: Some(vec!["x".into()]),
            env: Some(vec![EnvVar {
                name: "TOKEN".into(),
                value_from: Some(EnvVarSource::default()),
                ..EnvVar::default()
            }]),
            ..Container::default()
        };
        assert_eq!(
            validate(&spec(from_secret)).unwrap_err().path,
            "spec.template.spec.containers[0].env[0].valueFrom"
        );
        assert_eq!(
            validate(&ContainerSourceSpec::default()).unwrap_err().path,
            "spec.template.spec.containers"
        );
    }
}
