//! Blobs a crash left without their record (FORMAT.md, "External bodies"): a session writes a
//! large body to its blob and makes it durable before the kind-68 record naming it commits;
//! a crash in between leaves a blob no record names. At the next open, recovery moves such
//! files to `blobs/orphans/` and names each in the recovery record; the blobs records name
//! stay where they are and read back.
//!
//! A real recorder on the real disk. The crash is simulated at the point that matters: the
//! orphan is written by the recorder's own `blobs::store` (durable, as before a crash), its
//! record never queued, and the store then stops with the session still open, as a crash
//! leaves it (recovery seals it as interrupted).

use bytes::Bytes;
use proctor::clock::now_ns;
use proctor::recorder::codec::{Body, kind};
use proctor::recorder::{Store, WriterOptions, blobs, encode_event, orphans, reader};
use proctor_gate::{Event, OutputStream, Privilege, Protocol, SessionInfo};

fn start() -> Event {
    Event::SessionStart(SessionInfo {
        agent: "a".into(),
        target: "db".into(),
        protocol: Protocol::Ssh,
        login: "box".into(),
        privilege: Privilege::Routine,
        client_addr: "127.0.0.1:5555".into(),
        grant: "g".into(),
        proctor_version: "test".into(),
    })
}

fn output(fill: u8) -> Event {
    Event::Output {
        channel: 0,
        stream: OutputStream::Stdout,
        data: Bytes::from(vec![fill; 2 << 20]),
    }
}

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_no_record_names_are_moved_aside_at_recovery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let key = *uuid::Uuid::now_v7().as_bytes();
    let id = uuid::Uuid::from_bytes(key).hyphenated().to_string();
    let stranger = *uuid::Uuid::now_v7().as_bytes();
    let stranger_id = uuid::Uuid::from_bytes(stranger).hyphenated().to_string();
    let (committed, orphan);
    {
        let mut store = Store::open(&data, WriterOptions::default()).expect("store opens");
        store.finish_recovery().await.expect("recovery");
        let rec = store.recorder.clone();
        rec.record(key, now_ns(), &start()).await.expect("start");
        // A large body recorded as usual: its blob and the kind-68 record naming it.
        rec.record(key, now_ns(), &output(b'c'))
            .await
            .expect("large record");
        // The crash window: the next body's blob is durable, its record never committed.
        let (k, body) = encode_event(&output(b'o'));
        blobs::store(&data, &key, k, &body).expect("orphan blob");
        // A crash inside `store` itself leaves its temporary file.
        let session_dir = blobs::session_dir(&data, &key);
        std::fs::write(session_dir.join(".abcd.0123.tmp"), b"half a body").expect("tmp");
        // A directory of a session the log never heard of.
        blobs::store(&data, &stranger, k, &body).expect("stranger's blob");
        let names = files(&session_dir);
        assert_eq!(names.len(), 3, "{names:?}");
        let ext = |fill: u8| {
            let (_, b) = encode_event(&output(fill));
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&b))
        };
        committed = ext(b'c');
        orphan = ext(b'o');
        store.shutdown().await;
    }

    let mut store = Store::open(&data, WriterOptions::default()).expect("store reopens");
    store.finish_recovery().await.expect("recovery");
    let session_dir = blobs::session_dir(&data, &key);
    assert_eq!(
        files(&session_dir),
        vec![committed.clone()],
        "only the blob a record names stays"
    );
    let aside = data.join("blobs").join(orphans::ORPHANS_DIR);
    assert_eq!(
        files(&aside.join(&id)),
        vec![".abcd.0123.tmp".to_string(), orphan.clone()]
    );
    assert_eq!(files(&aside.join(&stranger_id)), vec![orphan.clone()]);
    assert!(!blobs::session_dir(&data, &stranger).exists());
    let notes = store.recovery.notes.join("\n");
    for name in [&orphan, &".abcd.0123.tmp".to_string()] {
        assert!(
            notes.contains(&format!("blobs/orphans/{id}/{name}")),
            "the recovery record names {name}: {notes}"
        );
    }
    assert!(
        notes.contains(&format!("blobs/orphans/{stranger_id}/{orphan}")),
        "{notes}"
    );

    // The recorded body still reads back whole from its blob, and the recovery notes are in
    // the store's journal.
    let meta = store.index().get(&key).expect("index").expect("session");
    let outputs = reader::read_all(&data, &meta)
        .expect("read")
        .into_iter()
        .filter(|(h, _, _)| h.kind == kind::EXTERNAL)
        .map(|(_, _, b)| match b {
            Ok(Body::Event(Event::Output { data, .. })) => data.len(),
            other => panic!("{other:?}"),
        })
        .collect::<Vec<_>>();
    assert_eq!(outputs, vec![2 << 20]);
    let journal = store
        .index()
        .get(&proctor::recorder::frame::JOURNAL_SESSION)
        .expect("index")
        .expect("journal");
    let journaled = reader::read_all(&data, &journal)
        .expect("read journal")
        .into_iter()
        .any(|(_, _, b)| {
            matches!(b, Ok(Body::JournalNote { topic, text })
                if topic == "recovery" && text.contains(&format!("blobs/orphans/{id}/{orphan}")))
        });
    assert!(journaled, "a recovery note in the journal names the orphan");

    // A second open finds nothing more to move.
    store.shutdown().await;
    let mut store = Store::open(&data, WriterOptions::default()).expect("third open");
    store.finish_recovery().await.expect("recovery");
    assert!(
        !store.recovery.notes.iter().any(|n| n.contains("orphans")),
        "{:?}",
        store.recovery.notes
    );
    store.shutdown().await;
}
