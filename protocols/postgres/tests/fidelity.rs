//! What the server runs is what proctor judged and recorded: the hostile sequences of issue 12,
//! driven with hand-built protocol messages against a real PostgreSQL, each checked against the
//! target's own state and against the recording.
//!
//! The test gate allows everything, so the server runs what it is sent: each case asserts that
//! the recording names the statement the server actually ran (or says `unknown`, which a real
//! policy holds), never an older or imagined one.

mod common;

use bytes::BytesMut;
use common::*;
use postgres_protocol::message::frontend;
use proctor_gate::{Event, StatementClass};
use proctor_postgres::PgFrontendConfig;

fn parse(b: &mut BytesMut, name: &str, sql: &str) {
    frontend::parse(name, sql, [], b).unwrap();
}

fn bind(b: &mut BytesMut, portal: &str, statement: &str) {
    frontend::bind(
        portal,
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
}

fn execute(b: &mut BytesMut, portal: &str) {
    frontend::execute(portal, 0, b).unwrap();
}

fn sync(b: &mut BytesMut) {
    frontend::sync(b);
}

fn query(b: &mut BytesMut, sql: &str) {
    frontend::query(sql, b).unwrap();
}

/// Sends `b` in one write and reads until `readies` ReadyForQuery messages; returns the
/// message tags and the command tags of the CommandCompletes.
async fn exchange(raw: &mut RawClient, b: &BytesMut, readies: usize) -> (String, Vec<String>) {
    raw.send(b).await;
    let mut tags = String::new();
    let mut completes = Vec::new();
    let mut seen = 0;
    while seen < readies {
        let (tag, body) = raw.read().await.expect("an answer");
        tags.push(tag as char);
        if tag == b'C' {
            completes
                .push(String::from_utf8_lossy(&body[..body.len().saturating_sub(1)]).into_owned());
        }
        seen += usize::from(tag == b'Z');
    }
    (tags, completes)
}

async fn with_accounts() -> (Fixture, RawClient) {
    let f = Fixture::start(PgFrontendConfig::default()).await;
    let mut raw = RawClient::login(f.port).await;
    let mut b = BytesMut::new();
    query(
        &mut b,
        "CREATE TABLE accounts(id int); INSERT INTO accounts SELECT generate_series(1, 5)",
    );
    exchange(&mut raw, &b, 1).await;
    (f, raw)
}

fn accounts_left(f: &Fixture) -> String {
    f.pg()
        .psql(TARGET, "SELECT count(*) FROM accounts")
        .expect("count")
}

/// The statement recorded for the Execute that produced `tag`.
fn statement_for_tag(f: &Fixture, tag: &str) -> proctor_gate::Statement {
    let g = f.authority.session(0);
    let result = g
        .results()
        .into_iter()
        .find(|r| r.tag == tag)
        .unwrap_or_else(|| panic!("a result tagged {tag}"));
    g.statements()
        .into_iter()
        .find(|s| s.id == result.statement_id)
        .expect("the statement of that result")
}

fn recorded_errors(f: &Fixture) -> Vec<String> {
    f.authority
        .session(0)
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::TargetMessage { kind, text } if kind == "error" => Some(text),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_parse_does_not_replace_the_statement_proctor_judges() {
    for one_write in [true, false] {
        let (f, mut raw) = with_accounts().await;
        let mut blocks = Vec::new();
        let mut b = BytesMut::new();
        parse(&mut b, "s1", "DELETE FROM accounts");
        sync(&mut b);
        blocks.push(b);
        let mut b = BytesMut::new();
        parse(&mut b, "s1", "SELECT 1");
        sync(&mut b);
        blocks.push(b);
        let mut b = BytesMut::new();
        bind(&mut b, "", "s1");
        execute(&mut b, "");
        sync(&mut b);
        blocks.push(b);
        let tags = if one_write {
            let all: BytesMut = blocks.iter().flat_map(|b| b.iter().copied()).collect();
            exchange(&mut raw, &all, 3).await.0
        } else {
            let mut tags = String::new();
            for b in &blocks {
                tags.push_str(&exchange(&mut raw, b, 1).await.0);
            }
            tags
        };
        assert_eq!(tags, "1ZEZ2CZ", "one write: {one_write}");
        assert_eq!(accounts_left(&f), "0", "the server ran the DELETE");
        let s = statement_for_tag(&f, "DELETE 5");
        assert_eq!(s.text, "DELETE FROM accounts", "one write: {one_write}");
        assert_eq!(s.class, StatementClass::Write);
        let errors = recorded_errors(&f);
        assert!(
            errors
                .iter()
                .any(|e| e.contains("Parse of statement \"s1\"") && e.contains("42P05")),
            "the failed Parse is recorded: {errors:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_bind_does_not_replace_the_portal_proctor_judges() {
    let (f, mut raw) = with_accounts().await;
    let mut b = BytesMut::new();
    query(&mut b, "BEGIN");
    parse(&mut b, "sd", "DELETE FROM accounts");
    bind(&mut b, "P1", "sd");
    sync(&mut b);
    query(&mut b, "SAVEPOINT a");
    parse(&mut b, "ss", "SELECT 1");
    bind(&mut b, "P1", "ss");
    sync(&mut b);
    query(&mut b, "ROLLBACK TO SAVEPOINT a");
    execute(&mut b, "P1");
    sync(&mut b);
    query(&mut b, "COMMIT");
    let (tags, _) = exchange(&mut raw, &b, 7).await;
    assert_eq!(tags, "CZ12ZCZ1EZCZCZCZ");
    assert_eq!(accounts_left(&f), "0", "the server ran the DELETE");
    let s = statement_for_tag(&f, "DELETE 5");
    // After ROLLBACK TO, proctor does not know which portals survived: the Execute is judged
    // unknown (a real policy holds it), never as the refused `SELECT 1`.
    assert_ne!(s.text, "SELECT 1");
    assert_eq!(s.class, StatementClass::Unknown, "{s:?}");
    let errors = recorded_errors(&f);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("Bind of portal \"P1\"") && e.contains("42P03")),
        "the failed Bind is recorded: {errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_and_protocol_prepared_statements_share_one_namespace() {
    for one_write in [false, true] {
        let (f, mut raw) = with_accounts().await;
        let mut blocks = Vec::new();
        let mut b = BytesMut::new();
        query(&mut b, "PREPARE q AS SELECT 1");
        blocks.push(b);
        let mut b = BytesMut::new();
        frontend::close(b'S', "q", &mut b).unwrap();
        parse(&mut b, "q", "DELETE FROM accounts");
        sync(&mut b);
        blocks.push(b);
        let mut b = BytesMut::new();
        query(&mut b, "EXECUTE q");
        blocks.push(b);
        if one_write {
            let all: BytesMut = blocks.iter().flat_map(|b| b.iter().copied()).collect();
            exchange(&mut raw, &all, 3).await;
        } else {
            for b in &blocks {
                exchange(&mut raw, b, 1).await;
            }
        }
        assert_eq!(accounts_left(&f), "0", "the server ran the DELETE");
        let s = statement_for_tag(&f, "DELETE 5");
        assert_eq!(s.text, "EXECUTE q");
        assert_eq!(
            s.class,
            StatementClass::Write,
            "one write {one_write}: {s:?}"
        );
        assert_eq!(s.command, "DELETE");
        assert_eq!(s.runs.as_deref(), Some("DELETE FROM accounts"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_is_read_with_the_settings_the_server_confirmed() {
    // Two simple queries in one write: the second is read only once the server has answered
    // the first, whose SET changes how backslashes are read.
    let (f, mut raw) = with_accounts().await;
    let mut b = BytesMut::new();
    query(&mut b, "SET standard_conforming_strings = off");
    query(&mut b, "SELECT 'x\\'' ; DELETE FROM accounts; -- '");
    let (_, completes) = exchange(&mut raw, &b, 2).await;
    assert!(completes.contains(&"DELETE 5".to_string()), "{completes:?}");
    assert_eq!(accounts_left(&f), "0", "the server ran the DELETE");
    let g = f.authority.session(0);
    let s = g
        .statements()
        .into_iter()
        .find(|s| s.text.contains("DELETE FROM accounts"))
        .expect("the DELETE is in the record");
    assert_eq!(s.class, StatementClass::Unknown, "{s:?}");

    // In one pipeline block the server reports the changed setting only at the Sync: a Parse
    // after an Execute in the same block is not readable yet, so it is unknown.
    let mut b = BytesMut::new();
    parse(&mut b, "", "SET standard_conforming_strings = on");
    bind(&mut b, "", "");
    execute(&mut b, "");
    sync(&mut b);
    exchange(&mut raw, &b, 1).await;
    let mut b = BytesMut::new();
    parse(&mut b, "", "SET standard_conforming_strings = off");
    bind(&mut b, "", "");
    execute(&mut b, "");
    parse(&mut b, "", "SELECT 'pipelined\\' || ''");
    bind(&mut b, "", "");
    execute(&mut b, "");
    sync(&mut b);
    exchange(&mut raw, &b, 1).await;
    let s = g
        .statements()
        .into_iter()
        .find(|s| s.text.contains("pipelined"))
        .expect("recorded");
    assert_eq!(s.class, StatementClass::Unknown, "{s:?}");

    // Plain text needs no waiting and is judged as usual.
    let mut b = BytesMut::new();
    query(&mut b, "SELECT 'plain'");
    exchange(&mut raw, &b, 1).await;
    let s = g
        .statements()
        .into_iter()
        .find(|s| s.text == "SELECT 'plain'")
        .expect("recorded");
    assert_eq!(s.class, StatementClass::Read);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_requests_are_recorded_in_their_session() {
    let (f, mut raw) = with_accounts().await;
    let (pid, secret) = raw.key.expect("cancel key");
    let mut b = BytesMut::new();
    query(&mut b, "SELECT pg_sleep(30)");
    raw.send(&b).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut cancel = RawClient::connect(f.port).await;
    let mut c = Vec::with_capacity(16);
    c.extend_from_slice(&16i32.to_be_bytes());
    c.extend_from_slice(&80877102i32.to_be_bytes());
    c.extend_from_slice(&pid.to_be_bytes());
    c.extend_from_slice(&secret.to_be_bytes());
    cancel.send(&c).await;
    let (code, _) = raw.read_error().await.expect("the statement is cancelled");
    assert_eq!(code, "57014");
    let events = f.authority.session(0).events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::TargetMessage { kind, .. } if kind == "cancel_request")),
        "{events:?}"
    );
}

/// SQL cursors and protocol portals share one namespace: `FETCH`/`MOVE` of a portal a protocol
/// Bind opened on a `DELETE ... RETURNING` (never executed) runs the DELETE (found by the
/// PostgreSQL red team: recorded as a `read` FETCH, every row deleted, no hold). It is judged
/// and recorded as the statement the portal runs; a portal proctor forgot is `unknown`; a
/// plain SQL cursor stays a read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_of_a_protocol_portal_is_judged_as_what_the_portal_runs() {
    let (f, mut raw) = with_accounts().await;

    // A plain SQL cursor is judged at its DECLARE; its FETCH is a read. (First: once an
    // `unknown` statement has run, as below, built-ins are suspect for the rest of the
    // session, and a cursor's query counts as running code.)
    let mut b = BytesMut::new();
    query(&mut b, "BEGIN");
    query(&mut b, "DECLARE c CURSOR FOR SELECT id FROM accounts");
    query(&mut b, "FETCH 2 FROM c");
    query(&mut b, "COMMIT");
    let (_, completes) = exchange(&mut raw, &b, 4).await;
    assert_eq!(completes, ["BEGIN", "DECLARE CURSOR", "FETCH 2", "COMMIT"]);
    let s = statement_for_tag(&f, "FETCH 2");
    assert_eq!(
        (s.class, s.text.as_str()),
        (StatementClass::Read, "FETCH 2 FROM c")
    );
    assert_eq!(accounts_left(&f), "5");

    // Bound in one block, fetched by SQL in the next, inside a transaction block.
    let mut b = BytesMut::new();
    query(&mut b, "BEGIN");
    parse(&mut b, "", "DELETE FROM accounts RETURNING id");
    bind(&mut b, "p1", "");
    sync(&mut b);
    query(&mut b, "FETCH ALL FROM P1");
    query(&mut b, "COMMIT");
    let (_, completes) = exchange(&mut raw, &b, 4).await;
    assert_eq!(completes, ["BEGIN", "FETCH 5", "COMMIT"]);
    assert_eq!(accounts_left(&f), "0", "the FETCH ran the DELETE");
    let s = statement_for_tag(&f, "FETCH 5");
    assert_eq!(s.class, StatementClass::Write, "{s:?}");
    assert_eq!(s.command, "DELETE");
    assert_eq!(s.tables, ["accounts"]);
    assert_eq!(s.runs.as_deref(), Some("DELETE FROM accounts RETURNING id"));
    assert!(
        s.text.starts_with("FETCH ALL FROM P1\n")
            && s.text.contains(
                "runs protocol portal \"p1\", bound to \"DELETE FROM accounts RETURNING id\""
            ),
        "the record names what ran: {s:?}"
    );

    // One pipeline, no transaction block: MOVE of a quoted name, sent as an Execute.
    let mut b = BytesMut::new();
    query(&mut b, "INSERT INTO accounts SELECT generate_series(1, 4)");
    parse(&mut b, "d", "DELETE FROM accounts RETURNING id");
    bind(&mut b, "Cur", "d");
    parse(&mut b, "", "MOVE ALL IN \"Cur\"");
    bind(&mut b, "", "");
    execute(&mut b, "");
    sync(&mut b);
    let (_, completes) = exchange(&mut raw, &b, 2).await;
    assert_eq!(completes, ["INSERT 0 4", "MOVE 4"]);
    assert_eq!(accounts_left(&f), "0", "the MOVE ran the DELETE");
    let s = statement_for_tag(&f, "MOVE 4");
    assert_eq!(
        (s.class, s.command.as_str()),
        (StatementClass::Write, "DELETE")
    );

    // A portal proctor forgot (a DECLARE may open or close portals) is unknown, never a read.
    let mut b = BytesMut::new();
    query(&mut b, "INSERT INTO accounts SELECT generate_series(1, 3)");
    query(&mut b, "BEGIN");
    parse(&mut b, "", "DELETE FROM accounts RETURNING id");
    bind(&mut b, "p1", "");
    sync(&mut b);
    query(&mut b, "DECLARE c CURSOR FOR SELECT id FROM accounts");
    query(&mut b, "FETCH ALL FROM p1");
    query(&mut b, "ROLLBACK");
    let (_, completes) = exchange(&mut raw, &b, 6).await;
    assert_eq!(
        completes,
        [
            "INSERT 0 3",
            "BEGIN",
            "DECLARE CURSOR",
            "FETCH 3",
            "ROLLBACK"
        ]
    );
    let s = statement_for_tag(&f, "FETCH 3");
    assert_eq!(s.class, StatementClass::Unknown, "{s:?}");
    assert!(
        s.text.contains("whose statement proctor does not know"),
        "{s:?}"
    );

    // One step further: a protocol-prepared `FETCH ALL FROM p2` run by a protocol Execute is
    // p2's DELETE; run by SQL EXECUTE it is unknown (proctor follows one name, not chains).
    let mut b = BytesMut::new();
    query(&mut b, "BEGIN");
    parse(
        &mut b,
        "d2",
        "DELETE FROM accounts WHERE id = 3 RETURNING id",
    );
    bind(&mut b, "p2", "d2");
    parse(&mut b, "q", "FETCH ALL FROM p2");
    bind(&mut b, "", "q");
    execute(&mut b, "");
    sync(&mut b);
    query(&mut b, "ROLLBACK");
    query(&mut b, "BEGIN");
    bind(&mut b, "p2", "d2");
    sync(&mut b);
    query(&mut b, "EXECUTE q");
    query(&mut b, "ROLLBACK");
    let (_, completes) = exchange(&mut raw, &b, 7).await;
    assert_eq!(
        completes,
        [
            "BEGIN", "FETCH 1", "ROLLBACK", "BEGIN", "FETCH 1", "ROLLBACK"
        ]
    );
    let ran: Vec<_> = f
        .authority
        .session(0)
        .statements()
        .into_iter()
        .filter(|s| s.text.starts_with("EXECUTE q") || s.text.starts_with("FETCH ALL FROM p2"))
        .collect();
    assert_eq!(ran.len(), 2, "{ran:?}");
    assert_eq!(
        (ran[0].class, ran[0].command.as_str()),
        (StatementClass::Write, "DELETE")
    );
    // Unknown either way: `q` runs another statement by name, and the session's built-ins
    // are suspect since an `unknown` statement ran (so the names were forgotten).
    assert_eq!(ran[1].class, StatementClass::Unknown, "{ran:?}");
    assert!(ran[1].runs.is_none(), "{ran:?}");
    assert_eq!(accounts_left(&f), "3");
}

/// The server keeps 63 bytes of a name: `PREPARE` of a 70-character name stores it under its
/// first 63, where a protocol Parse can replace it, and `EXECUTE` of the long name runs that
/// (found by the PostgreSQL red team: recorded as the `SELECT 1`, the server ran a DELETE).
/// Names are keyed as the server keys them; a long non-ASCII name, whose cut depends on the
/// server's encoding, is judged unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_keyed_by_their_first_63_bytes_as_on_the_server() {
    let (f, mut raw) = with_accounts().await;
    let long = "q".repeat(70);
    let cut = &long[..63];
    let mut b = BytesMut::new();
    query(&mut b, "BEGIN");
    query(&mut b, &format!("PREPARE {long} AS SELECT 1"));
    frontend::close(b'S', cut, &mut b).unwrap();
    parse(&mut b, cut, "DELETE FROM accounts RETURNING id");
    sync(&mut b);
    query(&mut b, &format!("EXECUTE {long}"));
    query(&mut b, "ROLLBACK");
    let (_, completes) = exchange(&mut raw, &b, 5).await;
    assert_eq!(completes, ["BEGIN", "PREPARE", "DELETE 5", "ROLLBACK"]);
    let s = statement_for_tag(&f, "DELETE 5");
    assert_eq!(
        (s.class, s.command.as_str()),
        (StatementClass::Write, "DELETE")
    );
    assert_eq!(s.runs.as_deref(), Some("DELETE FROM accounts RETURNING id"));

    // Non-ASCII: 40 two-byte characters, which a UTF-8 server cuts to 31.
    let wide = "é".repeat(40);
    let wide_cut = "é".repeat(31);
    let mut b = BytesMut::new();
    query(&mut b, "BEGIN");
    query(&mut b, &format!("PREPARE \"{wide}\" AS SELECT 1"));
    frontend::close(b'S', &wide_cut, &mut b).unwrap();
    parse(
        &mut b,
        &wide_cut,
        "DELETE FROM accounts WHERE id > 1 RETURNING id",
    );
    sync(&mut b);
    query(&mut b, &format!("EXECUTE \"{wide}\""));
    query(&mut b, "ROLLBACK");
    let (_, completes) = exchange(&mut raw, &b, 5).await;
    assert_eq!(completes, ["BEGIN", "PREPARE", "DELETE 4", "ROLLBACK"]);
    let s = statement_for_tag(&f, "DELETE 4");
    assert_eq!(s.class, StatementClass::Unknown, "{s:?}");
    assert_eq!(accounts_left(&f), "5");
}

/// Executing a prepared SELECT changes no names: the second `EXECUTE p` is judged as the
/// SELECT, not `unknown` (found by the PostgreSQL red team: every EXECUTE forgot every
/// prepared statement, so pg_dump-style PREPARE once, EXECUTE many was held from the second).
/// An EXECUTE of something else (here a protocol-prepared DEALLOCATE) still forgets them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executing_a_prepared_select_twice_is_judged_twice_as_the_select() {
    let (f, mut raw) = with_accounts().await;
    let mut b = BytesMut::new();
    query(&mut b, "PREPARE p AS SELECT count(*) FROM accounts");
    query(&mut b, "EXECUTE p");
    query(&mut b, "EXECUTE p");
    parse(&mut b, "dealloc", "DEALLOCATE p");
    sync(&mut b);
    query(&mut b, "EXECUTE dealloc");
    query(&mut b, "PREPARE p AS DELETE FROM accounts");
    query(&mut b, "EXECUTE p");
    let (_, completes) = exchange(&mut raw, &b, 7).await;
    assert_eq!(
        completes,
        [
            "PREPARE",
            "SELECT 1",
            "SELECT 1",
            "DEALLOCATE",
            "PREPARE",
            "DELETE 5"
        ]
    );
    let statements = f.authority.session(0).statements();
    let executes: Vec<_> = statements
        .iter()
        .filter(|s| s.text == "EXECUTE p")
        .map(|s| (s.class, s.command.as_str()))
        .collect();
    assert_eq!(
        executes,
        [
            (StatementClass::Read, "SELECT"),
            (StatementClass::Read, "SELECT"),
            (StatementClass::Write, "DELETE")
        ]
    );
}

/// Names the server reads in the client encoding: under LATIN1, the names `\xfe` and `\xff`
/// are two statements to the server but were one (`U+FFFD`) to proctor (found by the
/// PostgreSQL red team: Parse `\xfe` as a DELETE, `\xff` as `SELECT 1`, Bind `\xfe`: recorded
/// as the SELECT, the server ran the DELETE). A non-ASCII name is not followed: unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_are_not_ascii_are_not_followed() {
    let (f, mut raw) = with_accounts().await;
    let raw_parse = |b: &mut BytesMut, name: &[u8], sql: &str| {
        let mut body = name.to_vec();
        body.push(0);
        body.extend_from_slice(sql.as_bytes());
        body.extend_from_slice(&[0, 0, 0]);
        b.extend_from_slice(&typed(b'P', &body));
    };
    let mut b = BytesMut::new();
    query(&mut b, "SET client_encoding = 'LATIN1'");
    query(&mut b, "BEGIN");
    raw_parse(&mut b, b"\xfe", "DELETE FROM accounts RETURNING id");
    sync(&mut b);
    raw_parse(&mut b, b"\xff", "SELECT 1");
    sync(&mut b);
    let mut body = vec![0u8, 0xfe, 0];
    body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    b.extend_from_slice(&typed(b'B', &body));
    execute(&mut b, "");
    sync(&mut b);
    query(&mut b, "ROLLBACK");
    let (_, completes) = exchange(&mut raw, &b, 6).await;
    assert_eq!(completes, ["SET", "BEGIN", "DELETE 5", "ROLLBACK"]);
    let s = statement_for_tag(&f, "DELETE 5");
    assert_ne!(s.text, "SELECT 1", "{s:?}");
    assert_eq!(s.class, StatementClass::Unknown, "{s:?}");
    assert_eq!(accounts_left(&f), "5");

    // Statement text too: under LATIN1 the server reads `\xe9` as `é`, proctor (UTF-8) could
    // only show U+FFFD. Non-ASCII text in a converted encoding is unknown (a policy holds it).
    let mut body = b"SELECT 'caf\xe9' AS c".to_vec();
    body.push(0);
    let (_, completes) = exchange(&mut raw, &BytesMut::from(&typed(b'Q', &body)[..]), 1).await;
    assert_eq!(completes, ["SELECT 1"]);
    let s = statement_for_tag(&f, "SELECT 1");
    assert_eq!(s.class, StatementClass::Unknown, "{s:?}");
}
