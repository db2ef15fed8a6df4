//! The evidence holds: every tamper case is detected by `proctor verify`, which names the
//! session and sequence number; a bundle verifies offline; a crash loses nothing acknowledged;
//! a full disk fails closed.

mod evidence_support;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use evidence_support::*;
use proctor::recorder::frame::{self, FRAME_HEADER_LEN};
use proctor::recorder::signing::{self, RecorderKey};
use proctor::recorder::{Store, WriterOptions};

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
        store.close();
    });
    let (code, t) = verify_code(&data, &[]);
    assert!(matches!(code, Some(0 | 3)), "{t}");
    assert!(!t.contains("FAIL"), "{t}");
}
