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
