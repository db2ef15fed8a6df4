//! Recovery never launders (issue 14): kill -9 while sessions write, forge a record into a
//! session the crash left open, restart: the seal proctor's restart adds does not turn the
//! forged record into signed evidence; `verify` names it inside an unsigned tail.

mod evidence_support;

use std::process::Stdio;
use std::time::Duration;

use evidence_support::*;
use proctor::recorder::{Store, WriterOptions};

fn verify_json(data: &std::path::Path) -> (Option<i32>, serde_json::Value) {
    let out = proctor()
        .args(["verify", "--json", "--data"])
        .arg(data)
        .output()
        .expect("verify");
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    });
    (out.status.code(), v)
}

/// The unsigned tail of `id`, if verify reports one.
fn tail_of<'a>(v: &'a serde_json::Value, id: &str) -> Option<&'a serde_json::Value> {
    v["report"]["unsigned_tails"]
        .as_array()?
        .iter()
        .find(|t| t["session"] == id)
}

#[test]
fn a_record_forged_after_a_crash_stays_outside_the_signed_part() {
    let base = tempfile::tempdir().expect("tempdir");
    let data = base.path().join("store");
    let mut child = proctor()
        .args([
            "bench-recorder",
            "--sessions",
            "4",
            "--events",
            "1000000",
            "--data",
        ])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn writer");
    std::thread::sleep(Duration::from_millis(1200));
    child.kill().expect("kill -9");
    let _ = child.wait();

    // The victim: a session the crash left open (it has no seal).
    let all = frames(&data);
    let victim = all
        .iter()
        .filter(|f| f.seq == 0)
        .map(|f| f.session)
        .find(|s| {
            !all.iter()
                .any(|f| f.session == *s && f.kind == proctor::recorder::codec::kind::SEAL)
        })
        .expect("an open session");
    let id = uuid::Uuid::from_bytes(victim).to_string();
    let forged = forge_output(&data, &id, b"DROP TABLE accounts; -- never ran\n");

    // Before restart: no failure, the forged record inside the open chain's unsigned tail.
    let (code, v) = verify_json(&data);
    assert_eq!(code, Some(3), "{v}");
    assert_eq!(v["verdict"], "unsigned_tail", "{v}");
    let t = tail_of(&v, &id).unwrap_or_else(|| panic!("no unsigned tail for {id}: {v}"));
    assert!(t["from_seq"].as_u64() <= Some(forged), "{t}");
    assert_eq!(t["to_seq"].as_u64(), Some(forged), "{t}");
    assert_eq!(t["sealed_by_recovery"], false, "{t}");

    // Restart: recovery seals the session, after a `recovered` record naming where the
    // signatures made before the crash end.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let mut store = Store::open(&data, WriterOptions::default()).expect("reopen");
        store.finish_recovery().await.expect("recover");
        assert!(
            store.recovery.interrupted_sessions.contains(&id),
            "{:?}",
            store.recovery.interrupted_sessions
        );
        store.close();
    });
    let (code, v) = verify_json(&data);
    assert_eq!(code, Some(3), "{v}");
    assert_eq!(
        v["report"]["problems"].as_array().map(Vec::len),
        Some(0),
        "{v}"
    );
    let t = tail_of(&v, &id).unwrap_or_else(|| panic!("no unsigned tail for {id}: {v}"));
    let from = t["from_seq"].as_u64().expect("from");
    assert!(from <= forged, "{t}");
    assert_eq!(t["to_seq"].as_u64(), Some(forged), "{t}");
    assert_eq!(t["records"].as_u64(), Some(forged - from + 1), "{t}");
    assert_eq!(t["sealed_by_recovery"], true, "{t}");
    assert!(
        t["first_ts_ns"].as_i64() <= t["last_ts_ns"].as_i64(),
        "a time span: {t}"
    );

    // The session's bundle carries the same unsigned tail.
    let bundle = base.path().join("victim.bundle");
    export_bundle(&data, &id, &bundle);
    let out = proctor()
        .args(["verify", "--json", "--bundle"])
        .arg(&bundle)
        .output()
        .expect("verify bundle");
    assert_eq!(out.status.code(), Some(3));
    let b: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        b["unsigned_tails"][0]["to_seq"].as_u64(),
        Some(forged),
        "{b}"
    );
    assert_eq!(b["problems"].as_array().map(Vec::len), Some(0), "{b}");

    // Editing the recovery record's claim (records signed further than they were) is caught.
    let rec = frames(&data)
        .into_iter()
        .find(|f| f.session == victim && f.kind == proctor::recorder::codec::kind::RECOVERED)
        .expect("a recovered record");
    rewrite(&rec.segment, |b| {
        let at = rec.offset + proctor::recorder::frame::FRAME_HEADER_LEN + 34;
        b[at..at + 8].copy_from_slice(&(forged + 1).to_be_bytes());
        fix_crc(b, rec.offset);
    });
    rechain(&data, victim, None);
    let (code, v) = verify_json(&data);
    assert_eq!(code, Some(1), "{v}");
    let p = &v["report"]["problems"][0];
    assert_eq!(p["kind"], "edited", "{v}");
    assert_eq!(p["seq"].as_u64(), Some(rec.seq), "{v}");
}

/// Where the child writer of the test below writes (set only in the child).
const SLOW_WRITER_ENV: &str = "PROCTOR_TEST_SLOW_WRITER_DATA";

/// The child process of `an_honest_crash_leaves_at_most_one_store_checkpoint_interval_unsigned`:
/// sessions that record an event every 20 ms, far from the per-session checkpoint cadence
/// (1024 events or 2 s), until killed. Does nothing when run as an ordinary test.
#[test]
#[ignore = "the child process of the honest-crash test"]
fn slow_writer_child() {
    let Some(data) = std::env::var_os(SLOW_WRITER_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let mut store =
            Store::open(std::path::Path::new(&data), WriterOptions::default()).expect("store");
        store.finish_recovery().await.expect("recovery");
        let mut tasks = Vec::new();
        for i in 0..6u32 {
            let rec = store.recorder.clone();
            tasks.push(tokio::spawn(async move {
                let key = *uuid::Uuid::now_v7().as_bytes();
                rec.record(key, proctor::clock::now_ns(), &session_start(i))
                    .await
                    .expect("start");
                for n in 0u64.. {
                    let ev = proctor_gate::Event::Exec {
                        channel: 0,
                        command: format!("echo {n}"),
                    };
                    rec.record(key, proctor::clock::now_ns(), &ev)
                        .await
                        .expect("durable");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

fn session_start(i: u32) -> proctor_gate::Event {
    proctor_gate::Event::SessionStart(proctor_gate::SessionInfo {
        agent: format!("agent-{i}"),
        target: "box".into(),
        protocol: proctor_gate::Protocol::Ssh,
        login: "ops".into(),
        privilege: proctor_gate::Privilege::Routine,
        client_addr: "127.0.0.1:5555".into(),
        grant: "g".into(),
        proctor_version: "test".into(),
    })
}

/// Issue 14, "the unsigned window is bounded": sessions recording slowly are killed -9 after
/// 1.5 s, before any per-session checkpoint is due; the store checkpoints leave at most about
/// one interval (100 ms) and one batch of each session unsigned, not the whole session. Then
/// a record forged into one of them stays outside the signed part across the restart.
#[test]
fn an_honest_crash_leaves_at_most_one_store_checkpoint_interval_unsigned() {
    let base = tempfile::tempdir().expect("tempdir");
    let data = base.path().join("store");
    let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "slow_writer_child", "--ignored", "--nocapture"])
        .env(SLOW_WRITER_ENV, &data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the writer");
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().expect("kill -9");
    let _ = child.wait();

    let (code, v) = verify_json(&data);
    assert_ne!(code, Some(1), "{v}");
    let sessions: Vec<String> = frames(&data)
        .iter()
        .filter(|f| f.seq == 0 && f.session != [0u8; 16])
        .map(|f| uuid::Uuid::from_bytes(f.session).to_string())
        .collect();
    assert_eq!(sessions.len(), 6, "{v}");
    let records_per_session = frames(&data).len() / 7;
    assert!(records_per_session > 20, "the writer barely ran: {v}");
    for id in &sessions {
        // A session may be fully signed (no tail) when the crash fell just after a checkpoint.
        if let Some(t) = tail_of(&v, id) {
            let span_ms = (t["last_ts_ns"].as_i64().unwrap_or(0)
                - t["first_ts_ns"].as_i64().unwrap_or(0))
                / 1_000_000;
            let n = t["records"].as_u64().unwrap_or(u64::MAX);
            eprintln!("honest crash: session {id}: {n} unsigned records over {span_ms} ms");
            // 100 ms of store checkpoint interval plus one batch; loose for a loaded machine
            // (without store checkpoints: every record of the session, over about 1.5 s).
            assert!(span_ms < 400, "unsigned window of {span_ms} ms: {t}");
            assert!(n < 25, "{n} unsigned records: {t}");
        }
    }

    // A record forged into one of them after the crash is outside the signed part, before
    // and after the restart seals it.
    let id = &sessions[0];
    let forged = forge_output(&data, id, b"rm -rf / # never ran\n");
    let (code, v) = verify_json(&data);
    assert_eq!(code, Some(3), "{v}");
    let t = tail_of(&v, id).unwrap_or_else(|| panic!("no unsigned tail for {id}: {v}"));
    assert_eq!(t["to_seq"].as_u64(), Some(forged), "{t}");
    let before = t["from_seq"].as_u64().expect("from");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let mut store = Store::open(&data, WriterOptions::default()).expect("reopen");
        store.finish_recovery().await.expect("recover");
        store.close();
    });
    let (code, v) = verify_json(&data);
    assert_eq!(code, Some(3), "{v}");
    assert_eq!(
        v["report"]["problems"].as_array().map(Vec::len),
        Some(0),
        "{v}"
    );
    let t = tail_of(&v, id).unwrap_or_else(|| panic!("no unsigned tail for {id}: {v}"));
    assert_eq!(t["sealed_by_recovery"], true, "{t}");
    assert_eq!(t["to_seq"].as_u64(), Some(forged), "{t}");
    // The restart named the same first unsigned record the store checkpoints imply.
    assert_eq!(t["from_seq"].as_u64(), Some(before), "{t}");
}
