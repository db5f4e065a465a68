//! Recovery of the embedded log: fill it, SIGKILL Herald, start it again on the same data
//! directory and time how long until it is ready and accepts again.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use crate::load::{fill, send};
use crate::processes::Herald;

#[derive(Clone, Debug, Serialize)]
pub struct RecoveryPoint {
    /// Events asked for (`--recovery-events`).
    pub requested_events: u64,
    /// Events the fill aimed for: those asked for, or fewer if only that many fit in half the
    /// free disk space at [`DISK_BYTES_PER_PAYLOAD_BYTE`].
    pub planned_events: u64,
    /// Free space on the data directory's file system before the fill.
    pub disk_free_bytes: u64,
    /// Events accepted (202) into the log before the kill: fewer than asked when the fill
    /// reached its time limit.
    pub events: u64,
    pub fill_seconds: f64,
    /// Size of the data directory at the kill.
    pub data_dir_bytes: u64,
    /// From spawning the new process to its first `/readyz` 200.
    pub ready_seconds: f64,
    /// From spawning the new process to its first 202 on the ingress.
    pub first_accept_seconds: f64,
}

/// Disk the embedded log is assumed to take per payload byte when the fill is sized to the
/// free space (measured: about 2.2, key, headers and sled's own overhead included).
pub const DISK_BYTES_PER_PAYLOAD_BYTE: u64 = 3;

/// How long a restarted Herald may take before the measurement gives up.
const RESTART_DEADLINE: Duration = Duration::from_secs(300);

/// Fills the embedded log of a Herald started on `config` (one broker, no trigger: the
/// durable path alone) with up to `events` over `clients`, for at most `fill_limit`; kills it
/// and measures the restart.
pub async fn measure(
    herald_binary: &Path,
    config: &str,
    clients: &[reqwest::Client],
    payload: Bytes,
    events: u64,
    fill_limit: Duration,
) -> anyhow::Result<RecoveryPoint> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("config.yaml"), config)?;
    let args = ["--backend".to_owned(), "sled".to_owned()];
    // The disk is shared: the fill takes at most half of what is free.
    let disk_free_bytes = free_bytes(dir.path()).unwrap_or_default();
    let per_event = (payload.len() as u64).max(1) * DISK_BYTES_PER_PAYLOAD_BYTE;
    let planned_events = events.min(disk_free_bytes / 2 / per_event);
    let herald = Herald::start_in(herald_binary, dir.path(), &args)?;
    let started = Instant::now();
    let accepted = fill(
        &format!("{}/default/bench", herald.ingress),
        clients,
        payload.clone(),
        planned_events,
        fill_limit,
    )
    .await;
    let fill_seconds = started.elapsed().as_secs_f64();
    herald.kill();
    let data_dir_bytes = dir_bytes(&dir.path().join("data"));

    let spawned = Instant::now();
    let herald = Herald::start_in(herald_binary, dir.path(), &args)?;
    let probe = reqwest::Client::new();
    let readyz = format!("{}/readyz", herald.admin);
    loop {
        let ready = probe
            .get(&readyz)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            break;
        }
        anyhow::ensure!(
            spawned.elapsed() < RESTART_DEADLINE,
            "herald not ready {RESTART_DEADLINE:?} after the restart"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let ready_seconds = spawned.elapsed().as_secs_f64();
    let url = format!("{}/default/bench", herald.ingress);
    while send(&probe, &url, &payload).await.is_err() {
        anyhow::ensure!(
            spawned.elapsed() < RESTART_DEADLINE,
            "herald accepted nothing {RESTART_DEADLINE:?} after the restart"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(RecoveryPoint {
        requested_events: events,
        planned_events,
        disk_free_bytes,
        events: accepted,
        fill_seconds,
        data_dir_bytes,
        ready_seconds,
        first_accept_seconds: spawned.elapsed().as_secs_f64(),
    })
}

/// Bytes available to this user on the file system of `path`.
fn free_bytes(path: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(path).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Bytes of the files under `dir`, recursively (unreadable entries count as nothing).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}
