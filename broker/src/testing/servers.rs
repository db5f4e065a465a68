//! Whether the servers some tests need are here. `scripts/test` installs them and sets
//! [`SERVERS_VARIABLE`]: then every test runs, and one whose server is missing fails. A plain
//! `cargo test` skips the tests whose server is missing instead, and says once per server
//! (on the terminal, past the test harness's capture) how to get it.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Set by `scripts/test`: every server is expected, none is skipped.
pub const SERVERS_VARIABLE: &str = "HERALD_TEST_SERVERS";

/// A server (or set of programs) that some tests run against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// nats-server, from `HERALD_NATS_SERVER` or the `PATH`.
    Nats,
    /// Apache Kafka's jars in `HERALD_KAFKA_LIBS`, run with `java`.
    Kafka,
    /// kube-apiserver and etcd from `HERALD_KUBE_APISERVER` and `HERALD_ETCD`, with `openssl`.
    KubeApiServer,
    /// The CloudEvents SDK programs of the interop matrix (`HERALD_INTEROP_*`, `node`).
    /// scripts/lib/sdks.sh installs what the machine's toolchains allow and fails under CI
    /// when one is missing; elsewhere the matrix is skipped, under scripts/test too.
    Sdks,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Nats => "nats-server",
            Server::Kafka => "Kafka",
            Server::KubeApiServer => "kube-apiserver and etcd",
            Server::Sdks => "the CloudEvents SDKs",
        }
    }

    /// What is missing, or `None` when everything is here.
    fn missing(self) -> Option<String> {
        let mut missing = Vec::new();
        let mut file_in = |variable: &str| match std::env::var_os(variable) {
            Some(path) if Path::new(&path).exists() => {}
            _ => missing.push(format!("${variable}")),
        };
        match self {
            Server::Nats => match std::env::var_os("HERALD_NATS_SERVER") {
                Some(_) => file_in("HERALD_NATS_SERVER"),
                None if on_path("nats-server") => {}
                None => missing.push("nats-server on the PATH or $HERALD_NATS_SERVER".into()),
            },
            Server::Kafka => {
                file_in("HERALD_KAFKA_LIBS");
                if !on_path("java") {
                    missing.push("java".into());
                }
            }
            Server::KubeApiServer => {
                file_in("HERALD_KUBE_APISERVER");
                file_in("HERALD_ETCD");
                if !on_path("openssl") {
                    missing.push("openssl".into());
                }
            }
            Server::Sdks => {
                for variable in [
                    "HERALD_INTEROP_GO",
                    "HERALD_INTEROP_NODE_PATH",
                    "HERALD_INTEROP_PYTHON",
                ] {
                    file_in(variable);
                }
                if !on_path("node") {
                    missing.push("node".into());
                }
            }
        }
        (!missing.is_empty()).then(|| missing.join(", "))
    }
}

/// Whether the tests that need `server` run: always under `scripts/test`, else only when it
/// is here. A test calls it first and returns (passes, skipped) on `false`.
pub fn available(server: Server) -> bool {
    match server.missing() {
        None => true,
        Some(missing) if server == Server::Sdks => {
            say_skipped(server.name(), &missing);
            false
        }
        Some(missing) => run_anyway_or_skip(server.name(), &missing),
    }
}

/// Like [`available`] for something else a test needs, found by the test (`present`);
/// `missing` says what is not there.
pub fn present_or_skip(what: &'static str, present: bool, missing: &str) -> bool {
    present || run_anyway_or_skip(what, missing)
}

fn run_anyway_or_skip(what: &'static str, missing: &str) -> bool {
    if std::env::var_os(SERVERS_VARIABLE).is_some() {
        // The test runs and fails on what is missing: CI never skips silently.
        return true;
    }
    say_skipped(what, missing);
    false
}

/// Says once per `what` that its tests are skipped and why.
fn say_skipped(what: &'static str, missing: &str) {
    static SAID: Mutex<BTreeSet<&str>> = Mutex::new(BTreeSet::new());
    let first = SAID
        .lock()
        .map(|mut said| said.insert(what))
        .unwrap_or(true);
    if first {
        // Straight to the terminal: the harness captures `eprintln!` of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: the tests that need {what} ({missing} missing); scripts/test installs \
             everything and runs them all"
        );
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir: PathBuf| dir.join(program).is_file())
    })
}
