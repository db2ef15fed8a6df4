//! Reads one session's records back from the log, using the index's spans to avoid scanning
//! everything. Integrity is `verify`'s job; this only reads.

use std::io;
use std::ops::ControlFlow;
use std::path::Path;

use super::codec::{self, Body};
use super::frame::{self, RecordHeader, SessionKey};
use super::index::SessionMeta;
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

/// Calls `f` for each record of the session, in log order.
pub fn for_each_record(
    data: &Path,
    meta: &SessionMeta,
    mut f: impl FnMut(StoredRecord<'_>) -> ControlFlow<()>,
) -> io::Result<()> {
    let Some(key) = super::index::parse_session_id(&meta.id) else {
        return Ok(());
    };
    for span in &meta.spans {
        let buf = segment::read_range(data, span.segment, span.start, Some(span.end))?;
        if visit(&buf, &key, &mut f).is_break() {
            break;
        }
    }
    Ok(())
}

fn visit(
    buf: &[u8],
    key: &SessionKey,
    f: &mut impl FnMut(StoredRecord<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    for item in Scanner::new(buf, 0) {
        if let Scanned::Frame { record, frame, .. } = item
            && record.header.session == *key
        {
            let body = codec::decode_body(record.header.kind, record.body);
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
