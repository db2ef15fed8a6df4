//! `verify --archive DIR --data STORE`: an archive's manifests are not signed, so a bundle
//! removed together with its manifest entry leaves an archive that checks on its own; the
//! store's ledger (its archived leaves name each file and its SHA-256) finds it (FORMAT.md
//! "Archives"). Found by the outside verifier (rule 6).

use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use proctor::clock::now_ns;
use proctor::recorder::{Store, WriterOptions};
use proctor::retention;
use proctor_gate::{Event, Outcome, OutputStream, Privilege, Protocol, SessionInfo};

const DAY: i64 = 86_400_000_000_000;

/// A sealed session whose online period ended yesterday (archivable).
async fn archivable_session(store: &Store, agent: &str) -> String {
    let id = uuid::Uuid::now_v7();
    let key = *id.as_bytes();
    let r = &store.recorder;
    let info = SessionInfo {
        agent: agent.into(),
        target: "db".into(),
        protocol: Protocol::Ssh,
        login: "root".into(),
        privilege: Privilege::Elevated,
        client_addr: "127.0.0.1:1".into(),
        grant: "g".into(),
        proctor_version: "test".into(),
    };
    r.record(key, now_ns(), &Event::SessionStart(info))
        .await
        .expect("start");
    let output = Event::Output {
        channel: 0,
        stream: OutputStream::Stdout,
        data: Bytes::from(format!("{agent} output\n")),
    };
    r.record(key, now_ns(), &output).await.expect("output");
    let now = now_ns();
    let retention = Event::Retention {
        online_until_ns: now - DAY,
        retain_until_ns: now + 30 * DAY,
        policy: "test".into(),
    };
    r.record(key, now, &retention).await.expect("retention");
    r.seal(key, now_ns(), Outcome::Completed, "done")
        .await
        .expect("seal");
    // Archiving reads the index, which follows the log a moment later: wait for the seal and
    // its ledger leaf to show there.
    for _ in 0..500 {
        let meta = store.index().get(&key).expect("index");
        if meta.is_some_and(|m| m.sealed && m.ledger_index.is_some()) {
            return id.to_string();
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("session {id} never showed sealed in the index");
}

fn verify_archive(dir: &Path, data: Option<&Path>) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_proctor"));
    cmd.env_remove("PROCTOR_DATA").env_remove("PROCTOR_CONFIG");
    cmd.arg("verify").arg("--archive").arg(dir);
    if let Some(d) = data {
        cmd.arg("--data").arg(d);
    }
    let out = cmd.output().expect("proctor runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_removed_with_its_manifest_entry_is_found_by_the_ledger() {
    let base = tempfile::tempdir().expect("tempdir");
    let data = base.path().join("store");
    let archive = base.path().join("archive");
    let mut store = Store::open(&data, WriterOptions::default()).expect("open");
    store.finish_recovery().await.expect("recover");
    let kept = archivable_session(&store, "kept").await;
    let removed = archivable_session(&store, "removed").await;
    let days = std::time::Duration::from_secs(86_400);
    let report = retention::archive(&store, None, &archive, 365 * days)
        .await
        .expect("archive");
    assert_eq!(report.archived.len(), 2, "{report:?}");
    store.close();

    let (ok, text) = verify_archive(&archive, Some(&data));
    assert!(ok, "the untouched archive is complete:\n{text}");
    let (ok, text) = verify_archive(&archive, None);
    assert!(ok, "{text}");
    assert!(text.contains("completeness not checked"), "{text}");

    // Remove one bundle and its manifest entry: the archive alone still checks.
    std::fs::remove_file(archive.join(format!("{removed}.bundle.gz"))).expect("remove");
    for e in std::fs::read_dir(&archive).expect("dir") {
        let path = e.expect("entry").path();
        if !path.to_string_lossy().contains("MANIFEST-") {
            continue;
        }
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        m["sessions"]
            .as_array_mut()
            .expect("sessions")
            .retain(|s| s["session"] != removed.as_str());
        std::fs::write(&path, serde_json::to_vec(&m).expect("json")).expect("write");
    }
    let (ok, text) = verify_archive(&archive, None);
    assert!(ok, "on its own the archive cannot tell:\n{text}");
    let (ok, text) = verify_archive(&archive, Some(&data));
    assert!(!ok, "the ledger says {removed} was archived here:\n{text}");
    assert!(
        text.contains(&format!("session {removed}")) && text.contains("is missing"),
        "{text}"
    );
    assert!(!text.contains(&format!("session {kept}")), "{text}");
}
