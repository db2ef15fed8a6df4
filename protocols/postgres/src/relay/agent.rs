//! Messages from the agent: decoding, judging, holds, and what is forwarded to the target.

use std::collections::VecDeque;
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
        info: &Classified,
        extended: bool,
    ) -> Statement {
        Statement {
            id: self.next_statement_id(),
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

    pub(super) async fn simple_query(&mut self, frame: Frame, text: &str) -> Result<(), End> {
        let judged = classify::classify_query(text, self.lex);
        let mut rest = VecDeque::with_capacity(judged.len());
        let mut ids = Vec::with_capacity(judged.len());
        for j in judged {
            let info = &j.info;
            let s = Statement {
                id: self.next_statement_id(),
                text: j.text,
                params: Vec::new(),
                statement_name: String::new(),
                portal: String::new(),
                extended: false,
                class: info.class,
                command: info.command.clone(),
                tables: info.tables.clone(),
                reasoning: j.reasoning,
            };
            ids.push(s.id);
            rest.push_back(s);
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
        while let Some(stmt) = rest.pop_front() {
            match self.decide(stmt).await? {
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
        match self.decide(stmt).await? {
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
