//! Rule 4 through a real relay and a real PostgreSQL: when proctor cannot record, the session
//! ends with the reason recorded (`Gate::end`) and nothing after the failure reaches the
//! target. Each test lets the gate record a few events, then makes every record fail, sends a
//! stream of inserts in one write and checks the target's table: only statements whose
//! verdict was recorded ran, and not all of them.

mod common;

use std::collections::BTreeSet;

use common::*;
use proctor_gate::{Event, Outcome, VerdictKind};
use proctor_postgres::PgFrontendConfig;

const INSERTS: u32 = 40;

fn query(sql: &str) -> Vec<u8> {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    typed(b'Q', &body)
}

fn cstr(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(s.as_bytes());
    b.push(0);
}

/// Parse, Bind and Execute of one insert, unnamed, then a Sync.
fn extended(sql: &str) -> Vec<u8> {
    let mut p = Vec::new();
    cstr(&mut p, "");
    cstr(&mut p, sql);
    p.extend([0, 0]);
    let mut b = Vec::new();
    cstr(&mut b, "");
    cstr(&mut b, "");
    b.extend([0, 0, 0, 0, 0, 0]);
    let mut e = Vec::new();
    cstr(&mut e, "");
    e.extend([0, 0, 0, 0]);
    let mut out = typed(b'P', &p);
    out.extend(typed(b'B', &b));
    out.extend(typed(b'E', &e));
    out.extend(typed(b'S', &[]));
    out
}

/// Sets up the table, makes recording fail after `after` more events, sends every insert in
/// one write, and checks what ran against what was recorded.
async fn check(after: usize, message: fn(&str) -> Vec<u8>) {
    let f = Fixture::start(PgFrontendConfig::default()).await;
    let mut raw = RawClient::login(f.port).await;
    raw.send(&query("CREATE TABLE fail_closed (n int)")).await;
    while let Some((tag, body)) = raw.read().await {
        assert_ne!(tag, b'E', "{}", String::from_utf8_lossy(&body));
        if tag == b'Z' {
            break;
        }
    }
    let gate = f.authority.session(0);
    gate.fail_recording_after(after);
    let mut all = Vec::new();
    for n in 1..=INSERTS {
        all.extend(message(&format!("INSERT INTO fail_closed VALUES ({n})")));
    }
    raw.send(&all).await;
    // The agent is told, and the connection ends.
    let mut fatal = None;
    while let Some((tag, body)) = raw.read().await {
        if tag == b'E' {
            let e = proctor_postgres::wire::ErrorFields::parse(&body);
            if e.code == "58030" {
                fatal = Some(e.message);
            }
        }
    }
    assert!(
        fatal.is_some_and(|m| m.contains("could not be recorded")),
        "the agent was not told why"
    );
    let gate = f.wait_ended(0).await;
    let (outcome, reason) = gate.end().expect("the end is recorded");
    assert_eq!(outcome, Outcome::Interrupted);
    assert!(reason.contains("recording failed"), "{reason}");

    // Statements whose Allow verdict was recorded.
    let events = gate.events();
    let mut allowed = BTreeSet::new();
    let mut last: Option<u32> = None;
    for e in &events {
        match e {
            Event::Statement(s) => {
                last = s
                    .text
                    .trim_start_matches("INSERT INTO fail_closed VALUES (")
                    .trim_end_matches(')')
                    .parse()
                    .ok();
            }
            Event::Verdict(v) if v.verdict == VerdictKind::Allow => {
                if let Some(n) = last.take() {
                    allowed.insert(n);
                }
            }
            _ => {}
        }
    }
    let rows = tokio::task::block_in_place(|| {
        f.pg()
            .psql(TARGET, "SELECT n FROM fail_closed ORDER BY n")
            .expect("read the table")
    });
    let ran: BTreeSet<u32> = rows.lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert!(
        ran.is_subset(&allowed),
        "the target ran {ran:?}, but only {allowed:?} were recorded as allowed"
    );
    assert!(
        (ran.len() as u32) < INSERTS,
        "every insert ran although recording failed after {after} events: {ran:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_queries_stop_at_the_failed_record() {
    for after in [0, 5] {
        check(after, query).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extended_pipeline_stops_at_the_failed_record() {
    for after in [0, 5] {
        check(after, extended).await;
    }
}
