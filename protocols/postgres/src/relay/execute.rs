//! Execute: judging the portal the server will run, batching the Executes of a pipeline into
//! one decision, and forwarding.

use std::collections::HashMap;
use std::sync::Arc;

use proctor_gate::{Action, Statement, StatementClass};

use super::agent::needs_settled_lex;
use super::judge::PORTAL_COMMANDS;
use super::machine::{Ask, ExecWait, Out, Waiting};
use super::names::{Lookup, server_name};
use super::*;
use crate::classify::{self, Judged};
use crate::durability::{Durability, TxStatus, durability};
use crate::frontend;
use crate::results::ResultAcc;
use crate::wire::Frame;

/// A portal bound during the look-ahead: statement name, its classification, parameters, and
/// whether an Execute already ran it.
type LookaheadPortal = (
    String,
    Option<Arc<Judged>>,
    Vec<proctor_gate::Param>,
    bool,
    Arc<[u32]>,
);

fn unknown_statement(id: u64, portal: String) -> Statement {
    Statement {
        id,
        text: String::new(),
        params: Vec::new(),
        statement_name: String::new(),
        portal,
        extended: true,
        class: StatementClass::Unknown,
        command: String::new(),
        tables: Vec::new(),
        reasoning: None,
        runs: None,
    }
}

/// Whether running this statement may change the session's names: its effects must be
/// confirmed before a later Execute is judged, so the look-ahead stops before it.
fn changes_names(judged: &Judged) -> bool {
    let first = judged.info.command.split(' ').next().unwrap_or("");
    judged.info.prepared.is_some()
        || judged.info.class == StatementClass::Unknown
        || first == "PREPARE"
        || PORTAL_COMMANDS.contains(&first)
        || super::names::runs_code(&judged.info)
}

/// The statement may be forwarded before its record is durable (issue 15).
fn answer_only(judged: &Judged, tx: TxStatus) -> bool {
    durability(&judged.info, false, tx) == Durability::BeforeAnswer
}

impl Core {
    pub(super) fn execute(&mut self, frame: Frame, portal_name: String) -> Result<(), End> {
        let portal = match self.names.portal(&portal_name) {
            Lookup::Known(p) => p,
            // Unknown to proctor (never bound, refused by the server, forgotten, or opened by
            // SQL): judged as unknown rather than let through unseen. (`must_wait` holds back
            // an Execute whose portal would wait.)
            Lookup::Absent | Lookup::Wait => {
                let stmt = unknown_statement(self.next_statement_id(), portal_name.clone());
                let wait = ExecWait {
                    frame,
                    id: stmt.id,
                    portal: portal_name,
                    statement: String::new(),
                    result_formats: Vec::new(),
                    lookahead: Vec::new(),
                };
                self.ask(
                    Ask::One,
                    vec![Action::Statement(stmt)],
                    Waiting::Execute(Box::new(wait)),
                );
                return Ok(());
            }
        };
        if let Some(id) = portal.executed {
            // Fetching more rows of a statement that was already allowed.
            let statement = portal.statement.clone();
            let formats = portal.result_formats.clone();
            self.forward_execute(&frame, id, portal_name, statement, formats);
            return Ok(());
        }
        let statement = portal.statement.clone();
        let formats = portal.result_formats.clone();
        let params = portal.params.clone();
        let types = super::names::binary_types(&params, &portal.param_types);
        let judged = portal.judged.clone().map(|j| self.shadowed_now(j));
        if let Some(p) = self.predecided.pop_front() {
            let matches =
                p.portal == portal_name && judged.as_ref().is_some_and(|j| j.text == p.text);
            if matches {
                return self.apply_execute_decision(
                    frame,
                    p.decision,
                    p.id,
                    portal_name,
                    statement,
                    formats,
                );
            }
            // Cannot happen unless the look-ahead misread the pipeline: judge afresh (a held
            // decision's approval is withdrawn).
            tracing::warn!(
                session = self.session_id,
                "postgres: pipelined decision did not match its Execute; judging it again"
            );
            for p in std::iter::once(p).chain(self.predecided.drain(..)) {
                if let Verdict::Held(h) = p.decision {
                    self.out.push_back(Out::Withdraw(h.approval_id));
                }
            }
        }
        let batchable = judged.as_ref().is_some_and(|j| !changes_names(j));
        let tx = self.tx_status();
        let overlap = judged.as_ref().is_some_and(|j| answer_only(j, tx));
        let mut stmt = match &judged {
            Some(j) => self.statement_from(j, &j.info, true),
            None => unknown_statement(self.next_statement_id(), String::new()),
        };
        stmt.params = params;
        if let Some(t) = types {
            self.out.push_back(Out::ParamTypes {
                statement: stmt.id,
                types: t,
            });
        }
        stmt.statement_name = statement.clone();
        stmt.portal = portal_name.clone();
        let mut wait = ExecWait {
            frame,
            id: stmt.id,
            portal: portal_name,
            statement,
            result_formats: formats,
            lookahead: Vec::new(),
        };
        let (ask, actions) = if batchable {
            self.with_lookahead(stmt, overlap, tx, &mut wait.lookahead)
        } else {
            (Ask::One, vec![Action::Statement(stmt)])
        };
        self.ask(ask, actions, Waiting::Execute(Box::new(wait)));
        Ok(())
    }

    /// Judges an Execute, together with the Executes of the same pipeline already waiting in
    /// the client buffer: one durable write for the batch instead of one per statement
    /// (`lookahead` gets the later ones' portal, id and text). When `overlap` and every Execute
    /// of the batch may be forwarded before its record is durable (judged under `tx`, the
    /// status before the batch, which none of them can end), the answers are held back instead
    /// (`hold_answers`).
    fn with_lookahead(
        &mut self,
        stmt: Statement,
        overlap: bool,
        tx: TxStatus,
        lookahead: &mut Vec<(String, u64, String)>,
    ) -> (Ask, Vec<Action>) {
        let extra = self.lookahead_executes(tx);
        let overlap = overlap && extra.iter().all(|(_, _, o)| *o);
        if extra.is_empty() && !overlap {
            return (Ask::One, vec![Action::Statement(stmt)]);
        }
        lookahead.extend(
            extra
                .iter()
                .map(|(p, s, _)| (p.clone(), s.id, s.text.clone())),
        );
        let mut actions = Vec::with_capacity(extra.len() + 1);
        actions.push(Action::Statement(stmt));
        actions.extend(extra.into_iter().map(|(_, s, _)| Action::Statement(s)));
        let ask = if overlap { Ask::Overlapped } else { Ask::All };
        (ask, actions)
    }

    /// The gate's decisions on an Execute and the pipeline's Executes judged with it.
    pub(super) fn execute_verdict(
        &mut self,
        w: ExecWait,
        decisions: Vec<Verdict>,
    ) -> Result<(), End> {
        let mut decisions = decisions.into_iter();
        let Some(first) = decisions.next() else {
            return Err(End::Recorder("the gate returned no decision".into()));
        };
        for ((portal, id, text), decision) in w.lookahead.into_iter().zip(decisions) {
            self.predecided.push_back(Predecided {
                portal,
                id,
                text,
                decision,
            });
        }
        self.apply_execute_decision(
            w.frame,
            first,
            w.id,
            w.portal,
            w.statement,
            w.result_formats,
        )?;
        self.bound();
        Ok(())
    }

    /// Statements of the Executes that follow in the client buffer (complete frames only),
    /// built as processing them would build them: Parse and Bind frames on the way are read
    /// into an overlay, Describe and Flush are passed over. It stops at a Sync (a later block
    /// runs even when this one fails, so its names are judged once this block is answered),
    /// after a statement that may change names or settings, and at anything it cannot judge
    /// exactly as processing would. Consumes statement ids in order.
    fn lookahead_executes(&mut self, tx: TxStatus) -> Vec<(String, Statement, bool)> {
        let mut out = Vec::new();
        let mut off = 0usize;
        let mut statements: HashMap<String, (Arc<Judged>, Arc<[u32]>)> = HashMap::new();
        let mut portals: HashMap<String, LookaheadPortal> = HashMap::new();
        while out.len() < MAX_PIPELINE_BATCH {
            let rest = &self.cin[off..];
            let len = match crate::wire::typed_frame_len(rest, self.cfg.max_message_bytes) {
                Ok(Some(len)) if rest.len() >= len => len,
                _ => break,
            };
            let frame = Frame {
                tag: rest[0],
                bytes: Bytes::copy_from_slice(&rest[..len]),
            };
            off += len;
            match frame.tag {
                b'P' => {
                    let Ok(p) = frontend::parse(&frame) else {
                        break;
                    };
                    if needs_settled_lex(&p.query) || classify::shadows_catalog(&p.query) {
                        break;
                    }
                    let judged = Arc::new(classify::classify_prepared(&p.query, self.lex));
                    // Keyed as the server keys names (the names model does the same).
                    let Some(name) = server_name(&p.name) else {
                        break;
                    };
                    statements.insert(name.to_string(), (judged, Arc::from(p.types)));
                }
                b'B' => {
                    let Ok(b) = frontend::bind(&frame) else { break };
                    let (Some(statement), Some(portal)) =
                        (server_name(&b.statement), server_name(&b.portal))
                    else {
                        break;
                    };
                    let (judged, types) = match statements.get(statement) {
                        Some((j, t)) => (Some(j.clone()), t.clone()),
                        None => match self.names.statement(&b.statement) {
                            Lookup::Known(p) => (Some(p.judged.clone()), p.param_types.clone()),
                            Lookup::Absent => (None, Arc::from([])),
                            Lookup::Wait => break,
                        },
                    };
                    let p = (b.statement, judged, b.params, false, types);
                    portals.insert(portal.to_string(), p);
                }
                b'E' => {
                    let Ok(e) = frontend::execute(&frame) else {
                        break;
                    };
                    let Some(portal) = server_name(&e.portal) else {
                        break;
                    };
                    let (statement, judged, params, types) = match portals.get_mut(portal) {
                        Some((_, _, _, true, _)) => continue,
                        Some((name, judged, params, executed, types)) => {
                            *executed = true;
                            let types = super::names::binary_types(params, types);
                            (name.clone(), judged.clone(), params.clone(), types)
                        }
                        // A portal bound before this batch: a continuation needs no decision,
                        // anything else is left to the normal path.
                        None => match self.names.portal(&e.portal) {
                            Lookup::Known(p) if p.executed.is_some() => continue,
                            _ => break,
                        },
                    };
                    let Some(judged) = judged else { break };
                    let judged = self.shadowed_now(judged);
                    if changes_names(&judged) {
                        break;
                    }
                    let mut stmt = self.statement_from(&judged, &judged.info, true);
                    stmt.params = params;
                    if let Some(t) = types {
                        self.out.push_back(Out::ParamTypes {
                            statement: stmt.id,
                            types: t,
                        });
                    }
                    stmt.statement_name = statement;
                    stmt.portal = e.portal.clone();
                    out.push((e.portal, stmt, answer_only(&judged, tx)));
                }
                b'D' | b'H' => {}
                _ => break,
            }
        }
        out
    }

    /// Acts on the decision for an Execute: forward it, answer a denial, or pause on a hold.
    pub(super) fn apply_execute_decision(
        &mut self,
        frame: Frame,
        decision: Verdict,
        id: u64,
        portal: String,
        statement: String,
        result_formats: Vec<i16>,
    ) -> Result<(), End> {
        match decision {
            Verdict::Allow => {
                self.forward_execute(&frame, id, portal, statement, result_formats);
            }
            Verdict::Deny { rule, reason } => {
                self.drop_changes([id]);
                self.deny_message(&rule, &reason, false);
                self.skip_until_sync = true;
            }
            Verdict::Held(hold) => {
                self.hold_notice(&hold);
                self.paused = Some(Paused {
                    hold,
                    cont: Cont::Execute {
                        frame,
                        id,
                        portal,
                        statement,
                        result_formats,
                    },
                });
            }
        }
        Ok(())
    }

    pub(super) fn forward_execute(
        &mut self,
        frame: &Frame,
        id: u64,
        portal: String,
        statement: String,
        result_formats: Vec<i16>,
    ) {
        let mut cols = None;
        if let Some(p) = self.names.portal_mut(&portal) {
            p.executed = Some(id);
            cols = p.columns.clone();
        }
        self.forward(frame);
        self.statement_in_block = true;
        self.last_forwarded = id;
        // Columns known already (the usual prepare-then-execute) are taken now; otherwise a
        // Describe answer still on its way fills them in.
        if cols.is_none()
            && let Lookup::Known(s) = self.names.statement(&statement)
        {
            cols = s
                .columns
                .as_ref()
                .map(|c| Arc::new(c.with_bind_formats(&result_formats)));
        }
        let columns_resolved = cols.is_some();
        let acc = ResultAcc::new(id, self.cfg.sample_rows, cols);
        self.expect_reply(Expect::Execute(Box::new(ExecRun {
            acc,
            portal,
            statement,
            result_formats,
            columns_resolved,
        })));
    }
}
