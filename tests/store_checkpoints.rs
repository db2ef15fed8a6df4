//! Issue 14, "the unsigned window is bounded and named": a store checkpoint signs the chains
//! of open sessions that no per-session checkpoint covers yet, so cutting or rewriting their
//! newest records, undetectable before (an open chain may end anywhere after its last
//! checkpoint), is caught and named.

mod evidence_support;

use std::time::Duration;

use bytes::Bytes;
use evidence_support::*;
use proctor::clock::now_ns;
use proctor::recorder::verify::{VerifyOptions, verify_store};
use proctor::recorder::{Store, WriterOptions, signing};
use proctor_gate::{Event, OutputStream, Privilege, Protocol, SessionInfo};

fn verify(data: &std::path::Path) -> proctor::recorder::verify::Report {
    let key = signing::load_public_key(&signing::public_key_path(data)).expect("key");
    verify_store(
        data,
        &VerifyOptions {
            key,
            session: None,
            live: false,
        },
    )
    .expect("verify runs")
}

#[test]
fn a_store_checkpoint_catches_a_cut_or_rewritten_open_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("store");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let id = rt.block_on(async {
        // No per-session checkpoint will come (1000 events, an hour); store checkpoints do.
        let opts = WriterOptions {
            checkpoint_every_events: 1000,
            checkpoint_every: Duration::from_secs(3600),
            store_checkpoint_every: Duration::from_millis(20),
            ..Default::default()
        };
        let mut store = Store::open(&data, opts).expect("store");
        store.finish_recovery().await.expect("recovery");
        let key = *uuid::Uuid::now_v7().as_bytes();
        let rec = store.recorder.clone();
        rec.record(
            key,
            now_ns(),
            &Event::SessionStart(SessionInfo {
                agent: "a".into(),
                target: "box".into(),
                protocol: Protocol::Ssh,
                login: "ops".into(),
                privilege: Privilege::Routine,
                client_addr: "127.0.0.1:5555".into(),
                grant: "g".into(),
                proctor_version: "test".into(),
            }),
        )
        .await
        .expect("start");
        for n in 0..10 {
            let ev = Event::Output {
                channel: 0,
                stream: OutputStream::Stdout,
                data: Bytes::from(format!("line {n}\n")),
            };
            rec.record(key, now_ns(), &ev).await.expect("output");
        }
        // The next store checkpoint signs it; then the store is left as a crash leaves it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::mem::forget(store);
        uuid::Uuid::from_bytes(key).to_string()
    });
    let snapshot = dir.path().join("snapshot");
    copy_dir(&data, &snapshot);

    let clean = verify(&snapshot);
    assert!(clean.ok(), "{:?}", clean.problems);
    assert!(
        clean.unsigned_tails.iter().all(|t| t.session != id),
        "the open session is signed by a store checkpoint: {:?}",
        clean.unsigned_tails
    );

    // Its newest record cut off: truncated, at that seq.
    let cut = dir.path().join("cut");
    copy_dir(&snapshot, &cut);
    let last = frames(&cut)
        .into_iter()
        .filter(|f| f.session == key_of(&id))
        .map(|f| f.seq)
        .max()
        .expect("records");
    remove_frames(&cut, |f| f.session == key_of(&id) && f.seq == last);
    let r = verify(&cut);
    let p = r.problems.first().expect("the cut is found");
    assert_eq!(p.kind.as_str(), "truncated", "{:?}", r.problems);
    assert_eq!(p.session.as_deref(), Some(id.as_str()));
    assert_eq!(p.seq, Some(last));

    // Its newest record rewritten and the chain recomputed (no key needed for that): edited.
    let forged = dir.path().join("forged");
    copy_dir(&snapshot, &forged);
    let f = find(&frames(&forged), &id, last);
    rewrite(&f.segment, |b| {
        let at = f.offset + f.len - 33;
        b[at] ^= 1;
    });
    rechain(&forged, key_of(&id), None);
    let r = verify(&forged);
    let p = r.problems.first().expect("the rewrite is found");
    assert_eq!(p.kind.as_str(), "edited", "{:?}", r.problems);
    assert_eq!(p.seq, Some(last));
}
