//! Every diagnosis names the right kind and the first seq (issue 14): stores and bundles made
//! by the real recorder, edited the way an attacker with file access but without the key
//! would, checked by the real `proctor verify`.

mod evidence_support;

use std::path::Path;
use std::process::Stdio;

use evidence_support::*;
use proctor::recorder::frame::{self, FRAME_HEADER_LEN};
use proctor::recorder::segment;
use proctor::recorder::signing;

fn fail_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("FAIL ")).collect()
}

/// Exactly one FAIL line, naming `session` (when given), `seq` and `what`.
fn assert_one(text: &str, session: Option<&str>, seq: Option<u64>, what: &str) {
    let lines = fail_lines(text);
    assert_eq!(lines.len(), 1, "exactly one finding:\n{text}");
    let line = lines[0];
    if let Some(s) = session {
        assert!(line.contains(s), "{line:?} names {s}\n{text}");
    }
    if let Some(q) = seq {
        assert!(line.contains(&format!("seq {q}:")), "{line:?} at seq {q}");
    }
    assert!(line.contains(what), "{line:?} says {what:?}");
}

/// Moves the seq-0 record's timestamp an hour back and recomputes the whole chain, as an
/// attacker without the key would.
fn back_date(data: &Path, id: &str) {
    let f = find(&frames(data), id, 0);
    rewrite(&f.segment, |b| {
        let at = f.offset + FRAME_HEADER_LEN + 26;
        let ts = i64::from_be_bytes(b[at..at + 8].try_into().expect("8"));
        b[at..at + 8].copy_from_slice(&(ts - 3_600_000_000_000).to_be_bytes());
        fix_crc(b, f.offset);
    });
    rechain(data, key_of(id), None);
}

#[test]
fn store_diagnoses_name_the_kind_and_the_first_seq() {
    let base = tempfile::tempdir().expect("tempdir");
    let clean = base.path().join("clean");
    // Two sealed sessions and one still open, each in its own segment.
    let ids = make_store_open(&clean, 3, 40, 1);
    let (code, t) = verify_code(&clean, &[]);
    assert_eq!(code, Some(0), "{t}");
    assert!(
        t.contains("3 sessions (2 sealed, 1 open, 0 tampered)"),
        "{t}"
    );
    let (victim, open) = (&ids[1], &ids[2]);
    let case = |name: &str| {
        let dir = base.path().join(name);
        copy_dir(&clean, &dir);
        dir
    };

    // Back-dated, chain recomputed: named back-dated at seq 0, not as the signature it breaks.
    let d = case("back-dated");
    back_date(&d, victim);
    let (_, t) = verify_code(&d, &[]);
    assert_one(&t, Some(victim), Some(0), "back-dated");

    // A sealed session with a broken chain is tampered, not open.
    let d = case("broken-sealed");
    let f = find(&frames(&d), victim, 5);
    rewrite(&f.segment, |b| {
        b[f.offset + FRAME_HEADER_LEN + frame::RECORD_HEADER_LEN + 10] ^= 1;
        fix_crc(b, f.offset);
    });
    let (code, t) = verify_code(&d, &[]);
    assert_eq!(code, Some(1), "{t}");
    assert_one(&t, Some(victim), Some(5), "edited");
    assert!(
        t.contains("3 sessions (1 sealed, 1 open, 1 tampered)"),
        "{t}"
    );

    // A record stored twice: duplicate, at its seq.
    let d = case("duplicate");
    let f = find(&frames(&d), victim, 6);
    rewrite(&f.segment, |b| {
        let copy = b[f.offset..f.offset + f.len].to_vec();
        let at = f.offset + f.len;
        b.splice(at..at, copy);
    });
    let (_, t) = verify_code(&d, &[]);
    assert_one(&t, Some(victim), Some(6), "duplicate");

    // A segment renamed, its header rewritten to match: the numbering has a gap.
    let d = case("segment-renamed");
    let numbers = segment::list_segments(&d).expect("segments");
    assert!(numbers.len() >= 3, "{numbers:?}");
    let from = segment::segment_path(&d, 2);
    let last = *numbers.last().expect("last");
    let to = segment::segment_path(&d, last + 2);
    rewrite(&from, |b| {
        b[8..16].copy_from_slice(&(last + 2).to_be_bytes())
    });
    std::fs::rename(&from, &to).expect("rename");
    let (code, t) = verify_code(&d, &[]);
    assert_eq!(code, Some(1), "{t}");
    let missing: Vec<&str> = fail_lines(&t)
        .into_iter()
        .filter(|l| l.contains("segment missing"))
        .collect();
    assert_eq!(
        missing.len(),
        2,
        "segment 2 and segment {} absent:\n{t}",
        last + 1
    );
    assert!(missing[0].contains("segment 2 is absent"), "{t}");

    // A session still open, deleted whole: its opened leaf says it existed.
    let d = case("open-deleted");
    let k = key_of(open);
    let mut mine: Vec<FrameAt> = frames(&d).into_iter().filter(|f| f.session == k).collect();
    mine.sort_by_key(|f| std::cmp::Reverse(f.offset));
    let files: std::collections::BTreeSet<_> = mine.iter().map(|f| f.segment.clone()).collect();
    for file in files {
        rewrite(&file, |buf| {
            for f in mine.iter().filter(|f| f.segment == file) {
                buf.drain(f.offset..f.offset + f.len);
            }
        });
    }
    let (_, t) = verify_code(&d, &[]);
    assert_one(&t, Some(open), Some(0), "session missing");

    // A record forged onto the open session after its last checkpoint: not a failure of the
    // chain, but not signed either; named as an unsigned tail with its seq.
    let d = case("open-forged");
    let forged = forge_output(&d, open, b"rm -rf / was never typed\n");
    let (code, t) = verify_code(&d, &[]);
    assert_eq!(code, Some(3), "{t}");
    assert!(fail_lines(&t).is_empty(), "{t}");
    let line = t
        .lines()
        .find(|l| l.starts_with("UNSIGNED TAIL session") && l.contains(open.as_str()))
        .unwrap_or_else(|| panic!("no unsigned tail for {open}:\n{t}"));
    assert!(
        line.contains(&format!("seq {forged} to {forged}: 1 records")),
        "{line}"
    );
}

/// The parts of a bundle file.
fn split_bundle(bytes: &[u8]) -> (String, serde_json::Value, Vec<u8>) {
    let nl = bytes.iter().position(|&b| b == b'\n').expect("magic");
    let rest = &bytes[nl + 1..];
    let nl2 = rest.iter().position(|&b| b == b'\n').expect("manifest");
    (
        String::from_utf8(bytes[..nl].to_vec()).expect("utf8"),
        serde_json::from_slice(&rest[..nl2]).expect("json"),
        rest[nl2 + 1..].to_vec(),
    )
}

fn join_bundle(magic: &str, manifest: &serde_json::Value, frames: &[u8]) -> Vec<u8> {
    let mut out = format!("{magic}\n{manifest}\n").into_bytes();
    out.extend_from_slice(frames);
    out
}

/// Offset and length of each frame in a bundle's frame bytes, by seq.
fn bundle_frames(frames: &[u8]) -> Vec<(usize, usize, u64)> {
    let mut out = Vec::new();
    for item in segment::Scanner::new(frames, 0) {
        if let segment::Scanned::Frame {
            offset,
            record,
            frame,
        } = item
        {
            out.push((offset as usize, frame.len(), record.header.seq));
        }
    }
    out
}

#[test]
fn bundle_diagnoses_name_the_kind_and_the_first_seq() {
    let base = tempfile::tempdir().expect("tempdir");
    let data = base.path().join("store");
    let ids = make_store(&data, 2, 20);
    let path = base.path().join("s.bundle");
    export_bundle(&data, &ids[0], &path);
    let pubkey = signing::public_key_path(&data);
    let check = |name: &str, bytes: &[u8]| -> (Option<i32>, String) {
        let p = base.path().join(name);
        std::fs::write(&p, bytes).expect("write");
        let o = proctor()
            .args(["verify", "--bundle"])
            .arg(&p)
            .arg("--pubkey")
            .arg(&pubkey)
            .output()
            .expect("verify bundle");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let original = std::fs::read(&path).expect("read");
    let (code, t) = check("clean.bundle", &original);
    assert_eq!(code, Some(0), "{t}");
    let (magic, manifest, frames) = split_bundle(&original);
    let at = bundle_frames(&frames);

    // A record dropped: missing, at its seq, and no extra "no seal" line.
    let (off, len, seq) = at[7];
    let mut dropped = frames.clone();
    dropped.drain(off..off + len);
    let (code, t) = check("dropped.bundle", &join_bundle(&magic, &manifest, &dropped));
    assert_eq!(code, Some(1), "{t}");
    assert_one(&t, Some(&ids[0]), Some(seq), "missing");

    // One byte edited: edited at its seq, one line.
    let (off, _, seq) = at[5];
    let mut edited = frames.clone();
    edited[off + FRAME_HEADER_LEN + frame::RECORD_HEADER_LEN + 6] ^= 1;
    let (_, t) = check("edited.bundle", &join_bundle(&magic, &manifest, &edited));
    assert_one(&t, Some(&ids[0]), Some(seq), "edited");

    // The manifest's agent and privilege changed: the signed session_start disagrees.
    let mut forged = manifest.clone();
    forged["meta"]["agent"] = "someone-else".into();
    forged["meta"]["privilege"] = "routine".into();
    let (code, t) = check("meta.bundle", &join_bundle(&magic, &forged, &frames));
    assert_eq!(code, Some(1), "{t}");
    assert_one(&t, Some(&ids[0]), Some(0), "metadata");
    assert!(t.contains("agent") && t.contains("privilege"), "{t}");

    // Back-dated with the chain recomputed: back-dated at seq 0, one line.
    let mut moved = frames.clone();
    let (off0, _, _) = at[0];
    let ts_at = off0 + FRAME_HEADER_LEN + 26;
    let ts = i64::from_be_bytes(moved[ts_at..ts_at + 8].try_into().expect("8"));
    moved[ts_at..ts_at + 8].copy_from_slice(&(ts - 3_600_000_000_000).to_be_bytes());
    fix_crc(&mut moved, off0);
    rechain_buffer(&mut moved, key_of(&ids[0]));
    let (_, t) = check("back-dated.bundle", &join_bundle(&magic, &manifest, &moved));
    assert_one(&t, Some(&ids[0]), Some(0), "back-dated");
}

#[test]
fn an_edited_index_does_not_reach_sessions_list_or_bundles() {
    let base = tempfile::tempdir().expect("tempdir");
    let data = base.path().join("store");
    let ids = make_store(&data, 1, 5);
    {
        let index =
            proctor::recorder::index::Index::open(&data.join("index")).expect("index opens");
        index
            .update(&key_of(&ids[0]), |m| {
                m.agent = "someone-else".into();
                m.privilege = "routine".into();
            })
            .expect("update");
        index.persist().expect("persist");
    }
    let out = proctor()
        .args(["sessions", "list", "--json", "--data"])
        .arg(&data)
        .output()
        .expect("sessions list");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let s = &list[0];
    assert_eq!(s["agent"], "agent-0", "{s}");
    assert_eq!(s["privilege"], "elevated", "{s}");
    let path = base.path().join("s.bundle");
    export_bundle(&data, &ids[0], &path);
    let (_, manifest, _) = split_bundle(&std::fs::read(&path).expect("read"));
    assert_eq!(manifest["meta"]["agent"], "agent-0");
    assert_eq!(manifest["meta"]["privilege"], "elevated");
}

#[test]
fn verify_exits_1_when_its_reader_goes_away() {
    let base = tempfile::tempdir().expect("tempdir");
    let data = base.path().join("store");
    make_store(&data, 2, 5);
    let mut child = proctor()
        .arg("verify")
        .arg("--data")
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Close the read end before proctor writes (as `proctor verify | head -0` does).
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}
