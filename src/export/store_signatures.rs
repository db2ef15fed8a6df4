//! The store checkpoint a bundle carries (FORMAT.md, "Bundles"): a bundle holds no journal, so
//! without it a verifier judges which records are signed from the session's own checkpoints
//! alone. The newest store checkpoint (kind 67) that lists the session signs its chain up to
//! the position it names; its recorder signature checks without the journal, so a bundle that
//! carries it shows those records as signed, exactly as `verify` does on the whole store.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use ed25519_dalek::VerifyingKey;

use crate::recorder::codec::{self, Body, kind};
use crate::recorder::frame::{JOURNAL_SESSION, SessionKey};
use crate::recorder::index::SessionMeta;
use crate::recorder::segment::{self, SEGMENT_HEADER_LEN, Scanned, Scanner};
use crate::recorder::signing;
use crate::recorder::verify::ProblemKind;

/// The frames (hex, as stored) of the newest store checkpoint that lists session `meta.id`.
/// A store checkpoint listing the session at seq `s` stands after record `s` and before record
/// `s + 1` in the log, so it lies within the segments the session's records span.
pub fn collect(data: &Path, meta: &SessionMeta, session: SessionKey) -> io::Result<Vec<String>> {
    let (Some(first), Some(last)) = (
        meta.spans.iter().map(|s| s.segment).min(),
        meta.spans.iter().map(|s| s.segment).max(),
    ) else {
        return Ok(Vec::new());
    };
    let mut newest: Option<Vec<u8>> = None;
    for number in first..=last {
        let buf = match segment::read_range(data, number, 0, None) {
            Ok(b) => b,
            // Retention may have rewritten a segment; a missing one holds nothing of ours.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for item in Scanner::new(&buf, SEGMENT_HEADER_LEN as usize) {
            let Scanned::Frame { record, frame, .. } = item else {
                continue;
            };
            if record.header.session != JOURNAL_SESSION
                || record.header.kind != kind::STORE_CHECKPOINT
            {
                continue;
            }
            if let Ok(Body::StoreCheckpoint(sc)) =
                codec::decode_body(kind::STORE_CHECKPOINT, record.body)
                && sc.chains.iter().any(|c| c.session == session)
            {
                newest = Some(frame.to_vec());
            }
        }
    }
    Ok(newest.map(hex::encode).into_iter().collect())
}

/// What a bundle's store checkpoints sign: seq to chain hash.
pub type Signed = BTreeMap<u64, [u8; 32]>;
/// A problem with a carried store checkpoint: the seq it concerns, its kind, what was found.
pub type CarriedProblem = (Option<u64>, ProblemKind, String);

/// What a bundle's store checkpoints sign of its session. A carried record that is not a store
/// checkpoint signed by `key` is a problem (seq: the position it claims for the session, when
/// readable).
pub fn check(
    carried: &[String],
    session: SessionKey,
    key: &VerifyingKey,
    key_id: &[u8; 32],
) -> (Signed, Vec<CarriedProblem>) {
    let mut signed = BTreeMap::new();
    let mut problems = Vec::new();
    for (i, h) in carried.iter().enumerate() {
        let Ok(bytes) = hex::decode(h) else {
            problems.push((
                None,
                ProblemKind::Edited,
                format!("store checkpoint {i} of the bundle is not hex"),
            ));
            continue;
        };
        let mut frames = Scanner::new(&bytes, 0);
        let record = match (frames.next(), frames.next()) {
            (Some(Scanned::Frame { record, .. }), None) => record,
            _ => {
                problems.push((
                    None,
                    ProblemKind::Edited,
                    format!("store checkpoint {i} of the bundle is not one whole frame"),
                ));
                continue;
            }
        };
        let sc = match codec::decode_body(record.header.kind, record.body) {
            Ok(Body::StoreCheckpoint(sc)) if record.header.session == JOURNAL_SESSION => sc,
            _ => {
                problems.push((
                    None,
                    ProblemKind::Edited,
                    format!("record {i} of the bundle's store checkpoints is not a store checkpoint of the journal"),
                ));
                continue;
            }
        };
        let ours = sc.chains.iter().find(|c| c.session == session).copied();
        let seq = ours.map(|c| c.seq);
        if &sc.signed.key_id != key_id || !signing::verify(key, &sc.message(), &sc.signed.signature)
        {
            problems.push((
                seq,
                ProblemKind::BadSignature,
                format!(
                    "the bundle's store checkpoint (journal seq {}) is not signed by the recorder key",
                    record.header.seq
                ),
            ));
            continue;
        }
        match ours {
            Some(c) => {
                signed.insert(c.seq, c.hash);
            }
            None => problems.push((
                None,
                ProblemKind::Edited,
                format!(
                    "the bundle's store checkpoint (journal seq {}) does not list this session",
                    record.header.seq
                ),
            )),
        }
    }
    (signed, problems)
}
