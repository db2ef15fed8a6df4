//! Asking the target which prepared statements it holds, after code proctor cannot see into
//! may have changed them (issue 12: the model changes only on the server's word).
//!
//! A statement that runs code (a user function, `DO`, `CALL`, ...) makes proctor forget every
//! statement name ([`super::names::Change::CodeRan`]): dynamic SQL may have re-prepared any of
//! them. When a client message then uses a forgotten name (protocol Bind, SQL `EXECUTE`) and
//! the server is idle at a sync point (ReadyForQuery `I` or `T`, nothing forwarded unanswered),
//! the core sends [`QUERY`] on the same backend as a simple Query of its own, holds the client's
//! message (and everything after it) until the answer is in, consumes the answer (it never
//! reaches the client), rebuilds the statement names from it, records what it asked and
//! learnt, and only then judges the waiting message.
//!
//! What the answer is trusted for, and what stays `unknown`:
//! - the view is schema-qualified (`pg_catalog` cannot be shadowed by a role without
//!   superuser, and a qualified name does not go through `search_path`); no function is
//!   called, so no user code runs;
//! - a protocol statement's `statement` is the Parse text itself; a SQL `PREPARE`'s is the
//!   whole query string that held it, so the `PREPARE` of that name is found in it with the
//!   real splitter, and must be found exactly once;
//! - text whose reading depends on session settings (a backslash, a non-ASCII byte: see
//!   [`super::agent::needs_settled_lex`]) may have been read under settings proctor does not
//!   know: the name stays `unknown`;
//! - the unnamed statement is not listed by the server: after code it stays `unknown`;
//! - a name the server does not list does not exist: its use fails at the server.
//!
//! This module does no I/O: it builds the query, reads the answer's frames, and turns rows
//! into [`Prepared`] entries.

use std::sync::Arc;

use bytes::BytesMut;

use proctor_gate::Event;

use super::names::{Lookup, MAX_NAMES, Prepared, server_name};
use super::*;
use crate::classify::{self, Classified, Judged, LexContext};
use crate::frontend;
use crate::wire::{ErrorFields, Reader, lossy};

/// Whether a client message must wait for an introspection.
pub(super) enum Need {
    /// Judge it now (it uses no forgotten name, or the server cannot be asked: `unknown`).
    No,
    /// The server is still answering earlier blocks (or an introspection): look again then.
    Wait,
    /// Ask the server now, for the message described.
    Ask(String),
}

impl Core {
    /// Whether `frame` uses a statement name proctor forgot after code ran, and if so whether
    /// the server can be asked about it now: only at a sync point (nothing of the current
    /// block forwarded), with nothing pending, and in a transaction that is not failed (a
    /// query there would fail: the name stays `unknown`).
    pub(super) fn introspection_need(&self, frame: &Frame) -> Need {
        if !self.names.statements_stale()
            || self.block_open
            || self.skip_until_sync
            || self.server_skipping()
            || self.copy_in
            || self.ignore_syncs_in_copy
        {
            return Need::No;
        }
        let Some(asked_for) = self.forgotten_use(frame) else {
            return Need::No;
        };
        let in_flight = self
            .expect
            .iter()
            .any(|e| !matches!(e, Expect::Inject { .. } | Expect::CopyEnd));
        if in_flight {
            // Earlier blocks (or an introspection) are answered first; the message is looked
            // at again then.
            return Need::Wait;
        }
        if !self.names.is_settled() || !matches!(self.status, b'I' | b'T') {
            return Need::No;
        }
        Need::Ask(asked_for)
    }

    /// The forgotten name `frame` uses, described for the record.
    fn forgotten_use(&self, frame: &Frame) -> Option<String> {
        let forgotten = |name: &str| {
            self.names.forgotten_statement(name)
                && matches!(self.names.statement(name), Lookup::Absent)
        };
        match frame.tag {
            b'B' => {
                let name = frontend::bind_statement(frame).ok()?;
                forgotten(&name).then(|| format!("a Bind of statement {name:?}"))
            }
            b'Q' => {
                let text = frontend::query_text(frame).ok()?;
                if !text.to_ascii_lowercase().contains("execute") {
                    return None;
                }
                classify::classify_query(&text, self.lex)
                    .iter()
                    .find_map(|j| match &j.info.prepared {
                        Some(SqlPrepared::Execute { name, .. }) if forgotten(name) => {
                            Some(format!("EXECUTE of statement {name:?}"))
                        }
                        _ => None,
                    })
            }
            _ => None,
        }
    }

    /// Sends [`QUERY`] to the target; its answer is consumed by [`Core::introspection_answer`].
    pub(super) fn start_introspection(&mut self, asked_for: String) {
        tracing::debug!(session = %self.session_id, "postgres: asking the target its prepared statements before judging {asked_for}");
        query_message(&mut self.tout);
        self.expect
            .push_back(Expect::Introspect(Box::new(Introspection::new(asked_for))));
    }

    /// A target message while an introspection is at the head of the answers: `true` when it
    /// was part of the answer (consumed, never forwarded to the client).
    pub(super) fn introspection_answer(&mut self, tag: u8, body: &[u8]) -> Result<bool, End> {
        let Some(Expect::Introspect(intro)) = self.expect.front_mut() else {
            return Ok(false);
        };
        match tag {
            b'T' | b'C' | b'I' => {}
            b'D' => intro.data_row(body),
            b'E' => {
                let f = ErrorFields::parse(body);
                if f.is_fatal() {
                    return Err(End::TargetLost(format!(
                        "the target ended the session while proctor asked its prepared \
                         statements: {} {}",
                        f.code, f.message
                    )));
                }
                intro.error = Some(f);
            }
            b'Z' => {
                self.status = body.first().copied().unwrap_or(b'I');
                if let Some(Expect::Introspect(intro)) = self.expect.pop_front() {
                    self.introspection_done(*intro)?;
                }
                self.emit_ready_injects();
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn introspection_done(&mut self, intro: Introspection) -> Result<(), End> {
        let failed = match (&intro.error, &intro.spoiled) {
            (Some(e), _) => Some(format!("the target answered {} {}", e.code, e.message)),
            (None, Some(why)) => Some(why.clone()),
            (None, None) => None,
        };
        if let Some(why) = failed {
            self.names.give_up_learning();
            self.events.push(Event::TargetMessage {
                kind: "names_learnt".into(),
                text: format!(
                    "asked the target (before judging {}): {QUERY}\nnothing learnt: {why}",
                    intro.asked_for
                ),
            });
            if self.status == b'E' {
                // Proctor's own query failed the client's transaction: the client could not
                // know why its next statements fail. Fail closed.
                return Err(End::Target(format!(
                    "proctor's look-up of prepared statements failed inside the client's \
                     transaction: {}",
                    intro.error.map(|e| e.message).unwrap_or_default()
                )));
            }
            return Ok(());
        }
        let mut learnt = Vec::with_capacity(intro.rows.len());
        let mut seen = Vec::with_capacity(intro.rows.len());
        for row in &intro.rows {
            let Some(name) = server_name(&row.name).map(str::to_string) else {
                seen.push((row.name.clone(), Err("a name proctor cannot key")));
                continue;
            };
            match learn(row, self.lex) {
                Learnt::Known(p) => {
                    seen.push((name.clone(), Ok(p.judged.text.clone())));
                    learnt.push((name, Some(p)));
                }
                Learnt::Unknown(why) => {
                    seen.push((name.clone(), Err(why)));
                    learnt.push((name, None));
                }
            }
        }
        self.names.learn_statements(learnt);
        self.events.push(Event::TargetMessage {
            kind: "names_learnt".into(),
            text: describe(&intro.asked_for, &seen),
        });
        Ok(())
    }
}

/// What proctor asks (schema-qualified throughout; the cast is to a built-in type).
pub(super) const QUERY: &str = "SELECT name, statement, from_sql, \
     parameter_types::pg_catalog.oid[]::pg_catalog.text \
     FROM pg_catalog.pg_prepared_statements";

/// Most bytes of answer kept: one agent's many or huge statements cannot exhaust memory; past
/// it nothing is learnt (every forgotten name stays `unknown`).
const MAX_ANSWER_BYTES: usize = 16 << 20;

/// One row of the answer.
pub(super) struct Row {
    pub name: String,
    pub statement: String,
    pub from_sql: bool,
    pub param_types: Option<Vec<u32>>,
}

/// An introspection in flight: the answer as it streams back.
#[derive(Default)]
pub(super) struct Introspection {
    pub rows: Vec<Row>,
    bytes: usize,
    /// The answer could not be used whole (too large, a row that does not read).
    pub spoiled: Option<String>,
    pub error: Option<ErrorFields>,
    /// The client message it was asked for, for the record.
    pub asked_for: String,
}

impl Introspection {
    pub fn new(asked_for: String) -> Introspection {
        Introspection {
            asked_for,
            ..Introspection::default()
        }
    }

    /// A DataRow of the answer.
    pub fn data_row(&mut self, body: &[u8]) {
        if self.spoiled.is_some() {
            return;
        }
        self.bytes = self.bytes.saturating_add(body.len());
        if self.bytes > MAX_ANSWER_BYTES || self.rows.len() >= MAX_NAMES {
            self.spoiled = Some("the answer is larger than proctor keeps".into());
            self.rows = Vec::new();
            return;
        }
        match read_row(body) {
            Some(r) => self.rows.push(r),
            None => {
                self.spoiled = Some("a row proctor could not read".into());
                self.rows = Vec::new();
            }
        }
    }
}

/// The simple Query message carrying [`QUERY`].
pub(super) fn query_message(out: &mut BytesMut) {
    let len = 4 + QUERY.len() + 1;
    out.extend_from_slice(b"Q");
    out.extend_from_slice(&(len as i32).to_be_bytes());
    out.extend_from_slice(QUERY.as_bytes());
    out.extend_from_slice(&[0]);
}

fn read_row(body: &[u8]) -> Option<Row> {
    let mut r = Reader::new(body, "DataRow");
    let n = r.count(4).ok()?;
    if n != 4 {
        return None;
    }
    let mut cols: Vec<Option<&[u8]>> = Vec::with_capacity(4);
    for _ in 0..n {
        let len = r.i32().ok()?;
        if len < 0 {
            cols.push(None);
        } else {
            cols.push(Some(r.take(usize::try_from(len).ok()?).ok()?));
        }
    }
    r.finish().ok()?;
    Some(Row {
        name: lossy(cols[0]?),
        statement: lossy(cols[1]?),
        from_sql: cols[2]? == b"t",
        param_types: parse_oids(cols[3]?),
    })
}

/// `{23,25}` (an `oid[]` as text); `None` if it does not read as that.
fn parse_oids(text: &[u8]) -> Option<Vec<u32>> {
    let s = std::str::from_utf8(text).ok()?;
    let inner = s.strip_prefix('{')?.strip_suffix('}')?;
    if inner.is_empty() {
        return Some(Vec::new());
    }
    inner.split(',').map(|t| t.parse().ok()).collect()
}

/// Why a listed name stays `unknown`, or what it holds.
pub(super) enum Learnt {
    Known(Prepared),
    Unknown(&'static str),
}

/// What the server holds under `row.name`, read as the server read it, or why proctor cannot
/// be sure.
pub(super) fn learn(row: &Row, lex: LexContext) -> Learnt {
    if super::agent::needs_settled_lex(&row.statement) {
        return Learnt::Unknown("its text may have been read under other settings");
    }
    let types: Arc<[u32]> = match &row.param_types {
        Some(t) => Arc::from(t.as_slice()),
        None => return Learnt::Unknown("its parameter types did not read"),
    };
    if !row.from_sql {
        let judged = classify::classify_prepared(&row.statement, lex);
        return Learnt::Known(Prepared {
            judged: Arc::new(judged),
            columns: None,
            param_types: types,
        });
    }
    let mut found = None;
    let mut count = 0;
    for j in classify::classify_query(&row.statement, lex) {
        if let Some(classify::SqlPrepared::Prepare {
            name,
            command,
            body,
        }) = &j.info.prepared
            && server_name(name) == Some(row.name.as_str())
        {
            count += 1;
            found = Some(sql_prepared(&j.info, command, body, types.clone()));
        }
    }
    match (count, found) {
        (1, Some(p)) => Learnt::Known(p),
        (0, _) => Learnt::Unknown("no PREPARE of that name in the text that held it"),
        _ => Learnt::Unknown("more than one PREPARE of that name in the text that held it"),
    }
}

/// What a SQL `PREPARE name AS body` puts under `name`: judged as the body, without the
/// arguments an `EXECUTE` adds (so it waits for its records, as any EXECUTE does).
pub(super) fn sql_prepared(
    info: &Classified,
    command: &str,
    body: &str,
    param_types: Arc<[u32]>,
) -> Prepared {
    let runs = Classified {
        class: info.class,
        command: command.to_string(),
        tables: info.tables.clone(),
        note: None,
        prepared: None,
        // `Code` stays: what the body calls may change names.
        effects: match info.effects {
            crate::durability::Effects::Code => info.effects,
            _ => crate::durability::Effects::Lasting,
        },
    };
    Prepared {
        judged: Arc::new(Judged {
            text: body.to_string(),
            reasoning: None,
            info: Arc::new(runs),
        }),
        columns: None,
        param_types,
    }
}

/// The record of an introspection: what was asked, and per name what was learnt.
pub(super) fn describe(asked_for: &str, rows: &[(String, Result<String, &'static str>)]) -> String {
    let mut s = format!("asked the target (before judging {asked_for}): {QUERY}");
    if rows.is_empty() {
        s.push_str("\nthe target holds no named prepared statement");
    }
    for (name, what) in rows {
        match what {
            Ok(text) => s.push_str(&format!("\nstatement {name:?} holds {text:?}")),
            Err(why) => s.push_str(&format!("\nstatement {name:?} stays unknown: {why}")),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, statement: &str, from_sql: bool) -> Row {
        Row {
            name: name.into(),
            statement: statement.into(),
            from_sql,
            param_types: Some(Vec::new()),
        }
    }

    fn text(l: Learnt) -> Result<String, &'static str> {
        match l {
            Learnt::Known(p) => Ok(p.judged.text.clone()),
            Learnt::Unknown(w) => Err(w),
        }
    }

    #[test]
    fn the_prepare_of_that_name_is_found_in_the_text_that_held_it() {
        let lex = LexContext::default();
        let r = row(
            "q",
            "SELECT 1; PREPARE r AS SELECT 2; PREPARE q AS DELETE FROM accounts",
            true,
        );
        assert_eq!(text(learn(&r, lex)).as_deref(), Ok("DELETE FROM accounts"));
        let twice = row(
            "q",
            "PREPARE q AS SELECT 1; DEALLOCATE q; PREPARE Q AS DELETE FROM accounts",
            true,
        );
        assert!(text(learn(&twice, lex)).is_err());
        let hidden = row("q", "SELECT 'PREPARE q AS SELECT 1'", true);
        assert!(text(learn(&hidden, lex)).is_err());
        let escaped = row("q", "PREPARE q AS SELECT E'\\' ; DELETE FROM a'", true);
        assert!(text(learn(&escaped, lex)).is_err());
        let parse = row("s", "DELETE FROM accounts WHERE id = $1", false);
        let Learnt::Known(p) = learn(&parse, lex) else {
            panic!("a Parse text is what it is");
        };
        assert_eq!(p.judged.info.class, proctor_gate::StatementClass::Write);
    }

    #[test]
    fn rows_and_oid_arrays_read_strictly() {
        assert_eq!(parse_oids(b"{23,25}"), Some(vec![23, 25]));
        assert_eq!(parse_oids(b"{}"), Some(vec![]));
        assert_eq!(parse_oids(b"{23,x}"), None);
        let mut body = Vec::new();
        body.extend_from_slice(&4i16.to_be_bytes());
        for col in [&b"q"[..], b"SELECT 1", b"f", b"{}"] {
            body.extend_from_slice(&(col.len() as i32).to_be_bytes());
            body.extend_from_slice(col);
        }
        let r = read_row(&body).expect("a row");
        assert_eq!((r.name.as_str(), r.from_sql), ("q", false));
        assert!(read_row(&body[..body.len() - 1]).is_none());
    }
}
