//! Segment compaction: rewrite a closed segment without the frames of sessions that were
//! archived or purged. Other sessions' frames are copied byte for byte (their chains are
//! per session, so they verify exactly as before). The new file replaces the old one with an
//! atomic rename, so a crash leaves one or the other.

use std::collections::{HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use crate::recorder::frame::SessionKey;
use crate::recorder::index::Span;
use crate::recorder::segment::{self, Scanned, Scanner};

/// What a compaction did to one segment.
#[derive(Debug, Default)]
pub struct Compacted {
    pub removed_frames: u64,
    pub removed_bytes: u64,
    /// New span of every session still in the segment.
    pub spans: HashMap<SessionKey, Span>,
}

/// Rewrites segment `number` without the frames of `drop`. Damaged bytes are kept as they are
/// (compaction must never hide damage from `verify`).
pub fn compact_segment(
    data: &Path,
    number: u64,
    drop: &HashSet<SessionKey>,
) -> io::Result<Compacted> {
    let path = segment::segment_path(data, number);
    let buf = fs::read(&path)?;
    segment::check_header(&buf).map_err(io::Error::other)?;
    let header_len = segment::SEGMENT_HEADER_LEN as usize;
    let mut out = Vec::with_capacity(buf.len());
    out.extend_from_slice(&buf[..header_len]);
    let mut result = Compacted::default();
    let mut last_end = header_len;
    for item in Scanner::new(&buf, header_len) {
        match item {
            Scanned::Frame {
                offset,
                record,
                frame,
            } => {
                let offset = offset as usize;
                // Bytes between frames (damage) are carried over untouched.
                out.extend_from_slice(&buf[last_end..offset]);
                last_end = offset + frame.len();
                let s = record.header.session;
                if drop.contains(&s) {
                    result.removed_frames += 1;
                    result.removed_bytes += frame.len() as u64;
                    continue;
                }
                let at = out.len() as u64;
                out.extend_from_slice(frame);
                let end = out.len() as u64;
                result
                    .spans
                    .entry(s)
                    .and_modify(|sp| sp.end = end)
                    .or_insert(Span {
                        segment: number,
                        start: at,
                        end,
                    });
            }
            Scanned::Damage { .. } | Scanned::TornTail { .. } => {}
        }
    }
    out.extend_from_slice(&buf[last_end.min(buf.len())..]);
    if result.removed_frames == 0 {
        return Ok(result);
    }
    let tmp = path.with_extension("compacting");
    {
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&tmp)?;
        f.write_all(&out)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    segment::sync_dir(&segment::segments_dir(data))?;
    Ok(result)
}
