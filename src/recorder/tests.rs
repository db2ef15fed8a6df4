//! Unit tests of the recorder and the store (moved from mod.rs).

use std::time::{Duration, Instant};

use bytes::Bytes;
use proctor_gate::OutputStream;

use super::*;

fn output(n: u32) -> Event {
    Event::Output {
        channel: 0,
        stream: OutputStream::Stdout,
        data: Bytes::from(format!("line {n}\n")),
    }
}

/// A session's first record, for tests of the recorder's modules.
pub(super) fn start(i: usize) -> Event {
    Event::SessionStart(proctor_gate::SessionInfo {
        agent: format!("agent-{i}"),
        target: "db".into(),
        protocol: proctor_gate::Protocol::Postgres,
        login: "app".into(),
        privilege: proctor_gate::Privilege::Routine,
        client_addr: "127.0.0.1:1".into(),
        grant: "g".into(),
        proctor_version: "test".into(),
    })
}

/// Many sessions on two workers stage urgent and lazy events, some give up waiting half
/// way (a client that disconnects while its event is being committed): nothing hangs, every
/// event acknowledged is in the store, and the store verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sessions_with_abandoned_waits_lose_nothing_and_never_stall() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = WriterOptions {
        checkpoint_every_events: 64,
        ..Default::default()
    };
    let store = Store::open(dir.path(), opts).expect("store");
    let sessions = 12usize;
    let per_session = 300u32;
    let mut tasks = Vec::new();
    for i in 0..sessions {
        let rec = store.recorder.clone();
        tasks.push(tokio::spawn(async move {
            let key = *uuid::Uuid::now_v7().as_bytes();
            rec.record(key, crate::clock::now_ns(), &start(i))
                .await
                .expect("start");
            let mut lazy = Vec::new();
            for n in 0..per_session {
                let urgency = if n % 3 == 0 {
                    Urgency::Now
                } else {
                    Urgency::Lazy
                };
                let ticket = rec
                    .append(key, crate::clock::now_ns(), &output(n), urgency)
                    .await
                    .expect("staged");
                match n % 7 {
                    // Gives up at once, as a session whose client went away mid-commit.
                    0 => {
                        let _ = tokio::time::timeout(Duration::from_micros(1), ticket.wait()).await;
                    }
                    1 | 2 => lazy.push(ticket),
                    _ => ticket.wait().await.expect("durable"),
                }
            }
            for t in lazy {
                t.wait().await.expect("lazy durable");
            }
            rec.seal(key, crate::clock::now_ns(), Outcome::Completed, "done")
                .await
                .expect("sealed");
        }));
    }
    let all = async {
        for t in tasks {
            t.await.expect("session task");
        }
    };
    tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("no session stalls");
    store.shutdown().await;
    let report = verify::verify_store(
        dir.path(),
        &verify::VerifyOptions {
            key: store.key.verifying_key(),
            session: None,
            live: false,
        },
    )
    .expect("verify runs");
    assert!(report.ok(), "store does not verify: {:?}", report.problems);
    assert_eq!(report.sealed, sessions as u64);
    // Per session: start, the outputs, end and seal, plus checkpoints.
    assert!(
        report.records >= (sessions as u64) * (u64::from(per_session) + 3),
        "records missing: {}",
        report.records
    );
}

/// `proctor verify` on a running bastion: sessions keep being sealed (seal, then ledger
/// leaf) while the store is verified again and again; no pass may see a sealed session as
/// truncated or unlisted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_while_sessions_are_sealed_sees_no_false_damage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), WriterOptions::default()).expect("store");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let verifier = {
        let (data, key, stop) = (
            dir.path().to_path_buf(),
            store.key.verifying_key(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            let mut passes = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || passes == 0 {
                let opts = verify::VerifyOptions {
                    key,
                    session: None,
                    live: true,
                };
                let report = verify::verify_store(&data, &opts).expect("verify runs");
                assert!(report.ok(), "pass {passes}: {:?}", report.problems);
                passes += 1;
            }
            passes
        })
    };
    let mut tasks = Vec::new();
    for i in 0..4 {
        let rec = store.recorder.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..40 {
                let key = *uuid::Uuid::now_v7().as_bytes();
                rec.record(key, crate::clock::now_ns(), &start(i))
                    .await
                    .expect("start");
                rec.record(key, crate::clock::now_ns(), &output(1))
                    .await
                    .expect("output");
                rec.seal(key, crate::clock::now_ns(), Outcome::Completed, "done")
                    .await
                    .expect("sealed");
            }
        }));
    }
    for t in tasks {
        t.await.expect("session task");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let passes = verifier.join().expect("every verify pass was clean");
    assert!(passes > 0);
    store.shutdown().await;
}

/// A lazy event waits at most the lazy delay when nobody asks for it, and not at all once
/// its ticket is awaited.
#[tokio::test]
async fn lazy_events_are_durable_within_the_delay_or_as_soon_as_awaited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let delay = Duration::from_millis(300);
    let opts = WriterOptions {
        lazy_delay: delay,
        ..Default::default()
    };
    let store = Store::open(dir.path(), opts).expect("store");
    let key = [7u8; 16];
    let rec = &store.recorder;
    // A chain starts with its session_start.
    rec.record(key, crate::clock::now_ns(), &start(7))
        .await
        .expect("started");

    let awaited = rec
        .append(key, crate::clock::now_ns(), &output(1), Urgency::Lazy)
        .await
        .expect("queued");
    let start = Instant::now();
    awaited.wait().await.expect("durable");
    assert!(
        start.elapsed() < delay / 2,
        "an awaited lazy event took {:?}",
        start.elapsed()
    );

    let mut alone = rec
        .append(key, crate::clock::now_ns(), &output(2), Urgency::Lazy)
        .await
        .expect("queued");
    let queued = Instant::now();
    let durable_after = loop {
        match alone.rx.try_recv() {
            Ok(r) => {
                r.expect("durable");
                break queued.elapsed();
            }
            Err(oneshot::error::TryRecvError::Empty) if queued.elapsed() < delay * 20 => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => panic!("a lazy event nobody waits for never became durable: {e:?}"),
        }
    };
    assert!(
        durable_after >= delay - Duration::from_millis(20),
        "a lazy event nobody waits for is held back for company, but was durable after {durable_after:?}"
    );
    store.shutdown().await;
}
