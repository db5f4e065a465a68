//! Moving a broker's events out of the sled tree where earlier versions kept them.
//!
//! Earlier versions stored every event as an entry of the tree [`names::tree`], keyed by its
//! big-endian offset. When a broker that has no segment directory yet is opened, the records
//! of its tree are copied into segment files with their offsets, in a temporary directory
//! that is renamed into place once synced; then the tree is dropped. A crash before the
//! rename leaves the tree as it was (the copy starts again from scratch); a crash after it
//! leaves a tree that the next open drops.

use std::path::Path;

use super::segment;
use super::segments::{self, AppendError, Segments};
use super::{names, offset_from_key};
use crate::log::{BrokerKey, LogError};

/// Bytes of records copied per append (and sync).
const COPY_BATCH_BYTES: usize = 4 * 1024 * 1024;

fn plain(error: sled::Error) -> LogError {
    LogError::storage("").caused_by(error)
}

fn io(path: &Path, error: std::io::Error) -> LogError {
    LogError::storage(path.display().to_string()).caused_by(error)
}

/// The broker's tree of an earlier version, if the database has one (without creating it).
pub(super) fn legacy_tree(
    db: &sled::Db,
    broker: &BrokerKey,
) -> Result<Option<sled::Tree>, LogError> {
    let name = names::tree(broker);
    if !db
        .tree_names()
        .iter()
        .any(|n| n.as_ref() == name.as_bytes())
    {
        return Ok(None);
    }
    db.open_tree(name).map(Some).map_err(plain)
}

/// Copies the records of `tree` into segment files in `dir`, through `tmp`; `false` (and
/// nothing created) if the tree holds none.
pub(super) fn copy_tree(
    broker: &BrokerKey,
    tree: &sled::Tree,
    root: &Path,
    tmp: &Path,
    dir: &Path,
    segment_bytes: u64,
) -> Result<bool, LogError> {
    let Some((first, _)) = tree.first().map_err(plain)? else {
        return Ok(false);
    };
    let base = offset_from_key(&first)?;
    segments::remove_dir(tmp).map_err(|e| io(tmp, e))?;
    let segments = Segments::create(root, tmp, base, segment_bytes).map_err(|e| io(tmp, e))?;
    let append = |frames: &mut Vec<u8>, ends: &mut Vec<u64>, at: u64| {
        let result = segments.append(frames, ends, at);
        frames.clear();
        ends.clear();
        match result {
            Ok(()) => Ok(()),
            Err(AppendError::Io(e)) => Err(io(tmp, e)),
            Err(AppendError::Deleted) => Err(LogError::UnknownBroker(broker.clone())),
        }
    };
    let (mut frames, mut ends) = (Vec::new(), Vec::new());
    let (mut next, mut batch_base) = (base, base);
    for entry in tree.iter() {
        let (key, value) = entry.map_err(plain)?;
        let offset = offset_from_key(&key)?;
        if offset != next {
            return Err(LogError::corrupt(format!(
                "the sled tree of broker {broker} has no record at offset {next}"
            )));
        }
        segment::frame(&value, &mut frames).ok_or_else(|| {
            LogError::corrupt(format!("record {offset} of broker {broker} is over 4 GiB"))
        })?;
        ends.push(frames.len() as u64);
        next += 1;
        if frames.len() >= COPY_BATCH_BYTES {
            append(&mut frames, &mut ends, batch_base)?;
            batch_base = next;
        }
    }
    if !frames.is_empty() {
        append(&mut frames, &mut ends, batch_base)?;
    }
    drop(segments);
    let parent = dir.parent().unwrap_or(root);
    std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    std::fs::rename(tmp, dir).map_err(|e| io(dir, e))?;
    segments::sync_dirs(parent, root).map_err(|e| io(parent, e))?;
    tracing::info!(
        broker = %broker,
        records = next - base,
        first = base,
        dir = %dir.display(),
        "moved the broker's events from its sled tree into segment files"
    );
    Ok(true)
}

/// Writes records into a broker's tree as earlier versions did, for the migration tests.
#[cfg(test)]
pub(super) fn write_legacy_tree(
    db: &sled::Db,
    broker: &BrokerKey,
    first: u64,
    records: &[crate::record::Record],
) {
    let tree = db.open_tree(names::tree(broker)).unwrap();
    for (offset, record) in (first..).zip(records) {
        tree.insert(offset.to_be_bytes(), record.encode()).unwrap();
    }
    db.flush().unwrap();
}
