use super::*;
use proctor_gate::{SqlError, StatementClass};

fn stmt(id: u64, text: &str) -> Statement {
    Statement {
        id,
        text: text.into(),
        params: vec![],
        statement_name: String::new(),
        portal: String::new(),
        extended: false,
        class: StatementClass::Session,
        command: String::new(),
        tables: vec![],
        reasoning: None,
        runs: None,
    }
}

fn ok(id: u64) -> StatementResult {
    StatementResult {
        statement_id: id,
        tag: "SET".into(),
        rows: 0,
        error: None,
        duration_ns: 0,
        columns: vec![],
        sample_rows: vec![],
        digest: [0; 32],
        suspended: false,
    }
}

fn failed(id: u64) -> StatementResult {
    StatementResult {
        error: Some(SqlError {
            severity: "ERROR".into(),
            code: "22023".into(),
            message: "bad".into(),
        }),
        tag: String::new(),
        ..ok(id)
    }
}

trait Decide {
    fn decide(&mut self, s: &Statement);
}
impl Decide for PgSettings {
    fn decide(&mut self, s: &Statement) {
        if let Some(p) = PgSettings::changes(s) {
            self.decided(p);
        }
    }
}

fn get(m: &PgSettings, name: &str) -> Setting {
    m.view()
        .into_iter()
        .find(|s| s.name == name)
        .expect("setting")
}

#[test]
fn a_call_of_a_user_function_makes_both_settings_unknown() {
    let mut m = PgSettings::new("app_rw", None);
    // Built-ins run no SQL of their own: nothing changes.
    m.decide(&stmt(1, "SELECT lower('X'), now()"));
    m.answered(&ok(1));
    assert_eq!(get(&m, "search_path").value, "(target default)");
    // A user's function may call set_config('search_path', ...) in its body.
    m.decide(&stmt(2, "SELECT set_path()"));
    m.answered(&ok(2));
    for name in ["search_path", "role"] {
        let v = get(&m, name);
        assert!(v.value.contains("unknown"), "{name}: {v:?}");
        assert!(
            v.value.contains("set_path()") || v.note.contains("set_path()"),
            "{v:?}"
        );
    }
}

#[test]
fn a_set_in_the_same_message_shows_as_pending_then_confirmed() {
    let mut m = PgSettings::new("app_rw", None);
    assert_eq!(get(&m, "search_path").value, "(target default)");
    assert_eq!(get(&m, "role").value, "app_rw");
    m.decide(&stmt(1, "SET search_path = audit"));
    let sp = get(&m, "search_path");
    assert_eq!(sp.value, "audit");
    assert!(sp.note.contains("not confirmed"), "{sp:?}");
    m.answered(&ok(1));
    let sp = get(&m, "search_path");
    assert_eq!(sp.value, "audit");
    assert!(sp.note.contains("confirmed by the target"), "{sp:?}");
}

#[test]
fn only_the_servers_word_changes_the_model() {
    let mut m = PgSettings::new("app_rw", None);
    m.decide(&stmt(1, "set search_path to 'a', b"));
    m.answered(&failed(1));
    assert_eq!(get(&m, "search_path").value, "(target default)");
    // Denied (never answered): a later answer drops it.
    m.decide(&stmt(2, "SET ROLE admin"));
    m.answered(&ok(3));
    assert_eq!(get(&m, "role").value, "app_rw");
    m.decide(&stmt(4, "/* x */ SET SESSION search_path TO 'a', b;"));
    m.answered(&ok(4));
    assert_eq!(get(&m, "search_path").value, "'a', b");
}

/// `SET search_path = x; SELECT 1/0` as one query string: the SET was answered, then the
/// error rolled the implicit transaction back. The card must not claim `x`.
#[test]
fn an_error_after_a_change_leaves_both_values_open() {
    let mut m = PgSettings::new("app_rw", None);
    m.decide(&stmt(1, "SET search_path = audit"));
    m.decide(&stmt(2, "SELECT 1/0"));
    m.answered(&ok(1));
    assert_eq!(get(&m, "search_path").value, "audit");
    m.answered(&failed(2));
    let sp = get(&m, "search_path");
    assert_eq!(sp.value, "unknown");
    assert!(sp.note.contains("audit, or the target default"), "{sp:?}");
    // A later SET the server confirms is known again.
    m.decide(&stmt(3, "SET search_path = public"));
    m.answered(&ok(3));
    assert_eq!(get(&m, "search_path").value, "public");
}

#[test]
fn what_cannot_be_followed_is_unknown() {
    let mut m = PgSettings::new("app_rw", None);
    m.decide(&stmt(1, "SELECT set_config('search_path', 'audit', false)"));
    m.answered(&ok(1));
    assert_eq!(get(&m, "search_path").value, "unknown");
    m.decide(&stmt(2, "RESET ALL"));
    m.answered(&ok(2));
    assert_eq!(get(&m, "search_path").value, "(target default)");
    m.decide(&stmt(3, "SET LOCAL search_path = audit"));
    m.answered(&ok(3));
    let sp = get(&m, "search_path");
    assert_eq!(sp.value, "unknown");
    assert!(
        sp.note.contains("audit inside a transaction block"),
        "{sp:?}"
    );
}

#[test]
fn search_path_in_other_spellings_is_followed() {
    let mut m = PgSettings::new("app_rw", None);
    m.decide(&stmt(1, "SET U&\"search!005fpath\" UESCAPE '!' = audit"));
    m.answered(&ok(1));
    assert_eq!(get(&m, "search_path").value, "audit");
    m.decide(&stmt(2, "set /* a /* nested */ comment */ schema 'ops'"));
    m.answered(&ok(2));
    assert_eq!(get(&m, "search_path").value, "'ops'");
    m.decide(&stmt(3, "SET LOCAL SCHEMA 'x'"));
    m.answered(&ok(3));
    assert_eq!(get(&m, "search_path").value, "unknown");
    m.decide(&stmt(4, "SET search_path = public"));
    m.answered(&ok(4));
    m.decide(&stmt(
        5,
        "UPDATE pg_settings SET setting = 'audit' WHERE name LIKE 'search%'",
    ));
    m.answered(&ok(5));
    assert_eq!(get(&m, "search_path").value, "unknown");
}

#[test]
fn a_rollback_after_a_change_leaves_both_values_open() {
    let mut m = PgSettings::new("app_rw", None);
    m.decide(&stmt(1, "SET role reporting"));
    m.answered(&ok(1));
    m.decide(&stmt(2, "ROLLBACK"));
    m.answered(&ok(2));
    let r = get(&m, "role");
    assert_eq!(r.value, "unknown");
    assert!(r.note.contains("reporting, or app_rw"), "{r:?}");
    m.decide(&stmt(3, "SET role = reporting"));
    m.answered(&ok(3));
    m.decide(&stmt(4, "COMMIT"));
    m.answered(&ok(4));
    m.decide(&stmt(5, "ROLLBACK"));
    m.answered(&ok(5));
    assert_eq!(get(&m, "role").value, "reporting");
}

#[test]
fn a_search_path_set_at_login_is_the_sessions_default() {
    let mut m = PgSettings::new("app_rw", Some("audit".into()));
    let sp = get(&m, "search_path");
    assert_eq!(sp.value, "audit");
    assert!(sp.note.contains("set at login"), "{sp:?}");
    m.decide(&stmt(1, "SET search_path = public"));
    m.answered(&ok(1));
    assert_eq!(get(&m, "search_path").value, "public");
    // RESET and DISCARD ALL return to the login value, not the target's default.
    m.decide(&stmt(2, "RESET search_path"));
    m.answered(&ok(2));
    assert_eq!(get(&m, "search_path").value, "audit");
    m.decide(&stmt(3, "SET search_path = public"));
    m.answered(&ok(3));
    m.decide(&stmt(4, "DISCARD ALL"));
    m.answered(&ok(4));
    assert_eq!(get(&m, "search_path").value, "audit");
    m.decide(&stmt(5, "SET search_path = public"));
    m.answered(&ok(5));
    m.decide(&stmt(6, "ROLLBACK"));
    m.answered(&ok(6));
    let sp = get(&m, "search_path");
    assert!(
        sp.note.contains("public, or audit (set at login)"),
        "{sp:?}"
    );
}

#[test]
fn an_execute_changes_what_its_prepared_statement_changes() {
    let mut m = PgSettings::new("app_rw", None);
    let mut s = stmt(1, "EXECUTE q");
    s.runs = Some("SET search_path = audit".into());
    m.decide(&s);
    m.answered(&ok(1));
    assert_eq!(get(&m, "search_path").value, "audit");
}

#[test]
fn an_unresolved_fast_path_call_leaves_both_settings_unknown() {
    let mut m = PgSettings::new("app_rw", Some("audit".into()));
    m.decide(&stmt(
        1,
        "-- fast-path FunctionCall of function OID 2078 (not resolved by proctor) with 3 argument(s)",
    ));
    m.answered(&ok(1));
    assert_eq!(get(&m, "search_path").value, "unknown");
    assert_eq!(get(&m, "role").value, "unknown");
}

#[test]
fn what_proctor_cannot_read_into_leaves_both_settings_unknown() {
    let mut m = PgSettings::new("app_rw", None);
    let mut s = stmt(
        1,
        "DO $$ BEGIN EXECUTE 'SET search_' || 'path = audit'; END $$",
    );
    s.class = StatementClass::Unknown;
    s.command = "DO".into();
    m.decide(&s);
    m.answered(&ok(1));
    assert_eq!(get(&m, "search_path").value, "unknown");
    assert_eq!(get(&m, "role").value, "unknown");
    // What it can read stays read: `SET SCHEMA` is unknown to the classifier, not here.
    let mut s = stmt(2, "SET SCHEMA 'ops'");
    s.class = StatementClass::Unknown;
    m.decide(&s);
    m.answered(&ok(2));
    assert_eq!(get(&m, "search_path").value, "'ops'");
}
