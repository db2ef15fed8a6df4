//! Messages from the agent: decoding, the barrier before messages that cannot be judged yet,
//! and the extended-protocol messages that change names (Parse, Bind, Close).

use std::sync::Arc;

use proctor_gate::{Direction, Event};

use super::machine::{Out, Waiting};
use super::names::{Change, Lookup, Portal, Prepared};
use super::*;
use crate::classify::{self, Classified, SqlPrepared};
use crate::frontend;
use crate::results::CopyAcc;
use crate::wire::{Frame, FrameError, Malformed, take_typed_frame};

/// Whether how `text` splits into statements can depend on session settings: a backslash
/// (read differently with `standard_conforming_strings` off) or a non-ASCII byte (a client
/// encoding such as SJIS can hide a quote or backslash inside a character). Such text is only
/// read under settings the server has confirmed.
pub(super) fn needs_settled_lex(text: &str) -> bool {
    text.bytes().any(|b| b == b'\\' || b >= 0x80)
}

/// Judged as unknown: proctor cannot know how the server will read the text.
pub(super) fn unsettled(info: &Classified) -> Arc<Classified> {
    Arc::new(Classified {
        class: proctor_gate::StatementClass::Unknown,
        command: info.command.clone(),
        tables: info.tables.clone(),
        note: Some(
            "text whose reading depends on settings (standard_conforming_strings, \
             client_encoding) that a statement earlier in this pipeline may have changed"
                .into(),
        ),
        prepared: None,
        effects: crate::durability::Effects::Lasting,
    })
}

impl Relay {
    /// The `search_path` the client's startup packet set (`PGOPTIONS='-c search_path=...'`),
    /// passed on to the target: PostgreSQL before 18 does not report it in ParameterStatus, so
    /// the session's own startup is the only word proctor has of it.
    pub fn startup_search_path(&mut self, value: &str) {
        self.core.lex.catalog_shadowed |= classify::path_shadows(value);
    }

    /// The target's database defines code that a built-in's name may resolve to (the core
    /// asked at login: `Credential::PostgresRole::builtins_overloaded`): as under a shadowing
    /// `search_path`, every query and DML may run code.
    pub fn builtins_overloaded(&mut self) {
        self.core.lex.catalog_shadowed = true;
    }
}

impl Core {
    /// A statement read at its Parse, as judged when it runs: under a `search_path` that may
    /// now shadow built-ins (set since, by text or by code), it runs code.
    pub(super) fn shadowed_now(&self, j: Arc<classify::Judged>) -> Arc<classify::Judged> {
        if !self.lex.catalog_shadowed {
            return j;
        }
        let info = classify::shadowed(&j.info);
        if Arc::ptr_eq(&info, &j.info) {
            return j;
        }
        Arc::new(classify::Judged {
            info,
            ..classify::Judged::clone(&j)
        })
    }

    // ----- client side -----

    pub(super) fn process_client(&mut self) -> Result<(), End> {
        while self.paused.is_none() && self.waiting.is_none() && self.tout.len() < HIGH_WATER {
            let frame = match self.deferred.take() {
                Some(f) => f,
                None => match take_typed_frame(&mut self.cin, self.cfg.max_message_bytes) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(FrameError::TooLarge { len, max }) => {
                        return Err(End::Agent(
                            "54000",
                            format!("message of {len} bytes exceeds the limit of {max} bytes"),
                        ));
                    }
                    Err(e) => return Err(End::Agent("08P01", e.to_string())),
                },
            };
            if self.must_wait(&frame) {
                // Processed again once the server has answered (process_target runs first).
                self.deferred = Some(frame);
                break;
            }
            // A name forgotten after code ran: the server is asked what it holds before the
            // message is judged; nothing from the client goes on until it has answered.
            match self.introspection_need(&frame) {
                introspect::Need::No => {}
                introspect::Need::Wait => {
                    self.deferred = Some(frame);
                    break;
                }
                introspect::Need::Ask(what) => {
                    self.start_introspection(what);
                    self.deferred = Some(frame);
                    break;
                }
            }
            self.on_client_frame(frame)?;
        }
        Ok(())
    }

    /// Whether `frame` can only be judged after the server has answered earlier blocks: its
    /// text needs the lexing settings the server confirmed, or a name it uses has a change
    /// from an earlier block that the server has not confirmed or refused yet. Waiting on an
    /// earlier block cannot deadlock: each ends with a Sync or Query the server answers.
    fn must_wait(&self, frame: &Frame) -> bool {
        if self.skip_until_sync || self.server_skipping() {
            // Nothing up to the next Sync runs: there is nothing to wait for, and what would
            // be waited for may only be answered at that Sync.
            return false;
        }
        if self.names.is_settled() && !self.earlier_block_unanswered() {
            // Nothing forwarded is unanswered that could matter (the usual case for a client
            // that waits for each answer): no need to look into the message.
            return false;
        }
        match frame.tag {
            b'Q' => {
                let Ok(text) = frontend::query_text(frame) else {
                    return false;
                };
                (needs_settled_lex(&text) && self.earlier_block_unanswered())
                    || self.sql_execute_waits(&text)
            }
            b'P' => frontend::parse(frame)
                .is_ok_and(|p| needs_settled_lex(&p.query) && self.earlier_block_unanswered()),
            b'B' => frontend::bind_statement(frame)
                .is_ok_and(|s| matches!(self.names.statement(&s), Lookup::Wait)),
            b'E' => frontend::execute(frame)
                .is_ok_and(|e| matches!(self.names.portal(&e.portal), Lookup::Wait)),
            // An earlier statement may start a COPY FROM STDIN, in which the server would not
            // take the call as a call (see `Core::function_call`); once one has, nothing is
            // left to wait for.
            b'F' => !self.copy_in && self.earlier_block_unanswered(),
            _ => false,
        }
    }

    /// A Sync or Query forwarded earlier is not answered yet. Settings changed by what it
    /// ran are reported (ParameterStatus) before its ReadyForQuery.
    fn earlier_block_unanswered(&self) -> bool {
        self.expect.iter().any(|e| {
            matches!(
                e,
                Expect::Sync { .. } | Expect::Query(_) | Expect::FunctionCall(_)
            )
        })
    }

    /// `EXECUTE name`, or `FETCH`/`MOVE` of a portal, in a query whose name has an unconfirmed
    /// change from an earlier block.
    fn sql_execute_waits(&self, text: &str) -> bool {
        let lower = text.to_ascii_lowercase();
        if !["execute", "fetch", "move"]
            .iter()
            .any(|w| lower.contains(w))
        {
            return false;
        }
        classify::classify_query(text, self.lex)
            .iter()
            .any(|j| match &j.info.prepared {
                Some(SqlPrepared::Execute { name, .. }) => {
                    matches!(self.names.statement(name), Lookup::Wait)
                }
                Some(SqlPrepared::Fetch { cursor }) => {
                    matches!(self.names.portal(cursor), Lookup::Wait)
                }
                _ => false,
            })
    }

    pub(super) fn forward(&mut self, frame: &Frame) {
        self.block_open = true;
        self.tout.extend_from_slice(&frame.bytes);
    }

    pub(super) fn next_statement_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(super) fn on_client_frame(&mut self, frame: Frame) -> Result<(), End> {
        let malformed = |e: Malformed| End::Agent("08P01", e.to_string());
        if self.skip_until_sync && !matches!(frame.tag, b'S' | b'H' | b'X') {
            // The server would discard these after an error; the client expects no answer.
            return Ok(());
        }
        match frame.tag {
            b'Q' => {
                let text = frontend::query_text(&frame).map_err(malformed)?;
                self.simple_query(frame, &text)
            }
            b'P' => {
                let p = frontend::parse(&frame).map_err(malformed)?;
                self.lex.catalog_shadowed |= classify::shadows_catalog(&p.query);
                let mut judged = classify::classify_prepared(&p.query, self.lex);
                if self.statement_in_block && needs_settled_lex(&p.query) {
                    judged.info = unsettled(&judged.info);
                }
                let key = self.names.ticket();
                let prepared = Prepared {
                    judged: Arc::new(judged),
                    columns: None,
                    param_types: Arc::from(p.types),
                };
                self.names.push(key, Change::Statement(p.name, prepared));
                self.forward(&frame);
                self.expect_reply(Expect::Parse(key));
                Ok(())
            }
            b'B' => {
                let b = frontend::bind(&frame).map_err(malformed)?;
                let (judged, columns, param_types) = match self.names.statement(&b.statement) {
                    Lookup::Known(p) => (
                        Some(p.judged.clone()),
                        p.columns
                            .as_ref()
                            .map(|c| Arc::new(c.with_bind_formats(&b.result_formats))),
                        p.param_types.clone(),
                    ),
                    // `must_wait` held back a Bind that would wait; were one to get here, its
                    // portal is unknown, which is judged as such at Execute.
                    Lookup::Absent | Lookup::Wait => (None, None, Arc::from([])),
                };
                let portal = Portal {
                    statement: b.statement,
                    judged,
                    params: b.params,
                    param_types,
                    result_formats: b.result_formats,
                    columns,
                    executed: None,
                };
                let key = self.names.ticket();
                self.names
                    .push(key, Change::Portal(b.portal, Box::new(portal)));
                self.forward(&frame);
                self.expect_reply(Expect::Bind(key));
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
                self.execute(frame, e.portal)
            }
            b'C' => {
                let (kind, name) = frontend::target(&frame, "Close").map_err(malformed)?;
                let change = if kind == b'P' {
                    Change::ClosePortal(name)
                } else {
                    Change::CloseStatement(name)
                };
                let key = self.names.ticket();
                self.names.push(key, change);
                self.forward(&frame);
                self.expect_reply(Expect::Close(key));
                Ok(())
            }
            b'S' => {
                self.skip_until_sync = false;
                self.forward(&frame);
                self.sync_point();
                if !self.ignore_syncs_in_copy {
                    let upto = self.next_id;
                    self.expect_reply(Expect::Sync { upto });
                }
                Ok(())
            }
            b'H' => {
                self.forward(&frame);
                Ok(())
            }
            b'd' => {
                // The rows written into the target are evidence: recorded (and redacted like
                // any input) as `input` on channel 0, up to the limit per statement.
                let id = self.last_forwarded;
                let acc = self.upload.get_or_insert_with(|| CopyAcc::new(id));
                let before = acc.bytes;
                acc.data(frame.body());
                let limit = self.cfg.copy_record_limit;
                if before < limit {
                    let keep = (limit - before).min(frame.body().len() as u64) as usize;
                    self.events.push(Event::Input {
                        channel: 0,
                        data: frame.bytes.slice(5..5 + keep),
                    });
                }
                self.forward(&frame);
                Ok(())
            }
            b'c' | b'f' => {
                self.copy_in = false;
                let id = self.last_forwarded;
                let acc = self.upload.take().unwrap_or_else(|| CopyAcc::new(id));
                let statement_id = acc.statement_id;
                let bytes = acc.bytes;
                if bytes > self.cfg.copy_record_limit {
                    self.events.push(Event::TargetMessage {
                        kind: "copy_data_cut".into(),
                        text: format!(
                            "COPY data of statement {statement_id}: the first {} of {bytes} \
                             bytes are recorded; the copy record's digest covers all of them",
                            self.cfg.copy_record_limit
                        ),
                    });
                }
                self.events.push(Event::Copy {
                    statement_id,
                    direction: Direction::Upload,
                    bytes,
                    digest: acc.digest(),
                });
                if frame.tag == b'c' {
                    // CopyDone commits the rows (in autocommit): their record is durable
                    // before it is forwarded.
                    self.flush_events();
                    self.out.push_back(Out::Settle);
                    self.waiting = Some(Waiting::CopyDone(frame));
                    return Ok(());
                }
                self.copy_end_forward(&frame);
                Ok(())
            }
            b'X' => {
                self.forward(&frame);
                Err(End::Client("client terminated the session".into()))
            }
            b'F' => self.function_call(frame),
            other => Err(End::Agent(
                "08P01",
                format!("invalid frontend message type {}", other as char),
            )),
        }
    }

    /// Forwards the end of a COPY from the client (CopyDone once its records are durable).
    pub(super) fn copy_end_forward(&mut self, frame: &Frame) {
        self.forward(frame);
        if self.ignore_syncs_in_copy {
            self.ignore_syncs_in_copy = false;
        } else {
            self.expect.push_back(Expect::CopyEnd);
            self.emit_ready_injects();
        }
    }

    /// The server reported an error in an extended-protocol block and no Sync has gone to it
    /// since: it skips whatever proctor forwards now, Queries included, up to that Sync.
    pub(super) fn server_skipping(&self) -> bool {
        self.target_skipping.is_some()
            && !self.expect.iter().any(|e| matches!(e, Expect::Sync { .. }))
    }

    /// A Sync or a Query went to the server: what follows is a new block.
    pub(super) fn sync_point(&mut self) {
        self.names.sync_point();
        self.statement_in_block = false;
        self.block_open = false;
    }
}
