//! The evidence holds: every tamper case is detected by `proctor verify`, which names the
//! session and sequence number; a bundle verifies offline; a crash loses nothing acknowledged;
//! a full disk fails closed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use proctor::clock::now_ns;
use proctor::recorder::codec::{self, Body, kind};
use proctor::recorder::frame::{self, FRAME_HEADER_LEN, SessionKey};
use proctor::recorder::segment::{self, Scanned, Scanner};
use proctor::recorder::signing::{self, RecorderKey};
use proctor::recorder::wire::Writer;
use proctor::recorder::{Store, WriterOptions};
use proctor_gate::{Event, Outcome, OutputStream, Privilege, Protocol, SessionInfo};

fn proctor() -> Command {
    Command::new(env!("CARGO_BIN_EXE_proctor"))
}

/// Writes `n` sealed sessions of `events` outputs each; returns their ids.
fn make_store(data: &Path, n: usize, events: u64) -> Vec<String> {
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
            rec.record(
                key,
                now_ns(),
                &Event::SessionStart(SessionInfo {
                    agent: format!("agent-{i}"),
                    target: "db".into(),
                    protocol: Protocol::Postgres,
                    login: "app_write".into(),
                    privilege: Privilege::Elevated,
                    client_addr: "127.0.0.1:5555".into(),
                    grant: "g".into(),
                    proctor_version: "test".into(),
                }),
            )
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
            rec.seal(key, now_ns(), Outcome::Completed, "done")
                .await
                .expect("seal");
            ids.push(id.to_string());
        }
        store.close();
        ids
    })
}

fn verify(data: &Path, extra: &[&str]) -> (bool, String) {
    let (code, text) = verify_code(data, extra);
    (code == Some(0), text)
}

/// Exit status and output of `proctor verify`.
fn verify_code(data: &Path, extra: &[&str]) -> (Option<i32>, String) {
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
fn assert_intact_with_unsigned_tail(data: &Path) -> String {
    let (code, t) = verify_code(data, &[]);
    assert_eq!(code, Some(3), "intact, with an unsigned tail:\n{t}");
    assert!(!t.contains("FAIL"), "{t}");
    assert!(t.contains("UNSIGNED TAIL session"), "{t}");
    t
}

fn copy_dir(from: &Path, to: &Path) {
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
struct FrameAt {
    segment: PathBuf,
    offset: usize,
    len: usize,
    session: SessionKey,
    seq: u64,
    kind: u8,
}

fn frames(data: &Path) -> Vec<FrameAt> {
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
                    kind: record.header.kind,
                });
            }
        }
    }
    out
}

fn key_of(id: &str) -> SessionKey {
    *uuid::Uuid::parse_str(id).expect("uuid").as_bytes()
}

fn find(frames: &[FrameAt], id: &str, seq: u64) -> FrameAt {
    let k = key_of(id);
    frames
        .iter()
        .find(|f| f.session == k && f.seq == seq)
        .cloned()
        .expect("frame present")
}

fn rewrite(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut buf = std::fs::read(path).expect("read");
    f(&mut buf);
    std::fs::write(path, buf).expect("write");
}

fn fix_crc(buf: &mut [u8], offset: usize) {
    let len = u32::from_be_bytes(buf[offset..offset + 4].try_into().expect("4")) as usize;
    let rec = offset + FRAME_HEADER_LEN;
    let crc = crc32fast::hash(&buf[rec..rec + len]);
    buf[offset + 4..offset + 8].copy_from_slice(&crc.to_be_bytes());
}

/// Re-chains every record of `session` from `from_seq` on (as an attacker without the key
/// would after an edit), fixing covered hashes in checkpoints/seals but not their signatures,
/// or re-signing them when `key` is given. Works within one segment file.
fn rechain(data: &Path, session: SessionKey, key: Option<&RecorderKey>) {
    let all = frames(data);
    let mine: Vec<&FrameAt> = all.iter().filter(|f| f.session == session).collect();
    let path = mine[0].segment.clone();
    rewrite(&path, |buf| {
        let mut prev = frame::GENESIS_HASH;
        for f in mine {
            let rec_start = f.offset + FRAME_HEADER_LEN;
            let rec_end = f.offset + f.len;
            let body_start = rec_start + frame::RECORD_HEADER_LEN;
            let hash_at = rec_end - 32;
            if (f.kind == kind::CHECKPOINT || f.kind == kind::SEAL)
                && let Ok(Body::Checkpoint(mut s) | Body::Seal(mut s)) =
                    codec::decode_body(f.kind, &buf[body_start..hash_at])
            {
                s.covered_hash = prev;
                if let Some(k) = key {
                    let ctx = if f.kind == kind::SEAL {
                        signing::SEAL_CONTEXT
                    } else {
                        signing::CHECKPOINT_CONTEXT
                    };
                    s.key_id = k.key_id;
                    s.signature = k.sign(&signing::checkpoint_message(
                        ctx,
                        &session,
                        s.covered_seq,
                        &prev,
                    ));
                }
                let body = if f.kind == kind::SEAL {
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
            fix_crc(buf, f.offset);
            prev = h;
        }
    });
}

fn assert_detected(text: &str, session: &str, seq: Option<u64>, what: &str) {
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

#[test]
fn tamper_cases_are_detected_and_named() {
    let base = tempfile::tempdir().expect("tempdir");
    let clean = base.path().join("clean");
    let ids = make_store(&clean, 3, 40);
    let (ok, text) = verify(&clean, &[]);
    assert!(ok, "a clean store verifies:\n{text}");
    assert!(text.contains("3 sessions (3 sealed"), "{text}");
    let victim = &ids[1];
    let case = |name: &str| {
        let dir = base.path().join(name);
        copy_dir(&clean, &dir);
        dir
    };

    // 1. One byte of an event body changed: the frame checksum catches it.
    let d = case("edit-byte");
    let f = find(&frames(&d), victim, 5);
    rewrite(&f.segment, |b| {
        b[f.offset + FRAME_HEADER_LEN + frame::RECORD_HEADER_LEN + 10] ^= 1
    });
    let (_, t) = verify(&d, &[]);
    assert_detected(&t, victim, Some(5), "edited");

    // 2. Same edit with the checksum recomputed: the chain hash catches it.
    let d = case("edit-byte-crc");
    let f = find(&frames(&d), victim, 5);
    rewrite(&f.segment, |b| {
        b[f.offset + FRAME_HEADER_LEN + frame::RECORD_HEADER_LEN + 10] ^= 1;
        fix_crc(b, f.offset);
    });
    let (_, t) = verify(&d, &[]);
    assert_detected(&t, victim, Some(5), "does not match its chain hash");

    // 3. Edit, then the whole chain recomputed without the key: a signature breaks.
    let d = case("edit-rechain");
    let f = find(&frames(&d), victim, 5);
    rewrite(&f.segment, |b| {
        b[f.offset + FRAME_HEADER_LEN + frame::RECORD_HEADER_LEN + 10] ^= 1;
        fix_crc(b, f.offset);
    });
    rechain(&d, key_of(victim), None);
    let (_, t) = verify(&d, &[]);
    assert_detected(&t, victim, None, "bad signature");

    // 4. An event dropped.
    let d = case("drop");
    let f = find(&frames(&d), victim, 7);
    rewrite(&f.segment, |b| {
        b.drain(f.offset..f.offset + f.len);
    });
    let (_, t) = verify(&d, &[]);
    assert_detected(&t, victim, Some(7), "missing");

    // 5. Two events swapped.
    let d = case("swap");
    let all = frames(&d);
    let (a, b) = (find(&all, victim, 5), find(&all, victim, 6));
    rewrite(&a.segment, |buf| {
        let fa = buf[a.offset..a.offset + a.len].to_vec();
        let fb = buf[b.offset..b.offset + b.len].to_vec();
        let mut out = buf[..a.offset].to_vec();
        out.extend_from_slice(&fb);
        out.extend_from_slice(&buf[a.offset + a.len..b.offset]);
        out.extend_from_slice(&fa);
        out.extend_from_slice(&buf[b.offset + b.len..]);
        *buf = out;
    });
    let (_, t) = verify(&d, &[]);
    assert_detected(&t, victim, Some(5), "reordered");

    // 6. The tail of a sealed session cut (its end and seal removed).
    let d = case("cut-tail");
    let all = frames(&d);
    let k = key_of(victim);
    let mut tail: Vec<FrameAt> = all
        .iter()
        .filter(|f| f.session == k && f.seq >= 38)
        .cloned()
        .collect();
    tail.sort_by_key(|f| std::cmp::Reverse(f.offset));
    rewrite(&tail[0].segment, |buf| {
        for f in &tail {
            buf.drain(f.offset..f.offset + f.len);
        }
    });
    let (_, t) = verify(&d, &[]);
    assert_detected(&t, victim, Some(38), "truncated");

    // 7. A whole session deleted.
    let d = case("delete-session");
    let mut mine: Vec<FrameAt> = frames(&d).into_iter().filter(|f| f.session == k).collect();
    mine.sort_by_key(|f| std::cmp::Reverse(f.offset));
    rewrite(&mine[0].segment, |buf| {
        for f in &mine {
            buf.drain(f.offset..f.offset + f.len);
        }
    });
    let (_, t) = verify(&d, &[]);
    assert_detected(&t, victim, None, "session missing");

    // 8. Everything re-signed with another key (and the store's public key replaced): only a
    //    pinned key tells; with it the first re-signed record is named.
    let d = case("resign");
    let original_pub = base.path().join("original.pub");
    std::fs::copy(signing::public_key_path(&d), &original_pub).expect("copy pub");
    let mallory = RecorderKey::generate();
    let f = find(&frames(&d), victim, 5);
    rewrite(&f.segment, |b| {
        b[f.offset + FRAME_HEADER_LEN + frame::RECORD_HEADER_LEN + 10] ^= 1;
        fix_crc(b, f.offset);
    });
    for id in &ids {
        rechain(&d, key_of(id), Some(&mallory));
    }
    std::fs::write(
        signing::public_key_path(&d),
        signing::public_key_pem(&mallory.verifying_key()),
    )
    .expect("pub");
    let (_, t) = verify(&d, &["--pubkey", original_pub.to_str().expect("utf8")]);
    assert_detected(&t, victim, None, "bad signature");
    assert!(t.contains("not the recorder key"), "{t}");

    // 9. A session's records intact but its ledger leaf removed: tree heads no longer match.
    let d = case("ledger-edit");
    let lp = proctor::recorder::ledger::ledger_path(&d);
    rewrite(&lp, |b| {
        let at = proctor::recorder::ledger::LEDGER_HEADER_LEN;
        let len = u32::from_be_bytes(b[at..at + 4].try_into().expect("4")) as usize;
        b.drain(at..at + 8 + len);
    });
    let (ok, t) = verify(&d, &[]);
    assert!(!ok, "{t}");
    assert!(t.contains("ledger"), "{t}");
}

#[test]
fn bundles_verify_offline_and_detect_edits() {
    let base = tempfile::tempdir().expect("tempdir");
    let data = base.path().join("store");
    let ids = make_store(&data, 2, 20);
    let bundle = base.path().join("s.bundle");
    let out = proctor()
        .args(["export", &ids[0], "--format", "bundle", "-o"])
        .arg(&bundle)
        .arg("--data")
        .arg(&data)
        .output()
        .expect("export");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pubkey = signing::public_key_path(&data);
    let run = |p: &Path| {
        let o = proctor()
            .args(["verify", "--bundle"])
            .arg(p)
            .arg("--pubkey")
            .arg(&pubkey)
            .output()
            .expect("verify bundle");
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let (ok, t) = run(&bundle);
    assert!(ok, "{t}");
    // Move the store away: the bundle needs nothing of it but the pinned key.
    let mut bytes = std::fs::read(&bundle).expect("read");
    let n = bytes.len();
    bytes[n - 200] ^= 1;
    let bad = base.path().join("bad.bundle");
    std::fs::write(&bad, &bytes).expect("write");
    let (ok, t) = run(&bad);
    assert!(!ok, "an edited bundle must fail:\n{t}");
    assert!(t.contains("FAIL"), "{t}");
}

#[test]
fn crash_loses_nothing_acknowledged() {
    let base = tempfile::tempdir().expect("tempdir");
    let data = base.path().join("store");
    let mut child = proctor()
        .args([
            "bench-recorder",
            "--sessions",
            "16",
            "--events",
            "1000000",
            "--print-acks",
            "--data",
        ])
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn writer");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut acked: HashMap<String, u64> = HashMap::new();
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let mut parts = line.split_whitespace();
            if let (Some("ack"), Some(id), Some(seq)) = (parts.next(), parts.next(), parts.next())
                && let Ok(seq) = seq.parse::<u64>()
            {
                acked.insert(id.to_string(), seq);
            }
        }
        acked
    });
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().expect("kill -9");
    let _ = child.wait();
    let acked = reader.join().expect("reader");
    assert!(acked.len() >= 8, "the writer made progress: {acked:?}");
    // Before restart: the chains verify up to the last durable event (sessions are open);
    // what follows each one's last checkpoint is an unsigned tail.
    let t = assert_intact_with_unsigned_tail(&data);
    assert!(t.contains("a crash left open"), "{t}");
    // Restart: recovery seals the open sessions as interrupted.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let interrupted = rt.block_on(async {
        let mut store = Store::open(&data, WriterOptions::default()).expect("reopen");
        store.finish_recovery().await.expect("recover");
        let n = store.recovery.interrupted_sessions.len();
        let index = store.index();
        for (id, seq) in &acked {
            let meta = index
                .get(&key_of(id))
                .expect("index")
                .unwrap_or_else(|| panic!("session {id} is in the index"));
            // seq counts outputs after the start (seq 0); the recording has them all, plus
            // checkpoints, the end and the seal.
            assert!(
                meta.last_seq > *seq,
                "session {id}: acked seq {seq}, recorded up to {}",
                meta.last_seq
            );
            assert_eq!(meta.outcome.as_deref(), Some("interrupted"));
        }
        drop(index);
        store.close();
        n
    });
    assert!(
        interrupted >= acked.len(),
        "every open session was sealed interrupted"
    );
    // After recovery the sessions are sealed, and what no checkpoint covered before the crash
    // is still named as such.
    let t = assert_intact_with_unsigned_tail(&data);
    assert!(t.contains("only proctor's restart vouches"), "{t}");
}

#[test]
fn full_disk_fails_closed_and_keeps_what_was_acknowledged() {
    let base = tempfile::tempdir().expect("tempdir");
    let data = base.path().join("store");
    // A 2 MiB file-size limit makes the segment write fail like a full disk.
    let script = format!(
        "ulimit -f 2048; exec {} bench-recorder --sessions 4 --events 100000 --print-acks --data {}",
        env!("CARGO_BIN_EXE_proctor"),
        data.display()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the writer reports a recording failure: {stderr}"
    );
    assert!(
        stderr.contains("recording failed") || stderr.contains("recorder failed"),
        "{stderr}"
    );
    let mut acked: HashMap<String, u64> = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let p: Vec<&str> = line.split_whitespace().collect();
        if p.len() == 3 && p[0] == "ack" {
            acked.insert(p[1].to_string(), p[2].parse().expect("seq"));
        }
    }
    assert!(!acked.is_empty());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let mut store = Store::open(&data, WriterOptions::default()).expect("reopen with space");
        store.finish_recovery().await.expect("recover");
        let index = store.index();
        for (id, seq) in &acked {
            let meta = index
                .get(&key_of(id))
                .expect("index")
                .expect("session present");
            assert!(meta.last_seq > *seq, "acknowledged events survive");
        }
        drop(index);
        store.close();
    });
    let (code, t) = verify_code(&data, &[]);
    assert!(matches!(code, Some(0 | 3)), "{t}");
    assert!(!t.contains("FAIL"), "{t}");
}
