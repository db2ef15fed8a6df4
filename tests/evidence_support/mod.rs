//! Shared fixtures for the evidence tests: stores written by the real recorder, the real
//! `proctor verify` binary, and the edits an attacker with file access (but not the key) makes.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use proctor::clock::now_ns;
use proctor::recorder::codec::{self, Body, kind};
use proctor::recorder::frame::{self, FRAME_HEADER_LEN, SessionKey};
use proctor::recorder::segment::{self, Scanned, Scanner};
use proctor::recorder::signing::{self, RecorderKey};
use proctor::recorder::wire::Writer;
use proctor::recorder::{Store, WriterOptions};
use proctor_gate::{Event, Outcome, OutputStream, Privilege, Protocol, SessionInfo};

pub fn proctor() -> Command {
    Command::new(env!("CARGO_BIN_EXE_proctor"))
}

/// Writes `n` sealed sessions of `events` outputs each; returns their ids.
/// The first record of a test session of `agent` (a PostgreSQL session on target `db`).
pub fn session_start(agent: &str) -> Event {
    Event::SessionStart(SessionInfo {
        agent: agent.into(),
        target: "db".into(),
        protocol: Protocol::Postgres,
        login: "app_write".into(),
        privilege: Privilege::Elevated,
        client_addr: "127.0.0.1:5555".into(),
        grant: "g".into(),
        proctor_version: "test".into(),
    })
}

pub fn make_store(data: &Path, n: usize, events: u64) -> Vec<String> {
    make_store_open(data, n, events, 0)
}

/// Like `make_store`, but the last `open` sessions are left unsealed (still recording when
/// the store closes), and a new segment is started after each session.
pub fn make_store_open(data: &Path, n: usize, events: u64, open: usize) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let opts = WriterOptions {
            checkpoint_every_events: 8,
            ..Default::default()
        };
        let mut store = Store::open(data, opts).expect("store opens");
        store.finish_recovery().await.expect("recovery");
        let mut ids = Vec::new();
        for i in 0..n {
            let id = uuid::Uuid::now_v7();
            let key = *id.as_bytes();
            let rec = &store.recorder;
            rec.record(key, now_ns(), &session_start(&format!("agent-{i}")))
                .await
                .expect("start");
            for e in 0..events {
                rec.record(
                    key,
                    now_ns(),
                    &Event::Output {
                        channel: 0,
                        stream: OutputStream::Stdout,
                        data: Bytes::from(format!("line {e} of session {i}\n")),
                    },
                )
                .await
                .expect("event");
            }
            if i + open < n {
                rec.seal(key, now_ns(), Outcome::Completed, "done")
                    .await
                    .expect("seal");
            }
            rec.rotate().await.expect("rotate");
            ids.push(id.to_string());
        }
        store.close();
        ids
    })
}

pub fn verify(data: &Path, extra: &[&str]) -> (bool, String) {
    let (code, text) = verify_code(data, extra);
    (code == Some(0), text)
}

/// Exit status and output of `proctor verify`.
pub fn verify_code(data: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let out = proctor()
        .arg("verify")
        .arg("--data")
        .arg(data)
        .args(extra)
        .output()
        .expect("proctor verify runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// After a crash: no problem, and records after the last checkpoint are named as an unsigned
/// tail (exit 3), not passed as OK nor failed.
pub fn assert_intact_with_unsigned_tail(data: &Path) -> String {
    let (code, t) = verify_code(data, &[]);
    assert_eq!(code, Some(3), "intact, with an unsigned tail:\n{t}");
    assert!(!t.contains("FAIL"), "{t}");
    assert!(t.contains("UNSIGNED TAIL session"), "{t}");
    t
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let p = e.path();
        let name = e.file_name();
        if name == "LOCK" || name == "control.sock" {
            continue;
        }
        if p.is_dir() {
            copy_dir(&p, &to.join(&name));
        } else {
            std::fs::copy(&p, to.join(&name)).expect("copy");
        }
    }
}

/// A frame's place in a segment file.
#[derive(Debug, Clone)]
pub struct FrameAt {
    pub segment: PathBuf,
    pub offset: usize,
    pub len: usize,
    pub session: SessionKey,
    pub seq: u64,
    pub ts_ns: i64,
    pub kind: u8,
}

pub fn frames(data: &Path) -> Vec<FrameAt> {
    let mut out = Vec::new();
    for n in segment::list_segments(data).expect("segments") {
        let path = segment::segment_path(data, n);
        let buf = std::fs::read(&path).expect("read segment");
        for item in Scanner::new(&buf, segment::SEGMENT_HEADER_LEN as usize) {
            if let Scanned::Frame {
                offset,
                record,
                frame,
            } = item
            {
                out.push(FrameAt {
                    segment: path.clone(),
                    offset: offset as usize,
                    len: frame.len(),
                    session: record.header.session,
                    seq: record.header.seq,
                    ts_ns: record.header.ts_ns,
                    kind: record.header.kind,
                });
            }
        }
    }
    out
}

pub fn key_of(id: &str) -> SessionKey {
    *uuid::Uuid::parse_str(id).expect("uuid").as_bytes()
}

pub fn find(frames: &[FrameAt], id: &str, seq: u64) -> FrameAt {
    let k = key_of(id);
    frames
        .iter()
        .find(|f| f.session == k && f.seq == seq)
        .cloned()
        .expect("frame present")
}

pub fn rewrite(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut buf = std::fs::read(path).expect("read");
    f(&mut buf);
    std::fs::write(path, buf).expect("write");
}

pub fn fix_crc(buf: &mut [u8], offset: usize) {
    let len = u32::from_be_bytes(buf[offset..offset + 4].try_into().expect("4")) as usize;
    let rec = offset + FRAME_HEADER_LEN;
    let crc = crc32fast::hash(&buf[rec..rec + len]);
    buf[offset + 4..offset + 8].copy_from_slice(&crc.to_be_bytes());
}

/// Re-chains every record of `session` (as an attacker without the key would after an edit),
/// fixing covered hashes in checkpoints/seals but not their signatures, or re-signing them
/// when `key` is given. Works within one segment file.
pub fn rechain(data: &Path, session: SessionKey, key: Option<&RecorderKey>) {
    let mut prev = frame::GENESIS_HASH;
    for n in segment::list_segments(data).expect("segments") {
        let path = segment::segment_path(data, n);
        rewrite(&path, |buf| {
            prev = rechain_in(
                buf,
                segment::SEGMENT_HEADER_LEN as usize,
                session,
                key,
                prev,
            );
        });
    }
}

/// `rechain` over the frames of a bundle.
pub fn rechain_buffer(buf: &mut [u8], session: SessionKey) {
    rechain_in(buf, 0, session, None, frame::GENESIS_HASH);
}

/// Re-chains the frames of `session` in `buf` from `prev`; returns the last hash.
fn rechain_in(
    buf: &mut [u8],
    start: usize,
    session: SessionKey,
    key: Option<&RecorderKey>,
    mut prev: [u8; 32],
) -> [u8; 32] {
    let mine: Vec<(usize, usize, u8)> = Scanner::new(buf, start)
        .filter_map(|item| match item {
            Scanned::Frame {
                offset,
                record,
                frame,
            } if record.header.session == session => {
                Some((offset as usize, frame.len(), record.header.kind))
            }
            _ => None,
        })
        .collect();
    for (offset, len, k) in mine {
        let rec_start = offset + FRAME_HEADER_LEN;
        let rec_end = offset + len;
        let body_start = rec_start + frame::RECORD_HEADER_LEN;
        let hash_at = rec_end - 32;
        if (k == kind::CHECKPOINT || k == kind::SEAL)
            && let Ok(Body::Checkpoint(mut s) | Body::Seal(mut s)) =
                codec::decode_body(k, &buf[body_start..hash_at])
        {
            s.covered_hash = prev;
            if let Some(key) = key {
                let ctx = if k == kind::SEAL {
                    signing::SEAL_CONTEXT
                } else {
                    signing::CHECKPOINT_CONTEXT
                };
                s.key_id = key.key_id;
                s.signature = key.sign(&signing::checkpoint_message(
                    ctx,
                    &session,
                    s.covered_seq,
                    &prev,
                ));
            }
            let body = if k == kind::SEAL {
                Body::Seal(s)
            } else {
                Body::Checkpoint(s)
            };
            let mut w = Writer::default();
            codec::encode_body(&body, &mut w);
            assert_eq!(w.buf.len(), hash_at - body_start);
            buf[body_start..hash_at].copy_from_slice(&w.buf);
        }
        let h = frame::chain_hash(&prev, &buf[rec_start..hash_at]);
        buf[hash_at..rec_end].copy_from_slice(&h);
        fix_crc(buf, offset);
        prev = h;
    }
    prev
}

/// Appends a forged output record to session `id`, correctly chained (next seq, the previous
/// record's hash) but with no signature, after the last data of the last segment (where a
/// crashed writer's next frame would go). Returns its seq.
pub fn forge_output(data: &Path, id: &str, text: &[u8]) -> u64 {
    let all = frames(data);
    let k = key_of(id);
    let last = all
        .iter()
        .filter(|f| f.session == k)
        .max_by_key(|f| f.seq)
        .expect("session has records")
        .clone();
    let prev: [u8; 32] = std::fs::read(&last.segment).expect("read")
        [last.offset + last.len - 32..last.offset + last.len]
        .try_into()
        .expect("32");
    let (kind_code, body) = proctor::recorder::encode_event(&Event::Output {
        channel: 0,
        stream: OutputStream::Stdout,
        data: Bytes::copy_from_slice(text),
    });
    let header = frame::RecordHeader {
        version: frame::FORMAT_VERSION,
        kind: kind_code,
        session: k,
        seq: last.seq + 1,
        ts_ns: last.ts_ns + 1,
    };
    let mut forged = Vec::new();
    frame::write_frame(&mut forged, &header, &body, &prev);
    let number = *segment::list_segments(data)
        .expect("segments")
        .last()
        .expect("a segment");
    let path = segment::segment_path(data, number);
    let end = all
        .iter()
        .filter(|f| f.segment == path)
        .map(|f| f.offset + f.len)
        .max()
        .unwrap_or(segment::SEGMENT_HEADER_LEN as usize);
    rewrite(&path, |buf| {
        if buf.len() < end + forged.len() {
            buf.resize(end + forged.len(), 0);
        }
        buf[end..end + forged.len()].copy_from_slice(&forged);
    });
    last.seq + 1
}

/// `proctor export ID --format bundle -o PATH`.
pub fn export_bundle(data: &Path, id: &str, path: &Path) {
    let out = proctor()
        .args(["export", id, "--format", "bundle", "-o"])
        .arg(path)
        .arg("--data")
        .arg(data)
        .output()
        .expect("export");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn assert_detected(text: &str, session: &str, seq: Option<u64>, what: &str) {
    assert!(text.contains("FAILED"), "verify should fail:\n{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("FAIL") && l.contains(session))
        .unwrap_or_else(|| panic!("no FAIL line names session {session}:\n{text}"));
    if let Some(q) = seq {
        assert!(
            line.contains(&format!("seq {q}:")),
            "wrong seq in {line:?} (want {q})\n{text}"
        );
    }
    assert!(line.contains(what), "expected {what:?} in {line:?}");
}

/// Removes the frames `pick` selects from their segment files.
pub fn remove_frames(data: &Path, pick: impl Fn(&FrameAt) -> bool) {
    let mut gone: Vec<FrameAt> = frames(data).into_iter().filter(|f| pick(f)).collect();
    gone.sort_by_key(|f| std::cmp::Reverse(f.offset));
    let files: std::collections::BTreeSet<PathBuf> =
        gone.iter().map(|f| f.segment.clone()).collect();
    for file in files {
        rewrite(&file, |buf| {
            for f in gone.iter().filter(|f| f.segment == file) {
                buf.drain(f.offset..f.offset + f.len);
            }
        });
    }
}

/// Every store mutation of issue 14 applied to a copy of `data` (a stopped store holding the
/// sealed session `id`, recorded from a real client), each asserted by its exact diagnosis.
pub fn store_tamper_suite(data: &Path, id: &str, work: &Path) {
    let (code, t) = verify_code(data, &[]);
    assert_eq!(code, Some(0), "the recording verifies untouched:\n{t}");
    let k = key_of(id);
    let n = frames(data).iter().filter(|f| f.session == k).count() as u64;
    assert!(n >= 8, "a session of {n} records");
    let m = n / 2;
    let case = |name: &str| {
        let d = work.join(name);
        copy_dir(data, &d);
        d
    };
    let check = |d: &Path, seq: u64, what: &str| {
        let (code, t) = verify_code(d, &[]);
        assert_eq!(code, Some(1), "{what}:\n{t}");
        assert_detected(&t, id, Some(seq), what);
    };

    let d = case("edited");
    let f = find(&frames(&d), id, m);
    rewrite(&f.segment, |b| {
        let at = f.offset + f.len - 33;
        b[at] ^= 1;
        fix_crc(b, f.offset);
    });
    check(&d, m, "edited");

    let d = case("missing");
    remove_frames(&d, |f| f.session == k && f.seq == m);
    check(&d, m, "missing");

    let d = case("duplicate");
    let f = find(&frames(&d), id, m);
    rewrite(&f.segment, |b| {
        let copy = b[f.offset..f.offset + f.len].to_vec();
        let at = f.offset + f.len;
        b.splice(at..at, copy);
    });
    check(&d, m, "duplicate");

    let d = case("reordered");
    let all = frames(&d);
    let (a, b) = (find(&all, id, m), find(&all, id, m + 1));
    assert_eq!(a.segment, b.segment);
    rewrite(&a.segment, |buf| {
        let fb = buf[b.offset..b.offset + b.len].to_vec();
        buf.drain(b.offset..b.offset + b.len);
        buf.splice(a.offset..a.offset, fb);
    });
    check(&d, m, "reordered");

    let d = case("truncated");
    remove_frames(&d, |f| f.session == k && f.seq >= n - 2);
    check(&d, n - 2, "truncated");

    let d = case("back-dated");
    let f = find(&frames(&d), id, 0);
    rewrite(&f.segment, |b| {
        let at = f.offset + FRAME_HEADER_LEN + 26;
        let ts = i64::from_be_bytes(b[at..at + 8].try_into().expect("8"));
        b[at..at + 8].copy_from_slice(&(ts - 3_600_000_000_000).to_be_bytes());
        fix_crc(b, f.offset);
    });
    rechain(&d, k, None);
    check(&d, 0, "back-dated");

    let d = case("session-missing");
    remove_frames(&d, |f| f.session == k);
    check(&d, 0, "session missing");

    let d = case("after-seal");
    forge_output(&d, id, b"appended after the seal\n");
    check(&d, n, "edited");
}

/// Bundle mutations of issue 14 on the bundle of `id` exported from `data`.
pub fn bundle_tamper_suite(data: &Path, id: &str, work: &Path) {
    let path = work.join("original.bundle");
    export_bundle(data, id, &path);
    let pubkey = signing::public_key_path(data);
    let bytes = std::fs::read(&path).expect("read");
    let nl = bytes.iter().position(|&b| b == b'\n').expect("magic");
    let nl2 = nl
        + 1
        + bytes[nl + 1..]
            .iter()
            .position(|&b| b == b'\n')
            .expect("manifest");
    let manifest: serde_json::Value = serde_json::from_slice(&bytes[nl + 1..nl2]).expect("json");
    let frames_bytes = bytes[nl2 + 1..].to_vec();
    let frame_at = |seq: u64| -> (usize, usize) {
        Scanner::new(&frames_bytes, 0)
            .find_map(|item| match item {
                Scanned::Frame {
                    offset,
                    record,
                    frame,
                } if record.header.seq == seq => Some((offset as usize, frame.len())),
                _ => None,
            })
            .expect("frame")
    };
    let check = |name: &str, manifest: &serde_json::Value, frames: &[u8]| {
        let p = work.join(format!("{name}.bundle"));
        let mut out = format!("PROCTOR-BUNDLE 1\n{manifest}\n").into_bytes();
        out.extend_from_slice(frames);
        std::fs::write(&p, out).expect("write");
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
    let (code, t) = check("untouched", &manifest, &frames_bytes);
    assert_eq!(code, Some(0), "{t}");
    let one = |t: &str, seq: u64, what: &str| {
        let lines: Vec<&str> = t.lines().filter(|l| l.starts_with("FAIL ")).collect();
        assert_eq!(lines.len(), 1, "one finding:\n{t}");
        assert!(lines[0].contains(&format!("seq {seq}: {what}")), "{t}");
    };
    let (off, len) = frame_at(3);
    let mut dropped = frames_bytes.clone();
    dropped.drain(off..off + len);
    let (_, t) = check("missing", &manifest, &dropped);
    one(&t, 3, "missing");
    let mut edited = frames_bytes.clone();
    edited[off + len - 33] ^= 1;
    let (_, t) = check("edited", &manifest, &edited);
    one(&t, 3, "edited");
    let mut forged = manifest.clone();
    forged["meta"]["agent"] = "someone-else".into();
    forged["meta"]["privilege"] = "break-glass".into();
    let (_, t) = check("metadata", &forged, &frames_bytes);
    one(&t, 0, "metadata");
}
