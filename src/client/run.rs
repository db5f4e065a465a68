//! `herald run --sink REF -- CMD...`: Knative's SinkBinding for a local program.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use herald_sources::{token_file, SinkClient, SinkToken};
use reqwest::Method;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::{text, Api, ClientError};
use crate::cli::RunArgs;
use crate::kinds::BROKER;

/// Resolves the sink, runs the program with `K_SINK` and friends, and exits with its code.
/// SIGTERM and SIGINT are passed on to the program.
pub async fn run(args: RunArgs) -> Result<ExitCode, ClientError> {
    let api = Arc::new(Api::new(&args.server)?);
    let (sink, audience) = resolve_sink(&args, &api).await?;
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
    let token = match (&args.service_account, audience) {
        (Some(account), Some(audience)) => {
            let subject = super::token::service_account_subject(account)?;
            Some(TokenFile::start(api.clone(), subject, audience, &sink).await?)
        }
        (Some(_), None) => {
            eprintln!("herald run: the sink has no audience (sender identity is off, or it is a URL): the program gets no token file");
            None
        }
        (None, _) => None,
    };
    let mut command = tokio::process::Command::new(program);
    command.args(program_args).envs(env);
    if let Some(token) = &token {
        command.env(token_file::TOKEN_FILE_ENV, &token.path);
    }
    let mut child = command
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
    .map_err(|e| ClientError::Other(format!("{program}: {e}")));
    if let Some(token) = token {
        token.remove();
    }
    let status = status?;
    Ok(match status.code() {
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

/// The program's token file: in a fresh private directory under the system's temporary
/// one, rewritten by `token_file::keep_fresh` until the program exits, then removed.
struct TokenFile {
    dir: PathBuf,
    path: PathBuf,
    stop: CancellationToken,
}

impl TokenFile {
    async fn start(
        api: Arc<Api>,
        subject: String,
        audience: String,
        sink: &str,
    ) -> Result<Self, ClientError> {
        use std::os::unix::fs::DirBuilderExt;
        // A new name, created (not reused) with mode 0700: nobody else can own or read it.
        let dir = std::env::temp_dir().join(format!("herald-run-{}", uuid::Uuid::new_v4()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| ClientError::Other(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join("token");
        let client =
            SinkClient::new(sink.to_owned(), BTreeMap::new()).with_token(Arc::new(AdminToken {
                api,
                subject,
                audience,
            }));
        let first = match token_file::write_current(&client, &path).await {
            Ok(Some(first)) => first,
            // The client has a token source: it yields a token or an error.
            Ok(None) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(ClientError::Other("no token for the program".into()));
            }
            Err(error) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(ClientError::Other(format!("the program's token: {error}")));
            }
        };
        let stop = CancellationToken::new();
        tokio::spawn(token_file::keep_fresh(
            client,
            path.clone(),
            first,
            stop.clone(),
        ));
        Ok(Self { dir, path, stop })
    }

    fn remove(self) {
        self.stop.cancel();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Tokens from the admin API's issuer (`herald token`'s endpoint), one per call.
struct AdminToken {
    api: Arc<Api>,
    subject: String,
    audience: String,
}

#[async_trait::async_trait]
impl SinkToken for AdminToken {
    async fn token(&self) -> Result<Arc<str>, String> {
        let answer = self
            .api
            .call_json(
                Method::POST,
                crate::api::oidc::TOKEN_PATH,
                &json!({ "subject": self.subject, "audience": self.audience }),
            )
            .await
            .map_err(|e| e.to_string())?;
        answer
            .get("token")
            .and_then(Value::as_str)
            .map(Arc::from)
            .ok_or_else(|| "the answer holds no token".to_owned())
    }
}

/// The sink's URL and, for a broker with sender identity on, its audience.
async fn resolve_sink(args: &RunArgs, api: &Api) -> Result<(String, Option<String>), ClientError> {
    if args.sink.starts_with("http://") || args.sink.starts_with("https://") {
        return Ok((args.sink.clone(), None));
    }
    let Some(reference) = args.sink.strip_prefix("broker:") else {
        return Err(ClientError::Usage(format!(
            "--sink {:?}: use broker:NAME, broker:NAMESPACE/NAME or an http(s) URL",
            args.sink
        )));
    };
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
    let audience = text(&broker, "/status/address/audience");
    Ok((
        url.to_owned(),
        (!audience.is_empty()).then(|| audience.to_owned()),
    ))
}
