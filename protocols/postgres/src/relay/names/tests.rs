use super::*;
use crate::classify::{LexContext, classify_prepared};

fn prepared(sql: &str) -> Prepared {
    Prepared {
        judged: Arc::new(classify_prepared(sql, LexContext::default())),
        columns: None,
        param_types: Arc::from([]),
    }
}

fn text(l: Lookup<&Prepared>) -> Option<String> {
    match l {
        Lookup::Known(p) => Some(p.judged.text.clone()),
        Lookup::Absent => None,
        Lookup::Wait => Some("WAIT".into()),
    }
}

#[test]
fn a_refused_parse_leaves_the_old_statement() {
    let mut n = Names::default();
    let k = n.ticket();
    n.push(k, Change::Statement("s1".into(), prepared("DELETE FROM a")));
    n.sync_point();
    n.confirm(k);
    let k2 = n.ticket();
    n.push(k2, Change::Statement("s1".into(), prepared("SELECT 1")));
    n.sync_point();
    // A Bind in the next block cannot know yet whether the second Parse succeeds.
    assert_eq!(text(n.statement("s1")).as_deref(), Some("WAIT"));
    n.discard(k2);
    assert_eq!(text(n.statement("s1")).as_deref(), Some("DELETE FROM a"));
}

#[test]
fn the_same_block_sees_its_own_changes() {
    let mut n = Names::default();
    let k = n.ticket();
    n.push(k, Change::Statement("s".into(), prepared("SELECT 1")));
    assert_eq!(text(n.statement("s")).as_deref(), Some("SELECT 1"));
    let c = n.ticket();
    n.push(c, Change::CloseStatement("s".into()));
    assert_eq!(text(n.statement("s")), None);
}

#[test]
fn sql_changes_settle_at_the_sync_point() {
    let mut n = Names::default();
    n.push(
        Key::Statement(3),
        Change::Statement("q".into(), prepared("SELECT 1")),
    );
    n.sync_point();
    assert_eq!(text(n.statement("q")).as_deref(), Some("WAIT"));
    n.settle_statements(3);
    assert_eq!(text(n.statement("q")), None);
    assert_eq!(n.pending_len(), 0);
}

/// The fuzz entry over pseudo-random inputs (the `pg_core` smoke replays its corpus).
#[cfg(feature = "fuzzing")]
#[test]
fn the_names_fuzz_entry_holds_on_random_inputs() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for len in 0..3000usize {
        let data: Vec<u8> = (0..len % 300)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        fuzz(&data);
    }
}

#[test]
fn names_forgotten_after_code_are_learnt_back_from_the_server_only() {
    let mut n = Names::default();
    for (name, sql) in [("q", "SELECT 1"), ("r", "SELECT 2"), ("", "SELECT 3")] {
        let k = n.ticket();
        n.push(k, Change::Statement(name.into(), prepared(sql)));
        n.confirm(k);
    }
    assert!(!n.forgotten_statement("q"), "known, nothing to ask");
    n.push(Key::Statement(1), Change::CodeRan);
    n.sync_point();
    n.confirm(Key::Statement(1));
    assert!(n.forgotten_statement("q"));
    assert!(
        !n.forgotten_statement(""),
        "the server does not list the unnamed statement"
    );
    // The server lists q (re-prepared by the code) and s; r is gone.
    n.learn_statements(vec![
        ("q".into(), Some(prepared("DELETE FROM a"))),
        ("s".into(), None),
    ]);
    assert_eq!(text(n.statement("q")).as_deref(), Some("DELETE FROM a"));
    assert_eq!(text(n.statement("r")), None);
    assert_eq!(
        text(n.statement("s")),
        None,
        "listed but not read exactly: unknown"
    );
    assert!(!n.forgotten_statement("r"), "asked once; absent now");
}

#[test]
fn forgetting_portals_makes_every_portal_unknown() {
    let mut n = Names::default();
    let k = n.ticket();
    let portal = Portal {
        statement: String::new(),
        judged: None,
        params: Vec::new(),
        param_types: Arc::from([]),
        result_formats: Vec::new(),
        columns: None,
        executed: None,
    };
    n.push(k, Change::Portal("c".into(), Box::new(portal)));
    n.confirm(k);
    assert!(matches!(n.portal("c"), Lookup::Known(_)));
    n.push(Key::Statement(1), Change::ForgetPortals);
    assert!(matches!(n.portal("c"), Lookup::Absent));
    n.sync_point();
    assert!(matches!(n.portal("c"), Lookup::Wait));
    n.confirm(Key::Statement(1));
    assert!(matches!(n.portal("c"), Lookup::Absent));
}
