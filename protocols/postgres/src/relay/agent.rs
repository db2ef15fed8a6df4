//! Messages from the agent: decoding, judging, holds, and what is forwarded to the target.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use proctor_gate::{
    Action, Decision, DenyCause, Direction, Event, GateError, Hold, Party, Resolution, Statement,
    StatementClass,
};

use super::*;
use crate::classify::{self, Classified, Judged};
use crate::frontend;
use crate::results::{CopyAcc, ResultAcc};
use crate::wire::{
    Frame, FrameError, Malformed, Severity, error_bytes, put_error, take_typed_frame,
};

/// A portal bound during the look-ahead: statement name, its classification, parameters, and
/// whether an Execute already ran it.
type LookaheadPortal = (String, Option<Arc<Judged>>, Vec<proctor_gate::Param>, bool);

impl Relay {
    // ----- client side -----

    pub(super) async fn process_client(&mut self) -> Result<(), End> {
        while self.paused.is_none() && self.tout.len() < HIGH_WATER {
            let frame = match take_typed_frame(&mut self.cin, self.cfg.max_message_bytes) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(FrameError::TooLarge { len, max }) => {
                    return Err(End::Agent(
                        "54000",
                        format!("message of {len} bytes exceeds the limit of {max} bytes"),
                    ));
                }
                Err(e) => return Err(End::Agent("08P01", e.to_string())),
            };
            self.on_client_frame(frame).await?;
        }
        Ok(())
    }

    pub(super) fn forward(&mut self, frame: &Frame) {
        self.tout.extend_from_slice(&frame.bytes);
    }

    pub(super) fn next_statement_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(super) async fn on_client_frame(&mut self, frame: Frame) -> Result<(), End> {
        let malformed = |e: Malformed| End::Agent("08P01", e.to_string());
        if self.skip_until_sync && !matches!(frame.tag, b'S' | b'H' | b'X') {
            // The server would discard these after an error; the client expects no answer.
            return Ok(());
        }
        match frame.tag {
            b'Q' => {
                let text = frontend::query_text(&frame).map_err(malformed)?;
                self.simple_query(frame, &text).await
            }
            b'P' => {
                let p = frontend::parse(&frame).map_err(malformed)?;
                let judged = Arc::new(classify::classify_prepared(&p.query, self.lex));
                if self.statements.len() >= MAX_NAMES && !self.statements.contains_key(&p.name) {
                    self.statements.retain(|k, _| k.is_empty());
                }
                self.statements.insert(
                    p.name,
                    Prepared {
                        judged,
                        columns: None,
                    },
                );
                self.forward(&frame);
                self.expect_reply(Expect::Parse);
                Ok(())
            }
            b'B' => {
                let b = frontend::bind(&frame).map_err(malformed)?;
                let (judged, columns) = match self.statements.get(&b.statement) {
                    Some(p) => (
                        Some(p.judged.clone()),
                        p.columns
                            .as_ref()
                            .map(|c| Arc::new(c.with_bind_formats(&b.result_formats))),
                    ),
                    None => (None, None),
                };
                if self.portals.len() >= MAX_NAMES && !self.portals.contains_key(&b.portal) {
                    self.portals.retain(|k, _| k.is_empty());
                }
                self.portals.insert(
                    b.portal,
                    Portal {
                        statement: b.statement,
                        judged,
                        params: b.params,
                        result_formats: b.result_formats,
                        columns,
                        executed: None,
                    },
                );
                self.forward(&frame);
                self.expect_reply(Expect::Bind);
                Ok(())
            }
            b'D' => {
                let (kind, name) = frontend::target(&frame, "Describe").map_err(malformed)?;
                self.forward(&frame);
                self.expect_reply(Expect::Describe {
                    portal: kind == b'P',
                    name,
                });
                Ok(())
            }
            b'E' => {
                let e = frontend::execute(&frame).map_err(malformed)?;
                self.execute(frame, e.portal).await
            }
            b'C' => {
                let (kind, name) = frontend::target(&frame, "Close").map_err(malformed)?;
                if kind == b'P' {
                    self.portals.remove(&name);
                } else {
                    self.statements.remove(&name);
                }
                self.forward(&frame);
                self.expect_reply(Expect::Close);
                Ok(())
            }
            b'S' => {
                self.skip_until_sync = false;
                self.forward(&frame);
                if !self.ignore_syncs_in_copy {
                    self.expect_reply(Expect::Sync);
                }
                Ok(())
            }
            b'H' => {
                self.forward(&frame);
                Ok(())
            }
            b'd' => {
                let id = self.last_forwarded;
                self.upload
                    .get_or_insert_with(|| CopyAcc::new(id))
                    .data(frame.body());
                self.forward(&frame);
                Ok(())
            }
            b'c' | b'f' => {
                let id = self.last_forwarded;
                let acc = self.upload.take().unwrap_or_else(|| CopyAcc::new(id));
                let statement_id = acc.statement_id;
                let bytes = acc.bytes;
                self.events.push(Event::Copy {
                    statement_id,
                    direction: Direction::Upload,
                    bytes,
                    digest: acc.digest(),
                });
                self.forward(&frame);
                if self.ignore_syncs_in_copy {
                    self.ignore_syncs_in_copy = false;
                } else {
                    self.expect.push_back(Expect::CopyEnd);
                    self.emit_ready_injects();
                }
                Ok(())
            }
            b'X' => {
                self.forward(&frame);
                Err(End::Client("client terminated the session".into()))
            }
            b'F' => {
                let oid = frontend::function_oid(&frame).map_err(malformed)?;
                let message = format!(
                    "proctor: fast-path function calls are not allowed (function OID {oid})"
                );
                self.record_now(Event::ProtocolError {
                    party: Party::Agent,
                    message: message.clone(),
                })
                .await?;
                self.inject(error_bytes(Severity::Error, "0A000", &message), true);
                Ok(())
            }
            other => Err(End::Agent(
                "08P01",
                format!("invalid frontend message type {}", other as char),
            )),
        }
    }

    pub(super) fn statement_from(
        &mut self,
        judged: &Judged,
        info: &Arc<Classified>,
        extended: bool,
    ) -> Statement {
        let id = self.next_statement_id();
        let info = self.judged_info(id, info);
        Statement {
            id,
            text: judged.text.clone(),
            params: Vec::new(),
            statement_name: String::new(),
            portal: String::new(),
            extended,
            class: info.class,
            command: info.command.clone(),
            tables: info.tables.clone(),
            reasoning: judged.reasoning.clone(),
        }
    }

    /// What statement `id` is judged by (an EXECUTE resolved); a PREPARE or DEALLOCATE it
    /// carries is noted, to take effect when the server confirms it.
    fn judged_info(&mut self, id: u64, info: &Arc<Classified>) -> Arc<Classified> {
        let info = self.resolve_sql_execute(info);
        if matches!(
            info.prepared,
            Some(SqlPrepared::Prepare { .. } | SqlPrepared::Deallocate(_))
        ) {
            // Effects of statements that never complete (denied ones) are dropped at the next
            // completion; a client that only sends those must not grow this without bound.
            // A forgotten effect only makes a later EXECUTE `unknown`.
            if self.sql_effects.len() >= MAX_NAMES {
                self.sql_effects.pop_first();
            }
            self.sql_effects.insert(id, info.clone());
        }
        info
    }

    /// `EXECUTE name` of a statement this session prepared is judged as that statement (raised
    /// by what its arguments call); of any other name it stays `unknown`, and so does a name a
    /// PREPARE, DEALLOCATE or DISCARD ALL not yet confirmed may change (`DEALLOCATE p; PREPARE
    /// p AS ...; EXECUTE p` in one message runs the new `p`, not the one proctor knows).
    fn resolve_sql_execute(&self, info: &Arc<Classified>) -> Arc<Classified> {
        if let Some(SqlPrepared::Execute { name, args_class }) = &info.prepared
            && let Some(prepared) = self.sql_prepared.get(name)
            && !self.sql_effects.values().any(|e| match &e.prepared {
                Some(SqlPrepared::Prepare { name: n, .. })
                | Some(SqlPrepared::Deallocate(Some(n))) => n == name,
                _ => true,
            })
        {
            let mut c = Classified::clone(prepared);
            if let Some(a) = *args_class
                && a.danger() > c.class.danger()
            {
                c.class = a;
            }
            return Arc::new(c);
        }
        info.clone()
    }

    /// The server confirmed statement `id`: a PREPARE it carried now exists, a DEALLOCATE or
    /// DISCARD ALL took effect. Effects of earlier statements that never completed (denied,
    /// failed, skipped) are dropped.
    pub(super) fn sql_statement_completed(&mut self, id: u64) {
        if self.sql_effects.is_empty() {
            return;
        }
        let later = self.sql_effects.split_off(&(id + 1));
        let done = std::mem::replace(&mut self.sql_effects, later);
        let Some(info) = done.get(&id) else {
            return;
        };
        match &info.prepared {
            // Past the limit a new name is not remembered: EXECUTE of it is judged `unknown`.
            Some(SqlPrepared::Prepare { name, command })
                if self.sql_prepared.len() < MAX_NAMES || self.sql_prepared.contains_key(name) =>
            {
                let runs = Classified {
                    class: info.class,
                    command: command.clone(),
                    tables: info.tables.clone(),
                    note: None,
                    prepared: None,
                };
                self.sql_prepared.insert(name.clone(), Arc::new(runs));
            }
            Some(SqlPrepared::Deallocate(Some(name))) => {
                self.sql_prepared.remove(name);
            }
            Some(SqlPrepared::Deallocate(None)) => self.sql_prepared.clear(),
            _ => {}
        }
    }

    pub(super) async fn simple_query(&mut self, frame: Frame, text: &str) -> Result<(), End> {
        let judged = classify::classify_query(text, self.lex);
        let mut rest = VecDeque::with_capacity(judged.len());
        let mut ids = Vec::with_capacity(judged.len());
        for j in judged {
            let id = self.next_statement_id();
            let info = self.judged_info(id, &j.info);
            ids.push(id);
            rest.push_back(Statement {
                id,
                text: j.text,
                params: Vec::new(),
                statement_name: String::new(),
                portal: String::new(),
                extended: false,
                class: info.class,
                command: info.command.clone(),
                tables: info.tables.clone(),
                reasoning: j.reasoning,
            });
        }
        self.judge_query(frame, ids, rest).await
    }

    /// Decides the statements of a simple query in order; forwards the message once all are
    /// allowed.
    pub(super) async fn judge_query(
        &mut self,
        frame: Frame,
        ids: Vec<u64>,
        mut rest: VecDeque<Statement>,
    ) -> Result<(), End> {
        while !rest.is_empty() {
            // All statements of the message are judged in one batch (one durable write); the
            // gate stops at the first one that is not allowed.
            let decisions = if rest.len() == 1 {
                let stmt = rest.pop_front().map(Action::Statement);
                match stmt {
                    Some(a) => vec![self.gate.decide(a).await.map_err(|e| self.gate_error(e))?],
                    None => break,
                }
            } else {
                let actions = rest.iter().cloned().map(Action::Statement).collect();
                let d = self
                    .gate
                    .decide_all(actions)
                    .await
                    .map_err(|e| self.gate_error(e))?;
                if d.is_empty() {
                    return Err(End::Recorder("the gate returned no decision".into()));
                }
                rest.drain(..d.len().min(rest.len()));
                d
            };
            for d in decisions {
                match d {
                    Decision::Allow => {}
                    Decision::Deny { rule, reason } => {
                        self.deny_message(&rule, &reason, true);
                        return Ok(());
                    }
                    Decision::Held(hold) => {
                        self.hold_notice(&hold);
                        self.paused = Some(Paused {
                            hold,
                            cont: Cont::Query { frame, ids, rest },
                        });
                        return Ok(());
                    }
                }
            }
        }
        self.forward(&frame);
        self.last_forwarded = ids.last().copied().unwrap_or(self.last_forwarded);
        self.expect_reply(Expect::Query(Box::new(QueryRun {
            ids,
            idx: 0,
            acc: None,
            next_start: Instant::now(),
        })));
        Ok(())
    }

    pub(super) async fn execute(&mut self, frame: Frame, portal_name: String) -> Result<(), End> {
        let Some(portal) = self.portals.get(&portal_name) else {
            // Unknown to proctor (never bound, or forgotten): judge it as unknown rather than
            // let it through unseen.
            let stmt = Statement {
                id: self.next_statement_id(),
                text: String::new(),
                params: Vec::new(),
                statement_name: String::new(),
                portal: portal_name.clone(),
                extended: true,
                class: StatementClass::Unknown,
                command: String::new(),
                tables: Vec::new(),
                reasoning: None,
            };
            let id = stmt.id;
            return self
                .judge_execute(frame, stmt, id, portal_name, String::new(), Vec::new())
                .await;
        };
        if let Some(id) = portal.executed {
            // Fetching more rows of a statement that was already allowed.
            let statement = portal.statement.clone();
            let formats = portal.result_formats.clone();
            self.forward_execute(&frame, id, portal_name, statement, formats);
            return Ok(());
        }
        if let Some(p) = self.predecided.pop_front() {
            let matches = self.portals.get(&portal_name).is_some_and(|x| {
                x.executed.is_none()
                    && p.portal == portal_name
                    && x.judged.as_ref().is_some_and(|j| j.text == p.text)
            });
            if matches && let Some(portal) = self.portals.get(&portal_name) {
                let statement = portal.statement.clone();
                let formats = portal.result_formats.clone();
                return self.apply_execute_decision(
                    frame,
                    p.decision,
                    p.id,
                    portal_name,
                    statement,
                    formats,
                );
            }
            // Cannot happen unless the look-ahead misread the pipeline: judge afresh.
            tracing::warn!(
                session = self.gate.session_id(),
                "postgres: pipelined decision did not match its Execute; judging it again"
            );
            self.predecided.clear();
        }

        let statement = portal.statement.clone();
        let formats = portal.result_formats.clone();
        let params = portal.params.clone();
        let judged = portal.judged.clone();
        let mut stmt = match &judged {
            Some(j) => self.statement_from(j, &j.info, true),
            None => Statement {
                id: self.next_statement_id(),
                text: String::new(),
                params: Vec::new(),
                statement_name: String::new(),
                portal: String::new(),
                extended: true,
                class: StatementClass::Unknown,
                command: String::new(),
                tables: Vec::new(),
                reasoning: None,
            },
        };
        stmt.params = params;
        stmt.statement_name = statement.clone();
        stmt.portal = portal_name.clone();
        let id = stmt.id;
        self.judge_execute(frame, stmt, id, portal_name, statement, formats)
            .await
    }

    pub(super) async fn judge_execute(
        &mut self,
        frame: Frame,
        stmt: Statement,
        id: u64,
        portal: String,
        statement: String,
        result_formats: Vec<i16>,
    ) -> Result<(), End> {
        let decision = self.decide_with_lookahead(stmt).await?;
        self.apply_execute_decision(frame, decision, id, portal, statement, result_formats)
    }

    /// Judges an Execute, together with the Executes of the same pipeline already waiting in
    /// the client buffer: one durable write for the batch instead of one per statement.
    async fn decide_with_lookahead(&mut self, stmt: Statement) -> Result<Decision, End> {
        let extra = self.lookahead_executes();
        if extra.is_empty() {
            return self.decide(stmt).await;
        }
        let meta: Vec<(String, u64, String)> = extra
            .iter()
            .map(|(p, s)| (p.clone(), s.id, s.text.clone()))
            .collect();
        let mut actions = Vec::with_capacity(extra.len() + 1);
        actions.push(Action::Statement(stmt));
        actions.extend(extra.into_iter().map(|(_, s)| Action::Statement(s)));
        let mut decisions = self
            .gate
            .decide_all(actions)
            .await
            .map_err(|e| self.gate_error(e))?
            .into_iter();
        let Some(first) = decisions.next() else {
            return Err(End::Recorder("the gate returned no decision".into()));
        };
        for ((portal, id, text), decision) in meta.into_iter().zip(decisions) {
            self.predecided.push_back(Predecided {
                portal,
                id,
                text,
                decision,
            });
        }
        Ok(first)
    }

    /// Statements of the Executes that follow in the client buffer (complete frames only),
    /// built as processing them would build them: Parse and Bind frames on the way are read
    /// into an overlay, Describe, Sync and Flush are passed over, and anything else ends the
    /// look-ahead. Consumes statement ids in order.
    fn lookahead_executes(&mut self) -> Vec<(String, Statement)> {
        let mut out = Vec::new();
        let mut off = 0usize;
        let mut statements: HashMap<String, Option<Arc<Judged>>> = HashMap::new();
        // Portals bound in the look-ahead: statement name, its classification, parameters,
        // and whether an Execute already ran it.
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
                    let judged = Arc::new(classify::classify_prepared(&p.query, self.lex));
                    statements.insert(p.name, Some(judged));
                }
                b'B' => {
                    let Ok(b) = frontend::bind(&frame) else { break };
                    let judged = match statements.get(&b.statement) {
                        Some(j) => j.clone(),
                        None => self.statements.get(&b.statement).map(|p| p.judged.clone()),
                    };
                    portals.insert(b.portal, (b.statement, judged, b.params, false));
                }
                b'E' => {
                    let Ok(e) = frontend::execute(&frame) else {
                        break;
                    };
                    let (statement, judged, params) = match portals.get_mut(&e.portal) {
                        Some((_, _, _, true)) => continue,
                        Some((name, judged, params, executed)) => {
                            *executed = true;
                            (name.clone(), judged.clone(), params.clone())
                        }
                        // A portal bound before this batch: a continuation needs no decision,
                        // anything else is left to the normal path.
                        None => match self.portals.get(&e.portal) {
                            Some(p) if p.executed.is_some() => continue,
                            _ => break,
                        },
                    };
                    let Some(judged) = judged else { break };
                    let mut stmt = self.statement_from(&judged, &judged.info, true);
                    stmt.params = params;
                    stmt.statement_name = statement;
                    stmt.portal = e.portal.clone();
                    out.push((e.portal, stmt));
                }
                b'D' | b'S' | b'H' => {}
                _ => break,
            }
        }
        out
    }

    /// Acts on the decision for an Execute: forward it, answer a denial, or pause on a hold.
    fn apply_execute_decision(
        &mut self,
        frame: Frame,
        decision: Decision,
        id: u64,
        portal: String,
        statement: String,
        result_formats: Vec<i16>,
    ) -> Result<(), End> {
        match decision {
            Decision::Allow => {
                self.forward_execute(&frame, id, portal, statement, result_formats);
            }
            Decision::Deny { rule, reason } => {
                self.deny_message(&rule, &reason, false);
                self.skip_until_sync = true;
            }
            Decision::Held(hold) => {
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
        if let Some(p) = self.portals.get_mut(&portal) {
            p.executed = Some(id);
        }
        self.forward(frame);
        self.last_forwarded = id;
        // Columns known already (the usual prepare-then-execute) are taken now; otherwise a
        // Describe answer still on its way fills them in.
        let cols = self
            .portals
            .get(&portal)
            .and_then(|p| p.columns.clone())
            .or_else(|| {
                self.statements.get(&statement).and_then(|s| {
                    s.columns
                        .as_ref()
                        .map(|c| Arc::new(c.with_bind_formats(&result_formats)))
                })
            });
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

    pub(super) async fn decide(&mut self, stmt: Statement) -> Result<Decision, End> {
        match self.gate.decide(Action::Statement(stmt)).await {
            Ok(d) => Ok(d),
            Err(e) => Err(self.gate_error(e)),
        }
    }

    pub(super) fn gate_error(&self, e: GateError) -> End {
        if let Some(reason) = self.kill_view.borrow().clone() {
            return End::Killed(reason);
        }
        match e {
            GateError::Recorder(m) => End::Recorder(m),
            GateError::Closed(m) => End::Killed(m),
        }
    }

    pub(super) fn hold_notice(&mut self, hold: &Hold) {
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
        self.inject(error_bytes(Severity::Error, "42501", &msg), ready);
    }

    pub(super) async fn hold_resolved(&mut self, res: Resolution) -> Result<(), End> {
        let Some(paused) = self.paused.take() else {
            return Ok(());
        };
        let approval_id = paused.hold.approval_id.clone();
        match res {
            Resolution::Allow => match paused.cont {
                Cont::Query { frame, ids, rest } => self.judge_query(frame, ids, rest).await,
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
            },
            Resolution::Deny {
                rule,
                reason,
                cause,
            } => {
                let (code, msg) = match cause {
                    DenyCause::Timeout => (
                        "57014",
                        format!("proctor: approval {approval_id} timed out; statement not run"),
                    ),
                    DenyCause::Killed => {
                        let reason = self.kill_view.borrow().clone().unwrap_or(reason);
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
                let ready = matches!(paused.cont, Cont::Query { .. });
                self.inject(error_bytes(Severity::Error, code, &msg), ready);
                if !ready {
                    self.skip_until_sync = true;
                }
                Ok(())
            }
        }
    }

    /// A CancelRequest with this session's key: withdraw the held statement if there is one,
    /// otherwise pass the cancel on to the target backend.
    pub(super) fn cancel_requested(&mut self) -> Result<(), End> {
        let Some(paused) = self.paused.take() else {
            if let Some(b) = self.backend_cancel.clone() {
                tokio::spawn(crate::cancel::cancel_backend(b));
            }
            return Ok(());
        };
        let ready = matches!(paused.cont, Cont::Query { .. });
        // Dropping the hold cancels the approval.
        let id = paused.hold.approval_id.clone();
        drop(paused);
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
