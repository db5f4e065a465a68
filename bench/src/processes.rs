//! The processes a run needs: Herald itself and a fast subscriber; and what `/proc` tells
//! about a process (resident memory, CPU time).

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
    /// `http://` address of the ingress listener.
    pub ingress: String,
    /// `http://` address of the admin listener (`/readyz`).
    pub admin: String,
    /// `https://` address of the HTTPS ingress, with `--tls-cert`.
    pub https_ingress: Option<String>,
    _dirs: Option<tempfile::TempDir>,
}

impl Herald {
    /// Starts Herald with `config` in a temporary directory of its own.
    pub fn start(binary: &Path, config: &str, args: &[String]) -> anyhow::Result<Self> {
        let dirs = tempfile::tempdir()?;
        std::fs::write(dirs.path().join("config.yaml"), config)?;
        let mut herald = Self::start_in(binary, dirs.path(), args)?;
        herald._dirs = Some(dirs);
        Ok(herald)
    }

    /// Starts Herald on `dir/config.yaml` with `dir/data` as its data directory, and waits
    /// until both listeners are bound (their addresses come from its log).
    pub fn start_in(binary: &Path, dir: &Path, args: &[String]) -> anyhow::Result<Self> {
        let mut child = Command::new(binary)
            .arg("serve")
            .arg("--config")
            .arg(dir.join("config.yaml"))
            .arg("--data-dir")
            .arg(dir.join("data"))
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
        let https = Arc::new(Mutex::new(None));
        let https_seen = https.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                for listener in ["ingress", "admin"] {
                    // The address is the first field after `addr=` (others, such as `https=`,
                    // follow it).
                    if let Some(addr) = line
                        .split(&format!("{listener} listening addr="))
                        .nth(1)
                        .and_then(|rest| rest.split_whitespace().next())
                    {
                        let _ = tx.send((listener, format!("http://{addr}")));
                    }
                }
                if let Some(addr) = line
                    .split("ingress (https) listening addr=")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                {
                    if let Ok(mut https) = https_seen.lock() {
                        *https = Some(format!("https://{addr}"));
                    }
                }
                if let Ok(mut lines) = lines.lock() {
                    if lines.len() < 200 {
                        lines.push(line);
                    }
                }
            }
        });
        let (mut ingress, mut admin) = (None, None);
        let until = Instant::now() + Duration::from_secs(60);
        while ingress.is_none() || admin.is_none() {
            let left = until.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(("ingress", addr)) => ingress = Some(addr),
                Ok((_, addr)) => admin = Some(addr),
                Err(_) => {
                    let _ = child.kill();
                    let log = log.lock().map(|l| l.join("\n")).unwrap_or_default();
                    bail!("herald did not start:\n{log}")
                }
            }
        }
        Ok(Self {
            child,
            ingress: ingress.unwrap_or_default(),
            admin: admin.unwrap_or_default(),
            // Logged before the plain listeners, so known by now.
            https_ingress: https.lock().ok().and_then(|https| https.clone()),
            _dirs: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the Herald process now, in bytes.
    pub fn rss_bytes(&self) -> Option<u64> {
        rss_bytes(self.pid())
    }

    /// CPU time (user and system) Herald has used so far, in seconds.
    pub fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds(self.pid())
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of process `pid` now (Linux `/proc`), in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
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

/// The threads of process `pid` (Linux `/proc/<pid>/status`).
pub fn threads(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

/// User plus system CPU time of process `pid` so far (Linux `/proc/<pid>/stat`, fields 14
/// and 15, in clock ticks), in seconds. Resolution: one tick, usually 10 ms.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: count from after it.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime = fields.next()?.parse::<u64>().ok()?;
    let stime = fields.next()?.parse::<u64>().ok()?;
    let ticks = rustix::param::clock_ticks_per_second();
    (ticks > 0).then(|| (utime + stime) as f64 / ticks as f64)
}

/// CPU seconds per 1,000 events between two readings, if both exist and events were counted.
pub fn cpu_per_1000(before: Option<f64>, after: Option<f64>, events: u64) -> Option<f64> {
    match (before, after) {
        (Some(before), Some(after)) if events > 0 => {
            Some((after - before) * 1000.0 / events as f64)
        }
        _ => None,
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

    /// Events received so far.
    pub fn count(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
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
        while self.count() < count {
            if Instant::now() > until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}
