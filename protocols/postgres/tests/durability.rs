//! Issue 15 through a real relay and a real PostgreSQL: which statements are forwarded before
//! their record is durable, that their answers are held back until it is, and that a record
//! that fails keeps the answer from the agent for good and ends the session.

mod common;

use std::time::Duration;

use common::*;
use proctor_gate::Outcome;
use proctor_postgres::PgFrontendConfig;
use tokio::sync::watch;

/// Waits until the target has run `marker` (pg_stat_activity shows it as the last query of an
/// idle backend): the statement went to the target before its record was durable.
async fn target_ran(f: &Fixture, marker: &str) {
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle' AND query LIKE '%{marker}%' \
         AND query NOT LIKE '%pg_stat_activity%'"
    );
    for _ in 0..100 {
        let n = tokio::task::block_in_place(|| f.pg().psql("postgres", &sql)).expect("psql");
        if n == "1" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the target never ran {marker}");
}

fn query(sql: &str) -> Vec<u8> {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    typed(b'Q', &body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_runs_at_once_and_its_answer_waits_for_the_record() {
    let f = Fixture::start(PgFrontendConfig::default()).await;
    let mut raw = RawClient::login(f.port).await;
    let (durable, rx) = watch::channel(None);
    f.authority.session(0).overlap_with(rx);
    raw.send(&query("SELECT 42 AS marker_held_read")).await;
    target_ran(&f, "marker_held_read").await;
    // The target answered long ago; not one byte of it has reached the agent.
    let early = tokio::time::timeout(Duration::from_millis(300), raw.read()).await;
    assert!(
        early.is_err(),
        "an answer reached the agent before its record was durable"
    );
    durable.send_replace(Some(true));
    let mut tags = Vec::new();
    while let Some((tag, _)) = raw.read().await {
        tags.push(tag);
        if tag == b'Z' {
            break;
        }
    }
    assert_eq!(tags, b"TDCZ", "the whole answer, once durable");
    assert_eq!(
        f.authority.session(0).overlapped(),
        ["SELECT 42 AS marker_held_read"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_fails_never_shows_the_answer_and_ends_the_session() {
    let f = Fixture::start(PgFrontendConfig::default()).await;
    let mut raw = RawClient::login(f.port).await;
    let (durable, rx) = watch::channel(None);
    f.authority.session(0).overlap_with(rx);
    raw.send(&query("SELECT 'secret' AS marker_lost_read"))
        .await;
    target_ran(&f, "marker_lost_read").await;
    durable.send_replace(Some(false));
    let mut seen = Vec::new();
    while let Some((tag, body)) = raw.read().await {
        assert!(
            !matches!(tag, b'T' | b'D' | b'C'),
            "part of the answer reached the agent: {}",
            tag as char
        );
        if tag == b'E' {
            let e = proctor_postgres::wire::ErrorFields::parse(&body);
            seen.push(e.code);
        }
    }
    assert_eq!(
        seen,
        ["58030"],
        "the agent is told the session could not be recorded"
    );
    let gate = f.wait_ended(0).await;
    assert!(
        matches!(gate.end(), Some((Outcome::Interrupted, ref r)) if r.contains("recording failed")),
        "{:?}",
        gate.end()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_what_cannot_outlive_the_connection_overlaps() {
    let f = Fixture::start(PgFrontendConfig::default()).await;
    let (client, _conn) = f.connect().await;
    client
        .batch_execute("CREATE TABLE t (v int); CREATE SEQUENCE s")
        .await
        .expect("schema");
    let (_durable, rx) = watch::channel(Some(true));
    f.authority.session(0).overlap_with(rx);
    for sql in [
        "SELECT 1",
        "INSERT INTO t VALUES (1)",
        "BEGIN",
        "INSERT INTO t VALUES (2)",
        "SELECT nextval('s')",
    ] {
        client.simple_query(sql).await.expect(sql);
    }
    // Extended protocol inside the block: the server said `T` at the Sync before it.
    client
        .execute("UPDATE t SET v = v + $1 WHERE v = 2", &[&1i32])
        .await
        .expect("update");
    client.simple_query("COMMIT").await.expect("commit");
    client
        .query("SELECT v FROM t WHERE v > $1", &[&0i32])
        .await
        .expect("select");
    for sql in [
        // Autocommit writes, even next to a read or behind a BEGIN of the same message.
        "INSERT INTO t VALUES (3); SELECT 1",
        "BEGIN; INSERT INTO t VALUES (4)",
        "ROLLBACK",
    ] {
        client.simple_query(sql).await.expect(sql);
    }
    assert_eq!(
        f.authority.session(0).overlapped(),
        [
            "SELECT 1",
            "BEGIN",
            "INSERT INTO t VALUES (2)",
            "UPDATE t SET v = v + $1 WHERE v = 2",
            "SELECT v FROM t WHERE v > $1",
        ]
    );
    let rows = client
        .query("SELECT v FROM t ORDER BY v", &[])
        .await
        .expect("rows");
    let v: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(v, [1, 3, 3], "every answer arrived and every change ran");
}
