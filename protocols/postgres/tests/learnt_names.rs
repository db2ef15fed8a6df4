//! Names learnt back from the target after code ran (issue 12): a statement that runs code
//! proctor cannot see into makes it forget every prepared statement; the first use of a
//! forgotten name makes it ask the target (`pg_catalog.pg_prepared_statements`) before judging
//! the use. These tests run through a real PostgreSQL and check the target's own state and the
//! record: what the server ran is what was judged, the introspection is recorded, the client
//! never sees proctor's own query, and where the server cannot be asked (a failed
//! transaction) the name stays `unknown`.

mod common;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::*;
use postgres_protocol::message::frontend;
use proctor_gate::{Event, Resolution, StatementClass};
use proctor_postgres::PgFrontendConfig;

const SETUP: &str = "CREATE TABLE accounts(id int);
CREATE TABLE needs_approval_accounts(id int);
INSERT INTO accounts SELECT generate_series(1, 5);
INSERT INTO needs_approval_accounts SELECT generate_series(1, 5);
GRANT ALL ON accounts, needs_approval_accounts TO PUBLIC;
CREATE FUNCTION harmless() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$;
CREATE FUNCTION swap() RETURNS int LANGUAGE plpgsql AS $$
BEGIN EXECUTE 'DEALLOCATE q';
EXECUTE 'PREPARE q AS DELETE FROM needs_approval_accounts'; RETURN 1; END $$;
CREATE FUNCTION forget_all() RETURNS int LANGUAGE plpgsql AS $$
BEGIN EXECUTE 'DEALLOCATE ALL'; RETURN 1; END $$;";

fn bind_execute_sync(b: &mut BytesMut, statement: &str) {
    frontend::bind(
        "",
        statement,
        [],
        [] as [Option<&[u8]>; 0],
        |v: Option<&[u8]>, buf: &mut BytesMut| {
            buf.extend_from_slice(v.unwrap_or_default());
            Ok(postgres_protocol::IsNull::No)
        },
        [],
        b,
    )
    .map_err(|_| ())
    .unwrap();
    frontend::execute("", 0, b).unwrap();
    frontend::sync(b);
}

fn names_learnt(f: &Fixture) -> Vec<String> {
    f.authority
        .session(0)
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::TargetMessage { kind, text } if kind == "names_learnt" => Some(text),
            _ => None,
        })
        .collect()
}

async fn setup() -> Fixture {
    let f = Fixture::start(PgFrontendConfig::default()).await;
    f.pg().psql(TARGET, SETUP).expect("setup");
    f
}

fn count(f: &Fixture, table: &str) -> String {
    f.pg()
        .psql(TARGET, &format!("SELECT count(*) FROM {table}"))
        .expect("count")
}

/// The DELETE a function put under `q` is what the approver sees, and denying it keeps the
/// rows; the client sees nothing of proctor's own query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_re_prepared_by_code_is_held_with_its_real_text() {
    let mut f = setup().await;
    let mut raw = RawClient::login(f.port).await;
    let mut b = BytesMut::new();
    query(&mut b, "PREPARE q AS SELECT 1");
    query(&mut b, "SELECT swap()");
    exchange(&mut raw, &b, 2).await;
    let mut b = BytesMut::new();
    query(&mut b, "EXECUTE q");
    raw.send(&b).await;
    let hold = f.next_hold().await;
    assert_eq!(hold.statement.text, "EXECUTE q");
    assert_eq!(
        hold.statement.runs.as_deref(),
        Some("DELETE FROM needs_approval_accounts")
    );
    assert_eq!(hold.statement.class, StatementClass::Write);
    let _ = hold.answer.send(Resolution::Deny {
        rule: "test".into(),
        reason: "no".into(),
        cause: proctor_gate::DenyCause::Approver,
    });
    let mut tags = String::new();
    while let Some((tag, _)) = raw.read().await {
        tags.push(tag as char);
        if tag == b'Z' {
            break;
        }
    }
    // The hold's notice, then the denial: no rows or completion of proctor's own query.
    assert_eq!(tags, "NEZ", "only the hold's notice and the denial");
    assert_eq!(count(&f, "needs_approval_accounts"), "5");
    let learnt = names_learnt(&f);
    assert_eq!(learnt.len(), 1, "{learnt:?}");
    assert!(learnt[0].contains("pg_catalog.pg_prepared_statements"));
    assert!(
        learnt[0].contains("\"q\" holds \"DELETE FROM needs_approval_accounts\""),
        "{learnt:?}"
    );
}

/// A driver that reuses a named statement after calling a harmless user function is judged
/// as that statement (not `unknown`, which the default policies hold); the introspection costs
/// one round trip, only at the first use after the code ran. Prints the measured cost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_reusing_a_named_statement_after_code_is_not_held() {
    let f = setup().await;
    let (client, _h) = f.connect().await;
    let stmt = client
        .prepare("SELECT count(*) FROM accounts WHERE id > $1")
        .await
        .expect("prepare");
    client.query_one(&stmt, &[&0i32]).await.expect("first use");
    const ROUNDS: u32 = 30;
    let mut with = Duration::ZERO;
    let mut without = Duration::ZERO;
    for _ in 0..ROUNDS {
        // Code ran: the next use asks the target first.
        let t = Instant::now();
        client
            .simple_query("SELECT harmless()")
            .await
            .expect("code");
        let row = client.query_one(&stmt, &[&2i32]).await.expect("reuse");
        with += t.elapsed();
        assert_eq!(row.get::<_, i64>(0), 3);
        // No code ran: the name is known, nothing is asked.
        let t = Instant::now();
        client.simple_query("SELECT 1").await.expect("no code");
        client.query_one(&stmt, &[&2i32]).await.expect("reuse");
        without += t.elapsed();
    }
    let g = f.authority.session(0);
    let uses: Vec<_> = g
        .statements()
        .into_iter()
        .filter(|s| s.extended && s.text.contains("FROM accounts WHERE id > $1"))
        .collect();
    assert_eq!(uses.len(), 1 + 2 * ROUNDS as usize);
    assert!(
        uses.iter().all(|s| s.class == StatementClass::Read),
        "every use judged as the statement: {uses:?}"
    );
    assert!(
        g.statements()
            .iter()
            .all(|s| s.class != StatementClass::Unknown)
    );
    // At least one question per round; two when the function call also made the session's
    // built-ins suspect (a user function may set search_path), so that each later use of the
    // name, itself counted as running code, forgets it again.
    assert!(names_learnt(&f).len() >= ROUNDS as usize);
    eprintln!(
        "introspection round trip: {:.2} ms per use after code ({:.2} ms with, {:.2} ms without, \
         over {ROUNDS} rounds)",
        (with.as_secs_f64() - without.as_secs_f64()) * 1000.0 / f64::from(ROUNDS),
        with.as_secs_f64() * 1000.0 / f64::from(ROUNDS),
        without.as_secs_f64() * 1000.0 / f64::from(ROUNDS),
    );
}

/// In a failed transaction the target cannot be asked (its query would fail): the name stays
/// `unknown`. In an open one it is asked, and the transaction goes on unharmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_transaction_keeps_the_name_unknown() {
    let f = setup().await;
    let mut raw = RawClient::login(f.port).await;
    let mut b = BytesMut::new();
    parse(&mut b, "s", "SELECT 1");
    frontend::sync(&mut b);
    query(&mut b, "BEGIN");
    query(&mut b, "SELECT harmless()");
    exchange(&mut raw, &b, 3).await;
    // Inside the transaction (status T): asked, judged as itself.
    let mut b = BytesMut::new();
    bind_execute_sync(&mut b, "s");
    let tags = exchange(&mut raw, &b, 1).await;
    assert!(!tags.contains('E'), "{tags}");
    let g = f.authority.session(0);
    let s = g.statements().into_iter().last().expect("the Execute");
    assert_eq!(
        (s.text.as_str(), s.class),
        ("SELECT 1", StatementClass::Read)
    );
    assert_eq!(names_learnt(&f).len(), 1);
    // Code again, then a failure: the transaction is failed (status E).
    let mut b = BytesMut::new();
    query(&mut b, "SELECT harmless()");
    query(&mut b, "SELECT 1/0");
    exchange(&mut raw, &b, 2).await;
    let mut b = BytesMut::new();
    bind_execute_sync(&mut b, "s");
    let tags = exchange(&mut raw, &b, 1).await;
    assert!(
        tags.contains('E'),
        "the server refuses in a failed transaction: {tags}"
    );
    let s = g.statements().into_iter().last().expect("the Execute");
    assert_eq!(s.class, StatementClass::Unknown, "{s:?}");
    assert_eq!(
        names_learnt(&f).len(),
        1,
        "nothing asked in a failed transaction"
    );
    let mut b = BytesMut::new();
    query(&mut b, "ROLLBACK");
    exchange(&mut raw, &b, 1).await;
}

/// Code that deallocates everything: the target lists nothing, so the name is known to be
/// gone; the use fails at the server and the failure is recorded, never judged as the old text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_deallocated_by_code_fails_at_the_server() {
    let f = setup().await;
    let mut raw = RawClient::login(f.port).await;
    let mut b = BytesMut::new();
    parse(&mut b, "s", "SELECT 1");
    frontend::sync(&mut b);
    query(&mut b, "SELECT forget_all()");
    exchange(&mut raw, &b, 2).await;
    let mut b = BytesMut::new();
    bind_execute_sync(&mut b, "s");
    raw.send(&b).await;
    let (code, message) = raw.read_error().await.expect("the server's error");
    assert_eq!(code, "26000", "{message}");
    let learnt = names_learnt(&f);
    assert_eq!(learnt.len(), 1, "{learnt:?}");
    assert!(
        learnt[0].contains("holds no named prepared statement"),
        "{learnt:?}"
    );
    let g = f.authority.session(0);
    assert!(
        g.statements()
            .iter()
            .all(|s| !(s.extended && s.text == "SELECT 1")),
        "the use is never judged as the old text"
    );
    let recorded = format!("{:?}", g.events());
    assert!(
        recorded.contains("26000"),
        "the server's refusal is recorded"
    );
}
