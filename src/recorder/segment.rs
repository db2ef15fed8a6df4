//! Segment files: the append-only log that is the source of truth (FORMAT.md, "Segments").

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::frame::{
    self, FRAME_HEADER_LEN, HASH_LEN, MAX_RECORD_LEN, RECORD_HEADER_LEN, RawRecord,
};

pub const SEGMENT_MAGIC: &[u8; 8] = b"PRCTLOG1";
pub const SEGMENT_HEADER_LEN: u64 = 16;

pub fn segments_dir(data: &Path) -> PathBuf {
    data.join("segments")
}

pub fn segment_path(data: &Path, number: u64) -> PathBuf {
    segments_dir(data).join(format!("{number:016}.log"))
}

/// Segment numbers present, ascending.
pub fn list_segments(data: &Path) -> io::Result<Vec<u64>> {
    let dir = segments_dir(data);
    let mut out = Vec::new();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".log")
            && let Ok(n) = stem.parse::<u64>()
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

pub fn segment_header(number: u64) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..].copy_from_slice(&number.to_be_bytes());
    h
}

/// Checks a segment's header; returns the segment number it claims.
pub fn check_header(buf: &[u8]) -> Result<u64, String> {
    if buf.len() < SEGMENT_HEADER_LEN as usize {
        return Err(format!(
            "segment shorter than its header ({} bytes)",
            buf.len()
        ));
    }
    if &buf[..8] != SEGMENT_MAGIC {
        return Err("segment header magic is wrong".into());
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&buf[8..16]);
    Ok(u64::from_be_bytes(n))
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Space zero-filled ahead of the data in the active segment. Overwriting blocks that already
/// exist lets fdatasync skip the journal commit an appending write (a new file size) needs: on
/// ext4 that makes every group commit about a third cheaper in latency and CPU.
pub const PREALLOCATE_BYTES: u64 = 1 << 20;

/// A run of zero bytes at least this long ending the file is preallocated space, never data.
pub const MIN_ZERO_TAIL: usize = 512;

/// The active segment being appended to.
pub struct SegmentWriter {
    pub number: u64,
    /// Logical length: the header and every frame written so far.
    pub len: u64,
    /// Bytes the file holds (`len` plus a zero-filled tail).
    allocated: u64,
    /// Cleared when zero-filling fails (e.g. the disk is full); appends then extend the file.
    preallocate: bool,
    file: File,
    /// Offset up to which synced pages were handed back to the kernel (`release_cache`).
    released: u64,
}

impl SegmentWriter {
    /// Creates a new, empty segment (header written and synced, directory synced).
    pub fn create(data: &Path, number: u64) -> io::Result<Self> {
        let dir = segments_dir(data);
        fs::create_dir_all(&dir)?;
        let path = segment_path(data, number);
        let mut file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)?;
        file.write_all(&segment_header(number))?;
        file.sync_all()?;
        sync_dir(&dir)?;
        let mut w = SegmentWriter {
            number,
            len: SEGMENT_HEADER_LEN,
            allocated: SEGMENT_HEADER_LEN,
            preallocate: true,
            file,
            released: 0,
        };
        w.reserve();
        Ok(w)
    }

    pub fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.write_all_at(buf, self.len)?;
        self.len += buf.len() as u64;
        self.allocated = self.allocated.max(self.len);
        Ok(())
    }

    /// fdatasync: the data and the size needed to read it back.
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Drops synced whole pages of this segment from the page cache. A recording is written
    /// once and read rarely, so its pages only evict more useful ones; and writing into
    /// recycled pages costs the kernel far less than into fresh ones (on virtual machines a
    /// fresh page can cost a host fault), which is most of the recorder's CPU under bulk
    /// transfers. The partial last page is kept: small appends continue it without a read.
    /// Call only after `sync`.
    pub fn release_cache(&mut self) {
        const PAGE: u64 = 4096;
        const MIN_RELEASE: u64 = 1 << 20;
        let upto = self.len / PAGE * PAGE;
        if upto.saturating_sub(self.released) < MIN_RELEASE {
            return;
        }
        let (Ok(offset), Ok(len)) = (
            i64::try_from(self.released),
            i64::try_from(upto - self.released),
        ) else {
            return;
        };
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is owned by `self.file` and open; the call is advisory and
        // touches no memory of ours.
        unsafe {
            libc::posix_fadvise(
                self.file.as_raw_fd(),
                offset,
                len,
                libc::POSIX_FADV_DONTNEED,
            );
        }
        self.released = upto;
    }

    /// Keeps at least half of [`PREALLOCATE_BYTES`] zero-filled (and synced) past the data, so
    /// the next commits overwrite existing blocks. Best effort: on failure the segment simply
    /// grows by appending, and a real lack of space surfaces on the next append.
    pub fn reserve(&mut self) {
        use std::os::unix::fs::FileExt;
        if !self.preallocate || self.allocated - self.len >= PREALLOCATE_BYTES / 2 {
            return;
        }
        let target = self.len + PREALLOCATE_BYTES;
        let zeros = vec![0u8; (target - self.allocated) as usize];
        let result = self
            .file
            .write_all_at(&zeros, self.allocated)
            .and_then(|()| self.file.sync_data());
        match result {
            Ok(()) => self.allocated = target,
            Err(e) => {
                tracing::debug!(segment = self.number, error = %e, "cannot preallocate segment space");
                self.preallocate = false;
                // Whatever part of the zeros landed is still a valid zero tail.
                self.allocated = self.file.metadata().map_or(self.allocated, |m| m.len());
            }
        }
    }

    /// Cuts the zero-filled tail so a closed segment ends with its last frame.
    pub fn close(&mut self) -> io::Result<()> {
        if self.allocated > self.len {
            self.file.set_len(self.len)?;
            self.allocated = self.len;
        }
        self.preallocate = false;
        self.file.sync_all()
    }
}

/// Cuts a zero-filled tail from `[data_end, EOF)` of a segment (left by a process that stopped
/// without closing it). Does nothing unless every byte there is zero.
pub fn trim_zero_tail(path: &Path, buf: &[u8], data_end: usize) -> io::Result<bool> {
    if data_end >= buf.len() || buf[data_end..].iter().any(|&b| b != 0) {
        return Ok(false);
    }
    let f = OpenOptions::new().write(true).open(path)?;
    f.set_len(data_end as u64)?;
    f.sync_all()?;
    Ok(true)
}

/// One item found while scanning a segment.
#[derive(Debug)]
pub enum Scanned<'a> {
    Frame {
        offset: u64,
        record: RawRecord<'a>,
        /// The whole frame, header included, as it sits in the file.
        frame: &'a [u8],
    },
    /// Bytes that are not a valid frame. `resumed_at` is where the next valid frame starts, if
    /// any; scanning continues from there.
    Damage {
        offset: u64,
        what: String,
        resumed_at: Option<u64>,
    },
    /// The segment ends inside a frame: a write that never completed (or a cut file).
    TornTail { offset: u64, bytes: u64 },
}

/// Result of checking one frame at `offset`.
enum Probe<'a> {
    Ok(RawRecord<'a>, usize),
    Torn,
    Bad(String),
}

fn probe(buf: &[u8], offset: usize) -> Probe<'_> {
    let rest = &buf[offset..];
    let Some((len, crc)) = frame::frame_header(rest) else {
        return Probe::Torn;
    };
    if !(RECORD_HEADER_LEN + HASH_LEN..=MAX_RECORD_LEN).contains(&len) {
        return Probe::Bad(format!("impossible record length {len}"));
    }
    if rest.len() < FRAME_HEADER_LEN + len {
        return Probe::Torn;
    }
    let record = &rest[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len];
    if crc32fast::hash(record) != crc {
        return Probe::Bad("frame checksum mismatch".into());
    }
    match frame::parse_record(record) {
        Ok(r) => Probe::Ok(r, FRAME_HEADER_LEN + len),
        Err(e) => Probe::Bad(e.to_string()),
    }
}

/// Walks the frames of a segment held in memory, starting at `start` (after the header).
pub struct Scanner<'a> {
    buf: &'a [u8],
    at: usize,
    end: usize,
    done: bool,
    /// Where the trailing run of zero bytes starts (computed on first need).
    zeros_from: Option<usize>,
}

impl<'a> Scanner<'a> {
    pub fn new(buf: &'a [u8], start: usize) -> Self {
        Scanner {
            buf,
            at: start.min(buf.len()),
            end: buf.len(),
            done: false,
            zeros_from: None,
        }
    }

    /// Scans only `[start, end)`, e.g. one session's span.
    pub fn range(buf: &'a [u8], start: usize, end: usize) -> Self {
        let end = end.min(buf.len());
        Scanner {
            buf: &buf[..end],
            at: start.min(end),
            end,
            done: false,
            zeros_from: None,
        }
    }

    /// Start of the run of zero bytes that ends the buffer (`end` when the last byte is not 0).
    fn zeros_from(&mut self) -> usize {
        *self.zeros_from.get_or_insert_with(|| {
            self.buf[..self.end]
                .iter()
                .rposition(|&b| b != 0)
                .map_or(0, |i| i + 1)
        })
    }

    /// The buffer ends with preallocated space: a zero run too long to be the end of a hash.
    fn has_zero_tail(&mut self) -> bool {
        self.end - self.zeros_from() >= MIN_ZERO_TAIL
    }

    /// Finds the next offset after `from` where a complete, checksum-valid frame starts. No frame
    /// starts inside the trailing zero run (its length field would be zero).
    fn resync(&mut self, from: usize) -> Option<usize> {
        let limit = self
            .zeros_from()
            .min(self.end.saturating_sub(FRAME_HEADER_LEN));
        (from + 1..limit).find(|&off| matches!(probe(self.buf, off), Probe::Ok(..)))
    }
}

impl<'a> Iterator for Scanner<'a> {
    type Item = Scanned<'a>;

    fn next(&mut self) -> Option<Scanned<'a>> {
        if self.done || self.at >= self.end {
            return None;
        }
        let offset = self.at;
        // Zero bytes up to the end are preallocated space (a frame's length is never zero). The
        // check stops at the first non-zero byte, within a frame's length field.
        if self.buf[offset..self.end].iter().all(|&b| b == 0) {
            self.done = true;
            return None;
        }
        match probe(self.buf, offset) {
            Probe::Ok(record, n) => {
                self.at += n;
                Some(Scanned::Frame {
                    offset: offset as u64,
                    record,
                    frame: &self.buf[offset..offset + n],
                })
            }
            Probe::Torn => {
                // A cut in the middle of the file followed by valid frames is damage, not a
                // torn tail: only the end of a segment can be torn by a crash.
                if let Some(next) = self.resync(offset) {
                    self.at = next;
                    return Some(Scanned::Damage {
                        offset: offset as u64,
                        what: "frame length runs past the next frame".into(),
                        resumed_at: Some(next as u64),
                    });
                }
                self.done = true;
                Some(Scanned::TornTail {
                    offset: offset as u64,
                    bytes: (self.end - offset) as u64,
                })
            }
            Probe::Bad(what) => {
                let next = self.resync(offset);
                if next.is_none() && self.has_zero_tail() {
                    // In preallocated space a write cut by a crash leaves a broken frame followed
                    // by zeros instead of a short file: the same torn tail.
                    self.done = true;
                    return Some(Scanned::TornTail {
                        offset: offset as u64,
                        bytes: (self.zeros_from().max(offset) - offset) as u64,
                    });
                }
                match next {
                    Some(n) => self.at = n,
                    None => self.done = true,
                }
                Some(Scanned::Damage {
                    offset: offset as u64,
                    what,
                    resumed_at: next.map(|n| n as u64),
                })
            }
        }
    }
}

/// Reads `[start, end)` of a segment file into memory.
pub fn read_range(data: &Path, number: u64, start: u64, end: Option<u64>) -> io::Result<Vec<u8>> {
    read_range_path(&segment_path(data, number), start, end.unwrap_or(u64::MAX))
}

pub fn read_range_path(path: &Path, start: u64, end: u64) -> io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    let file_len = file.metadata()?.len();
    let end = end.min(file_len);
    if start >= end {
        return Ok(Vec::new());
    }
    file.seek(SeekFrom::Start(start))?;
    let mut buf = vec![0u8; (end - start) as usize];
    file.read_exact(&mut buf)?;
    Ok(buf)
}
