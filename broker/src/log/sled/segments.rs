//! A broker's events as segment files in a directory of its own: appends at the end of the
//! last segment, reads of any range, whole files deleted once retention passed them.
//!
//! The last segment is kept zero-filled [`PREALLOCATE_BYTES`] ahead of its last record: the
//! zeros are written (not `fallocate`d, which leaves extents the next sync must convert),
//! so that the `fdatasync` after an append writes the data and no file metadata, except
//! once per chunk. A segment is closed (truncated to its records) and a new one started
//! once an append would take it past [`SEGMENT_BYTES`]. Only the writer thread appends,
//! rolls and resets; consumers and the retention thread read and delete through the list.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;

use super::segment::{self, Segment};

/// A segment is closed and the next one started once an append would take it past this;
/// a single append larger than this gets a segment of its own.
pub(super) const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// The zeros kept ahead of the last record. Larger chunks save little more (an append's
/// sync that also grows the file costs about 1 ms against 0.4 ms here, once per chunk) and
/// take longer to notice a full disk.
pub(super) const PREALLOCATE_BYTES: u64 = 1024 * 1024;
/// The file a reopen writes (and deletes) to check the disk has room again.
const PROBE_FILE: &str = "_probe";

/// Why an append did not happen.
#[derive(Debug)]
pub(super) enum AppendError {
    /// The broker was deleted.
    Deleted,
    Io(io::Error),
}

impl From<io::Error> for AppendError {
    fn from(error: io::Error) -> Self {
        Self::Io(error)
    }
}

/// Where the writer appends: the last segment.
struct Active {
    segment: Arc<Segment>,
    /// The end of its last record.
    written: u64,
    /// The file's length: zeros from `written` up to it.
    allocated: u64,
    deleted: bool,
}

/// A broker's segment files.
pub(super) struct Segments {
    dir: PathBuf,
    /// [`SEGMENT_BYTES`], smaller in tests.
    segment_bytes: u64,
    /// Every segment by base offset; the last is the active one.
    list: RwLock<BTreeMap<u64, Arc<Segment>>>,
    active: Mutex<Active>,
}

fn poisoned() -> io::Error {
    io::Error::other("lock poisoned")
}

/// `fsync`s `dir` and every directory above it up to `up_to`: a new file's name is durable.
pub(super) fn sync_dirs(dir: &Path, up_to: &Path) -> io::Result<()> {
    let mut current = Some(dir);
    while let Some(dir) = current {
        File::open(dir)?.sync_all()?;
        if dir == up_to {
            break;
        }
        current = dir.parent();
    }
    Ok(())
}

/// Creates the segment file of `base` in `dir`, empty (a file of that name can only be left
/// from an append that never became durable), and makes its name durable.
fn create_segment(dir: &Path, base: u64) -> io::Result<Arc<Segment>> {
    let path = dir.join(segment::file_name(base));
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    sync_dirs(dir, dir)?;
    Ok(Arc::new(Segment::with_file(
        base,
        &path,
        file,
        Some(vec![0]),
    )))
}

/// Writes and syncs [`PREALLOCATE_BYTES`] of new data in `root`, then deletes it: a
/// reopened log takes appends again only on a disk that has room for the next chunk.
pub(super) fn probe(root: &Path) -> io::Result<()> {
    std::fs::create_dir_all(root)?;
    let path = root.join(PROBE_FILE);
    let result = (|| {
        let file = File::create(&path)?;
        segment::write_zeros(&file, 0, PREALLOCATE_BYTES)?;
        file.sync_data()
    })();
    let removed = std::fs::remove_file(&path);
    result?;
    removed
}

impl Segments {
    /// Creates a broker's directory (and those above it, up to `root`) with one empty segment
    /// starting at `base`.
    pub fn create(root: &Path, dir: &Path, base: u64, segment_bytes: u64) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let segment = create_segment(dir, base)?;
        sync_dirs(dir, root)?;
        Ok(Self::with_active(
            dir,
            segment_bytes,
            BTreeMap::new(),
            segment,
            0,
            0,
        ))
    }

    fn with_active(
        dir: &Path,
        segment_bytes: u64,
        mut list: BTreeMap<u64, Arc<Segment>>,
        segment: Arc<Segment>,
        written: u64,
        allocated: u64,
    ) -> Self {
        list.insert(segment.base, segment.clone());
        Self {
            dir: dir.to_owned(),
            segment_bytes,
            list: RwLock::new(list),
            active: Mutex::new(Active {
                segment,
                written,
                allocated,
                deleted: false,
            }),
        }
    }

    /// Opens a broker's directory: only the last segment is read, to find where its valid
    /// records end; anything after that (what a crash cut short, never acknowledged) is
    /// overwritten with zeros. Returns the segments and the offset the next record gets.
    pub fn open(dir: &Path, segment_bytes: u64) -> io::Result<(Self, u64)> {
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            match entry
                .file_name()
                .to_str()
                .and_then(segment::parse_file_name)
            {
                Some(base) => bases.push(base),
                None => {
                    tracing::warn!(file = %entry.path().display(), "not a segment file, ignored")
                }
            }
        }
        bases.sort_unstable();
        let Some(&last) = bases.last() else {
            let segments = Self::create(dir, dir, 0, segment_bytes)?;
            return Ok((segments, 0));
        };
        let mut list = BTreeMap::new();
        for &base in &bases[..bases.len() - 1] {
            let path = dir.join(segment::file_name(base));
            list.insert(base, Arc::new(Segment::open(base, &path, None)?));
        }
        let path = dir.join(segment::file_name(last));
        let file = File::options().read(true).write(true).open(&path)?;
        let positions = segment::scan(&file, None)?;
        let written = positions.last().copied().unwrap_or_default();
        let allocated = file.metadata()?.len();
        if !segment::zeros_from(&file, written)? {
            tracing::warn!(
                file = %path.display(),
                valid_bytes = written,
                "the last segment ends with an unfinished write (a crash before it was acknowledged): cut off"
            );
            segment::write_zeros(&file, written, allocated)?;
            file.sync_data()?;
        }
        let next = last + positions.len() as u64 - 1;
        let segment = Arc::new(Segment::with_file(last, &path, file, Some(positions)));
        Ok((
            Self::with_active(dir, segment_bytes, list, segment, written, allocated),
            next,
        ))
    }

    /// The offset of the first record of the oldest segment file.
    pub fn first_base(&self) -> io::Result<u64> {
        let list = self.list.read().map_err(|_| poisoned())?;
        Ok(list.keys().next().copied().unwrap_or_default())
    }

    /// Appends the frames in `frames` (each ends at its entry of `ends`, relative to
    /// `frames`), which get offsets from `next` on, and syncs them (`fdatasync`). The caller
    /// moves the durable mark after this returned `Ok`.
    pub fn append(&self, frames: &[u8], ends: &[u64], next: u64) -> Result<(), AppendError> {
        let mut active = self.active.lock().map_err(|_| poisoned())?;
        if active.deleted {
            return Err(AppendError::Deleted);
        }
        let len = frames.len() as u64;
        if active.written > 0 && active.written + len > self.segment_bytes {
            self.roll(&mut active, next)?;
        }
        let segment = active.segment.clone();
        let file = &segment.file;
        let start = active.written;
        let end = start + len;
        file.write_all_at(frames, start)?;
        if end > active.allocated {
            let allocate_to = end.div_ceil(PREALLOCATE_BYTES) * PREALLOCATE_BYTES;
            segment::write_zeros(file, end, allocate_to)?;
            active.allocated = allocate_to;
        }
        file.sync_data()?;
        segment.update_positions(|positions| positions.extend(ends.iter().map(|e| start + e)))?;
        active.written = end;
        Ok(())
    }

    /// Closes the active segment (cut to its records) and starts the next at `base`.
    fn roll(&self, active: &mut Active, base: u64) -> io::Result<()> {
        active.segment.file.set_len(active.written)?;
        active.segment.file.sync_data()?;
        active.segment.update_positions(|p| p.shrink_to_fit())?;
        let segment = create_segment(&self.dir, base)?;
        self.list
            .write()
            .map_err(|_| poisoned())?
            .insert(base, segment.clone());
        *active = Active {
            segment,
            written: 0,
            allocated: 0,
            deleted: false,
        };
        Ok(())
    }

    /// After a failed append: forgets what the active segment holds from offset `durable`
    /// on, and overwrites it with zeros, so that the next append starts there again.
    pub fn reset_to(&self, durable: u64) -> io::Result<()> {
        let mut active = self.active.lock().map_err(|_| poisoned())?;
        if active.deleted {
            return Ok(());
        }
        let segment = active.segment.clone();
        let keep = durable.checked_sub(segment.base).ok_or_else(|| {
            io::Error::other(format!(
                "{}: durable offset {durable} is before the segment",
                segment.path.display()
            ))
        })? as usize;
        let mut written = None;
        segment.update_positions(|positions| {
            positions.truncate(keep + 1);
            written = positions.get(keep).copied();
        })?;
        let written = written.ok_or_else(|| {
            io::Error::other(format!(
                "{}: holds fewer records than durable",
                segment.path.display()
            ))
        })?;
        let allocated = segment.file.metadata()?.len();
        if !segment::zeros_from(&segment.file, written)? {
            segment::write_zeros(&segment.file, written, allocated)?;
            segment.file.sync_data()?;
        }
        active.written = written;
        active.allocated = allocated;
        Ok(())
    }

    /// The segment holding `offset`, and how many records it holds if it is not the last.
    fn segment_of(&self, offset: u64) -> io::Result<(Arc<Segment>, Option<u64>)> {
        let list = self.list.read().map_err(|_| poisoned())?;
        let (base, segment) = list.range(..=offset).next_back().ok_or_else(|| {
            io::Error::other(format!(
                "{}: no segment holds offset {offset}",
                self.dir.display()
            ))
        })?;
        let next = list.range(base + 1..).next().map(|(next, _)| *next);
        Ok((segment.clone(), next.map(|next| next - base)))
    }

    /// Records from offset `from` on, up to `to` (exclusive) or the end of the segment that
    /// holds `from`, whichever comes first; every offset must have been appended.
    pub fn read(&self, from: u64, to: u64) -> io::Result<Vec<(u64, Bytes)>> {
        let (segment, count) = self.segment_of(from)?;
        let end = match count {
            Some(count) => to.min(segment.base + count),
            None => to,
        };
        let records = segment.read(count, from - segment.base, end - segment.base)?;
        Ok((from..).zip(records).collect())
    }

    /// The bytes of the frames of offsets `from..to`.
    pub fn bytes(&self, from: u64, to: u64) -> io::Result<u64> {
        let mut total = 0;
        let mut at = from;
        while at < to {
            let (segment, count) = self.segment_of(at)?;
            let end = match count {
                Some(count) => to.min(segment.base + count),
                None => to,
            };
            total += segment.bytes(count, at - segment.base, end - segment.base)?;
            at = end;
        }
        Ok(total)
    }

    /// Deletes the segment files whose records all lie below `first` (never the last one);
    /// returns how many.
    pub fn remove_below(&self, first: u64) -> io::Result<usize> {
        let mut removed = Vec::new();
        {
            let mut list = self.list.write().map_err(|_| poisoned())?;
            let bases: Vec<u64> = list.keys().copied().collect();
            for pair in bases.windows(2) {
                if pair[1] > first {
                    break;
                }
                removed.extend(list.remove(&pair[0]));
            }
        }
        // Consumers reading one of them keep its file open: unlinking it does not cut them off.
        for segment in &removed {
            match std::fs::remove_file(&segment.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(removed.len())
    }

    /// The broker was deleted: no more appends, and its directory goes.
    pub fn delete(&self) -> io::Result<()> {
        let mut active = self.active.lock().map_err(|_| poisoned())?;
        active.deleted = true;
        remove_dir(&self.dir)
    }

    /// The number of segment files.
    #[cfg(test)]
    pub fn files(&self) -> usize {
        self.list.read().map(|list| list.len()).unwrap_or_default()
    }
}

/// Removes a directory and everything in it; one that is not there is not an error.
pub(super) fn remove_dir(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small segments, so that tests roll over without writing much.
    const TEST_SEGMENT: u64 = 64 * 1024;

    fn framed(records: &[Vec<u8>]) -> (Vec<u8>, Vec<u64>) {
        let mut frames = Vec::new();
        let mut ends = Vec::new();
        for record in records {
            segment::frame(record, &mut frames).unwrap();
            ends.push(frames.len() as u64);
        }
        (frames, ends)
    }

    fn record(i: u64) -> Vec<u8> {
        format!("record {i}").into_bytes()
    }

    /// Appends records `from..to` in one append.
    fn append(segments: &Segments, from: u64, to: u64) {
        let (frames, ends) = framed(&(from..to).map(record).collect::<Vec<_>>());
        segments.append(&frames, &ends, from).unwrap();
    }

    fn read_all(segments: &Segments, from: u64, to: u64) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = from;
        while at < to {
            let records = segments.read(at, to).unwrap();
            at += records.len() as u64;
            out.extend(records.into_iter().map(|(o, r)| (o, r.to_vec())));
        }
        out
    }

    fn expected(from: u64, to: u64) -> Vec<(u64, Vec<u8>)> {
        (from..to).map(|i| (i, record(i))).collect()
    }

    fn last_segment(dir: &Path) -> PathBuf {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files.pop().unwrap()
    }

    #[test]
    fn appends_are_kept_zero_filled_ahead_and_read_back_after_reopening() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ns/b");
        let segments = Segments::create(root.path(), &dir, 0, TEST_SEGMENT).unwrap();
        append(&segments, 0, 3);
        append(&segments, 3, 5);
        assert_eq!(read_all(&segments, 0, 5), expected(0, 5));
        assert_eq!(read_all(&segments, 2, 4), expected(2, 4));
        let len = std::fs::metadata(last_segment(&dir)).unwrap().len();
        assert_eq!(len, PREALLOCATE_BYTES, "zeros ahead of the records");
        drop(segments);

        let (segments, next) = Segments::open(&dir, TEST_SEGMENT).unwrap();
        assert_eq!(next, 5);
        assert_eq!(read_all(&segments, 0, 5), expected(0, 5));
        append(&segments, 5, 6);
        assert_eq!(read_all(&segments, 0, 6), expected(0, 6));
    }

    /// What a crash leaves after the last acknowledged record (a record cut short, bytes
    /// that do not match their checksum, a whole record written but never synced and so
    /// never acknowledged) is cut off, and appends go on after the last valid record.
    #[test]
    fn a_reopen_cuts_off_what_follows_the_last_valid_record() {
        type Tail = Box<dyn Fn(&[u8]) -> Vec<u8>>;
        let tails: [(&str, Tail); 3] = [
            (
                "torn",
                Box::new(|frame: &[u8]| frame[..frame.len() - 3].to_vec()),
            ),
            (
                "bad checksum",
                Box::new(|frame: &[u8]| {
                    let mut frame = frame.to_vec();
                    frame[5] ^= 0x40;
                    frame
                }),
            ),
            ("garbage", Box::new(|_: &[u8]| vec![0xA5; 100])),
        ];
        for (what, tail) in tails {
            let root = tempfile::tempdir().unwrap();
            let dir = root.path().join("b");
            let segments = Segments::create(root.path(), &dir, 0, TEST_SEGMENT).unwrap();
            append(&segments, 0, 3);
            drop(segments);
            let path = last_segment(&dir);
            let (frame, _) = framed(&[b"never acknowledged".to_vec()]);
            let end = read_positions_end(&path);
            let file = File::options().write(true).open(&path).unwrap();
            file.write_all_at(&tail(&frame), end).unwrap();

            let (segments, next) = Segments::open(&dir, TEST_SEGMENT).unwrap();
            assert_eq!(next, 3, "{what}");
            assert!(
                segment::zeros_from(&segments.active.lock().unwrap().segment.file, end).unwrap()
            );
            append(&segments, 3, 4);
            drop(segments);
            let (segments, next) = Segments::open(&dir, TEST_SEGMENT).unwrap();
            assert_eq!(next, 4, "{what}");
            assert_eq!(read_all(&segments, 0, 4), expected(0, 4), "{what}");
        }
    }

    fn read_positions_end(path: &Path) -> u64 {
        let file = File::open(path).unwrap();
        *segment::scan(&file, None).unwrap().last().unwrap()
    }

    /// A whole valid record after the durable end (written, then the append failed before it
    /// was acknowledged) is forgotten by a reset and overwritten by the next append.
    #[test]
    fn a_reset_forgets_what_was_not_durable() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("b");
        let segments = Segments::create(root.path(), &dir, 0, TEST_SEGMENT).unwrap();
        append(&segments, 0, 2);
        append(&segments, 2, 4);
        segments.reset_to(2).unwrap();
        append(&segments, 2, 3);
        drop(segments);
        let (segments, next) = Segments::open(&dir, TEST_SEGMENT).unwrap();
        assert_eq!(next, 3);
        assert_eq!(read_all(&segments, 0, 3), expected(0, 3));
    }

    #[test]
    fn segments_roll_over_and_older_ones_are_read_lazily() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("b");
        let segments = Segments::create(root.path(), &dir, 0, TEST_SEGMENT).unwrap();
        // Records of a few KiB, so that a segment fills in a few appends.
        let big = |i: u64| {
            let mut r = record(i);
            r.resize(TEST_SEGMENT as usize / 3 - 64, b'x');
            r
        };
        for i in 0..7 {
            let (frames, ends) = framed(&[big(i)]);
            segments.append(&frames, &ends, i).unwrap();
        }
        assert_eq!(segments.files(), 3, "three records to a segment");
        let closed = dir.join(segment::file_name(0));
        assert!(
            std::fs::metadata(&closed).unwrap().len() <= TEST_SEGMENT,
            "a closed segment is cut to its records"
        );
        drop(segments);
        let (segments, next) = Segments::open(&dir, TEST_SEGMENT).unwrap();
        assert_eq!(next, 7);
        for i in 0..7 {
            let read = segments.read(i, 7).unwrap();
            assert_eq!(read[0].1.to_vec(), big(i), "record {i}");
            assert_eq!(
                read.len() as u64,
                (3 - i % 3).min(7 - i),
                "up to the end of its segment"
            );
        }
        assert_eq!(
            segments.bytes(1, 5).unwrap(),
            4 * (segment::FRAME_HEADER + big(0).len() as u64)
        );
    }

    #[test]
    fn whole_segments_below_the_first_record_kept_are_deleted() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("b");
        let segments = Segments::create(root.path(), &dir, 0, TEST_SEGMENT).unwrap();
        let big = |i: u64| {
            let mut r = record(i);
            r.resize(TEST_SEGMENT as usize / 2 - 64, b'x');
            r
        };
        for i in 0..5 {
            let (frames, ends) = framed(&[big(i)]);
            segments.append(&frames, &ends, i).unwrap();
        }
        // Segments 0-1, 2-3, 4.
        assert_eq!(segments.files(), 3);
        assert_eq!(segments.remove_below(3).unwrap(), 1, "2-3 still holds 3");
        assert_eq!(segments.first_base().unwrap(), 2);
        assert!(!dir.join(segment::file_name(0)).exists());
        assert_eq!(segments.remove_below(100).unwrap(), 1, "never the last");
        assert_eq!(segments.read(4, 5).unwrap()[0].1.to_vec(), big(4));
        drop(segments);
        let (segments, next) = Segments::open(&dir, TEST_SEGMENT).unwrap();
        assert_eq!((next, segments.first_base().unwrap()), (5, 4));
    }

    #[test]
    fn a_deleted_broker_takes_no_appends() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("b");
        let segments = Segments::create(root.path(), &dir, 0, TEST_SEGMENT).unwrap();
        segments.delete().unwrap();
        assert!(!dir.exists());
        let (frames, ends) = framed(&[record(0)]);
        assert!(matches!(
            segments.append(&frames, &ends, 0),
            Err(AppendError::Deleted)
        ));
    }
}
