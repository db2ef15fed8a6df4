//! A version-1 store (a ledger of sealed sessions only) still verifies, and proctor upgrades
//! it to version 2 at its next start: from the format leaf on, every session is listed when it
//! opens, while the sessions sealed before stay valid without an opened leaf (FORMAT.md,
//! "Versions").

mod evidence_support;

use std::path::Path;

use evidence_support::*;
use proctor::clock::now_ns;
use proctor::recorder::frame::JOURNAL_SESSION;
use proctor::recorder::ledger::{
    self, Entry, Frontier, LEAF_SESSION_ARCHIVED, LEAF_SESSION_PURGED, LEAF_SESSION_SEALED, Leaf,
    TreeHead,
};
use proctor::recorder::signing::{self, RecorderKey};
use proctor::recorder::{Store, WriterOptions};
use proctor_gate::{Event, Outcome, Privilege, Protocol, SessionInfo};

fn frame_entry(out: &mut Vec<u8>, entry: &[u8]) {
    out.extend_from_slice(&(entry.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(entry).to_be_bytes());
    out.extend_from_slice(entry);
}

/// Rewrites the ledger as proctor's version 1 wrote it: only sealed, archived and purged
/// leaves, a signed tree head after each. The journal goes too: its store checkpoints (kind 67)
/// are a later version's records, which a ledger without a format leaf must not sit beside.
fn downgrade_to_v1(data: &Path) {
    remove_frames(data, |f| f.session == JOURNAL_SESSION);
    // The derived index still knows the journal: rebuilt at the next start from the segments.
    std::fs::remove_dir_all(data.join("index")).expect("remove the index");
    let key = RecorderKey::load(data).expect("key");
    let path = ledger::ledger_path(data);
    let scan = ledger::scan_ledger(&path).expect("scan");
    let mut out = Vec::from(&ledger::LEDGER_MAGIC[..]);
    out.extend_from_slice(&[0u8; 8]);
    let mut frontier = Frontier::default();
    for (_, e) in scan.entries {
        let Entry::Leaf { data, .. } = e else {
            continue;
        };
        let leaf = Leaf::decode(&data).expect("leaf");
        if ![
            LEAF_SESSION_SEALED,
            LEAF_SESSION_ARCHIVED,
            LEAF_SESSION_PURGED,
        ]
        .contains(&leaf.kind)
        {
            continue;
        }
        let mut entry = vec![ledger::ENTRY_LEAF];
        entry.extend_from_slice(&frontier.size().to_be_bytes());
        entry.extend_from_slice(&data);
        frame_entry(&mut out, &entry);
        frontier.push(ledger::leaf_hash(&data));
        let (size, root, ts) = (frontier.size(), frontier.root(), leaf.logged_ns);
        let head = TreeHead {
            size,
            root,
            ts_ns: ts,
            key_id: key.key_id,
            signature: key.sign(&signing::tree_head_message(size, &root, ts)),
        };
        let mut entry = vec![ledger::ENTRY_TREE_HEAD];
        entry.extend_from_slice(&head.encode());
        frame_entry(&mut out, &entry);
    }
    std::fs::write(&path, out).expect("write ledger");
}

#[test]
fn a_version_1_store_verifies_and_is_upgraded_at_the_next_start() {
    let base = tempfile::tempdir().expect("tempdir");
    let data = base.path().join("store");
    // Two sealed sessions and one left open.
    let ids = make_store_open(&data, 3, 10, 1);
    downgrade_to_v1(&data);
    let (code, t) = verify_code(&data, &[]);
    assert_eq!(code, Some(0), "a version-1 store verifies:\n{t}");
    assert!(
        t.contains("3 sessions (2 sealed, 1 open, 0 tampered)"),
        "{t}"
    );
    assert!(t.contains("2 ledger leaves"), "{t}");

    // The next start seals the open session, then upgrades the ledger; a new session gets an
    // opened leaf and a sealed leaf.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let new_id = rt.block_on(async {
        let mut store = Store::open(&data, WriterOptions::default()).expect("reopen");
        store.finish_recovery().await.expect("recover");
        assert_eq!(store.recovery.interrupted_sessions, vec![ids[2].clone()]);
        assert!(store.ledger().is_format2(), "upgraded to format 2");
        let id = uuid::Uuid::now_v7();
        let key = *id.as_bytes();
        store
            .recorder
            .record(
                key,
                now_ns(),
                &Event::SessionStart(SessionInfo {
                    agent: "agent-new".into(),
                    target: "db".into(),
                    protocol: Protocol::Postgres,
                    login: "app".into(),
                    privilege: Privilege::Routine,
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
    });
    let (code, t) = verify_code(&data, &[]);
    assert_eq!(code, Some(0), "{t}");
    assert!(
        t.contains("4 sessions (4 sealed, 0 open, 0 tampered)"),
        "{t}"
    );
    // 2 old sealed + the interrupted one's sealed leaf + format + opened + sealed, and the
    // journal's checkpoint (recovery journaled what it did).
    assert!(t.contains("7 ledger leaves"), "{t}");

    // Deleting a session sealed under version 1 is still caught by its sealed leaf; the new
    // session's opened leaf is required.
    let copy = base.path().join("copy");
    copy_dir(&data, &copy);
    let k = key_of(&ids[0]);
    let mut mine: Vec<FrameAt> = frames(&copy)
        .into_iter()
        .filter(|f| f.session == k)
        .collect();
    mine.sort_by_key(|f| std::cmp::Reverse(f.offset));
    rewrite(&mine[0].segment, |buf| {
        for f in &mine {
            buf.drain(f.offset..f.offset + f.len);
        }
    });
    let (code, t) = verify_code(&copy, &[]);
    assert_eq!(code, Some(1), "{t}");
    assert_detected(&t, &ids[0], Some(0), "session missing");
    assert!(!t.contains(&new_id), "{t}");
}
