//! Test support shared by this crate's tests and the end-to-end tests: a real nats-server
//! with JetStream, started on a free port with its own store and stopped on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod servers;
pub use servers::{available, Server};

/// A running nats-server (2.10+), found in `HERALD_NATS_SERVER` or on the `PATH`.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
}

fn binary() -> PathBuf {
    std::env::var_os("HERALD_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"))
}

impl NatsServer {
    /// Starts a server and waits until it accepts connections.
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let store = tempfile::tempdir().expect("a store directory");
        let mut server = Self {
            child: None,
            port,
            store,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: JetStream recovers from its store on the next start.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new(binary())
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run nats-server ({e}): run the tests through scripts/test, which installs it, \
                     or set HERALD_NATS_SERVER"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not start on port {}",
                self.port
            );
            #[allow(
                clippy::disallowed_methods,
                reason = "a synchronous wait on a condition with a deadline"
            )]
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A real single-node Apache Kafka (KRaft, broker and controller in one JVM) from the jars in
/// `HERALD_KAFKA_LIBS` (scripts/test fetches them), on free ports with its own data directory.
/// Its PID is written to `HERALD_KAFKA_PIDS` (when set) so that a run that dies still gets its
/// brokers stopped; dropping it stops it.
#[cfg(feature = "kafka")]
pub struct KafkaServer {
    child: Option<Child>,
    port: u16,
    /// A second listener that asks for SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) as
    /// [`KAFKA_SASL_USER`] with [`KAFKA_SASL_PASSWORD`].
    sasl_port: u16,
    controller_port: u16,
    dir: tempfile::TempDir,
    starts: usize,
}

/// Creates `topic` with `partitions` partitions (one replica) on the Kafka at `bootstrap`;
/// a topic that already exists is left as it is.
#[cfg(feature = "kafka")]
pub async fn create_kafka_topic(bootstrap: &str, topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("a Kafka admin client");
    let results = admin
        .create_topics(
            [&NewTopic::new(
                topic,
                partitions,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new(),
        )
        .await
        .expect("the topic is created");
    for result in results {
        match result {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => panic!("creating topic {topic}: {code}"),
        }
    }
}

/// The user the test brokers' SASL listener knows, with every mechanism it offers.
#[cfg(feature = "kafka")]
pub const KAFKA_SASL_USER: &str = "herald";
#[cfg(feature = "kafka")]
pub const KAFKA_SASL_PASSWORD: &str = "herald-test-password";

#[cfg(feature = "kafka")]
mod kafka_server {
    use std::io::Write;
    use std::path::PathBuf;
    use std::process::{Command, Stdio};
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    use rustix::process::{kill_process, Pid, Signal};

    use super::{KafkaServer, KAFKA_SASL_PASSWORD, KAFKA_SASL_USER};

    const STARTED: &str = "Kafka Server started";

    /// `N` distinct free ports: all bound at once, so that none is handed out twice.
    fn free_ports<const N: usize>() -> [u16; N] {
        let listeners: Vec<std::net::TcpListener> = (0..N)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
            .collect();
        std::array::from_fn(|i| {
            listeners[i]
                .local_addr()
                .map(|a| a.port())
                .expect("a free port")
        })
    }

    fn libs() -> PathBuf {
        std::env::var_os("HERALD_KAFKA_LIBS").map(PathBuf::from).expect(
            "HERALD_KAFKA_LIBS is not set: run the tests through scripts/test, which fetches Kafka's jars",
        )
    }

    fn java(libs: &std::path::Path, dir: &std::path::Path) -> Command {
        let mut command = Command::new("java");
        command
            .args([
                "-Xms64m",
                "-Xmx512m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
            ])
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                dir.join("log4j2.properties").display()
            ))
            .arg("-cp")
            .arg(format!("{}/*", libs.display()));
        command
    }

    /// The shared broker's PID and PID file, for the exit hook.
    static SHARED_PID: OnceLock<u32> = OnceLock::new();
    static SHARED_PIDFILE: OnceLock<PathBuf> = OnceLock::new();
    static SHARED: OnceLock<std::sync::Mutex<KafkaServer>> = OnceLock::new();

    extern "C" fn stop_shared() {
        if let Some(pid) = SHARED_PID
            .get()
            .and_then(|pid| Pid::from_raw((*pid).try_into().ok()?))
        {
            let _ = kill_process(pid, Signal::KILL);
        }
        if let Some(pidfile) = SHARED_PIDFILE.get() {
            let _ = std::fs::remove_file(pidfile);
        }
    }

    fn pidfile(pid: u32) -> Option<PathBuf> {
        std::env::var_os("HERALD_KAFKA_PIDS")
            .map(|dir| PathBuf::from(dir).join(format!("{pid}.pid")))
    }

    impl KafkaServer {
        /// Starts a broker of its own (for tests that stop or kill Kafka).
        pub fn start() -> Self {
            let dir = tempfile::tempdir().expect("a Kafka directory");
            let [port, sasl_port, controller_port] = free_ports();
            let mut server = Self {
                child: None,
                port,
                sasl_port,
                controller_port,
                dir,
                starts: 0,
            };
            server.write_config();
            let format = java(&libs(), server.dir.path())
                .args([
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    "aGVyYWxkLXRlc3RzLTEyMw",
                    "-c",
                ])
                .arg(server.dir.path().join("server.properties"))
                .args(
                    ["SCRAM-SHA-256", "SCRAM-SHA-512"]
                        .iter()
                        .flat_map(|mechanism| {
                            [
                                "--add-scram".to_owned(),
                                format!(
                            "{mechanism}=[name={KAFKA_SASL_USER},password={KAFKA_SASL_PASSWORD}]"
                        ),
                            ]
                        }),
                )
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .expect("run java (a JDK is needed for the Kafka tests)");
            assert!(
                format.status.success(),
                "formatting Kafka's storage failed: {}",
                String::from_utf8_lossy(&format.stderr)
            );
            server.restart();
            server
        }

        /// One broker for the whole test process, stopped when the process exits. Tests
        /// sharing it use their own topic prefix.
        pub fn shared() -> String {
            Self::with_shared(Self::bootstrap)
        }

        /// The shared broker's SASL listener (see [`KafkaServer::sasl_bootstrap`]).
        pub fn shared_sasl() -> String {
            Self::with_shared(Self::sasl_bootstrap)
        }

        fn with_shared(address: fn(&Self) -> String) -> String {
            SHARED
                .get_or_init(|| {
                    let server = Self::start();
                    if let Some(child) = &server.child {
                        let _ = SHARED_PID.set(child.id());
                        if let Some(path) = pidfile(child.id()) {
                            let _ = SHARED_PIDFILE.set(path);
                        }
                        // A documented exception to the ban on `unsafe` (README, Development):
                        // nothing else runs code when a test binary exits (statics are never
                        // dropped), and without it every test binary would leave a JVM behind.
                        // SAFETY: registering a plain function to run at exit.
                        #[allow(unsafe_code, reason = "atexit: see the comment above")]
                        unsafe {
                            libc::atexit(stop_shared);
                        }
                    }
                    std::sync::Mutex::new(server)
                })
                .lock()
                .map(|s| address(&s))
                .expect("the shared Kafka")
        }

        pub fn bootstrap(&self) -> String {
            format!("127.0.0.1:{}", self.port)
        }

        /// The listener that asks for SASL (no TLS): user [`KAFKA_SASL_USER`], password
        /// [`KAFKA_SASL_PASSWORD`], mechanism PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
        pub fn sasl_bootstrap(&self) -> String {
            format!("127.0.0.1:{}", self.sasl_port)
        }

        fn write_config(&self) {
            let dir = self.dir.path();
            let properties = format!(
                "process.roles=broker,controller\nnode.id=1\ncontroller.quorum.voters=1@127.0.0.1:{c}\n\
                 listeners=PLAINTEXT://127.0.0.1:{p},SASL_PLAINTEXT://127.0.0.1:{s},CONTROLLER://127.0.0.1:{c}\n\
                 advertised.listeners=PLAINTEXT://127.0.0.1:{p},SASL_PLAINTEXT://127.0.0.1:{s}\n\
                 controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n\
                 listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT\n\
                 sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512\n\
                 listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_{user}=\"{password}\";\n\
                 listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
                 listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
                 log.dirs={data}\nnum.partitions=1\noffsets.topic.replication.factor=1\n\
                 offsets.topic.num.partitions=4\ntransaction.state.log.replication.factor=1\n\
                 transaction.state.log.min.isr=1\nshare.coordinator.state.topic.replication.factor=1\n\
                 share.coordinator.state.topic.min.isr=1\ngroup.initial.rebalance.delay.ms=0\n\
                 auto.create.topics.enable=false\nlog.segment.bytes=16777216\n",
                p = self.port,
                s = self.sasl_port,
                c = self.controller_port,
                user = KAFKA_SASL_USER,
                password = KAFKA_SASL_PASSWORD,
                data = dir.join("data").display(),
            );
            std::fs::write(dir.join("server.properties"), properties).expect("server.properties");
            let log4j = format!(
                "rootLogger.level=WARN\nrootLogger.appenderRef.file.ref=file\n\
                 logger.started.name=kafka.server.KafkaRaftServer\nlogger.started.level=INFO\n\
                 appender.file.type=File\nappender.file.name=file\nappender.file.fileName={}\n\
                 appender.file.layout.type=PatternLayout\nappender.file.layout.pattern=%d %p %c - %m%n\n",
                dir.join("kafka.log").display()
            );
            std::fs::write(dir.join("log4j2.properties"), log4j).expect("log4j2.properties");
        }

        fn started_count(&self) -> usize {
            std::fs::read_to_string(self.dir.path().join("kafka.log"))
                .map(|log| log.matches(STARTED).count())
                .unwrap_or(0)
        }

        /// SIGKILL: Kafka recovers from its data directory on the next start.
        pub fn kill(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
                if let Some(path) = pidfile(child.id()) {
                    let _ = std::fs::remove_file(path);
                }
            }
        }

        /// Starts the broker (again) on the same ports and data, and waits until it serves.
        pub fn restart(&mut self) {
            self.kill();
            let child = java(&libs(), self.dir.path())
                .arg("kafka.Kafka")
                .arg(self.dir.path().join("server.properties"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("run java (a JDK is needed for the Kafka tests)");
            if let Some(path) = pidfile(child.id()) {
                if let Ok(mut file) = std::fs::File::create(path) {
                    let _ = write!(file, "{}", child.id());
                }
            }
            self.child = Some(child);
            self.starts += 1;
            let deadline = Instant::now() + Duration::from_secs(60);
            while self.started_count() < self.starts {
                if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                    panic!(
                        "Kafka exited with {status}: {}",
                        std::fs::read_to_string(self.dir.path().join("kafka.log"))
                            .unwrap_or_default()
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "Kafka did not start on port {}",
                    self.port
                );
                #[allow(
                    clippy::disallowed_methods,
                    reason = "a synchronous wait on a condition with a deadline"
                )]
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    impl Drop for KafkaServer {
        fn drop(&mut self) {
            self.kill();
        }
    }
}
