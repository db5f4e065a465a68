//! The processes a run needs: Herald itself, a fast subscriber, and the bare baseline server.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use axum::http::{HeaderMap, StatusCode};

/// Nanoseconds since the Unix epoch, carried in the `benchsent` extension.
pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
}

/// A running Herald.
pub struct Herald {
    child: Child,
    pub ingress: String,
    _dirs: tempfile::TempDir,
}

impl Herald {
    pub fn start(binary: &Path, config: &str, args: &[String]) -> anyhow::Result<Self> {
        let dirs = tempfile::tempdir()?;
        std::fs::write(dirs.path().join("config.yaml"), config)?;
        let mut child = Command::new(binary)
            .arg("serve")
            .arg("--config")
            .arg(dirs.path().join("config.yaml"))
            .arg("--data-dir")
            .arg(dirs.path().join("data"))
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "warn,herald::serve=info,herald::dataplane=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", binary.display()))?;
        let stderr = child.stderr.take().context("no stderr")?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("ingress listening addr=").nth(1) {
                    let _ = tx.send(addr.trim().to_owned());
                }
                if let Ok(mut lines) = lines.lock() {
                    if lines.len() < 200 {
                        lines.push(line);
                    }
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => Ok(Self {
                child,
                ingress: format!("http://{addr}"),
                _dirs: dirs,
            }),
            Err(_) => {
                let _ = child.kill();
                let log = log.lock().map(|l| l.join("\n")).unwrap_or_default();
                bail!("herald did not start:\n{log}")
            }
        }
    }
}

impl Herald {
    /// Resident memory of the Herald process now (Linux `/proc`), in bytes.
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()?;
        Some(kib * 1024)
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A subscriber that answers 200 at once and records the ingress→subscriber latency.
pub struct FastSubscriber {
    pub url: String,
    pub received: Arc<AtomicU64>,
    latencies: Arc<Mutex<Vec<u64>>>,
}

/// At most this many latency samples are kept per measurement.
const MAX_SAMPLES: usize = 2_000_000;

impl FastSubscriber {
    pub async fn start() -> anyhow::Result<Self> {
        let received = Arc::new(AtomicU64::new(0));
        let latencies = Arc::new(Mutex::new(Vec::new()));
        let (count, samples) = (received.clone(), latencies.clone());
        let app = axum::Router::new().fallback(move |headers: HeaderMap| {
            let (count, samples) = (count.clone(), samples.clone());
            async move {
                count.fetch_add(1, Ordering::Relaxed);
                let sent = headers
                    .get("ce-benchsent")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                if let (Some(sent), Ok(mut samples)) = (sent, samples.lock()) {
                    if samples.len() < MAX_SAMPLES {
                        samples.push(now_nanos().saturating_sub(sent));
                    }
                }
                StatusCode::OK
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self {
            url,
            received,
            latencies,
        })
    }

    /// Takes the latency samples recorded so far (nanoseconds).
    pub fn take_latencies(&self) -> Vec<u64> {
        self.latencies
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }

    /// Waits until `count` events arrived in total, or the deadline passes.
    pub async fn wait_for(&self, count: u64, deadline: Duration) -> bool {
        let until = Instant::now() + deadline;
        while self.received.load(Ordering::Relaxed) < count {
            if Instant::now() > until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}

/// The baseline: axum answering 202 without doing anything.
pub async fn bare_server() -> anyhow::Result<String> {
    let app = axum::Router::new().fallback(|| async { StatusCode::ACCEPTED });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/default/bench", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}
