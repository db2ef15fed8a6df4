//! Reads one session's records back from the log, using the index's spans to avoid scanning
//! everything. Integrity is `verify`'s job; this only reads.

use std::fs::File;
use std::io;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::codec::{self, Body};
use super::frame::{self, RecordHeader, SessionKey};
use super::index::{SessionMeta, Span};
use super::segment::{self, Scanned, Scanner};
use super::wire::DecodeError;
use proctor_gate::{Event, SessionInfo};

/// One record of a session, decoded.
#[derive(Debug, Clone)]
pub struct StoredRecord<'a> {
    pub header: RecordHeader,
    pub hash: [u8; 32],
    pub body: Result<Body, DecodeError>,
    /// The frame exactly as stored (for bundles).
    pub frame: &'a [u8],
}

/// Bytes read from a segment at a time while walking a span. A session's span also holds the
/// records of every session that ran beside it (tens of megabytes for a busy one), and a
/// reader that stops early (a text search stops at its fifth match) must not pay for the
/// rest: reading whole spans made each auditor search copy, zero and page in the full history
/// of every candidate session (issue 15, profiled: most of the search thread's time was
/// `read` and `memset`).
const CHUNK: usize = 256 * 1024;
/// The first read of a span is smaller (most readers that stop early stop within a few
/// records); each refill doubles it up to `CHUNK`.
const FIRST_CHUNK: usize = 16 * 1024;

/// Calls `f` for each record of the session, in log order, reading each span a chunk at a
/// time and stopping as soon as `f` breaks.
pub fn for_each_record(
    data: &Path,
    meta: &SessionMeta,
    mut f: impl FnMut(StoredRecord<'_>) -> ControlFlow<()>,
) -> io::Result<()> {
    let Some(key) = super::index::parse_session_id(&meta.id) else {
        return Ok(());
    };
    for span in &meta.spans {
        if walk_span(data, span, &key, &mut f)?.is_break() {
            break;
        }
    }
    Ok(())
}

/// A window onto one segment file, refilled on demand; its buffer is reused.
struct Window {
    file: File,
    /// File offset of `buf[0]`.
    start: u64,
    buf: Vec<u8>,
    /// Where the span (or the file, if shorter) ends: nothing past it is read.
    end: u64,
    /// How much the next refill reads (at least).
    chunk: usize,
}

impl Window {
    /// Up to `need` bytes at file offset `at` (fewer only where the span ends).
    fn get(&mut self, at: u64, need: usize) -> io::Result<&[u8]> {
        let held = self.start + self.buf.len() as u64;
        let want = at.saturating_add(need as u64).min(self.end);
        if at < self.start || want > held {
            let len = usize::try_from((need.max(self.chunk) as u64).min(self.end - at))
                .map_err(|_| io::Error::other("span too large"))?;
            self.chunk = (self.chunk * 2).min(CHUNK);
            self.buf.resize(len, 0);
            self.file.read_exact_at(&mut self.buf, at)?;
            self.start = at;
        }
        let from = (at - self.start) as usize;
        let to = (want - self.start) as usize;
        Ok(&self.buf[from..to])
    }
}

/// Walks one span frame by frame. Intact frames are read a chunk at a time; at anything else
/// (damage, a torn tail, preallocated zeros) the rest of the span is read whole and scanned
/// exactly as a scan of the whole span would have gone on from there, so what a reader sees
/// does not depend on where chunks happen to end.
fn walk_span(
    data: &Path,
    span: &Span,
    key: &SessionKey,
    f: &mut impl FnMut(StoredRecord<'_>) -> ControlFlow<()>,
) -> io::Result<ControlFlow<()>> {
    let file = File::open(segment::segment_path(data, span.segment))?;
    let end = span.end.min(file.metadata()?.len());
    let mut win = Window {
        file,
        start: span.start,
        buf: Vec::new(),
        end,
        chunk: FIRST_CHUNK,
    };
    let mut at = span.start;
    while at < end {
        let whole = frame::frame_header(win.get(at, frame::FRAME_HEADER_LEN)?)
            .map(|(len, _)| (len, frame::FRAME_HEADER_LEN as u64 + len as u64))
            .filter(|&(len, n)| {
                (frame::RECORD_HEADER_LEN + frame::HASH_LEN..=frame::MAX_RECORD_LEN).contains(&len)
                    && at.saturating_add(n) <= end
            });
        let Some((_, n)) = whole else { break };
        let bytes = win.get(at, n as usize)?;
        let Some(Scanned::Frame { record, frame, .. }) = Scanner::new(bytes, 0).next() else {
            break;
        };
        if record.header.session == *key {
            let body = codec::decode_body(record.header.kind, record.body);
            let body = super::blobs::resolve(data, key, body);
            let step = f(StoredRecord {
                header: record.header,
                hash: record.hash,
                body,
                frame,
            });
            if step.is_break() {
                return Ok(step);
            }
        }
        at += n;
    }
    if at >= end {
        return Ok(ControlFlow::Continue(()));
    }
    let rest = segment::read_range(data, span.segment, at, Some(end))?;
    Ok(visit(data, &rest, key, f))
}

/// Scans frames held in memory, calling `f` for those of `key`.
fn visit(
    data: &Path,
    buf: &[u8],
    key: &SessionKey,
    f: &mut impl FnMut(StoredRecord<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    for item in Scanner::new(buf, 0) {
        if let Scanned::Frame { record, frame, .. } = item
            && record.header.session == *key
        {
            let body = codec::decode_body(record.header.kind, record.body);
            let body = super::blobs::resolve(data, key, body);
            f(StoredRecord {
                header: record.header,
                hash: record.hash,
                body,
                frame,
            })?;
        }
    }
    ControlFlow::Continue(())
}

/// All records of a session, decoded (for exports and replay of ordinary sizes).
/// A record read back: header, chain hash, decoded body.
pub type DecodedRecord = (RecordHeader, [u8; 32], Result<Body, DecodeError>);

pub fn read_all(data: &Path, meta: &SessionMeta) -> io::Result<Vec<DecodedRecord>> {
    let mut out = Vec::new();
    for_each_record(data, meta, |r| {
        out.push((r.header, r.hash, r.body));
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

/// The session's seq-0 record, read from the log where the index says it is, when it is what
/// it must be: a session_start of this session whose chain hash matches (the record `verify`
/// and the ledger's opened leaf authenticate). Returns its timestamp and content.
pub fn signed_start(data: &Path, meta: &SessionMeta) -> io::Result<Option<(i64, SessionInfo)>> {
    let (Some(key), Some(span)) = (super::index::parse_session_id(&meta.id), meta.spans.first())
    else {
        return Ok(None);
    };
    let head = segment::read_range(
        data,
        span.segment,
        span.start,
        Some(span.start.saturating_add(8)),
    )?;
    let Some((len, _)) = frame::frame_header(&head) else {
        return Ok(None);
    };
    // A session_start is small; anything larger is not one (and is not read into memory).
    if len > 1024 * 1024 {
        return Ok(None);
    }
    let end = span
        .start
        .saturating_add((frame::FRAME_HEADER_LEN + len) as u64);
    let buf = segment::read_range(data, span.segment, span.start, Some(end))?;
    let Some(Scanned::Frame { record, .. }) = Scanner::new(&buf, 0).next() else {
        return Ok(None);
    };
    let h = record.header;
    if h.session != key
        || h.seq != 0
        || frame::chain_hash(&frame::GENESIS_HASH, record.hashed) != record.hash
    {
        return Ok(None);
    }
    match codec::decode_body(h.kind, record.body) {
        Ok(Body::Event(Event::SessionStart(info))) => Ok(Some((h.ts_ns, info))),
        _ => Ok(None),
    }
}
