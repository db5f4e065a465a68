//! The open sled database and the segment directory, and reopening them after an I/O error.
//!
//! sled keeps the first I/O error of its background writes (a full disk, say) as a global
//! error: every later write fails with it until the database is opened again, even once the
//! disk has room. So the first I/O error (of sled or of a segment file) marks the log
//! failed; appends are refused while it is, and the writer thread drops every sled handle
//! and opens the database again, with backoff, until probe writes to sled and to the segment
//! directory are durable (see `writer`); it also cuts off what failed appends left in the
//! segments. Every handle to sled lives here, behind locks held only for a clone, so that
//! nothing keeps the failed instance open.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::mpsc;

use super::signal::Signal;
use super::{segments, BrokerTree, WriterMessage};
use crate::log::{BrokerKey, LogError};

/// What appends and reads answer while the database is being reopened.
pub(super) const REOPENING: &str = "the embedded log cannot write to its disk and is reopening";
/// Written and flushed before a reopened database is used: a disk that cannot take this
/// much is not taken as writable again. Large enough to need new blocks (a 4 KiB page
/// left free is not room), small enough to stay inline in sled's log.
const PROBE_BYTES: usize = 16 * 1024;
const PROBE_KEY: &[u8] = b"herald-probe";
/// The directory of the segment files, in the log's directory.
const SEGMENTS_DIR: &str = "segments";
/// Where a broker's events are copied from an earlier version's sled tree before the copy
/// is renamed into place, in the segment directory; no namespace is called so.
pub(super) const MIGRATING_DIR: &str = "_migrating";
/// sled's own background thread writes what is buffered, cleans segments (which reclaims
/// space) and syncs the file at this interval. Nothing's durability depends on it (appends,
/// parking and commits flush by themselves), so it runs rarely: each run is a wake-up and an
/// fsync even when nothing happened.
const SLED_FLUSHER_MS: u64 = 1000;

/// The database and its trees.
#[derive(Clone)]
pub(super) struct Handles {
    pub db: sled::Db,
    pub offsets: sled::Tree,
    pub parked: sled::Tree,
    /// Each broker's first kept offset, by broker prefix (moved by retention).
    pub starts: sled::Tree,
}

/// What the log, its consumers, the writer and the retention thread share.
pub(super) struct Database {
    dir: PathBuf,
    /// sled's page cache, kept for reopening.
    cache_bytes: u64,
    /// Where a segment file is closed and the next started.
    pub segment_bytes: u64,
    /// `None` while the writer reopens the database.
    handles: RwLock<Option<Handles>>,
    pub brokers: Mutex<HashMap<BrokerKey, Arc<BrokerTree>>>,
    /// Set by the first I/O error, cleared once the reopened database took a probe write.
    failed: AtomicBool,
    /// Wakes the writer to reopen; weak, so that dropping the log still stops the writer.
    writer: mpsc::WeakSender<WriterMessage>,
    /// Raised by each trigger commit: wakes the offset flusher (see `flusher`).
    pub offsets_written: Signal,
    /// Flushes the offset flusher made, for tests.
    pub offset_flushes: AtomicU64,
    /// Raised by what may let retention delete something: wakes the retention thread.
    pub retention_wake: Signal,
}

fn lock_poisoned() -> LogError {
    LogError::storage("lock poisoned")
}

impl Database {
    /// Opens the database in `dir`.
    pub fn open(
        dir: &Path,
        cache_bytes: u64,
        segment_bytes: u64,
        writer: mpsc::WeakSender<WriterMessage>,
    ) -> Result<Self, LogError> {
        let handles = open_handles(dir, cache_bytes)?;
        let database = Self {
            dir: dir.to_owned(),
            cache_bytes,
            segment_bytes,
            handles: RwLock::new(Some(handles)),
            brokers: Mutex::new(HashMap::new()),
            failed: AtomicBool::new(false),
            writer,
            offsets_written: Signal::default(),
            offset_flushes: AtomicU64::new(0),
            retention_wake: Signal::default(),
        };
        // What an interrupted migration left: it starts again from the sled tree.
        let migrating = database.segments_root().join(MIGRATING_DIR);
        segments::remove_dir(&migrating)
            .map_err(|e| LogError::storage(migrating.display().to_string()).caused_by(e))?;
        Ok(database)
    }

    /// The directory of the brokers' segment directories.
    pub fn segments_root(&self) -> PathBuf {
        self.dir.join(SEGMENTS_DIR)
    }

    /// `Unavailable` while the database is failed or reopening.
    pub fn check_writable(&self) -> Result<(), LogError> {
        match self.is_failed() {
            true => Err(LogError::unavailable(REOPENING)),
            false => Ok(()),
        }
    }

    /// The open database, or `Unavailable` while it is failed or reopening.
    pub fn handles(&self) -> Result<Handles, LogError> {
        self.check_writable()?;
        self.handles
            .read()
            .map_err(|_| lock_poisoned())?
            .clone()
            .ok_or_else(|| LogError::unavailable(REOPENING))
    }

    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Maps a sled error; an I/O error also marks the database failed and wakes the writer
    /// to reopen it.
    pub fn storage(&self, error: sled::Error) -> LogError {
        if matches!(error, sled::Error::Io(_)) {
            self.fail(&error.to_string());
        }
        LogError::storage("").caused_by(error)
    }

    /// Marks the database failed (once) and wakes the writer.
    pub fn fail(&self, error: &str) {
        if !self.failed.swap(true, Ordering::SeqCst) {
            tracing::error!(
                dir = %self.dir.display(),
                %error,
                "the embedded log cannot write to its disk: appends are refused until it is reopened"
            );
            metrics::gauge!(LOG_WRITABLE).set(0.0);
        }
        if let Some(writer) = self.writer.upgrade() {
            // A full queue wakes the writer anyway.
            let _ = writer.try_send(WriterMessage::Reopen);
        }
    }

    /// Drops every handle of the failed instance (clones held by operations under way go
    /// when they finish; until then the file lock keeps a reopen from succeeding).
    pub fn close_handles(&self) {
        if let Ok(mut handles) = self.handles.write() {
            handles.take();
        }
    }

    /// Opens the database again, checks that writes to it and to the segment directory are
    /// durable, cuts off what failed appends left after each broker's durable mark, and puts
    /// the database in place; only the writer thread calls it, so that no append runs
    /// meanwhile.
    pub fn reopen(&self) -> Result<(), LogError> {
        let handles = open_handles(&self.dir, self.cache_bytes)?;
        probe(&handles.db)?;
        let root = self.segments_root();
        segments::probe(&root)
            .map_err(|e| LogError::storage(root.display().to_string()).caused_by(e))?;
        let brokers = self.brokers.lock().map_err(|_| lock_poisoned())?;
        for broker in brokers.values() {
            // Records of appends that failed were never acknowledged nor read: numbering
            // goes on from the durable mark, over them.
            let durable = *broker.durable.borrow();
            broker
                .segments
                .reset_to(durable)
                .map_err(|e| LogError::storage("").caused_by(e))?;
            broker.next.store(durable, Ordering::SeqCst);
        }
        *self.handles.write().map_err(|_| lock_poisoned())? = Some(handles);
        drop(brokers);
        self.failed.store(false, Ordering::SeqCst);
        // Retention skipped its passes while the database was failed.
        self.retention_wake.raise();
        metrics::gauge!(LOG_WRITABLE).set(1.0);
        tracing::info!(dir = %self.dir.display(), "the embedded log was reopened and accepts appends again");
        Ok(())
    }
}

/// Gauge: 1 while the embedded log can write, 0 while it reopens after an I/O error.
pub const LOG_WRITABLE: &str = "herald_log_writable";

/// A sled error as a log error, without marking anything failed (for the reopen itself).
fn plain(error: sled::Error) -> LogError {
    LogError::storage("").caused_by(error)
}

/// Opens sled in `dir` with the trees every broker shares.
fn open_handles(dir: &Path, cache_bytes: u64) -> Result<Handles, LogError> {
    remove_unfinished_snapshots(dir)?;
    refuse_if_locked(dir)?;
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(cache_bytes)
        .flush_every_ms(Some(SLED_FLUSHER_MS))
        .open()
        .map_err(plain)?;
    let offsets = db.open_tree("offsets").map_err(plain)?;
    let parked = db.open_tree("parked").map_err(plain)?;
    let starts = db.open_tree("log-starts").map_err(plain)?;
    Ok(Handles {
        db,
        offsets,
        parked,
        starts,
    })
}

/// [`LogError::InUse`] when another handle holds sled's lock on `dir/db`. sled takes an
/// exclusive `flock` there on open, but reports a failure to get it only as the text of an
/// `Other` I/O error; this probe takes and releases the same lock first, so that the answer
/// comes from the system call's error code (a test of two Heralds on one directory checks it).
fn refuse_if_locked(dir: &Path) -> Result<(), LogError> {
    use rustix::fs::{flock, FlockOperation};
    let path = dir.join("db");
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        // No database yet: nobody can hold its lock.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(LogError::storage(path.display().to_string()).caused_by(e)),
    };
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        // Released when `file` closes, before sled takes it.
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(LogError::InUse),
        Err(e) => {
            Err(LogError::storage(path.display().to_string()).caused_by(std::io::Error::from(e)))
        }
    }
}

/// Deletes sled snapshots that were never finished. sled 0.34 writes a snapshot to
/// `snap.{lsn}.generating`, syncs it and renames it into place; a write cut short (a full
/// disk, a kill) leaves the `.generating` file, which sorts after the finished one, so the
/// next open reads it and fails as corrupt for good (spacejam/sled#1527). Without it sled
/// opens from the previous snapshot, which it keeps until the new one is in place, and the
/// log, which is the source of truth.
fn remove_unfinished_snapshots(dir: &Path) -> Result<(), LogError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(LogError::storage(dir.display().to_string()).caused_by(e)),
    };
    for entry in entries {
        let path = entry
            .map_err(|e| LogError::storage(dir.display().to_string()).caused_by(e))?
            .path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("snap.") && name.ends_with(".generating") {
            tracing::warn!(file = %path.display(), "removing an unfinished sled snapshot");
            std::fs::remove_file(&path)
                .map_err(|e| LogError::storage(path.display().to_string()).caused_by(e))?;
        }
    }
    Ok(())
}

/// Writes and flushes [`PROBE_BYTES`], then removes them: the disk takes writes again.
fn probe(db: &sled::Db) -> Result<(), LogError> {
    db.insert(PROBE_KEY, vec![0u8; PROBE_BYTES])
        .map_err(plain)?;
    db.flush().map_err(plain)?;
    db.remove(PROBE_KEY).map_err(plain)?;
    db.flush().map_err(plain)?;
    Ok(())
}
