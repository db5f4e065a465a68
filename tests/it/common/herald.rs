//! Runs the real `herald` binary as a child process.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use herald_broker::log::kafka::{KafkaLog, KafkaOptions};
use herald_broker::log::nats::{NatsLog, NatsOptions, DEFAULT_PUBLISH_TIMEOUT};
use herald_broker::log::sled::SledLog;
use herald_broker::testing::{KafkaServer, NatsServer};
use herald_broker::EventLog;
use rustix::process::{kill_process, Pid, Signal};
use std::time::Duration;

use super::DEADLINE;

/// The log backend a scenario runs on; each adds its own `herald serve` flags.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    fn name(&self) -> &'static str;
    fn args(&self) -> Vec<String>;
    /// Opens the log a (stopped) Herald wrote, to inspect what it stored.
    async fn open_log(&self, dirs: &HeraldDirs) -> Arc<dyn EventLog>;
}

pub struct Sled;

#[async_trait::async_trait]
impl Backend for Sled {
    fn name(&self) -> &'static str {
        "sled"
    }
    fn args(&self) -> Vec<String> {
        vec!["--backend".into(), "sled".into()]
    }
    async fn open_log(&self, dirs: &HeraldDirs) -> Arc<dyn EventLog> {
        Arc::new(SledLog::open(&dirs.data.path().join("log"), 16).expect("open the sled log"))
    }
}

/// Apache Kafka: the test process's shared broker (or one of the test's own), with topics and
/// consumer groups under a prefix of the test's own.
pub struct Kafka {
    pub bootstrap: String,
    pub prefix: String,
    /// A broker of the test's own, when it stops or kills Kafka.
    pub server: Option<KafkaServer>,
    /// Herald runs with `--kafka-shared-reader`.
    pub shared_reader: bool,
}

impl Kafka {
    fn prefix() -> String {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        format!(
            "t{}-{}.",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        )
    }

    /// On the shared broker.
    pub fn shared() -> Self {
        Self {
            bootstrap: KafkaServer::shared(),
            prefix: Self::prefix(),
            server: None,
            shared_reader: false,
        }
    }

    /// On the shared broker, triggers reading each broker's topic through one shared reader.
    pub fn shared_reader() -> Self {
        Self {
            shared_reader: true,
            ..Self::shared()
        }
    }

    /// On a broker of the test's own.
    pub fn start() -> Self {
        let server = KafkaServer::start();
        Self {
            bootstrap: server.bootstrap(),
            prefix: Self::prefix(),
            server: Some(server),
            shared_reader: false,
        }
    }

    pub fn options(&self) -> KafkaOptions {
        KafkaOptions {
            prefix: self.prefix.clone(),
            shared_reader: self.shared_reader,
            ..KafkaOptions::new(self.bootstrap.clone())
        }
    }
}

#[async_trait::async_trait]
impl Backend for Kafka {
    fn name(&self) -> &'static str {
        "kafka"
    }
    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--backend".into(),
            "kafka".into(),
            "--kafka-bootstrap".into(),
            self.bootstrap.clone(),
            "--kafka-prefix".into(),
            self.prefix.clone(),
        ];
        if self.shared_reader {
            args.push("--kafka-shared-reader".into());
        }
        args
    }
    async fn open_log(&self, _dirs: &HeraldDirs) -> Arc<dyn EventLog> {
        Arc::new(KafkaLog::connect(self.options()).expect("a Kafka client"))
    }
}

/// The server a backend runs on, if any (its scenarios skip without it).
pub trait RunsOn {
    const SERVER: Option<herald_broker::testing::Server>;
}

impl RunsOn for Sled {
    const SERVER: Option<herald_broker::testing::Server> = None;
}

impl RunsOn for Kafka {
    const SERVER: Option<herald_broker::testing::Server> =
        Some(herald_broker::testing::Server::Kafka);
}

impl RunsOn for Nats {
    const SERVER: Option<herald_broker::testing::Server> =
        Some(herald_broker::testing::Server::Nats);
}

/// The backend `make` starts, or `None` (the test is skipped) when its server is missing
/// outside `scripts/test`.
pub fn backend_or_skip<B: RunsOn>(make: impl FnOnce() -> B) -> Option<B> {
    match B::SERVER {
        Some(server) if !herald_broker::testing::available(server) => None,
        _ => Some(make()),
    }
}

/// NATS JetStream on a nats-server of the test's own.
pub struct Nats {
    pub server: NatsServer,
    /// Herald runs with `--nats-shared-reader`.
    pub shared_reader: bool,
}

impl Nats {
    pub fn start() -> Self {
        Self {
            server: NatsServer::start(),
            shared_reader: false,
        }
    }

    /// Triggers read each broker's stream through one shared reader.
    pub fn shared_reader() -> Self {
        Self {
            server: NatsServer::start(),
            shared_reader: true,
        }
    }
}

#[async_trait::async_trait]
impl Backend for Nats {
    fn name(&self) -> &'static str {
        "nats"
    }
    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--backend".into(),
            "nats".into(),
            "--nats-url".into(),
            self.server.url(),
        ];
        if self.shared_reader {
            args.push("--nats-shared-reader".into());
        }
        args
    }
    async fn open_log(&self, _dirs: &HeraldDirs) -> Arc<dyn EventLog> {
        let options = NatsOptions {
            url: self.server.url(),
            shared_reader: self.shared_reader,
            ..Default::default()
        };
        Arc::new(
            NatsLog::connect(&options, DEFAULT_PUBLISH_TIMEOUT)
                .await
                .expect("connect to nats-server"),
        )
    }
}

/// A data dir and a config dir that outlive single Herald processes (for restarts).
pub struct HeraldDirs {
    pub data: tempfile::TempDir,
    pub config: tempfile::TempDir,
}

impl HeraldDirs {
    pub fn new(config_yaml: &str) -> Self {
        let dirs = Self {
            data: tempfile::tempdir().unwrap(),
            config: tempfile::tempdir().unwrap(),
        };
        std::fs::write(dirs.config.path().join("config.yaml"), config_yaml).unwrap();
        dirs
    }

    pub fn config_file(&self) -> PathBuf {
        self.config.path().join("config.yaml")
    }
}

/// A running Herald.
/// Listeners on ports the OS picks (read back from the log).
const ON_FREE_PORTS: [&str; 4] = ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];

/// [`ON_FREE_PORTS`] but for a `--listen` the test gives itself.
fn free_ports(extra: &[&str]) -> &'static [&'static str] {
    match extra.contains(&"--listen") {
        true => &ON_FREE_PORTS[2..],
        false => &ON_FREE_PORTS,
    }
}

/// A short shutdown grace, unless the test sets its own.
fn grace(extra: &[&str]) -> &'static [&'static str] {
    match extra.contains(&"--shutdown-grace") {
        true => &[],
        false => &["--shutdown-grace", "5s"],
    }
}

pub struct Herald {
    child: Child,
    /// `http://127.0.0.1:PORT` (under `--tls-only`, the internal loopback listener)
    pub ingress: String,
    /// `https://127.0.0.1:PORT`, with `--tls-cert`.
    pub https_ingress: Option<String>,
    pub admin: String,
    logs: Arc<Mutex<Vec<String>>>,
}

pub fn herald_binary() -> &'static str {
    env!("CARGO_BIN_EXE_herald")
}

impl Herald {
    /// Starts `herald serve` on free ports and waits until both listeners are up.
    pub async fn start(backend: &dyn Backend, dirs: &HeraldDirs, extra: &[&str]) -> Herald {
        Self::start_with(backend, dirs, extra, |_| {}).await
    }

    /// [`Herald::start`], with `adjust` applied to the command before it runs.
    pub async fn start_with(
        backend: &dyn Backend,
        dirs: &HeraldDirs,
        extra: &[&str],
        adjust: impl FnOnce(&mut Command),
    ) -> Herald {
        let mut command = Command::new(herald_binary());
        command
            .arg("serve")
            .arg("--config")
            .arg(dirs.config.path())
            .arg("--data-dir")
            .arg(dirs.data.path())
            .args(free_ports(extra))
            .args(grace(extra))
            .args(backend.args())
            .args(extra);
        adjust(&mut command);
        Self::launch(command).await
    }

    /// Starts `herald controller` against the API server in `kubeconfig`, on free ports.
    pub async fn start_controller(
        backend: &dyn Backend,
        data_dir: &Path,
        kubeconfig: &Path,
        extra: &[&str],
    ) -> Herald {
        let mut command = Command::new(herald_binary());
        command
            .arg("controller")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--data-dir")
            .arg(data_dir)
            .args(ON_FREE_PORTS)
            .args(grace(extra))
            .args(backend.args())
            .args(extra);
        Self::launch(command).await
    }

    /// Runs the command and waits until both listeners are up.
    async fn launch(mut command: Command) -> Herald {
        command
            .env("RUST_LOG", "info,herald_triggers=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn herald");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut herald = Herald {
            child,
            ingress: String::new(),
            https_ingress: None,
            admin: String::new(),
            logs,
        };
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            let found = |marker: &str| {
                herald.logs.lock().unwrap().iter().find_map(|line| {
                    let rest = line.split(marker).nth(1)?;
                    Some(format!("http://{}", rest.split_whitespace().next()?))
                })
            };
            // Under --tls-only, the internal listener's "internal ingress listening".
            let ingress = found("ingress listening addr=");
            if let (Some(ingress), Some(admin)) = (ingress, found("admin listening addr=")) {
                herald.ingress = ingress;
                herald.https_ingress = found("ingress (https) listening addr=")
                    .map(|url| url.replacen("http://", "https://", 1));
                herald.admin = admin;
                return herald;
            }
            if let Some(status) = herald.child.try_wait().unwrap() {
                panic!(
                    "herald exited with {status} before listening:\n{}",
                    herald.logs()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "herald did not start:\n{}",
                herald.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn broker_url(&self, namespace: &str, broker: &str) -> String {
        format!("{}/{namespace}/{broker}", self.ingress)
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.logs.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    /// Waits until a log line contains `needle`: lines are read from Herald's output by another
    /// thread, so a line written before some other sign of progress may not be read yet.
    pub async fn wait_for_log(&self, needle: &str) {
        super::wait_for_async(
            &format!("a log line containing {needle:?}"),
            || async move { self.log_contains(needle) },
        )
        .await;
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGHUP: `herald serve` reads its config files again.
    pub fn hangup(&self) {
        let _ = kill_process(Pid::from_child(&self.child), Signal::HUP);
    }

    /// How many log lines contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// SIGTERM, then waits for the exit.
    pub async fn terminate(self) -> ExitStatus {
        self.stop().await.0
    }

    /// SIGTERM, waits for the exit, and returns the exit status with everything logged.
    pub async fn stop(mut self) -> (ExitStatus, String) {
        let status = self.signal_and_wait().await;
        (status, self.logs())
    }

    /// SIGTERM only; [`Herald::wait`] for the exit.
    pub fn sigterm(&self) {
        let _ = kill_process(Pid::from_child(&self.child), Signal::TERM);
    }

    /// Waits for the exit (after [`Herald::sigterm`]); the exit status and everything logged.
    pub async fn wait(mut self) -> (ExitStatus, String) {
        let status = self.wait_for_exit().await;
        (status, self.logs())
    }

    async fn signal_and_wait(&mut self) -> ExitStatus {
        self.sigterm();
        self.wait_for_exit().await
    }

    async fn wait_for_exit(&mut self) -> ExitStatus {
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "herald did not stop:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `herald serve` with a config that must be rejected; returns (exit status, stderr).
/// A Herald that does not exit within [`DEADLINE`] (it accepted the config) is killed, and
/// its status then says it did not succeed.
pub fn run_invalid(config: &Path, data_dir: &Path) -> (ExitStatus, String) {
    run_invalid_with(config, data_dir, &[])
}

/// [`run_invalid`] with more `herald serve` arguments.
pub fn run_invalid_with(config: &Path, data_dir: &Path, extra: &[&str]) -> (ExitStatus, String) {
    let mut child = Command::new(herald_binary())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run herald");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let deadline = std::time::Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for herald") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().expect("wait for herald");
        }
        #[allow(
            clippy::disallowed_methods,
            reason = "a synchronous wait on a condition with a deadline"
        )]
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, reader.join().unwrap_or_default())
}
