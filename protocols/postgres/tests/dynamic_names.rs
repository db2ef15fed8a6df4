//! Names changed by dynamic SQL: a function, procedure or `DO` block can `DEALLOCATE` and
//! re-`PREPARE` a statement the session holds (plpgsql `EXECUTE 'PREPARE q AS DELETE ...'`), so
//! a later `EXECUTE q` or protocol Bind of `q` runs a statement proctor never saw. Proctor
//! cannot see into such code, so after it every name is forgotten; the first use of a
//! forgotten name makes proctor ask the target what it holds (`pg_prepared_statements`), and
//! the use is judged as what the server will run, never as the old text.
//!
//! Ground truth is the target's table: the test gate allows everything, so the server runs
//! the swapped DELETE, and the record must not call it the `SELECT 1` prepared before.

mod common;

use bytes::BytesMut;
use common::*;
use postgres_protocol::message::frontend;
use proctor_gate::StatementClass;
use proctor_postgres::PgFrontendConfig;

const SETUP: &str = "CREATE TABLE accounts(id int);
CREATE FUNCTION swap() RETURNS int LANGUAGE plpgsql AS $$
BEGIN EXECUTE 'DEALLOCATE q'; EXECUTE 'PREPARE q AS DELETE FROM accounts'; RETURN 1; END $$;
CREATE FUNCTION swap_then_fail() RETURNS int LANGUAGE plpgsql AS $$
BEGIN EXECUTE 'DEALLOCATE q'; EXECUTE 'PREPARE q AS DELETE FROM accounts';
RAISE EXCEPTION 'after the swap'; END $$;
CREATE PROCEDURE swap_p() LANGUAGE plpgsql AS $$
BEGIN EXECUTE 'DEALLOCATE q'; EXECUTE 'PREPARE q AS DELETE FROM accounts'; END $$;";

/// The texts of the session's `names_learnt` records (proctor asked the target its names).
fn names_learnt(f: &Fixture) -> Vec<String> {
    f.authority
        .session(0)
        .events()
        .into_iter()
        .filter_map(|e| match e {
            proctor_gate::Event::TargetMessage { kind, text } if kind == "names_learnt" => {
                Some(text)
            }
            _ => None,
        })
        .collect()
}

/// The statement recorded for the last Execute whose result was `tag`.
fn last_statement_for_tag(f: &Fixture, tag: &str) -> proctor_gate::Statement {
    let g = f.authority.session(0);
    let result = g
        .results()
        .into_iter()
        .rev()
        .find(|r| r.tag == tag)
        .unwrap_or_else(|| panic!("a result tagged {tag}"));
    g.statements()
        .into_iter()
        .find(|s| s.id == result.statement_id)
        .expect("the statement of that result")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_replaced_by_dynamic_sql_is_never_judged_as_the_old_one() {
    let f = Fixture::start(PgFrontendConfig::default()).await;
    f.pg().psql(TARGET, SETUP).expect("setup");
    f.pg()
        .psql(TARGET, "GRANT ALL ON accounts TO PUBLIC")
        .expect("grant");
    let mut raw = RawClient::login(f.port).await;
    let callers = [
        "SELECT swap()",
        "CALL swap_p()",
        "SELECT swap_then_fail()",
        "SELECT n FROM (SELECT swap() AS n) s",
        "DO $$ BEGIN PERFORM swap_then_fail(); END $$",
    ];
    let mut case = 0;
    for caller in callers {
        for sql_prepare in [true, false] {
            for sql_execute in [true, false] {
                for one_write in [false, true] {
                    case += 1;
                    let what = format!(
                        "{caller:?} prepared by {}, run by {}, one write: {one_write}",
                        if sql_prepare { "PREPARE" } else { "Parse" },
                        if sql_execute { "EXECUTE" } else { "Bind" },
                    );
                    f.pg()
                        .psql(
                            TARGET,
                            "TRUNCATE accounts; INSERT INTO accounts SELECT generate_series(1, 5)",
                        )
                        .expect("rows");
                    let mut b = BytesMut::new();
                    query(&mut b, "DEALLOCATE ALL");
                    exchange(&mut raw, &b, 1).await;
                    let mut blocks = Vec::new();
                    let mut b = BytesMut::new();
                    if sql_prepare {
                        query(&mut b, "PREPARE q AS SELECT 1");
                    } else {
                        parse(&mut b, "q", "SELECT 1");
                        frontend::sync(&mut b);
                    }
                    blocks.push(b);
                    let mut b = BytesMut::new();
                    query(&mut b, caller);
                    blocks.push(b);
                    let mut b = BytesMut::new();
                    if sql_execute {
                        query(&mut b, "EXECUTE q");
                    } else {
                        bind(&mut b, "", "q");
                        frontend::execute("", 0, &mut b).unwrap();
                        frontend::sync(&mut b);
                    }
                    blocks.push(b);
                    if one_write {
                        let all: BytesMut = blocks.iter().flat_map(|b| b.iter().copied()).collect();
                        exchange(&mut raw, &all, 3).await;
                    } else {
                        for b in &blocks {
                            exchange(&mut raw, b, 1).await;
                        }
                    }
                    let left = f
                        .pg()
                        .psql(TARGET, "SELECT count(*) FROM accounts")
                        .expect("count");
                    assert_eq!(left, "0", "the server ran the swapped DELETE: {what}");
                    let s = last_statement_for_tag(&f, "DELETE 5");
                    assert_eq!(
                        s.class,
                        StatementClass::Write,
                        "judged as what the server holds, learnt from it: {what}: {s:?}"
                    );
                    if sql_execute {
                        assert_eq!(s.text, "EXECUTE q", "{what}");
                        assert_eq!(s.runs.as_deref(), Some("DELETE FROM accounts"), "{what}");
                    } else {
                        assert_eq!(s.text, "DELETE FROM accounts", "{what}: {s:?}");
                    }
                    let learnt = names_learnt(&f);
                    assert!(
                        learnt
                            .last()
                            .is_some_and(|t| t.contains("\"q\" holds \"DELETE FROM accounts\"")),
                        "the record says what was asked and learnt: {what}: {learnt:?}"
                    );
                    assert_eq!(
                        f.authority.session(0).results().len(),
                        f.authority
                            .session(0)
                            .results()
                            .iter()
                            .map(|r| r.statement_id)
                            .collect::<std::collections::HashSet<_>>()
                            .len(),
                        "one outcome per statement"
                    );
                }
            }
        }
    }
    assert_eq!(case, 40);

    // What it costs: only names prepared before the code ran are forgotten. A call of a
    // function known to be harmless forgets nothing (in a session where no code ran: code may
    // set a search_path that shadows it, see shadowed_paths.rs), and a statement prepared
    // after code is judged as itself.
    drop(raw);
    let mut raw = RawClient::login(f.port).await;
    let mut b = BytesMut::new();
    parse(&mut b, "r", "DELETE FROM accounts WHERE id = 1");
    frontend::sync(&mut b);
    query(&mut b, "SELECT lower('X'), now()");
    bind(&mut b, "", "r");
    frontend::execute("", 0, &mut b).unwrap();
    frontend::sync(&mut b);
    query(&mut b, "SELECT swap()");
    parse(&mut b, "r2", "DELETE FROM accounts WHERE id = 2");
    frontend::sync(&mut b);
    bind(&mut b, "", "r2");
    frontend::execute("", 0, &mut b).unwrap();
    frontend::sync(&mut b);
    exchange(&mut raw, &b, 6).await;
    let g = f.authority.session(1);
    for text in [
        "DELETE FROM accounts WHERE id = 1",
        "DELETE FROM accounts WHERE id = 2",
    ] {
        let s = g
            .statements()
            .into_iter()
            .find(|s| s.text == text)
            .unwrap_or_else(|| panic!("{text} judged as itself"));
        assert_eq!(s.class, StatementClass::Write, "{s:?}");
    }
}

/// A `search_path` that puts `public` before `pg_catalog` lets a user's `lower(text)` stand in
/// for the built-in one proctor takes as harmless: after such a SET, every query and DML is
/// taken to run code. And preparing a statement that calls code runs nothing: the name stays
/// known, and its EXECUTE is judged as what it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadowed_built_in_is_code_and_preparing_code_runs_nothing() {
    let f = Fixture::start(PgFrontendConfig::default()).await;
    f.pg().psql(TARGET, SETUP).expect("setup");
    f.pg()
        .psql(
            TARGET,
            "CREATE FUNCTION public.lower(text) RETURNS text LANGUAGE plpgsql AS $$
             BEGIN EXECUTE 'DEALLOCATE q'; EXECUTE 'PREPARE q AS DELETE FROM accounts';
             RETURN $1; END $$;
             INSERT INTO accounts SELECT generate_series(1, 5);
             GRANT ALL ON accounts TO PUBLIC",
        )
        .expect("shadowing function");
    let mut raw = RawClient::login(f.port).await;
    let mut b = BytesMut::new();
    query(&mut b, "PREPARE r AS SELECT swap()");
    query(&mut b, "DEALLOCATE r");
    query(&mut b, "SET search_path = public, pg_catalog");
    query(&mut b, "PREPARE q AS SELECT 1");
    query(&mut b, "SELECT lower('X')");
    query(&mut b, "EXECUTE q");
    let tags = exchange(&mut raw, &b, 6).await;
    assert!(!tags.contains('E'), "{tags}");
    let left = f
        .pg()
        .psql(TARGET, "SELECT count(*) FROM accounts")
        .expect("count");
    assert_eq!(left, "0", "the server ran the swapped DELETE");
    let s = last_statement_for_tag(&f, "DELETE 5");
    assert_eq!(s.class, StatementClass::Write, "{s:?}");
    assert_eq!(s.runs.as_deref(), Some("DELETE FROM accounts"), "{s:?}");

    // PREPARE of a statement that calls code keeps the name: its EXECUTE is judged as it.
    let mut b = BytesMut::new();
    query(&mut b, "SET search_path = public");
    query(
        &mut b,
        "PREPARE r2 AS SELECT count(*) FROM accounts WHERE swap() = 1",
    );
    query(&mut b, "EXECUTE r2");
    exchange(&mut raw, &b, 3).await;
    let g = f.authority.session(0);
    let s = g
        .statements()
        .into_iter()
        .rev()
        .find(|s| s.text == "EXECUTE r2")
        .expect("the EXECUTE");
    assert_eq!(s.class, StatementClass::Read, "{s:?}");
    assert_eq!(
        s.runs.as_deref(),
        Some("SELECT count(*) FROM accounts WHERE swap() = 1")
    );
}

/// A cursor's query runs when it is fetched, and a WITH HOLD cursor's at COMMIT, where it is
/// materialised: a cursor declared over code makes those statements run code too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_cursor_over_code_runs_it_at_commit() {
    let f = Fixture::start(PgFrontendConfig::default()).await;
    f.pg().psql(TARGET, SETUP).expect("setup");
    f.pg()
        .psql(
            TARGET,
            "INSERT INTO accounts SELECT generate_series(1, 5); GRANT ALL ON accounts TO PUBLIC",
        )
        .expect("rows");
    let mut raw = RawClient::login(f.port).await;
    let mut b = BytesMut::new();
    query(&mut b, "PREPARE q AS SELECT 1");
    query(&mut b, "BEGIN");
    query(&mut b, "DECLARE c CURSOR WITH HOLD FOR SELECT swap()");
    query(&mut b, "DEALLOCATE q");
    query(&mut b, "PREPARE q AS SELECT 1");
    query(&mut b, "COMMIT");
    query(&mut b, "EXECUTE q");
    let tags = exchange(&mut raw, &b, 7).await;
    assert!(!tags.contains('E'), "{tags}");
    let left = f
        .pg()
        .psql(TARGET, "SELECT count(*) FROM accounts")
        .expect("count");
    assert_eq!(left, "0", "COMMIT ran swap(), and EXECUTE q the DELETE");
    let s = last_statement_for_tag(&f, "DELETE 5");
    assert_eq!(s.class, StatementClass::Write, "{s:?}");
    assert_eq!(s.runs.as_deref(), Some("DELETE FROM accounts"), "{s:?}");
}
