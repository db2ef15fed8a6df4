//! Fast-path FunctionCall through proctor against a real PostgreSQL: psql's large-object
//! commands work, each call is judged and recorded as the `SELECT pg_catalog.fn($1, ...)` it
//! is (class, verdict, arguments, result), an OID proctor does not know is `unknown`, and
//! hostile messages get a clean protocol error.

mod common;

use std::time::Duration;

use common::*;
use proctor_gate::{Event, Statement, StatementClass, StatementResult, VerdictKind};
use proctor_postgres::PgFrontendConfig;
use proctor_postgres::relay::fastpath::{self, FUNCTION_CALL_TAG};
use sha2::{Digest, Sha256};

async fn within<T>(secs: u64, what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("{what} within {secs} s"))
}

/// A FunctionCall message: OID, one format code for all arguments, the arguments, the result
/// format.
fn function_call(oid: u32, binary: bool, args: &[Option<&[u8]>], result_format: i16) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&oid.to_be_bytes());
    b.extend_from_slice(&1i16.to_be_bytes());
    b.extend_from_slice(&(binary as i16).to_be_bytes());
    b.extend_from_slice(&(args.len() as i16).to_be_bytes());
    for a in args {
        match a {
            Some(v) => {
                b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                b.extend_from_slice(v);
            }
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    b.extend_from_slice(&result_format.to_be_bytes());
    typed(b'F', &b)
}

/// Messages up to and including the next ReadyForQuery (notices left out).
async fn until_ready(raw: &mut RawClient) -> Vec<(u8, Vec<u8>)> {
    let mut msgs = Vec::new();
    loop {
        let (tag, body) = raw.read().await.expect("a message before ReadyForQuery");
        match tag {
            b'N' => {}
            b'Z' => {
                msgs.push((tag, body));
                return msgs;
            }
            _ => msgs.push((tag, body)),
        }
    }
}

fn tags(msgs: &[(u8, Vec<u8>)]) -> String {
    msgs.iter().map(|(t, _)| *t as char).collect()
}

fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// The digest `SELECT fn(...)` would have given for a one-column row holding `value`.
fn one_value_digest(value: &[u8]) -> [u8; 32] {
    let mut row = vec![0, 1];
    row.extend_from_slice(&(value.len() as i32).to_be_bytes());
    row.extend_from_slice(value);
    sha256(&row)
}

/// Each recorded statement whose text contains `needle`, with its verdicts and its result.
fn calls(
    events: &[Event],
    needle: &str,
) -> Vec<(Statement, Vec<VerdictKind>, Option<StatementResult>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Statement(s) if s.text.contains(needle) => Some(s.clone()),
            _ => None,
        })
        .map(|s| {
            let subject = format!("statement {}", s.id);
            let verdicts = events
                .iter()
                .filter_map(|e| match e {
                    Event::Verdict(v) if v.subject == subject => Some(v.verdict),
                    _ => None,
                })
                .collect();
            let result = events.iter().find_map(|e| match e {
                Event::StatementResult(r) if r.statement_id == s.id => Some(r.clone()),
                _ => None,
            });
            (s, verdicts, result)
        })
        .collect()
}

/// Every fast-path call in `events` was allowed, completed without error, and is the text
/// of a query of class `class` for `function`.
fn assert_calls(events: &[Event], function: &str, class: StatementClass) -> usize {
    let needle = format!("SELECT pg_catalog.{function}(");
    let found = calls(events, &needle);
    for (s, verdicts, result) in &found {
        assert_eq!(s.class, class, "{}", s.text);
        assert!(
            s.text.contains("-- fast-path FunctionCall, function OID"),
            "{}",
            s.text
        );
        assert_eq!(verdicts, &[VerdictKind::Allow], "{}", s.text);
        let r = result
            .as_ref()
            .unwrap_or_else(|| panic!("{} has a result", s.text));
        assert_eq!(r.error, None, "{}", s.text);
        assert_eq!(r.tag, FUNCTION_CALL_TAG);
        assert_eq!(r.rows, 1);
    }
    found.len()
}

fn large_object_count(f: &Fixture, oid: &str) -> String {
    f.pg()
        .psql(
            TARGET,
            &format!("SELECT count(*) FROM pg_largeobject_metadata WHERE oid = {oid}"),
        )
        .expect("count large objects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_oids_are_those_of_the_server() {
    let pg = start_pg().await;
    let listed = pg
        .psql(
            "postgres",
            "SELECT p.oid || ' ' || p.proname FROM pg_proc p \
             JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE n.nspname = 'pg_catalog' ORDER BY p.oid",
        )
        .expect("list pg_proc");
    let server: std::collections::HashSet<&str> = listed.lines().collect();
    for (oid, name) in fastpath::builtins() {
        let line = format!("{oid} {name}");
        assert!(
            server.contains(line.as_str()),
            "pg_catalog has no function {name} with OID {oid}"
        );
    }
    // And every large-object function of the server is resolved (none is left `unknown`).
    for line in &server {
        let (oid, name) = line.split_once(' ').expect("oid name");
        if name.starts_with("lo_") || name == "loread" || name == "lowrite" {
            let oid: u32 = oid.parse().expect("oid");
            assert_eq!(fastpath::builtin_name(oid), Some(name), "OID {oid}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_large_objects_are_judged_and_recorded() {
    let f = Fixture::start(PgFrontendConfig::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // Several lowrite and loread calls' worth (libpq moves the data in pieces).
    let data: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let input = dir.path().join("in.bin");
    let output = dir.path().join("out.bin");
    std::fs::write(&input, &data).expect("write input");

    // \lo_import: lo_creat, lo_open, lowrite..., lo_close through the fast path.
    let conninfo = f.conninfo();
    let import = format!("\\lo_import {}", input.display());
    let out = tokio::task::spawn_blocking(move || psql(&conninfo, &["-c", &import]))
        .await
        .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let oid = stdout
        .trim()
        .strip_prefix("lo_import ")
        .unwrap_or_else(|| panic!("psql said {stdout}"))
        .to_string();
    // The target holds the object, byte for byte.
    assert_eq!(large_object_count(&f, &oid), "1");
    let digest = f
        .pg()
        .psql(
            TARGET,
            &format!("SELECT encode(sha256(lo_get({oid})), 'hex')"),
        )
        .expect("digest");
    assert_eq!(digest, hex::encode(sha256(&data)));

    let g = f.wait_ended(0).await;
    let events = g.events();
    assert_eq!(assert_calls(&events, "lo_creat", StatementClass::Write), 1);
    assert_eq!(assert_calls(&events, "lo_open", StatementClass::Write), 1);
    assert_eq!(assert_calls(&events, "lo_close", StatementClass::Read), 1);
    let writes = calls(&events, "SELECT pg_catalog.lowrite($1, $2)");
    assert!(writes.len() > 1, "{} lowrite calls", writes.len());
    assert_eq!(
        assert_calls(&events, "lowrite", StatementClass::Write),
        writes.len()
    );
    // The arguments are the record's parameters, as sent: together, the imported file.
    let written: Vec<u8> = writes
        .iter()
        .flat_map(|(s, _, _)| {
            assert_eq!(s.params.len(), 2);
            s.params[1].value.clone().expect("data").to_vec()
        })
        .collect();
    assert_eq!(written, data);

    // \lo_export: lo_open, loread..., lo_close; the exported file matches.
    let conninfo = f.conninfo();
    let export = format!("\\lo_export {oid} {}", output.display());
    let out = tokio::task::spawn_blocking(move || psql(&conninfo, &["-c", &export]))
        .await
        .expect("join");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&output).expect("exported file"), data);
    let g = f.wait_ended(1).await;
    let events = g.events();
    let reads = calls(&events, "SELECT pg_catalog.loread($1, $2)");
    assert!(!reads.is_empty());
    assert_eq!(
        assert_calls(&events, "loread", StatementClass::Read),
        reads.len()
    );
    // Each result is the value the call returned, digested as the DataRow of `SELECT
    // loread(...)`; the values are the object's bytes.
    let mut read_back = Vec::new();
    for (_, _, r) in &reads {
        let r = r.as_ref().expect("result");
        let value = hex::decode(
            r.sample_rows[0][0]
                .as_deref()
                .expect("loread returned a value"),
        )
        .expect("binary result shown as hex");
        assert_eq!(r.digest, one_value_digest(&value));
        read_back.extend_from_slice(&value);
    }
    assert_eq!(read_back, data);

    // \lo_unlink: the object is gone, and the call says which one.
    let conninfo = f.conninfo();
    let unlink = format!("\\lo_unlink {oid}");
    let out = tokio::task::spawn_blocking(move || psql(&conninfo, &["-c", &unlink]))
        .await
        .expect("join");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(large_object_count(&f, &oid), "0");
    let g = f.wait_ended(2).await;
    let events = g.events();
    assert_eq!(assert_calls(&events, "lo_unlink", StatementClass::Write), 1);
    let (s, _, _) = &calls(&events, "SELECT pg_catalog.lo_unlink($1)")[0];
    let oid: u32 = oid.parse().expect("oid");
    assert_eq!(s.params[0].value.as_deref(), Some(&oid.to_be_bytes()[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_oids_errors_and_skipped_calls_are_recorded() {
    let f = Fixture::start(PgFrontendConfig::default()).await;
    let oid: u32 = f
        .pg()
        .psql(
            TARGET,
            "CREATE FUNCTION public.twice(int) RETURNS int LANGUAGE sql AS 'SELECT $1 * 2'; \
             SELECT 'public.twice(int)'::regprocedure::oid",
        )
        .expect("create function")
        .trim()
        .parse()
        .expect("oid");
    let mut raw = within(10, "login", RawClient::login(f.port)).await;

    // A function proctor cannot name: judged unknown and shown by its OID (this test's gate
    // allows it; the shipped policies hold `unknown`).
    raw.send(&function_call(oid, true, &[Some(&21i32.to_be_bytes())], 1))
        .await;
    let msgs = within(10, "answer", until_ready(&mut raw)).await;
    assert_eq!(tags(&msgs), "VZ");
    assert_eq!(msgs[0].1, [0, 0, 0, 4, 0, 0, 0, 42]);

    // A call the server refuses: its error is the call's outcome; the session goes on.
    raw.send(&function_call(
        953,
        true,
        &[Some(&(-1i32).to_be_bytes())],
        1,
    ))
    .await;
    let msgs = within(10, "answer", until_ready(&mut raw)).await;
    assert_eq!(tags(&msgs), "EZ");

    // In a pipeline after an error (a Parse the server refuses), the server skips the call up
    // to the Sync: recorded as not executed, and the client gets the answers in the server's
    // order.
    let mut b = Vec::new();
    b.extend(typed(b'P', b"\0SELECT a FROM no_such_table\0\0\0"));
    b.extend(function_call(958, true, &[Some(&0i32.to_be_bytes())], 1));
    b.extend(typed(b'S', b""));
    raw.send(&b).await;
    let msgs = within(10, "answer", until_ready(&mut raw)).await;
    assert_eq!(tags(&msgs), "EZ");
    raw.send(&typed(b'Q', b"SELECT 1\0")).await;
    let msgs = within(10, "answer", until_ready(&mut raw)).await;
    assert_eq!(tags(&msgs), "TDCZ");
    raw.send(&typed(b'X', b"")).await;

    let g = f.wait_ended(0).await;
    let events = g.events();
    let (s, verdicts, r) = calls(&events, &format!("function OID {oid}"))
        .pop()
        .expect("the unknown call is recorded");
    assert_eq!(s.class, StatementClass::Unknown);
    assert!(s.text.contains("not resolved"), "{}", s.text);
    assert_eq!(s.params.len(), 1);
    assert_eq!(s.params[0].value.as_deref(), Some(&21i32.to_be_bytes()[..]));
    assert!(s.params[0].binary);
    assert_eq!(verdicts, [VerdictKind::Allow]);
    let r = r.expect("result");
    assert_eq!(r.digest, one_value_digest(&42i32.to_be_bytes()));
    assert_eq!(r.sample_rows, vec![vec![Some("0000002a".to_string())]]);

    let (s, _, r) = calls(&events, "SELECT pg_catalog.lo_close($1)")
        .pop()
        .expect("lo_close recorded");
    assert_eq!(s.class, StatementClass::Read);
    let err = r.expect("result").error.expect("the server's error");
    assert_eq!(err.severity, "ERROR");
    assert!(err.message.contains("large-object descriptor"), "{err:?}");

    let (_, verdicts, r) = calls(&events, "SELECT pg_catalog.lo_tell($1)")
        .pop()
        .expect("lo_tell recorded");
    assert_eq!(verdicts, [VerdictKind::Allow]);
    let err = r.expect("result").error.expect("not executed");
    assert_eq!(err.severity, proctor_postgres::results::NOT_EXECUTED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_function_calls_get_a_protocol_error() {
    let f = Fixture::start(PgFrontendConfig::default()).await;
    let oid = 955u32.to_be_bytes();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "32767 arguments, none sent",
            [&oid[..], &[0, 0, 0x7f, 0xff]].concat(),
        ),
        (
            "an argument longer than the message",
            [&oid[..], &[0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff, 0, 0]].concat(),
        ),
        (
            "a negative argument count",
            [&oid[..], &[0, 0, 0x80, 0]].concat(),
        ),
        (
            "format codes that do not match the arguments",
            [&oid[..], &[0, 2, 0, 1, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0]].concat(),
        ),
        (
            "trailing bytes",
            [&oid[..], &[0, 0, 0, 0, 0, 0, 1, 2, 3]].concat(),
        ),
    ];
    for (i, (what, body)) in cases.into_iter().enumerate() {
        let mut raw = within(10, "login", RawClient::login(f.port)).await;
        raw.send(&typed(b'F', &body)).await;
        let (code, message) = within(10, "error", raw.read_error())
            .await
            .unwrap_or_else(|| panic!("{what}: an error"));
        assert_eq!(code, "08P01", "{what}: {message}");
        assert!(message.contains("FunctionCall"), "{what}: {message}");
        assert!(within(10, "close", raw.read()).await.is_none(), "{what}");
        let g = f.wait_ended(i).await;
        let events = g.events();
        assert!(
            !events.iter().any(|e| matches!(e, Event::Statement(_))),
            "{what}: nothing was judged"
        );
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::ProtocolError { message, .. } if message.contains("FunctionCall"))),
            "{what}: the violation is recorded"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_the_server_would_not_take_as_calls_end_the_session() {
    let f = Fixture::start(PgFrontendConfig::default()).await;
    let mut raw = within(10, "login", RawClient::login(f.port)).await;
    raw.send(&typed(b'Q', b"CREATE TABLE c (a int)\0")).await;
    let msgs = within(10, "answer", until_ready(&mut raw)).await;
    assert_eq!(tags(&msgs), "CZ");

    // Sent together with a COPY FROM STDIN: the call waits for the COPY's answer, and in
    // copy-in mode the server would read it as a broken COPY.
    let mut b = typed(b'Q', b"COPY c FROM STDIN\0");
    b.extend(function_call(958, true, &[Some(&0i32.to_be_bytes())], 1));
    raw.send(&b).await;
    let (code, message) = within(10, "error", raw.read_error())
        .await
        .expect("an error");
    assert_eq!(code, "08P01", "{message}");
    assert!(message.contains("COPY FROM STDIN"), "{message}");
    assert!(within(10, "close", raw.read()).await.is_none());

    // After an Execute of this block that is not answered yet (no Sync): it could have
    // started a COPY, and its answer may only come at a Sync.
    let mut raw = within(10, "login", RawClient::login(f.port)).await;
    let mut b = Vec::new();
    b.extend(typed(b'P', b"\0SELECT 1\0\0\0"));
    b.extend(typed(b'B', b"\0\0\0\0\0\0\0\0"));
    b.extend(typed(b'E', b"\0\0\0\0\0"));
    b.extend(function_call(958, true, &[Some(&0i32.to_be_bytes())], 1));
    raw.send(&b).await;
    let (code, message) = within(10, "error", raw.read_error())
        .await
        .expect("an error");
    assert_eq!(code, "08P01", "{message}");
    assert!(message.contains("Execute"), "{message}");

    for i in 0..2 {
        let g = f.wait_ended(i).await;
        assert!(
            calls(&g.events(), "lo_tell").is_empty(),
            "session {i}: no call was judged"
        );
    }
    let rows = f
        .pg()
        .psql(TARGET, "SELECT count(*) FROM c")
        .expect("count");
    assert_eq!(rows, "0");
}
