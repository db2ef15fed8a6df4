//! Judging statements: what a statement is judged as (SQL-level prepared statements resolved
//! through the session's names), simple queries, decisions, denials and holds.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use proctor_gate::{Action, DenyCause, Event, Resolution, Statement};

use super::agent::{needs_settled_lex, unsettled};
use super::machine::{Ask, Out, Waiting};
use super::names::{Change, Key, Lookup, Prepared};
use super::*;
use crate::classify::{self, Classified, Judged};
use crate::durability::{Durability, TxStatus, durability};
use crate::wire::{Frame, Severity, error_bytes, put_error};

/// Leading keywords of statements that close or open portals by SQL: cursors, and the
/// transaction control that ends or rolls back the transactions portals live in.
pub(super) const PORTAL_COMMANDS: &[&str] = &[
    "CLOSE", "DECLARE", "ROLLBACK", "ABORT", "COMMIT", "END", "DISCARD", "DO", "CALL",
];

/// What judging one statement found: the facts it is judged by, and the text of the prepared
/// statement an `EXECUTE` runs.
pub(super) struct Resolved {
    pub info: Arc<Classified>,
    pub runs: Option<String>,
    /// A SQL `FETCH`/`MOVE` of a protocol portal: the portal's parameters, and a line added to
    /// the recorded text naming what it runs (the record holds no Parse or Bind of its own).
    pub portal: Option<(Vec<proctor_gate::Param>, String)>,
}

/// A statement that itself runs a statement by name (`EXECUTE`, `FETCH`/`MOVE`).
fn reaches_further(info: &Classified) -> bool {
    matches!(
        info.prepared,
        Some(SqlPrepared::Execute { .. } | SqlPrepared::Fetch { .. })
    )
}

/// A name that leads to another name (a prepared `FETCH`, a portal bound to an `EXECUTE`):
/// proctor follows one step, not chains, so the statement is `unknown` (held by default).
fn unknown_nested(info: &Classified, what: &str) -> Resolved {
    Resolved {
        info: Arc::new(Classified {
            class: proctor_gate::StatementClass::Unknown,
            command: info.command.clone(),
            tables: Vec::new(),
            note: Some(format!("{what}: runs another statement by name")),
            prepared: None,
            effects: crate::durability::Effects::Lasting,
        }),
        runs: None,
        portal: Some((
            Vec::new(),
            format!("\n-- proctor: {what}, which runs another statement by name"),
        )),
    }
}

impl Core {
    pub(super) fn statement_from(
        &mut self,
        judged: &Judged,
        info: &Arc<Classified>,
        extended: bool,
    ) -> Statement {
        let id = self.next_statement_id();
        let r = self.judged_info(id, info);
        let (params, line) = r.portal.unwrap_or_default();
        Statement {
            id,
            text: judged.text.clone() + &line,
            params,
            statement_name: String::new(),
            portal: String::new(),
            extended,
            class: r.info.class,
            command: r.info.command.clone(),
            tables: r.info.tables.clone(),
            reasoning: judged.reasoning.clone(),
            runs: r.runs,
        }
    }

    /// What statement `id` is judged by (an EXECUTE resolved to the statement the server
    /// holds); the changes it asks of the session's names are noted, to take effect when the
    /// server confirms the statement.
    pub(super) fn judged_info(&mut self, id: u64, info: &Arc<Classified>) -> Resolved {
        let mut resolved = self.resolve_sql_execute(info);
        // Judged under the search_path in force when it runs, not the one when it was read
        // (an EXECUTE of a PREPARE sent before the path changed); and what runs code may
        // change the path for what follows.
        if self.lex.catalog_shadowed {
            resolved.info = classify::shadowed(&resolved.info);
        }
        self.lex.catalog_shadowed |= classify::may_shadow_after(&resolved.info);
        // An EXECUTE of a known query or DML changes no names (what it runs cannot PREPARE,
        // DEALLOCATE or open portals); any other EXECUTE is taken to change them all, so the
        // same prepared SELECT can be executed twice without the second being `unknown`.
        let plain_execute = matches!(info.prepared, Some(SqlPrepared::Execute { .. }))
            && resolved.runs.is_some()
            && matches!(
                resolved.info.command.as_str(),
                "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "VALUES" | "TABLE"
            );
        if !plain_execute {
            self.note_sql_changes(id, info);
        }
        let prepares = matches!(info.prepared, Some(SqlPrepared::Prepare { .. }));
        let first = info.command.split(' ').next().unwrap_or("");
        if first == "DECLARE" && names::runs_code(&resolved.info) {
            self.names.code_cursor = true;
        }
        // A cursor's query runs when it is fetched (a WITH HOLD one also at COMMIT).
        let cursor_runs =
            self.names.code_cursor && matches!(first, "FETCH" | "MOVE" | "COMMIT" | "END");
        if (names::runs_code(&resolved.info) && !prepares) || cursor_runs {
            // What it runs (its own text, or the statement an EXECUTE or FETCH runs) may
            // change any name by dynamic SQL.
            self.names.push(Key::Statement(id), Change::CodeRan);
        }
        resolved
    }

    /// `EXECUTE name` is judged as the statement the server holds under `name` (protocol Parse
    /// and SQL PREPARE share one namespace), raised by what its arguments call. A name proctor
    /// does not know, or one whose change is not confirmed, stays `unknown`.
    fn resolve_sql_execute(&self, info: &Arc<Classified>) -> Resolved {
        if let Some(SqlPrepared::Execute { name, args_class }) = &info.prepared
            && let Lookup::Known(prepared) = self.names.statement(name)
        {
            if reaches_further(&prepared.judged.info) {
                // A protocol Parse may prepare `FETCH ALL FROM p`: its EXECUTE runs portal p.
                return unknown_nested(info, &format!("EXECUTE of {:?}", prepared.judged.text));
            }
            let mut c = Classified::clone(&prepared.judged.info);
            c.prepared = None;
            if let Some(a) = *args_class
                && a.danger() > c.class.danger()
            {
                c.class = a;
            }
            return Resolved {
                info: Arc::new(c),
                runs: Some(prepared.judged.text.clone()),
                portal: None,
            };
        }
        if let Some(SqlPrepared::Fetch { cursor }) = &info.prepared
            && let Some(r) = self.resolve_fetch(info, cursor)
        {
            return r;
        }
        Resolved {
            info: info.clone(),
            runs: None,
            portal: None,
        }
    }

    /// `FETCH`/`MOVE` of a name that is (or was) a protocol portal runs that portal's
    /// statement: a `DELETE ... RETURNING` bound and never executed runs at the FETCH, every
    /// row of it. It is judged as the statement the portal was bound to (class, command,
    /// tables; policy reads its text), with the portal's parameters; a portal proctor does not
    /// know (forgotten, not confirmed, unknown at Bind) is `unknown`. `None`: a plain SQL
    /// cursor, judged at its DECLARE.
    fn resolve_fetch(&self, info: &Arc<Classified>, cursor: &str) -> Option<Resolved> {
        let known = match self.names.portal(cursor) {
            Lookup::Known(p) => match &p.judged {
                Some(j) if reaches_further(&j.info) => {
                    return Some(unknown_nested(
                        info,
                        &format!("FETCH of portal {cursor:?}, bound to {:?}", j.text),
                    ));
                }
                j => j.as_ref().map(|j| (p, j)),
            },
            Lookup::Absent if !self.names.ever_bound(cursor) => return None,
            Lookup::Absent | Lookup::Wait => None,
        };
        let command = info.command.clone();
        Some(match known {
            Some((p, j)) => {
                let mut c = Classified::clone(&j.info);
                c.prepared = None;
                if c.effects != crate::durability::Effects::Code {
                    c.effects = crate::durability::Effects::Lasting;
                }
                Resolved {
                    info: Arc::new(c),
                    runs: Some(j.text.clone()),
                    portal: Some((
                        p.params.clone(),
                        format!(
                            "\n-- proctor: this {command} runs protocol portal {cursor:?}, bound to {:?}",
                            j.text
                        ),
                    )),
                }
            }
            None => Resolved {
                info: Arc::new(Classified {
                    class: proctor_gate::StatementClass::Unknown,
                    command: command.clone(),
                    tables: Vec::new(),
                    note: Some(format!(
                        "{command} of protocol portal {cursor:?}, whose statement proctor does not know"
                    )),
                    prepared: None,
                    effects: crate::durability::Effects::Lasting,
                }),
                runs: None,
                portal: Some((
                    Vec::new(),
                    format!(
                        "\n-- proctor: this {command} may run protocol portal {cursor:?}, whose statement proctor does not know"
                    ),
                )),
            },
        })
    }

    fn note_sql_changes(&mut self, id: u64, info: &Classified) {
        let key = Key::Statement(id);
        match &info.prepared {
            Some(SqlPrepared::Prepare {
                name,
                command,
                body,
            }) => {
                let runs = Classified {
                    class: info.class,
                    command: command.clone(),
                    tables: info.tables.clone(),
                    note: None,
                    prepared: None,
                    // What an `EXECUTE` runs is judged without its arguments: it waits.
                    // (`Code` stays: what the body calls may change names.)
                    effects: match info.effects {
                        crate::durability::Effects::Code => info.effects,
                        _ => crate::durability::Effects::Lasting,
                    },
                };
                let judged = Judged {
                    text: body.clone(),
                    reasoning: None,
                    info: Arc::new(runs),
                };
                let prepared = Prepared {
                    judged: Arc::new(judged),
                    columns: None,
                    param_types: Arc::from([]),
                };
                self.names
                    .push(key, Change::Statement(name.clone(), prepared));
            }
            Some(SqlPrepared::Deallocate(Some(name))) => {
                self.names.push(key, Change::CloseStatement(name.clone()));
            }
            Some(SqlPrepared::Deallocate(None)) => self.names.push(key, Change::ForgetStatements),
            _ => {}
        }
        let first = info.command.split(' ').next().unwrap_or("");
        let unknown = info.class == proctor_gate::StatementClass::Unknown;
        if unknown || first == "DO" {
            // Dynamic SQL can PREPARE or DEALLOCATE behind proctor's back (`CodeRan`, pushed
            // by `judged_info`, also covers a failure half-way).
            self.names.push(key, Change::ForgetStatements);
        }
        if unknown
            || PORTAL_COMMANDS.contains(&first)
            || (first == "PREPARE" && info.prepared.is_none())
        {
            self.names.push(key, Change::ForgetPortals);
        }
    }

    /// Statements that will not run: what they asked of the names is dropped.
    pub(super) fn drop_changes(&mut self, ids: impl IntoIterator<Item = u64>) {
        for id in ids {
            self.names.discard(Key::Statement(id));
        }
    }

    pub(super) fn simple_query(&mut self, frame: Frame, text: &str) -> Result<(), End> {
        self.lex.catalog_shadowed |= classify::shadows_catalog(text);
        let mut judged = classify::classify_query(text, self.lex);
        if self.statement_in_block && needs_settled_lex(text) {
            for j in &mut judged {
                j.info = unsettled(&j.info);
            }
        }
        let mut rest = VecDeque::with_capacity(judged.len());
        let mut ids = Vec::with_capacity(judged.len());
        let tx = self.tx_status();
        let mut overlap = true;
        for j in judged {
            let id = self.next_statement_id();
            let r = self.judged_info(id, &j.info);
            overlap &= durability(&r.info, r.runs.is_some(), tx) == Durability::BeforeAnswer;
            ids.push(id);
            let (params, line) = r.portal.unwrap_or_default();
            rest.push_back(Statement {
                id,
                text: j.text + &line,
                params,
                statement_name: String::new(),
                portal: String::new(),
                extended: false,
                class: r.info.class,
                command: r.info.command.clone(),
                tables: r.info.tables.clone(),
                reasoning: j.reasoning,
                runs: r.runs,
            });
        }
        self.judge_query(frame, ids, rest, overlap);
        Ok(())
    }

    /// Decides the statements of a simple query in order; forwards the message once all are
    /// allowed. `overlap`: every statement may be forwarded before its record is durable
    /// (`durability`), its answer held back until it is.
    pub(super) fn judge_query(
        &mut self,
        frame: Frame,
        ids: Vec<u64>,
        mut rest: VecDeque<Statement>,
        overlap: bool,
    ) {
        if rest.is_empty() {
            return self.query_allowed(frame, ids);
        }
        // All statements of the message are judged in one batch (one durable write); the gate
        // stops at the first one that is not allowed.
        let (ask, actions) = if overlap {
            let actions = rest.iter().cloned().map(Action::Statement).collect();
            (Ask::Overlapped, actions)
        } else if rest.len() == 1 {
            (Ask::One, rest.drain(..).map(Action::Statement).collect())
        } else {
            let actions = rest.iter().cloned().map(Action::Statement).collect();
            (Ask::All, actions)
        };
        self.ask(
            ask,
            actions,
            Waiting::Query {
                frame,
                ids,
                rest,
                overlap,
                ask,
            },
        );
    }

    /// The gate's decisions on (the next batch of) a simple query's statements.
    pub(super) fn query_verdict(
        &mut self,
        frame: Frame,
        ids: Vec<u64>,
        mut rest: VecDeque<Statement>,
        overlap: bool,
        ask: Ask,
        decisions: Vec<Verdict>,
    ) -> Result<(), End> {
        if decisions.is_empty() {
            return Err(End::Recorder("the gate returned no decision".into()));
        }
        if ask != Ask::One {
            rest.drain(..decisions.len().min(rest.len()));
        }
        for d in decisions {
            match d {
                Verdict::Allow => {}
                Verdict::Deny { rule, reason } => {
                    self.drop_changes(ids.iter().copied());
                    self.deny_message(&rule, &reason, true);
                    return Ok(());
                }
                Verdict::Held(hold) => {
                    self.hold_notice(&hold);
                    self.paused = Some(Paused {
                        hold,
                        cont: Cont::Query { frame, ids, rest },
                    });
                    return Ok(());
                }
            }
        }
        self.judge_query(frame, ids, rest, overlap);
        Ok(())
    }

    /// Every statement of the query was allowed: it goes to the server.
    fn query_allowed(&mut self, frame: Frame, ids: Vec<u64>) {
        self.forward(&frame);
        // A Query ends a block, unless the server is skipping up to a Sync after an error (it
        // then skips the Query too, and its block goes on to that Sync).
        if !self.server_skipping() {
            self.sync_point();
        }
        self.last_forwarded = ids.last().copied().unwrap_or(self.last_forwarded);
        self.expect_reply(Expect::Query(Box::new(QueryRun {
            ids,
            idx: 0,
            acc: None,
            next_start: Instant::now(),
        })));
        self.bound();
    }

    /// The transaction status the next statement runs in, on the server's word: the last
    /// ReadyForQuery's, unless something forwarded since may have changed it.
    pub(super) fn tx_status(&self) -> TxStatus {
        let unanswered = self.statement_in_block
            || self.copy_in
            || self.skip_until_sync
            || self.server_skipping()
            || self.expect.iter().any(|e| {
                matches!(
                    e,
                    Expect::Execute(_)
                        | Expect::Query(_)
                        | Expect::FunctionCall(_)
                        | Expect::Sync { .. }
                        | Expect::CopyEnd
                )
            });
        if unanswered {
            TxStatus::Unsettled
        } else {
            TxStatus::from_ready(self.status)
        }
    }

    /// Everything queued to the agent from now on waits until the ticket just given resolves.
    pub(super) fn hold_answers(&mut self) {
        let mark = self.release.mark(self.cout.len());
        self.release.hold(mark);
    }

    pub(super) fn hold_notice(&mut self, hold: &HoldInfo) {
        let text = self
            .cfg
            .hold_notice
            .replace("{id}", &hold.approval_id)
            .replace("{rule}", &hold.rule)
            .replace("{reason}", &hold.reason);
        // Notices may arrive at any time, so this goes out at once.
        put_error(&mut self.cout, Severity::Notice, "00000", &text);
    }

    pub(super) fn deny_message(&mut self, rule: &str, reason: &str, ready: bool) {
        let msg = format!("proctor: statement denied by rule {rule}: {reason}");
        // Too large is a program limit (the driver may split it), not a missing permission.
        let code = if rule == proctor_gate::RULE_STATEMENT_SIZE {
            "54000"
        } else {
            "42501"
        };
        self.inject(error_bytes(Severity::Error, code, &msg), ready);
    }

    pub(super) fn hold_resolved(
        &mut self,
        res: Resolution,
        killed: Option<String>,
    ) -> Result<(), End> {
        let Some(paused) = self.paused.take() else {
            return Ok(());
        };
        let approval_id = paused.hold.approval_id.clone();
        match res {
            Resolution::Allow => match paused.cont {
                // Approved: it was durable before it was held, and waits as it did.
                Cont::Query { frame, ids, rest } => {
                    self.judge_query(frame, ids, rest, false);
                    Ok(())
                }
                Cont::Execute {
                    frame,
                    id,
                    portal,
                    statement,
                    result_formats,
                } => {
                    self.forward_execute(&frame, id, portal, statement, result_formats);
                    Ok(())
                }
                Cont::FunctionCall { frame, id, columns } => {
                    self.forward_function_call(&frame, id, columns);
                    Ok(())
                }
            },
            Resolution::Deny {
                rule,
                reason,
                cause,
            } => {
                match &paused.cont {
                    Cont::Query { ids, .. } => self.drop_changes(ids.clone()),
                    Cont::Execute { id, .. } | Cont::FunctionCall { id, .. } => {
                        self.drop_changes([*id])
                    }
                }
                let (code, msg) = match cause {
                    DenyCause::Timeout => (
                        "57014",
                        format!("proctor: approval {approval_id} timed out; statement not run"),
                    ),
                    DenyCause::Killed => {
                        let reason = killed.unwrap_or(reason);
                        return Err(End::Killed(reason));
                    }
                    DenyCause::Approver => (
                        "42501",
                        format!("proctor: approval {approval_id} denied: {reason}"),
                    ),
                    DenyCause::Policy => (
                        "42501",
                        format!("proctor: statement denied by rule {rule}: {reason}"),
                    ),
                };
                // A FunctionCall, like a Query, is answered with ReadyForQuery.
                let ready = !matches!(paused.cont, Cont::Execute { .. });
                self.inject(error_bytes(Severity::Error, code, &msg), ready);
                if !ready {
                    self.skip_until_sync = true;
                }
                Ok(())
            }
        }
    }

    /// A CancelRequest with this session's key: withdraw the held statement if there is one,
    /// otherwise pass the cancel on to the target backend. Either way it is recorded in this
    /// session.
    pub(super) fn cancel_requested(&mut self) -> Result<(), End> {
        let Some(paused) = self.paused.take() else {
            let running = self.expect.iter().any(|e| {
                matches!(
                    e,
                    Expect::Execute(_) | Expect::Query(_) | Expect::FunctionCall(_)
                )
            });
            self.events.push(Event::TargetMessage {
                kind: "cancel_request".into(),
                text: if running {
                    "a CancelRequest for this session was passed to the target backend".into()
                } else {
                    "a CancelRequest for this session was passed to the target backend \
                     (no statement was running)"
                        .into()
                },
            });
            self.out.push_back(Out::CancelBackend);
            return Ok(());
        };
        let ready = !matches!(paused.cont, Cont::Execute { .. });
        match &paused.cont {
            Cont::Query { ids, .. } => self.drop_changes(ids.clone()),
            Cont::Execute { id, .. } | Cont::FunctionCall { id, .. } => self.drop_changes([*id]),
        }
        // Dropping the hold cancels the approval.
        let id = paused.hold.approval_id.clone();
        self.out.push_back(Out::Withdraw(id.clone()));
        self.events.push(Event::TargetMessage {
            kind: "cancel_request".into(),
            text: format!("a CancelRequest withdrew the held statement (approval {id})"),
        });
        self.inject(
            error_bytes(
                Severity::Error,
                "57014",
                &format!("canceling statement due to user request (approval {id} withdrawn)"),
            ),
            ready,
        );
        if !ready {
            self.skip_until_sync = true;
        }
        Ok(())
    }
}
