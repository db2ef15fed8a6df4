//! An oracle test that needs no list of tricks: random sequences of protocol messages and SQL
//! (reused and unnamed names, errors in the middle of pipelines, SQL-level PREPARE/EXECUTE,
//! transactions and savepoints, settings that change how text is read) go through proctor to a
//! real PostgreSQL that logs every statement it runs (`log_statement = 'all'`). After each
//! sequence, every statement the server logged for that backend must appear in proctor's
//! record, in order, as the statement it was (same text), or be recorded as `unknown` (which a
//! real policy holds). An `EXECUTE name` the server ran must be recorded as the command it
//! prepared, or as `unknown`.
//!
//! CI runs 200 cases with a fixed seed (about 20 s; a mutation that trusts the client's Parse
//! is caught at case 75); `PROCTOR_ORACLE_CASES=N` and
//! `PROCTOR_ORACLE_SEED=S` run more by hand.

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::*;
use postgres_protocol::message::frontend;
use proctor_gate::{Statement, StatementClass};
use proctor_harness::LocalPostgres;
use proctor_postgres::PgFrontendConfig;

/// A small deterministic generator (xorshift64*), so a failing seed replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

const END_MARKER: &str = "SELECT 'oracle-end'";
/// Proctor's own query of the target's prepared statements (`relay/introspect.rs`).
const INTROSPECTION: &str = "SELECT name, statement, from_sql, \
     parameter_types::pg_catalog.oid[]::pg_catalog.text FROM pg_catalog.pg_prepared_statements";
const STATEMENTS: &[&str] = &["", "s1", "s2", "q"];
const PORTALS: &[&str] = &["", "p1"];
/// Statements with this marker are held by the test gate, and the oracle denies every hold:
/// none of them may ever appear in the server's log.
const HELD: &str = "needs_approval";
const PARSE_SQL: &[&str] = &[
    "SELECT 1",
    "SELECT 'needs_approval'",
    "DELETE FROM accounts WHERE id = 5 AND 'needs_approval' <> ''",
    "SELECT count(*) FROM accounts",
    "DELETE FROM accounts WHERE id = 1",
    "INSERT INTO accounts VALUES (9)",
    "UPDATE accounts SET id = id + 100 WHERE id = 2",
    "SELEC 1",
    "SELECT 1/0",
    "SELECT 'a\\' || 'b'",
    "SET standard_conforming_strings = off",
    "SET standard_conforming_strings = on",
    "PREPARE q AS DELETE FROM accounts WHERE id = 3",
    "EXECUTE q",
    "DEALLOCATE q",
    "EXECUTE s1",
];
const QUERY_SQL: &[&str] = &[
    "SELECT 2",
    "BEGIN",
    "SAVEPOINT a",
    "ROLLBACK TO SAVEPOINT a",
    "COMMIT",
    "ROLLBACK",
    "DISCARD ALL",
    "PREPARE s1 AS SELECT 3",
    "PREPARE q AS INSERT INTO accounts VALUES (10)",
    "DEALLOCATE s1",
    "DEALLOCATE q",
    "EXECUTE q",
    "EXECUTE s1",
    "DELETE FROM accounts WHERE id = 4",
    "SET standard_conforming_strings = off",
    "SET standard_conforming_strings = on",
    "SELECT 'c\\' || 'd'",
    "SELECT 'needs_approval'",
    "SELECT swap_q()",
];

/// One random sequence; returns the bytes and how many ReadyForQuery messages it earns.
fn sequence(rng: &mut Rng, ops: &mut Vec<String>) -> (Vec<BytesMut>, usize) {
    let mut chunks = vec![BytesMut::new()];
    let mut readies = 0;
    let n = 4 + rng.below(22);
    for _ in 0..n {
        let b = chunks.last_mut().expect("a chunk");
        match rng.below(20) {
            0..=3 => {
                let (name, sql) = (rng.pick(STATEMENTS), rng.pick(PARSE_SQL));
                ops.push(format!("Parse {name:?} {sql:?}"));
                frontend::parse(name, sql, [], b).unwrap()
            }
            4..=6 => {
                let (portal, name) = (rng.pick(PORTALS), rng.pick(STATEMENTS));
                ops.push(format!("Bind {portal:?} {name:?}"));
                frontend::bind(
                    portal,
                    name,
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
                .unwrap()
            }
            7..=9 => {
                let portal = rng.pick(PORTALS);
                ops.push(format!("Execute {portal:?}"));
                frontend::execute(portal, 0, b).unwrap()
            }
            10 => {
                let name = rng.pick(STATEMENTS);
                ops.push(format!("Close S {name:?}"));
                frontend::close(b'S', name, b).unwrap()
            }
            11 => {
                let portal = rng.pick(PORTALS);
                ops.push(format!("Close P {portal:?}"));
                frontend::close(b'P', portal, b).unwrap()
            }
            12 => {
                let name = rng.pick(STATEMENTS);
                ops.push(format!("Describe S {name:?}"));
                frontend::describe(b'S', name, b).unwrap()
            }
            13 => {
                ops.push("Flush".into());
                frontend::flush(b)
            }
            14..=15 => {
                ops.push("Sync".into());
                frontend::sync(b);
                readies += 1;
            }
            _ => {
                let sql = rng.pick(QUERY_SQL);
                ops.push(format!("Query {sql:?}"));
                frontend::query(sql, b).unwrap();
                readies += 1;
            }
        }
        if rng.below(4) == 0 {
            ops.push("-- write --".into());
            chunks.push(BytesMut::new());
        }
    }
    // After an error the server skips everything up to a Sync, Queries included, so the number
    // of ReadyForQuery messages depends on what failed. A final Sync ends any skipping, and the
    // marker query after it is always answered.
    let b = chunks.last_mut().expect("a chunk");
    frontend::sync(b);
    // Out of an aborted transaction, so that the marker runs.
    frontend::query("ROLLBACK", b).unwrap();
    frontend::query(END_MARKER, b).unwrap();
    (chunks, readies + 3)
}

/// What the server logged for one backend: (`statement` or `execute`, text, prepared text).
fn server_log(pg: &LocalPostgres, pid: &str) -> Vec<(String, String, Option<String>)> {
    let log = pg
        .data_dir
        .parent()
        .map(|p| p.join("postgres.log"))
        .expect("log path");
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut out: Vec<(String, String, Option<String>)> = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(&format!("{pid}|")) else {
            continue;
        };
        if let Some(s) = rest.split_once("LOG:  statement: ") {
            out.push(("statement".into(), s.1.to_string(), None));
        } else if let Some(s) = rest.split_once("LOG:  execute ") {
            let text = s.1.split_once(": ").map(|x| x.1).unwrap_or("").to_string();
            out.push(("execute".into(), text, None));
        } else if let Some(s) = rest.split_once("DETAIL:  prepare: ")
            && let Some(last) = out.last_mut()
        {
            last.2 = Some(s.1.to_string());
        }
    }
    out
}

fn first_keyword(sql: &str) -> String {
    // `PREPARE q AS DELETE ...` prepares a DELETE.
    let body = match sql.to_ascii_uppercase().find(" AS ") {
        Some(i) if sql.to_ascii_uppercase().starts_with("PREPARE") => sql[i + 4..].to_string(),
        _ => sql.to_string(),
    };
    body.split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase()
}

/// Checks one case: every logged statement has its record, in order.
fn check(
    case: usize,
    log: &[(String, String, Option<String>)],
    records: &[Statement],
    ops: &[String],
) {
    let mut at = 0;
    for (kind, text, prepared) in log {
        let ran = format!("{text} {}", prepared.as_deref().unwrap_or(""));
        assert!(
            !ran.contains(HELD),
            "case {case}: the server ran a statement the policy held and no one approved: {kind} {text:?} (prepared as {prepared:?})\nops: {ops:#?}"
        );
        let found = records[at..].iter().position(|r| {
            if r.class == StatementClass::Unknown && r.extended == (kind == "execute") {
                return true;
            }
            r.text == *text && r.extended == (kind == "execute")
        });
        let Some(i) = found else {
            panic!(
                "case {case}: the server ran {kind} {text:?} but no later record says so\nlog: {log:#?}\nrecords: {:#?}\nops: {ops:#?}",
                records
                    .iter()
                    .map(|r| (r.id, r.extended, r.class, r.text.clone(), r.runs.clone()))
                    .collect::<Vec<_>>()
            );
        };
        let r = &records[at + i];
        if let Some(p) = prepared
            && r.class != StatementClass::Unknown
            && r.text.to_ascii_uppercase().starts_with("EXECUTE")
        {
            // The log cannot tell `PREPARE q AS DELETE ...` prepared by SQL (a DELETE) from
            // the same text prepared by Parse (a PREPARE): either is right.
            let recorded = r.command.split(' ').next().unwrap_or("").to_string();
            let literal = p
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            assert!(
                recorded == first_keyword(p) || recorded == literal,
                "case {case}: {text:?} ran the statement prepared as {p:?}; recorded as {r:?}"
            );
        }
        at += i + 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_runs_only_what_proctor_recorded() {
    let cases: usize = std::env::var("PROCTOR_ORACLE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let seed: u64 = std::env::var("PROCTOR_ORACLE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_0012);
    let pg = start_pg_with(vec![
        "log_statement = 'all'".into(),
        "log_line_prefix = '%p|'".into(),
        "log_min_error_statement = panic".into(),
    ])
    .await;
    let mut f = Fixture::with_pg(pg, PgFrontendConfig::default()).await;
    // Every hold is denied, as a person would deny what they cannot see.
    let mut holds = std::mem::replace(&mut f.holds, tokio::sync::mpsc::unbounded_channel().1);
    tokio::spawn(async move {
        while let Some(h) = holds.recv().await {
            let _ = h.answer.send(proctor_gate::Resolution::Deny {
                rule: "oracle".into(),
                reason: "denied by the oracle".into(),
                cause: proctor_gate::DenyCause::Approver,
            });
        }
    });
    // A user function that re-prepares `q` by dynamic SQL: proctor forgets every name after it,
    // and asks the target at the next use of one.
    f.pg()
        .psql(
            TARGET,
            "CREATE FUNCTION swap_q() RETURNS int LANGUAGE plpgsql AS $$
             BEGIN
               BEGIN EXECUTE 'DEALLOCATE q'; EXCEPTION WHEN OTHERS THEN NULL; END;
               EXECUTE 'PREPARE q AS DELETE FROM accounts WHERE id = 6'; RETURN 1;
             END $$",
        )
        .expect("swap_q");
    let mut rng = Rng(seed | 1);
    let mut introspections = 0;
    for case in 0..cases {
        let mut raw = RawClient::login(f.port).await;
        let mut b = BytesMut::new();
        frontend::query(
            "DROP TABLE IF EXISTS accounts; CREATE TABLE accounts(id int); \
             INSERT INTO accounts SELECT generate_series(1, 5); SELECT pg_backend_pid()",
            &mut b,
        )
        .unwrap();
        raw.send(&b).await;
        let mut pid = String::new();
        loop {
            let (tag, body) = raw.read().await.expect("setup answer");
            if tag == b'D' && body.len() > 6 {
                pid = String::from_utf8_lossy(&body[6..]).into_owned();
            }
            if tag == b'Z' {
                break;
            }
        }
        let mut ops = Vec::new();
        let (chunks, readies) = sequence(&mut rng, &mut ops);
        for c in &chunks {
            raw.send(c).await;
        }
        let mut seen = 0;
        let mut tags = String::new();
        let mut ended = false;
        while !ended {
            let read = tokio::time::timeout(Duration::from_secs(8), raw.read()).await;
            let Ok(Some((tag, body))) = read else {
                panic!(
                    "case {case}: no answer (got {tags:?}, {seen} of at most {readies} ReadyForQuery)\n{ops:#?}"
                );
            };
            tags.push(tag as char);
            seen += usize::from(tag == b'Z');
            ended = tag == b'D' && body.ends_with(b"oracle-end");
        }
        drop(raw);
        let g = f.wait_ended(case).await;
        // The server writes its log asynchronously.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let log = server_log(f.pg(), &pid);
        let records: Vec<Statement> = g
            .statements()
            .into_iter()
            .filter(|s| !s.text.contains("pg_backend_pid") && s.text != END_MARKER)
            .filter(|s| s.id < u64::MAX)
            .collect();
        let log: Vec<_> = log
            .into_iter()
            .filter(|(_, t, _)| !t.contains("pg_backend_pid") && t != END_MARKER)
            .collect();
        // Proctor's own query of the target's prepared statements (after names were forgotten)
        // is not an agent's statement: each one the server ran has its `names_learnt` record.
        let asked = log.iter().filter(|(_, t, _)| t == INTROSPECTION).count();
        let learnt = g
            .events()
            .iter()
            .filter(|e| {
                matches!(e, proctor_gate::Event::TargetMessage { kind, text }
                    if kind == "names_learnt" && text.contains(INTROSPECTION))
            })
            .count();
        assert_eq!(
            asked, learnt,
            "case {case}: every introspection is recorded"
        );
        introspections += asked;
        let log: Vec<_> = log
            .into_iter()
            .filter(|(_, t, _)| t != INTROSPECTION)
            .collect();
        check(case, &log, &records, &ops);
    }
    eprintln!("{cases} cases, {introspections} introspections of the target's prepared statements");
}
