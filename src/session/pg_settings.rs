//! The PostgreSQL session settings that change what a statement means (`search_path`, the
//! current role), as an approver must see them beside a held statement.
//!
//! PostgreSQL does not report either in ParameterStatus (before version 18), so the model is
//! built from the statements the agent sent, and changes only on the server's word: a `SET`,
//! `RESET` or `DISCARD ALL` is applied when its CommandComplete came back without an error.
//! Changes judged but not yet confirmed (an earlier statement of the same message or pipeline)
//! are shown as pending, with the statement that makes them. What the model cannot follow is
//! shown as unknown, never guessed: any other statement naming `search_path` or calling
//! `set_config`, `SET SESSION AUTHORIZATION`, a `SET LOCAL` (in force only inside a
//! transaction block), and a ROLLBACK or an error after a change (either may have undone
//! it: a query string or a pipeline runs as one implicit transaction). A function whose
//! body calls `set_config` is not visible in the statement that calls it; README says so.

use proctor_gate::{Statement, StatementResult};

// The card's line is the approvals' vocabulary: the session fills it in, approvals never
// reach into the session for it.
pub use crate::approvals::Setting;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    /// Not changed in this session: whatever the target's default is.
    Default,
    Known(String),
    /// The model cannot tell; the text says what is known.
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    SearchPath(Value),
    Role(Value),
    /// `RESET ALL`, `DISCARD ALL`.
    ResetAll,
    /// COMMIT (false) or ROLLBACK (true).
    TxnEnd {
        rollback: bool,
    },
}

/// The model of one PostgreSQL session.
#[derive(Debug)]
pub struct PgSettings {
    search_path: Value,
    role: Value,
    /// The role the session starts as (the grant's role, the login default proctor set).
    login_role: String,
    /// The `search_path` the client's startup packet set (the session's default, what `RESET`
    /// returns to), if it set one.
    login_path: Option<String>,
    /// Values before the first change since the last transaction end, for ROLLBACK.
    before_txn: Option<(Value, Value)>,
    /// Decided statements whose answer has not come yet.
    pending: Vec<Pending>,
}

/// The changes of one decided statement, waiting for the server's answer.
#[derive(Debug)]
pub struct Pending {
    id: u64,
    changes: Vec<Change>,
    /// The statement's first line, for the card.
    text: String,
}

impl PgSettings {
    pub fn new(login_role: &str, login_path: Option<String>) -> Self {
        PgSettings {
            search_path: Value::Default,
            role: Value::Default,
            login_role: login_role.to_string(),
            login_path,
            before_txn: None,
            pending: Vec::new(),
        }
    }

    /// What a statement would change, if anything (cheap for the statements that change
    /// nothing: most are passed over by their first word).
    pub fn changes(s: &Statement) -> Option<Pending> {
        // What runs: an `EXECUTE q` of a protocol-prepared `SET search_path = audit` is that SET.
        let text = s.runs.as_deref().unwrap_or(&s.text);
        // A fast-path call of a function proctor does not resolve may be `set_config` (OID
        // 2078): once run, neither setting is known.
        if text.starts_with("-- fast-path FunctionCall of function OID") {
            let why = |name: &str| {
                Value::Unknown(format!(
                    "possibly changed by a fast-path call of an unresolved function ({name})",
                ))
            };
            return Some(Pending {
                id: s.id,
                changes: vec![
                    Change::SearchPath(why("set_config may set search_path")),
                    Change::Role(why("set_config may set role")),
                ],
                text: first_line(&s.text),
            });
        }
        // What proctor cannot read into (a `DO` block, a procedure, anything `unknown`, each
        // run only once a person approved it) may set either through dynamic SQL.
        let opaque = s.class == proctor_gate::StatementClass::Unknown
            || matches!(s.command.split(' ').next(), Some("DO" | "CALL"))
            || calls_code(text);
        let mut changes = if may_change(text) {
            changes_of(text)
        } else {
            Vec::new()
        };
        if changes.is_empty() && opaque {
            let why = |what: &str| {
                Value::Unknown(format!(
                    "possibly changed by `{}`, which proctor cannot read into ({what})",
                    first_line(&s.text)
                ))
            };
            changes = vec![
                Change::SearchPath(why("it may run SET search_path")),
                Change::Role(why("it may run SET ROLE")),
            ];
        }
        (!changes.is_empty()).then(|| Pending {
            id: s.id,
            changes,
            text: first_line(&s.text),
        })
    }

    /// A statement was decided (allowed or held): its changes wait for the server's answer.
    pub fn decided(&mut self, p: Pending) {
        self.pending.push(p);
    }

    /// The server answered statement `r.statement_id`. Answers come in order, so any earlier
    /// pending statement that got none (denied, or never forwarded) will never change anything.
    /// An error may have rolled back a change made earlier in its transaction (a query string
    /// or a pipeline runs as one implicit transaction): it counts as a ROLLBACK.
    pub fn answered(&mut self, r: &StatementResult) {
        let mut confirmed = Vec::new();
        self.pending.retain(|p| {
            if p.id == r.statement_id && r.error.is_none() && !r.suspended {
                confirmed.extend(p.changes.iter().cloned());
            }
            p.id > r.statement_id
        });
        for c in confirmed {
            self.apply(c);
        }
        if r.error.is_some() {
            self.apply(Change::TxnEnd { rollback: true });
        }
    }

    fn apply(&mut self, c: Change) {
        if !matches!(c, Change::TxnEnd { .. }) && self.before_txn.is_none() {
            self.before_txn = Some((self.search_path.clone(), self.role.clone()));
        }
        match c {
            Change::SearchPath(v) => self.search_path = v,
            Change::Role(v) => self.role = v,
            Change::ResetAll => {
                self.search_path = Value::Default;
                self.role = Value::Default;
            }
            Change::TxnEnd { rollback } => {
                if let (true, Some((sp, role))) = (rollback, self.before_txn.take()) {
                    self.search_path = either(&self.search_path, &sp, &self.default_path());
                    self.role = either(&self.role, &role, &self.login_role);
                }
                self.before_txn = None;
            }
        }
    }

    /// The settings a statement decided now runs under: the confirmed values, with every
    /// pending change of an earlier statement marked as such.
    pub fn view(&self) -> Vec<Setting> {
        let mut sp = (self.search_path.clone(), String::new());
        let mut role = (self.role.clone(), String::new());
        for Pending { id, changes, text } in &self.pending {
            let why = format!(
                "set by statement {id} ({text}), decided before this one; the target has not \
                 confirmed it yet"
            );
            for c in changes {
                match c {
                    Change::SearchPath(v) => sp = (v.clone(), why.clone()),
                    Change::Role(v) => role = (v.clone(), why.clone()),
                    Change::ResetAll => {
                        sp = (Value::Default, why.clone());
                        role = (Value::Default, why.clone());
                    }
                    Change::TxnEnd { rollback: true } => {
                        let note = format!("statement {id} rolls back; it may undo a change");
                        sp = (
                            Value::Unknown(describe(&sp.0, &self.default_path())),
                            note.clone(),
                        );
                        role = (Value::Unknown(describe(&role.0, &self.login_role)), note);
                    }
                    Change::TxnEnd { rollback: false } => {}
                }
            }
        }
        vec![
            self.setting("search_path", sp.0, sp.1),
            self.setting("role", role.0, role.1),
        ]
    }

    /// How the session's default `search_path` is named where a value is described in words.
    fn default_path(&self) -> String {
        match &self.login_path {
            Some(p) => format!("{p} (set at login)"),
            None => DEFAULT_PATH.to_string(),
        }
    }

    fn setting(&self, name: &str, v: Value, pending: String) -> Setting {
        let (value, note) = match v {
            Value::Default if name == "role" => (
                self.login_role.clone(),
                "the grant's role, the session's login default".to_string(),
            ),
            Value::Default if self.login_path.is_some() => (
                self.login_path.clone().unwrap_or_default(),
                "set at login by the client's startup parameters; the session's default, what \
                 RESET returns to"
                    .to_string(),
            ),
            Value::Default => (
                "(target default)".to_string(),
                "not changed in this session: the default of the target for this database and \
                 login (usually \"$user\", public)"
                    .to_string(),
            ),
            Value::Known(s) => (
                s,
                "set in this session; confirmed by the target".to_string(),
            ),
            Value::Unknown(s) => ("unknown".to_string(), format!("proctor cannot tell: {s}")),
        };
        let note = if pending.is_empty() { note } else { pending };
        Setting {
            name: name.to_string(),
            value,
            note,
        }
    }
}

fn first_line(text: &str) -> String {
    let t = text.trim();
    let mut out: String = t
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(80)
        .collect();
    if out.len() < t.len() {
        out.push_str(" …");
    }
    out
}

/// Whether `text` calls a function (or an operator) that may run SQL of its own: a user's
/// function may call `set_config('search_path', ...)` or `set_config('role', ...)`, and the
/// calling statement names neither. Only text with a `(` or an operator character is read
/// again (cached by its normalized form, as the relay classified it).
fn calls_code(text: &str) -> bool {
    use proctor_postgres::classify;
    text.contains(['(', '~', '!', '@', '#', '%', '^', '&', '|', '`', '?'])
        && classify::classify_query(text, classify::LexContext::default())
            .iter()
            .any(|j| classify::may_shadow_after(&j.info))
}

/// How the unchanged `search_path` is named where a value is described in words.
const DEFAULT_PATH: &str = "the target default";

fn describe(v: &Value, default: &str) -> String {
    match v {
        Value::Default => default.to_string(),
        Value::Known(s) => s.clone(),
        Value::Unknown(s) => s.clone(),
    }
}

/// After a ROLLBACK or an error: the value is the current one or the one before the
/// transaction.
fn either(now: &Value, before: &Value, default: &str) -> Value {
    if now == before {
        return now.clone();
    }
    Value::Unknown(format!(
        "{}, or {} (a ROLLBACK or an error may have undone the change)",
        describe(now, default),
        describe(before, default)
    ))
}

/// Whether the text can change a setting at all: its first word is one that can, or it names
/// `search_path` or `set_config` somewhere. Scans without copying, as statements may be large.
fn may_change(text: &str) -> bool {
    const FIRST: [&str; 8] = [
        "set", "reset", "discard", "commit", "end", "prepare", "rollback", "abort",
    ];
    // A literal alternation: the regex engine finds it with a vectorised prefilter, so a
    // statement of many megabytes costs a scan at memory speed, not a compare per byte.
    static NAMED: std::sync::LazyLock<regex::bytes::Regex> = std::sync::LazyLock::new(|| {
        // `pg_settings`: an UPDATE of it is a SET (its WHERE may name the setting any way);
        // `u&`: a Unicode-escaped name can spell search_path.
        regex::bytes::Regex::new("(?i)search_path|set_config|pg_settings|u&")
            .expect("a valid pattern")
    });
    let head = text.trim_start();
    let commented = head.starts_with("--") || head.starts_with("/*");
    let first_word = !commented && {
        let end = head
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(head.len());
        FIRST.iter().any(|f| head[..end].eq_ignore_ascii_case(f))
    };
    // A leading comment hides the first word from this cheap look: read such text in full.
    first_word || commented || NAMED.is_match(text.as_bytes())
}

/// The words of a statement outside comments, lower-cased, with string literals kept whole.
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    let flush = |cur: &mut String, out: &mut Vec<String>| {
        if !cur.is_empty() {
            out.push(std::mem::take(cur));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '-' if chars.peek() == Some(&'-') => {
                flush(&mut cur, &mut out);
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                flush(&mut cur, &mut out);
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
            '\'' | '"' => {
                cur.push(c);
                for q in chars.by_ref() {
                    cur.push(q);
                    if q == c {
                        break;
                    }
                }
            }
            c if c.is_whitespace() => flush(&mut cur, &mut out),
            ',' | ';' | '=' => {
                flush(&mut cur, &mut out);
                out.push(c.to_string());
            }
            c => cur.extend(c.to_lowercase()),
        }
    }
    flush(&mut cur, &mut out);
    out
}

/// What a statement's text does to the settings, if the server runs it without an error.
fn changes_of(text: &str) -> Vec<Change> {
    // Read as the server reads names: the lexer's form drops comments (nested ones too) and
    // resolves quoted and `U&` names (`SET U&"search!005fpath" UESCAPE '!' = audit` is a SET of
    // search_path); literals stay as written.
    let norm = crate::policy::sql::normalize(text);
    let lower = format!("{}\n{}", text.to_lowercase(), norm.to_lowercase());
    let w = words(&norm);
    let w: Vec<&str> = w.iter().map(String::as_str).collect();
    let unknown = |why: &str| Value::Unknown(why.to_string());
    let rest = |from: usize| -> String {
        let v: Vec<&str> = w[from.min(w.len())..]
            .iter()
            .copied()
            .filter(|t| *t != ";")
            .collect();
        v.join(" ").replace(" , ", ", ")
    };
    match w.as_slice() {
        ["set", scope @ ("session" | "local"), "search_path", ..]
        | ["set", scope @ "search_path", ..] => {
            let at = if *scope == "search_path" { 2 } else { 3 };
            let at = if matches!(w.get(at), Some(&"to") | Some(&"=")) {
                at + 1
            } else {
                return vec![Change::SearchPath(unknown(&format!(
                    "changed by `{}`",
                    first_line(text)
                )))];
            };
            let value = rest(at);
            let v = if value == "default" {
                Value::Default
            } else if *scope == "local" {
                unknown(&format!(
                    "{value} inside a transaction block (SET LOCAL), else unchanged"
                ))
            } else {
                Value::Known(value)
            };
            vec![Change::SearchPath(v)]
        }
        ["reset", "search_path", ..] => vec![Change::SearchPath(Value::Default)],
        // `SET [SESSION | LOCAL] SCHEMA 'x'` is `SET search_path = 'x'`.
        ["set", scope @ ("session" | "local"), "schema", ..] | ["set", scope @ "schema", ..] => {
            let value = rest(if *scope == "schema" { 2 } else { 3 });
            vec![Change::SearchPath(if *scope == "local" {
                unknown(&format!(
                    "{value} inside a transaction block (SET LOCAL SCHEMA), else unchanged"
                ))
            } else {
                Value::Known(value)
            })]
        }
        ["set", "session", "authorization", ..] | ["reset", "session", "authorization", ..] => {
            vec![Change::Role(unknown("SET SESSION AUTHORIZATION"))]
        }
        ["set", scope @ ("session" | "local"), "role", ..] | ["set", scope @ "role", ..] => {
            let at = if *scope == "role" { 2 } else { 3 };
            let at = if matches!(w.get(at), Some(&"to") | Some(&"=")) {
                at + 1
            } else {
                at
            };
            let value = rest(at);
            let v = if value == "none" {
                Value::Known("the session's login role (SET ROLE NONE)".into())
            } else if value == "default" {
                Value::Default
            } else if *scope == "local" {
                unknown(&format!(
                    "{value} inside a transaction block (SET LOCAL), else unchanged"
                ))
            } else {
                Value::Known(value)
            };
            vec![Change::Role(v)]
        }
        ["reset", "role", ..] => vec![Change::Role(Value::Default)],
        ["reset", "all", ..] | ["discard", "all", ..] => vec![Change::ResetAll],
        ["commit" | "end", ..] | ["prepare", "transaction", ..] => {
            vec![Change::TxnEnd { rollback: false }]
        }
        ["rollback" | "abort", ..] => {
            vec![Change::TxnEnd { rollback: true }]
        }
        // An UPDATE of pg_settings is a SET of whatever its WHERE selects.
        _ if lower.contains("search_path")
            || lower.contains("set_config")
            || lower.contains("pg_settings") =>
        {
            vec![Change::SearchPath(unknown(&format!(
                "possibly changed by `{}`",
                first_line(text)
            )))]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
