//! The edits the vectors show: what an attacker with file access but not the recorder key does
//! to a store or a bundle, one kind of damage each (FORMAT.md, "Test vectors").

use std::path::Path;

use proctor::recorder::frame::{self, FRAME_HEADER_LEN};
use proctor::recorder::segment;
use serde_json::Value;

use super::Ids;
use crate::evidence_support::*;

/// Deletes every frame of a session, in whichever segments it has them.
fn delete_session(d: &Path, id: &str) {
    let k = key_of(id);
    remove_frames(d, |f| f.session == k);
}

fn flip_body_byte(d: &Path, id: &str, seq: u64, recompute_crc: bool) {
    let f = find(&frames(d), id, seq);
    rewrite(&f.segment, |b| {
        b[f.offset + FRAME_HEADER_LEN + frame::RECORD_HEADER_LEN + 10] ^= 1;
        if recompute_crc {
            fix_crc(b, f.offset);
        }
    });
}

/// Cuts the zero-filled space after the last frame of the last segment (a crash copy keeps the
/// preallocated megabyte; a restart or a verifier treats both alike).
pub fn trim_tail(d: &Path) {
    let last = *segment::list_segments(d)
        .expect("segments")
        .last()
        .expect("a segment");
    let path = segment::segment_path(d, last);
    let end = frames(d)
        .iter()
        .filter(|f| f.segment == path)
        .map(|f| f.offset + f.len)
        .max()
        .unwrap_or(segment::SEGMENT_HEADER_LEN as usize);
    rewrite(&path, |b| b.truncate(end));
}

/// The seq at which the first store checkpoint listing session `id` signs it.
fn store_signed_seq(d: &Path, id: &str) -> u64 {
    use proctor::recorder::codec::{self, Body, kind};
    let k = key_of(id);
    frames(d)
        .into_iter()
        .filter(|f| f.kind == kind::STORE_CHECKPOINT)
        .find_map(|f| {
            let buf = std::fs::read(&f.segment).expect("segment");
            let body =
                &buf[f.offset + FRAME_HEADER_LEN + frame::RECORD_HEADER_LEN..f.offset + f.len - 32];
            match codec::decode_body(kind::STORE_CHECKPOINT, body) {
                Ok(Body::StoreCheckpoint(sc)) => {
                    sc.chains.iter().find(|c| c.session == k).map(|c| c.seq)
                }
                _ => None,
            }
        })
        .expect("a store checkpoint lists the session")
}

/// Each damaged store: its name and the change.
pub type Damage = (&'static str, Box<dyn Fn(&Path, &Ids)>);

pub fn store_damages() -> Vec<Damage> {
    vec![
        ("edited", Box::new(|d, i| flip_body_byte(d, &i.a, 5, true))),
        (
            "edited-crc",
            Box::new(|d, i| flip_body_byte(d, &i.a, 5, false)),
        ),
        (
            "bad-signature",
            Box::new(|d, i| {
                // Before the chain's first checkpoint, which then fails.
                flip_body_byte(d, &i.a, 2, true);
                rechain(d, key_of(&i.a), None);
            }),
        ),
        (
            "missing",
            Box::new(|d, i| {
                // Not a seq a store checkpoint names (that one is reported where the store
                // checkpoint stands: the chain has not reached it, truncated).
                let f = find(&frames(d), &i.a, 3);
                rewrite(&f.segment, |b| {
                    b.drain(f.offset..f.offset + f.len);
                });
            }),
        ),
        (
            "missing-where-store-checkpoint-signs",
            Box::new(|d, i| {
                let f = find(&frames(d), &i.a, store_signed_seq(d, &i.a));
                rewrite(&f.segment, |b| {
                    b.drain(f.offset..f.offset + f.len);
                });
            }),
        ),
        (
            "reordered",
            Box::new(|d, i| {
                let all = frames(d);
                let (a, b) = (find(&all, &i.a, 2), find(&all, &i.a, 3));
                rewrite(&a.segment, |buf| {
                    let fb = buf[b.offset..b.offset + b.len].to_vec();
                    buf.drain(b.offset..b.offset + b.len);
                    buf.splice(a.offset..a.offset, fb);
                });
            }),
        ),
        (
            "duplicate",
            Box::new(|d, i| {
                let f = find(&frames(d), &i.a, 2);
                rewrite(&f.segment, |b| {
                    let copy = b[f.offset..f.offset + f.len].to_vec();
                    let at = f.offset + f.len;
                    b.splice(at..at, copy);
                });
            }),
        ),
        (
            "truncated",
            Box::new(|d, i| {
                let k = key_of(&i.a);
                let mut tail: Vec<FrameAt> =
                    frames(d).into_iter().filter(|f| f.session == k).collect();
                tail.sort_by_key(|f| std::cmp::Reverse(f.seq));
                tail.truncate(2);
                rewrite(&tail[0].segment, |buf| {
                    for f in &tail {
                        buf.drain(f.offset..f.offset + f.len);
                    }
                });
            }),
        ),
        (
            "back-dated",
            Box::new(|d, i| {
                let f = find(&frames(d), &i.b, 0);
                rewrite(&f.segment, |b| {
                    let at = f.offset + FRAME_HEADER_LEN + 26;
                    let ts = i64::from_be_bytes(b[at..at + 8].try_into().expect("8"));
                    b[at..at + 8].copy_from_slice(&(ts - 3_600_000_000_000).to_be_bytes());
                    fix_crc(b, f.offset);
                });
                rechain(d, key_of(&i.b), None);
            }),
        ),
        ("session-missing", Box::new(|d, i| delete_session(d, &i.b))),
        (
            "open-session-missing",
            Box::new(|d, i| delete_session(d, &i.c)),
        ),
        (
            "segment-missing",
            Box::new(|d, _| {
                let last = *segment::list_segments(d)
                    .expect("segments")
                    .last()
                    .expect("last");
                let from = segment::segment_path(d, 2);
                rewrite(&from, |b| {
                    b[8..16].copy_from_slice(&(last + 1).to_be_bytes())
                });
                std::fs::rename(&from, segment::segment_path(d, last + 1)).expect("rename");
            }),
        ),
        (
            "unsigned-tail",
            Box::new(|d, i| {
                forge_output(d, &i.c, b"forged after the last signature\n");
            }),
        ),
        (
            "store-checkpoint-edited",
            Box::new(|d, _| {
                let f = frames(d)
                    .into_iter()
                    .find(|f| f.kind == proctor::recorder::codec::kind::STORE_CHECKPOINT)
                    .expect("a store checkpoint");
                // A byte of the first listed chain's hash, CRC and journal chain recomputed:
                // only the signature can tell.
                rewrite(&f.segment, |b| {
                    let body = f.offset + FRAME_HEADER_LEN + frame::RECORD_HEADER_LEN;
                    b[body + 8 + 32 + 32 + 4 + 16 + 8] ^= 1;
                    fix_crc(b, f.offset);
                });
                rechain(d, [0u8; 16], None);
            }),
        ),
        (
            "journal-cut",
            Box::new(|d, _| {
                let journal = [0u8; 16];
                let last = frames(d)
                    .into_iter()
                    .filter(|f| f.session == journal)
                    .map(|f| f.seq)
                    .max()
                    .expect("journal records");
                remove_frames(d, |f| f.session == journal && f.seq == last);
            }),
        ),
        (
            "journal-deleted",
            Box::new(|d, _| remove_frames(d, |f| f.session == [0u8; 16])),
        ),
        (
            "ledger-leaf-removed",
            Box::new(|d, _| {
                let lp = proctor::recorder::ledger::ledger_path(d);
                rewrite(&lp, |b| {
                    let at = proctor::recorder::ledger::LEDGER_HEADER_LEN;
                    let len = u32::from_be_bytes(b[at..at + 4].try_into().expect("4")) as usize;
                    b.drain(at..at + 8 + len);
                });
            }),
        ),
        (
            "token-over-another-head",
            Box::new(|d, _| {
                // The newest attestation's token, claimed for the older head.
                let mut files: Vec<_> = proctor::recorder::timestamp::list(d)
                    .expect("attestations")
                    .into_iter()
                    .map(|(p, _)| p)
                    .collect();
                files.sort();
                let read = |p: &Path| -> Value {
                    serde_json::from_slice(&std::fs::read(p).expect("read")).expect("json")
                };
                let older = read(&files[0]);
                let mut newest = read(&files[files.len() - 1]);
                newest["tree_head"] = older["tree_head"].clone();
                std::fs::write(&files[files.len() - 1], newest.to_string()).expect("write");
            }),
        ),
    ]
}

/// Bundle edits: name, change to (manifest, frames).
pub type BundleDamage = (&'static str, Box<dyn Fn(&mut Value, &mut Vec<u8>)>);

pub fn bundle_frame(frames: &[u8], seq: u64) -> (usize, usize) {
    segment::Scanner::new(frames, 0)
        .find_map(|item| match item {
            segment::Scanned::Frame {
                offset,
                record,
                frame,
            } if record.header.seq == seq => Some((offset as usize, frame.len())),
            _ => None,
        })
        .expect("frame in bundle")
}

/// `other_head`: an earlier signed head of the same ledger, with the consistency proof from it
/// to the bundle's head (for a token claimed over it).
pub fn bundle_damages(other_head: Value, proof: Value) -> Vec<BundleDamage> {
    vec![
        (
            "edited",
            Box::new(|_, f| {
                let (off, _) = bundle_frame(f, 5);
                f[off + FRAME_HEADER_LEN + frame::RECORD_HEADER_LEN + 10] ^= 1;
            }),
        ),
        (
            "missing",
            Box::new(|_, f| {
                let (off, len) = bundle_frame(f, 7);
                f.drain(off..off + len);
            }),
        ),
        (
            "truncated",
            Box::new(|_, f| {
                let (off, _) = bundle_frame(f, 13);
                f.truncate(off);
            }),
        ),
        (
            "back-dated",
            Box::new(|m, f| {
                let (off, _) = bundle_frame(f, 0);
                let at = off + FRAME_HEADER_LEN + 26;
                let ts = i64::from_be_bytes(f[at..at + 8].try_into().expect("8"));
                f[at..at + 8].copy_from_slice(&(ts - 3_600_000_000_000).to_be_bytes());
                fix_crc(f, off);
                let id = m["session"].as_str().expect("id").to_string();
                rechain_buffer(f, key_of(&id));
            }),
        ),
        (
            "metadata",
            Box::new(|m, _| {
                m["meta"]["agent"] = "someone-else".into();
                m["meta"]["privilege"] = "routine".into();
            }),
        ),
        (
            "token-over-another-head",
            Box::new(move |m, _| {
                let t = &mut m["timestamps"][0];
                t["tree_head"] = other_head.clone();
                t["consistency_proof"] = proof.clone();
            }),
        ),
    ]
}

/// Edits of the bundle of the recovered session, which carries a store checkpoint.
pub fn recovered_bundle_damages() -> Vec<BundleDamage> {
    vec![(
        "recovered-store-checkpoint-forged",
        Box::new(|m, _| {
            let sc = m["store_checkpoints"][0]
                .as_str()
                .expect("a store checkpoint");
            let mut bytes = hex::decode(sc).expect("hex");
            // The signature's last byte (the record ends with the 32-byte hash).
            let at = bytes.len() - 33;
            bytes[at] ^= 1;
            // The frame's CRC recomputed: only the signature can tell.
            fix_crc(&mut bytes, 0);
            m["store_checkpoints"][0] = hex::encode(bytes).into();
        }),
    )]
}
