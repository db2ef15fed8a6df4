//! Issue 16, items 5 and 6: the index is only derived data (the first-use baseline survives
//! `proctor reindex`), and retention periods become instants in one checked function (a very
//! long period never wraps into the past, so a session sealed at restart is not purgeable).

use std::time::Duration;

use proctor::clock::now_ns;
use proctor::recorder::{Store, WriterOptions, recover};
use proctor_gate::{Event, Outcome, Privilege, Protocol, SessionInfo};

fn start(agent: &str) -> Event {
    Event::SessionStart(SessionInfo {
        agent: agent.into(),
        target: "box".into(),
        protocol: Protocol::Ssh,
        login: "ops".into(),
        privilege: Privilege::Routine,
        client_addr: "127.0.0.1:5555".into(),
        grant: "g".into(),
        proctor_version: "test".into(),
    })
}

#[tokio::test]
async fn reindex_keeps_the_first_use_baseline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    {
        let mut store = Store::open(&data, WriterOptions::default()).expect("store");
        store.finish_recovery().await.expect("recovery");
        let rec = store.recorder.clone();
        let key = *uuid::Uuid::now_v7().as_bytes();
        rec.record(key, now_ns(), &start("deployer"))
            .await
            .expect("start");
        rec.record(
            key,
            now_ns(),
            &Event::Exec {
                channel: 0,
                command: "pg_dump --table accounts app | gzip > /tmp/a.gz".into(),
            },
        )
        .await
        .expect("exec");
        // The gate adds to the baseline when it judges the action; so does this test.
        let index = store.index();
        assert!(
            index
                .baseline_insert("deployer", "program:pg_dump", "s")
                .expect("baseline")
        );
        rec.seal(key, now_ns(), Outcome::Completed, "done")
            .await
            .expect("seal");
        store.shutdown().await;
    }
    let report = recover::reindex(&data).expect("reindex");
    assert!(
        report.notes.iter().any(|n| n.contains("baseline rebuilt")),
        "{:?}",
        report.notes
    );
    let (index, _) = recover::index_for_reading(&data).expect("index");
    assert!(index.baseline_has_agent("deployer").expect("baseline"));
    for item in ["program:pg_dump", "program:gzip"] {
        assert!(
            !index
                .baseline_insert("deployer", item, "later")
                .expect("baseline"),
            "{item} was forgotten by reindex"
        );
    }
    assert!(
        index
            .baseline_insert("deployer", "program:rm", "later")
            .expect("baseline"),
        "an item never used is new"
    );
    assert!(!index.baseline_has_agent("someone-else").expect("baseline"));
}

#[test]
fn retention_periods_saturate_instead_of_wrapping() {
    let now = now_ns();
    let millennium = Duration::from_secs(1000 * 366 * 86_400);
    assert_eq!(proctor::clock::after(now, millennium), i64::MAX);
    assert_eq!(proctor::clock::after(now, Duration::MAX), i64::MAX);
    assert!(proctor::clock::before(now, Duration::MAX) < 0);
    assert_eq!(proctor::clock::before(-2, Duration::MAX), i64::MIN);
    assert_eq!(
        proctor::clock::after(now, Duration::from_secs(1)),
        now + 1_000_000_000
    );
}

/// A session a crash left open is sealed at restart with the configured retention; with a
/// period of a thousand years it used to get a `retain_until` in the past (the nanoseconds
/// wrapped past i64) and could be purged at once.
#[tokio::test]
async fn a_session_sealed_at_restart_with_a_very_long_retention_is_not_purgeable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let key = *uuid::Uuid::now_v7().as_bytes();
    {
        let mut store = Store::open(&data, WriterOptions::default()).expect("store");
        store.finish_recovery().await.expect("recovery");
        store
            .recorder
            .record(key, now_ns(), &start("a"))
            .await
            .expect("start");
        // Stopped without sealing: the session is left open, as by a crash.
        store.shutdown().await;
    }
    let millennium = Duration::from_secs(1000 * 366 * 86_400);
    let mut store = Store::open(&data, WriterOptions::default()).expect("reopen");
    store.default_retention = (millennium, millennium);
    store.finish_recovery().await.expect("recovery");
    let id = uuid::Uuid::from_bytes(key).to_string();
    assert!(store.recovery.interrupted_sessions.contains(&id));
    store.flush_index();
    let meta = proctor::ops::find_session(store.index(), &id).expect("session");
    assert!(meta.sealed);
    assert!(
        meta.retain_until_ns.is_some_and(|t| t > now_ns()),
        "retained until {:?}",
        meta.retain_until_ns
    );
    let report = proctor::retention::purge(&store, None, millennium, "test")
        .await
        .expect("purge runs");
    assert!(report.purged.is_empty(), "purged: {:?}", report.purged);
    store.shutdown().await;
}
