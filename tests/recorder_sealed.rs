//! Issue 16, item 2: a record racing or following a session's seal (an approval, an
//! annotation, a channel's last output) is refused with a typed error. It used to start a
//! fresh chain at seq 0 for the sealed session, so an intact store verified as tampered.

mod evidence_support;

use bytes::Bytes;
use evidence_support::verify;
use proctor::clock::now_ns;
use proctor::recorder::{RecorderError, Store, WriterOptions};
use proctor_gate::{Event, Outcome, OutputStream, Privilege, Protocol, SessionInfo};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_recorded_after_a_seal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut store = Store::open(&data, WriterOptions::default()).expect("store opens");
    store.finish_recovery().await.expect("recovery");
    let rec = store.recorder.clone();
    let key = *uuid::Uuid::now_v7().as_bytes();
    rec.record(
        key,
        now_ns(),
        &Event::SessionStart(SessionInfo {
            agent: "a".into(),
            target: "db".into(),
            protocol: Protocol::Ssh,
            login: "box".into(),
            privilege: Privilege::Routine,
            client_addr: "127.0.0.1:5555".into(),
            grant: "g".into(),
            proctor_version: "test".into(),
        }),
    )
    .await
    .expect("start");
    rec.seal(key, now_ns(), Outcome::Completed, "done")
        .await
        .expect("seal");
    let late = rec
        .record(
            key,
            now_ns(),
            &Event::Output {
                channel: 0,
                stream: OutputStream::Stdout,
                data: Bytes::from_static(b"after the seal\n"),
            },
        )
        .await;
    assert!(matches!(late, Err(RecorderError::Sealed)), "{late:?}");
    // A record for a session that never started is refused the same way.
    let never = rec
        .record(
            *uuid::Uuid::now_v7().as_bytes(),
            now_ns(),
            &Event::Annotation {
                source: "agent".into(),
                text: "no such session".into(),
            },
        )
        .await;
    assert!(matches!(never, Err(RecorderError::Sealed)), "{never:?}");
    store.close();
    let (ok, text) = verify(&data, &[]);
    assert!(ok, "{text}");
}
