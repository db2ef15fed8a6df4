//! A bundle's frames checked as one chain (FORMAT.md, "Bundles"): every record of the session,
//! in order, with the positions the bundle's store checkpoint signs applied right after the
//! record each names, as a verifier of the whole store does.

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;

use super::bundle::{BundleReport, problem};
use crate::recorder::frame::FRAME_HEADER_LEN;
use crate::recorder::segment::{Scanned, Scanner};
use crate::recorder::verify::{ChainCheck, Problem, ProblemKind, check_record, external};

/// Checks the frames as one chain; returns it and its first problem, if any.
/// `store_signed`: the chain positions the bundle's store checkpoints sign (seq to hash).
pub(super) fn check_frames(
    frames: &[u8],
    id: &str,
    (session_key, store_signed, external): (
        [u8; 16],
        &BTreeMap<u64, [u8; 32]>,
        &[super::bundle_external::ExternalBody],
    ),
    key: &VerifyingKey,
    key_id: &[u8; 32],
    report: &mut BundleReport,
) -> (ChainCheck, Option<Problem>) {
    let mut chain = ChainCheck::without_store_checkpoints();
    let mut first: Option<Problem> = None;
    for item in Scanner::new(frames, 0) {
        match item {
            Scanned::Frame { record, .. } => {
                if record.header.session != session_key {
                    first.get_or_insert(problem(
                        id,
                        Some(record.header.seq),
                        ProblemKind::Edited,
                        "a record of another session is in the bundle",
                    ));
                    chain.mark_bad();
                    continue;
                }
                report.records += 1;
                if let Some((seq, kind, detail)) = check_record(&mut chain, &record, key, key_id) {
                    first.get_or_insert(problem(id, Some(seq), kind, detail));
                    continue;
                }
                // The body a kind-68 record names travels in the manifest.
                if let Some((kind, detail)) =
                    external::check(record.header.kind, record.body, |ext| {
                        super::bundle_external::load(external, ext)
                    })
                {
                    first.get_or_insert(problem(id, Some(record.header.seq), kind, detail));
                    // The blob's finding is the chain's (FORMAT.md, "External bodies"): the
                    // session is then not reported sealed, as in a store.
                    chain.mark_bad();
                }
                if let Some(hash) = store_signed.get(&record.header.seq)
                    && let Some((seq, kind, detail)) =
                        chain.signed_by_store(record.header.seq, hash)
                {
                    // Checked right after the record it names, as in the log.
                    first.get_or_insert(problem(id, Some(seq), kind, detail));
                }
            }
            Scanned::Damage { offset, what, .. } => {
                let seq = frames
                    .get(offset as usize + FRAME_HEADER_LEN..)
                    .and_then(|r| crate::recorder::frame::parse_record(r).ok())
                    .map(|r| r.header.seq);
                if !chain.is_bad() {
                    first.get_or_insert(problem(
                        id,
                        seq,
                        ProblemKind::Edited,
                        format!("{what} at byte {offset} of the frames"),
                    ));
                }
                chain.mark_bad();
            }
            Scanned::TornTail { offset, .. } => {
                if !chain.is_bad() {
                    first.get_or_insert(problem(
                        id,
                        Some(chain.records),
                        ProblemKind::Truncated,
                        format!("the frames are cut at byte {offset}"),
                    ));
                }
                chain.mark_bad();
            }
        }
    }
    if let Some((seq, kind, detail)) = chain.finish() {
        first.get_or_insert(problem(id, Some(seq), kind, detail));
    }
    if let Some((seq, kind, detail)) = chain.store_gap_finding() {
        first = Some(problem(id, Some(seq), kind, detail));
    }
    (chain, first)
}
