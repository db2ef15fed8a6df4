//! A `search_path` that puts a schema before `pg_catalog` set where proctor does not see a
//! `SET search_path` in the statement's own text: by a function's body
//! (`set_config('search_path', ..., false)` inside plpgsql), or by the client's startup packet
//! (`PGOPTIONS='-c search_path=public,pg_catalog'`). PostgreSQL 15 does not report
//! `search_path` in ParameterStatus, so proctor cannot learn the new path; once anything ran
//! that may have set it, a user's `public.lower(text)` may stand in for the built-in.
//!
//! Ground truth is the target's table: the test gate allows everything, so the server runs
//! whatever `lower` swapped in under `q`; the record must never call it the `SELECT 1`
//! prepared before.

mod common;

use bytes::BytesMut;
use common::*;
use postgres_protocol::message::frontend;
use proctor_gate::StatementClass;
use proctor_postgres::PgFrontendConfig;

/// `public.lower(text)` replaces `q` with a DELETE; `set_path()` shadows the catalog by code.
const SETUP: &str = "CREATE TABLE accounts(id int);
CREATE FUNCTION public.lower(text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN EXECUTE 'DEALLOCATE q'; EXECUTE 'PREPARE q AS DELETE FROM accounts'; RETURN $1; END $$;
CREATE FUNCTION set_path() RETURNS int LANGUAGE plpgsql AS $$
BEGIN PERFORM set_config('search_path', 'public, pg_catalog', false); RETURN 1; END $$;
GRANT ALL ON accounts TO PUBLIC";

/// The statement that ran the swapped DELETE is recorded as what proctor could know of it:
/// `unknown` (held by the default policies), or, once proctor asked the target for the names
/// the function changed (`names_learnt`), the DELETE itself. Never the old `SELECT 1`.
fn assert_swap_seen(s: &proctor_gate::Statement) {
    let unknown = s.class == StatementClass::Unknown;
    let learnt =
        s.class == StatementClass::Write && s.runs.as_deref() == Some("DELETE FROM accounts");
    assert!(unknown || learnt, "{s:?}");
}

fn refill(f: &Fixture) {
    f.pg()
        .psql(
            TARGET,
            "TRUNCATE accounts; INSERT INTO accounts SELECT generate_series(1, 5)",
        )
        .expect("rows");
}

fn left(f: &Fixture) -> String {
    f.pg()
        .psql(TARGET, "SELECT count(*) FROM accounts")
        .expect("count")
}

/// The statement recorded for the result tagged `tag` in session `i`.
fn statement_for_tag(f: &Fixture, i: usize, tag: &str) -> proctor_gate::Statement {
    let g = f.authority.session(i);
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
async fn a_path_set_by_a_function_body_makes_built_ins_suspect() {
    let f = Fixture::start(PgFrontendConfig::default()).await;
    f.pg().psql(TARGET, SETUP).expect("setup");
    let mut case = 0;
    // lower() read before the path changed (a protocol Parse, a SQL PREPARE), or after it, in
    // the same query string as the call or in a message of its own.
    let shapes: [&[&str]; 3] = [
        &[
            "SELECT set_path()",
            "PREPARE q AS SELECT 1",
            "SELECT lower('x')",
            "EXECUTE q",
        ],
        &[
            "SELECT set_path(); PREPARE q AS SELECT 1; SELECT lower('x')",
            "EXECUTE q",
        ],
        &[
            // Read before a SET changed the path (a SET forgets no names): run after it.
            "PREPARE l AS SELECT lower('x')",
            "SET search_path = public, pg_catalog",
            "PREPARE q AS SELECT 1",
            "EXECUTE l",
            "EXECUTE q",
        ],
    ];
    for shape in shapes {
        case += 1;
        refill(&f);
        let mut raw = RawClient::login(f.port).await;
        for sql in shape {
            let mut b = BytesMut::new();
            query(&mut b, sql);
            let tags = exchange(&mut raw, &b, 1).await;
            assert!(!tags.contains('E'), "{sql}: {tags}");
        }
        assert_eq!(
            left(&f),
            "0",
            "the server ran the swapped DELETE: {shape:?}"
        );
        let s = statement_for_tag(&f, case - 1, "DELETE 5");
        assert_swap_seen(&s);
        assert_ne!(s.runs.as_deref(), Some("SELECT 1"), "{shape:?}");
    }

    // The extended protocol: lower() parsed before a SET changed the path, bound and run after
    // (judged at its Parse as a harmless built-in, it would not forget `q`).
    refill(&f);
    let mut raw = RawClient::login(f.port).await;
    let mut b = BytesMut::new();
    parse(&mut b, "l", "SELECT lower('x')");
    frontend::sync(&mut b);
    query(&mut b, "SET search_path = public, pg_catalog");
    parse(&mut b, "q", "SELECT 1");
    bind(&mut b, "", "l");
    frontend::execute("", 0, &mut b).unwrap();
    bind(&mut b, "", "q");
    frontend::execute("", 0, &mut b).unwrap();
    frontend::sync(&mut b);
    let tags = exchange(&mut raw, &b, 3).await;
    assert!(!tags.contains('E'), "{tags}");
    assert_eq!(
        left(&f),
        "0",
        "the server ran the swapped DELETE (protocol)"
    );
    let s = statement_for_tag(&f, case, "DELETE 5");
    assert_swap_seen(&s);
    assert!(!s.text.contains("SELECT 1"), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_from_the_startup_packet_makes_built_ins_suspect() {
    let f = Fixture::start(PgFrontendConfig::default()).await;
    f.pg().psql(TARGET, SETUP).expect("setup");
    refill(&f);
    let conninfo = format!(
        "{} options='-c search_path=public,pg_catalog'",
        f.conninfo()
    );
    let out = psql(
        &conninfo,
        &[
            "-c",
            "PREPARE q AS SELECT 1",
            "-c",
            "SELECT lower('x')",
            "-c",
            "EXECUTE q",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(left(&f), "0", "the server ran the swapped DELETE");
    let s = statement_for_tag(&f, 0, "DELETE 5");
    assert_swap_seen(&s);
    assert_ne!(s.runs.as_deref(), Some("SELECT 1"));

    // A startup path that keeps pg_catalog first shadows nothing: the same sequence, with the
    // built-in lower(), is judged as what was prepared.
    refill(&f);
    let conninfo = format!(
        "{} options='-c search_path=pg_catalog,public'",
        f.conninfo()
    );
    let out = psql(
        &conninfo,
        &[
            "-c",
            "PREPARE q AS SELECT 1",
            "-c",
            "SELECT lower('x')",
            "-c",
            "EXECUTE q",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(left(&f), "5", "the built-in lower() ran");
    let g = f.authority.session(1);
    let s = g
        .statements()
        .into_iter()
        .rev()
        .find(|s| s.text == "EXECUTE q")
        .expect("the EXECUTE");
    assert_eq!(s.class, StatementClass::Read, "{s:?}");
    assert_eq!(s.runs.as_deref(), Some("SELECT 1"));
}
