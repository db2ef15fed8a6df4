//! Reads one session's records back from the log, using the index's spans to avoid scanning
//! everything. Integrity is `verify`'s job; this only reads.

use std::io;
use std::ops::ControlFlow;
use std::path::Path;

use super::codec::{self, Body};
use super::frame::{RecordHeader, SessionKey};
use super::index::SessionMeta;
use super::segment::{self, Scanned, Scanner};
use super::wire::DecodeError;

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
