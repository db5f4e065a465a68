//! One segment file of a broker's event log: its record frames, how a file is scanned for
//! its valid records, and reads of a range of them with one `pread`.
//!
//! A frame is a big-endian u32 length, a big-endian u32 CRC-32 of the length bytes and the
//! record, then the record (`Record::encode`). A frame of length 0 ends the segment: the file
//! is kept zero-filled ahead of its last record (see `segments`), so a scan stops there, as it
//! stops at a frame cut short or a checksum that does not match (a write a crash cut short).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use bytes::Bytes;

/// Bytes of a frame's header: length and checksum.
pub(super) const FRAME_HEADER: u64 = 8;
/// How much a scan reads at a time.
const SCAN_READ: u64 = 1024 * 1024;

/// The checksum of a frame: it covers the length too, so a length that changed is noticed.
fn checksum(len: [u8; 4], record: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len);
    hasher.update(record);
    hasher.finalize()
}

/// Appends the frame of `record` to `out`. A record must be shorter than 4 GiB (ingress
/// bounds events far below that, `--max-event-bytes`); `None` if it is not.
pub(super) fn frame(record: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let len = u32::try_from(record.len()).ok()?.to_be_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&checksum(len, record).to_be_bytes());
    out.extend_from_slice(record);
    Some(())
}

/// The length of the record of the frame at the start of `bytes` if the frame is whole and
/// its checksum matches; `None` at the end of the valid records.
fn valid_frame(bytes: &[u8]) -> Option<usize> {
    let len: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    let sum: [u8; 4] = bytes.get(4..8)?.try_into().ok()?;
    let record_len = u32::from_be_bytes(len) as usize;
    if record_len == 0 {
        return None;
    }
    let record = bytes.get(8..8usize.checked_add(record_len)?)?;
    (checksum(len, record) == u32::from_be_bytes(sum)).then_some(record_len)
}

/// The file name of the segment whose first record has offset `base`: zero-padded, so that
/// names sort as offsets.
pub(super) fn file_name(base: u64) -> String {
    format!("{base:020}.seg")
}

/// The base offset a segment file name stands for, if it is one.
pub(super) fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Reads the frames of `file` from its start: the positions of the valid records, and one
/// more, the end of the last (so record `i` is `positions[i]..positions[i + 1]`). Stops at
/// `limit` records, or at the first frame that is not valid.
pub(super) fn scan(file: &File, limit: Option<u64>) -> io::Result<Vec<u64>> {
    let file_len = file.metadata()?.len();
    let mut positions = vec![0u64];
    // `buffer` holds the file from `buffer_at`.
    let mut buffer: Vec<u8> = Vec::new();
    let mut buffer_at = 0u64;
    let mut at = 0u64;
    loop {
        if limit.is_some_and(|limit| positions.len() as u64 > limit) {
            break;
        }
        if at + FRAME_HEADER > file_len {
            break;
        }
        let header = read_through(file, &mut buffer, &mut buffer_at, at, FRAME_HEADER)?;
        let record_len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as u64;
        let frame_len = FRAME_HEADER + record_len;
        if record_len == 0 || at + frame_len > file_len {
            break;
        }
        let bytes = read_through(file, &mut buffer, &mut buffer_at, at, frame_len)?;
        if valid_frame(bytes).is_none() {
            break;
        }
        at += frame_len;
        positions.push(at);
    }
    Ok(positions)
}

/// `len` bytes of `file` at `at`, from `buffer` if it holds them, else after reading at least
/// [`SCAN_READ`] bytes from `at` into it.
fn read_through<'a>(
    file: &File,
    buffer: &'a mut Vec<u8>,
    buffer_at: &mut u64,
    at: u64,
    len: u64,
) -> io::Result<&'a [u8]> {
    let start = at.wrapping_sub(*buffer_at);
    let held = at >= *buffer_at && start + len <= buffer.len() as u64;
    if !held {
        let file_len = file.metadata()?.len();
        let want = len.max(SCAN_READ).min(file_len.saturating_sub(at));
        buffer.resize(want as usize, 0);
        file.read_exact_at(buffer, at)?;
        *buffer_at = at;
    }
    let start = (at - *buffer_at) as usize;
    Ok(&buffer[start..start + len as usize])
}

/// Whether the file holds only zeros from `from` on.
pub(super) fn zeros_from(file: &File, from: u64) -> io::Result<bool> {
    let file_len = file.metadata()?.len();
    let mut buffer = vec![0u8; SCAN_READ as usize];
    let mut at = from;
    while at < file_len {
        let n = (file_len - at).min(SCAN_READ) as usize;
        file.read_exact_at(&mut buffer[..n], at)?;
        if buffer[..n].iter().any(|b| *b != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

/// Writes zeros over `from..to` of `file` (no sync).
pub(super) fn write_zeros(file: &File, from: u64, to: u64) -> io::Result<()> {
    let zeros = vec![0u8; to.saturating_sub(from).min(SCAN_READ) as usize];
    let mut at = from;
    while at < to {
        let n = (to - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// One segment file: the records from offset `base` on.
pub(super) struct Segment {
    pub base: u64,
    pub path: PathBuf,
    pub file: File,
    /// Where each record starts, and the end of the last; `None` until a sealed segment is
    /// first read (only the last segment is scanned when a broker is opened). 8 bytes per
    /// record.
    positions: RwLock<Option<Vec<u64>>>,
}

impl Segment {
    /// Opens the segment file at `path` whose first record is `base`; `positions` if known.
    pub fn open(base: u64, path: &Path, positions: Option<Vec<u64>>) -> io::Result<Self> {
        let file = File::options().read(true).write(true).open(path)?;
        Ok(Self::with_file(base, path, file, positions))
    }

    pub fn with_file(base: u64, path: &Path, file: File, positions: Option<Vec<u64>>) -> Self {
        Self {
            base,
            path: path.to_owned(),
            file,
            positions: RwLock::new(positions),
        }
    }

    fn error(&self, e: impl std::fmt::Display) -> io::Error {
        io::Error::other(format!("{}: {e}", self.path.display()))
    }

    /// Runs `f` on the positions, scanning the file first if they are not known yet; a
    /// sealed segment must hold `count` records.
    pub fn with_positions<T>(
        &self,
        count: Option<u64>,
        f: impl FnOnce(&[u64]) -> T,
    ) -> io::Result<T> {
        {
            let positions = self.positions.read().map_err(|_| self.error("poisoned"))?;
            if let Some(positions) = positions.as_ref() {
                return Ok(f(positions));
            }
        }
        let mut positions = self.positions.write().map_err(|_| self.error("poisoned"))?;
        if positions.is_none() {
            let mut scanned = scan(&self.file, count)?;
            if let Some(count) = count {
                if (scanned.len() as u64) < count + 1 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        self.error(format!(
                            "holds {} valid records, {count} were written",
                            scanned.len() - 1
                        )),
                    ));
                }
            }
            scanned.shrink_to_fit();
            *positions = Some(scanned);
        }
        Ok(f(positions.as_deref().unwrap_or_default()))
    }

    /// Changes the known positions (the writer's appends and resets).
    pub fn update_positions(&self, f: impl FnOnce(&mut Vec<u64>)) -> io::Result<()> {
        let mut positions = self.positions.write().map_err(|_| self.error("poisoned"))?;
        f(positions.get_or_insert_with(|| vec![0]));
        Ok(())
    }

    /// The records `from..to` (indexes in this segment, within its positions), read with one
    /// `pread` and checked against their checksums.
    pub fn read(&self, count: Option<u64>, from: u64, to: u64) -> io::Result<Vec<Bytes>> {
        let range = self.with_positions(count, |positions| {
            let start = positions.get(from as usize).copied();
            start.zip(positions.get(to as usize).copied())
        })?;
        let Some((start, end)) = range else {
            return Err(self.error(format!("holds no records {from}..{to}")));
        };
        let mut buffer = vec![0u8; (end - start) as usize];
        self.file.read_exact_at(&mut buffer, start)?;
        let buffer = Bytes::from(buffer);
        let mut records = Vec::with_capacity((to - from) as usize);
        let mut at = 0usize;
        while at < buffer.len() {
            let Some(len) = valid_frame(&buffer[at..]) else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    self.error(format!(
                        "the record at byte {} does not match its checksum",
                        start + at as u64
                    )),
                ));
            };
            records.push(buffer.slice(at + FRAME_HEADER as usize..at + 8 + len));
            at += FRAME_HEADER as usize + len;
        }
        Ok(records)
    }

    /// The bytes of the frames `from..to` (indexes in this segment).
    pub fn bytes(&self, count: Option<u64>, from: u64, to: u64) -> io::Result<u64> {
        self.with_positions(count, |positions| {
            let start = positions.get(from as usize).copied().unwrap_or_default();
            let end = positions.get(to as usize).copied().unwrap_or(start);
            end.saturating_sub(start)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(bytes: &[u8]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(0));
        std::fs::write(&path, bytes).unwrap();
        let file = File::options().read(true).write(true).open(&path).unwrap();
        (dir, file)
    }

    fn frames(records: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for record in records {
            frame(record, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn names_sort_as_offsets_and_read_back() {
        assert_eq!(file_name(42), "00000000000000000042.seg");
        assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
        for other in [
            "42.seg",
            "0000000000000000004x.seg",
            "00000000000000000042.tmp",
        ] {
            assert_eq!(parse_file_name(other), None, "{other}");
        }
    }

    #[test]
    fn a_scan_stops_at_zeros_a_torn_frame_or_a_bad_checksum() {
        let whole = frames(&[b"one", b"two"]);
        let ends = vec![0, 11, 22];

        let mut zeros = whole.clone();
        zeros.extend_from_slice(&[0; 64]);
        let (_dir, file) = file_with(&zeros);
        assert_eq!(scan(&file, None).unwrap(), ends);

        let mut torn = whole.clone();
        torn.extend_from_slice(&frames(&[b"three"])[..10]);
        let (_dir, file) = file_with(&torn);
        assert_eq!(scan(&file, None).unwrap(), ends);

        let mut flipped = frames(&[b"one", b"two", b"three"]);
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let (_dir, file) = file_with(&flipped);
        assert_eq!(scan(&file, None).unwrap(), ends);

        let (_dir, file) = file_with(&frames(&[b"one", b"two", b"three"]));
        assert_eq!(scan(&file, Some(2)).unwrap(), ends, "a limit stops it");
    }

    #[test]
    fn a_scan_reads_frames_larger_than_its_buffer() {
        let big = vec![7u8; SCAN_READ as usize + 10];
        let (_dir, file) = file_with(&frames(&[b"a", &big, b"b"]));
        assert_eq!(scan(&file, None).unwrap().len(), 4);
    }

    #[test]
    fn reads_check_checksums() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(0));
        let mut bytes = frames(&[b"one", b"two"]);
        std::fs::write(&path, &bytes).unwrap();
        let segment = Segment::open(0, &path, None).unwrap();
        let read = segment.read(Some(2), 0, 2).unwrap();
        assert_eq!(
            read,
            [Bytes::from_static(b"one"), Bytes::from_static(b"two")]
        );
        assert_eq!(segment.bytes(Some(2), 1, 2).unwrap(), 11);

        // Changed after it was indexed (the disk's fault): the read says so.
        bytes[20] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let error = segment.read(Some(2), 0, 2).unwrap_err();
        assert!(error.to_string().contains("checksum"), "{error}");
    }

    #[test]
    fn a_sealed_segment_with_fewer_records_than_written_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(0));
        std::fs::write(&path, frames(&[b"one"])).unwrap();
        let segment = Segment::open(0, &path, None).unwrap();
        let error = segment.read(Some(2), 0, 1).unwrap_err();
        assert!(error.to_string().contains("1 valid records, 2"), "{error}");
    }
}
