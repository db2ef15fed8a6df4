//! Rollbacks are caught against a tree head saved earlier (issue 14): deleting the newest
//! session together with its ledger leaves and the tree heads after them leaves a consistent,
//! smaller store that verifies on its own; `verify --known-head` (a saved head, or a bundle)
//! says it was rolled back. `ledger head --from` gives the RFC 6962 consistency proof between
//! two heads.

mod evidence_support;

use std::path::Path;

use evidence_support::*;
use proctor::clock::now_ns;
use proctor::export::bundle::parse_known_head;
use proctor::recorder::consistency::verify_consistency;
use proctor::recorder::ledger;
use proctor::recorder::{Store, WriterOptions};
use proctor_gate::{Event, Outcome, Privilege, Protocol, SessionInfo};

fn ledger_head(data: &Path, extra: &[&str]) -> serde_json::Value {
    let out = proctor()
        .args(["ledger", "head", "--data"])
        .arg(data)
        .args(extra)
        .output()
        .expect("ledger head");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

fn add_session(data: &Path) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let mut store = Store::open(data, WriterOptions::default()).expect("store");
        store.finish_recovery().await.expect("recovery");
        let id = uuid::Uuid::now_v7();
        let key = *id.as_bytes();
        store
            .recorder
            .record(
                key,
                now_ns(),
                &Event::SessionStart(SessionInfo {
                    agent: "agent-late".into(),
                    target: "db".into(),
                    protocol: Protocol::Postgres,
                    login: "app".into(),
                    privilege: Privilege::Elevated,
                    client_addr: "127.0.0.1:1".into(),
                    grant: "g".into(),
                    proctor_version: "test".into(),
                }),
            )
            .await
            .expect("start");
        store
            .recorder
            .seal(key, now_ns(), Outcome::Completed, "done")
            .await
            .expect("seal");
        store.close();
        id.to_string()
    })
}

#[test]
fn a_rolled_back_store_fails_against_a_head_saved_before() {
    let base = tempfile::tempdir().expect("tempdir");
    let data = base.path().join("store");
    make_store(&data, 2, 5);
    let early = ledger_head(&data, &[]);
    let early_ledger = std::fs::read(ledger::ledger_path(&data)).expect("ledger");
    let late_id = add_session(&data);
    let late = ledger_head(&data, &[]);
    let late_file = base.path().join("head.json");
    std::fs::write(&late_file, late.to_string()).expect("save head");
    let bundle = base.path().join("late.bundle");
    export_bundle(&data, &late_id, &bundle);
    let (code, t) = verify_code(&data, &["--known-head", late_file.to_str().expect("utf8")]);
    assert_eq!(code, Some(0), "the store extends the head it printed:\n{t}");

    // The consistency proof from the early head to the late one checks out.
    let size = early["size"].as_u64().expect("size");
    let with_proof = ledger_head(&data, &["--from", &size.to_string()]);
    let h = |v: &serde_json::Value| -> [u8; 32] {
        hex::decode(v.as_str().expect("hex"))
            .expect("hex")
            .try_into()
            .expect("32")
    };
    let proof: Vec<[u8; 32]> = with_proof["consistency_proof"]
        .as_array()
        .expect("proof")
        .iter()
        .map(h)
        .collect();
    let late_size = late["size"].as_u64().expect("size");
    assert!(verify_consistency(
        size,
        late_size,
        &h(&early["root"]),
        &h(&late["root"]),
        &proof
    ));
    assert!(!verify_consistency(
        size,
        late_size,
        &h(&late["root"]),
        &h(&late["root"]),
        &proof
    ));

    // Roll back: the late session's records, leaves and tree heads removed.
    let rolled = base.path().join("rolled");
    copy_dir(&data, &rolled);
    remove_frames(&rolled, |f| f.session == key_of(&late_id));
    std::fs::write(ledger::ledger_path(&rolled), &early_ledger).expect("old ledger");
    let (code, t) = verify_code(&rolled, &[]);
    assert_eq!(
        code,
        Some(0),
        "on its own a rolled-back store is consistent:\n{t}"
    );
    for known in [&late_file, &bundle] {
        let (code, t) = verify_code(&rolled, &["--known-head", known.to_str().expect("utf8")]);
        assert_eq!(code, Some(1), "{t}");
        let line = t
            .lines()
            .find(|l| l.starts_with("FAIL "))
            .unwrap_or_else(|| panic!("{t}"));
        assert!(line.contains("rolled back"), "{line}");
    }

    // A head from another key (a forged "earlier" head) is refused as such.
    let mut forged = parse_known_head(late.to_string().as_bytes()).expect("head");
    forged.signature[0] ^= 1;
    let forged_file = base.path().join("forged.json");
    std::fs::write(
        &forged_file,
        serde_json::to_string(&proctor::export::bundle::TreeHeadJson::from_head(&forged))
            .expect("json"),
    )
    .expect("write");
    let (code, t) = verify_code(
        &data,
        &["--known-head", forged_file.to_str().expect("utf8")],
    );
    assert_eq!(code, Some(1), "{t}");
    assert!(t.contains("bad signature"), "{t}");
}
