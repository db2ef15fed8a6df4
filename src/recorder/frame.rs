//! Frames and records (FORMAT.md, "Frames" and "Records"): the unit written to a segment, and
//! the chain hash that links a session's records.

use sha2::{Digest, Sha256};
use thiserror::Error;

pub const FORMAT_VERSION: u8 = 1;
/// `len` (u32) and `crc` (u32) in front of each record.
pub const FRAME_HEADER_LEN: usize = 8;
/// version, kind, session id, seq, timestamp.
pub const RECORD_HEADER_LEN: usize = 1 + 1 + 16 + 8 + 8;
pub const HASH_LEN: usize = 32;
/// Largest record proctor writes or accepts when reading; protocol messages are bounded well
/// below this, so anything larger is damage, not data.
pub const MAX_RECORD_LEN: usize = 64 * 1024 * 1024;
pub const GENESIS_HASH: [u8; 32] = [0u8; 32];

pub type SessionKey = [u8; 16];

/// The all-zero session id names the store journal (store-level facts: recovery, access).
pub const JOURNAL_SESSION: SessionKey = [0u8; 16];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub version: u8,
    pub kind: u8,
    pub session: SessionKey,
    pub seq: u64,
    pub ts_ns: i64,
}

/// A record as it sits in a frame, borrowed from the frame bytes.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    pub header: RecordHeader,
    pub body: &'a [u8],
    /// Header and body: the bytes the chain hash covers after the previous hash.
    pub hashed: &'a [u8],
    pub hash: [u8; 32],
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    #[error("record too short ({0} bytes)")]
    TooShort(usize),
    #[error("unsupported record format version {0}")]
    Version(u8),
}

/// The chain hash: SHA-256(previous hash || record header || body).
pub fn chain_hash(prev: &[u8; 32], hashed: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(hashed);
    h.finalize().into()
}

/// Appends one frame to `out` and returns the record's chain hash.
pub fn write_frame(
    out: &mut Vec<u8>,
    header: &RecordHeader,
    body: &[u8],
    prev: &[u8; 32],
) -> [u8; 32] {
    let record_len = RECORD_HEADER_LEN + body.len() + HASH_LEN;
    out.reserve(FRAME_HEADER_LEN + record_len);
    out.extend_from_slice(&(record_len as u32).to_be_bytes());
    let crc_at = out.len();
    out.extend_from_slice(&[0u8; 4]);
    let record_at = out.len();
    out.push(header.version);
    out.push(header.kind);
    out.extend_from_slice(&header.session);
    out.extend_from_slice(&header.seq.to_be_bytes());
    out.extend_from_slice(&header.ts_ns.to_be_bytes());
    out.extend_from_slice(body);
    let hash = chain_hash(prev, &out[record_at..]);
    out.extend_from_slice(&hash);
    let crc = crc32fast::hash(&out[record_at..]);
    out[crc_at..crc_at + 4].copy_from_slice(&crc.to_be_bytes());
    hash
}

/// Splits a record (the bytes after a frame header) into its parts.
pub fn parse_record(record: &[u8]) -> Result<RawRecord<'_>, FrameError> {
    if record.len() < RECORD_HEADER_LEN + HASH_LEN {
        return Err(FrameError::TooShort(record.len()));
    }
    let version = record[0];
    if version != FORMAT_VERSION {
        return Err(FrameError::Version(version));
    }
    let mut session = [0u8; 16];
    session.copy_from_slice(&record[2..18]);
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&record[18..26]);
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&record[26..34]);
    let hashed_end = record.len() - HASH_LEN;
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&record[hashed_end..]);
    Ok(RawRecord {
        header: RecordHeader {
            version,
            kind: record[1],
            session,
            seq: u64::from_be_bytes(seq),
            ts_ns: i64::from_be_bytes(ts),
        },
        body: &record[RECORD_HEADER_LEN..hashed_end],
        hashed: &record[..hashed_end],
        hash,
    })
}

/// Reads the frame header at the start of `buf`: (record length, crc).
pub fn frame_header(buf: &[u8]) -> Option<(usize, u32)> {
    if buf.len() < FRAME_HEADER_LEN {
        return None;
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    Some((len, crc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip_and_hash() {
        let header = RecordHeader {
            version: FORMAT_VERSION,
            kind: 7,
            session: [3; 16],
            seq: 42,
            ts_ns: 1_700_000_000_000_000_000,
        };
        let mut out = Vec::new();
        let hash = write_frame(&mut out, &header, b"body", &GENESIS_HASH);
        let (len, crc) = frame_header(&out).expect("header");
        assert_eq!(len, out.len() - FRAME_HEADER_LEN);
        let record = &out[FRAME_HEADER_LEN..];
        assert_eq!(crc32fast::hash(record), crc);
        let raw = parse_record(record).expect("parses");
        assert_eq!(raw.header, header);
        assert_eq!(raw.body, b"body");
        assert_eq!(raw.hash, hash);
        assert_eq!(chain_hash(&GENESIS_HASH, raw.hashed), hash);
    }
}
