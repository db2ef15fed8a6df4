//! Answers from the target: the ordered queue of expected replies, proctor's own answers
//! slotted into it, and the results recorded as they stream back.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes};
use proctor_gate::{Direction, Event};

use super::names::Key;
use super::*;
use crate::results::{Columns, CopyAcc, ResultAcc};
use crate::wire::{ErrorFields, Reader, lossy, put_ready, typed_frame_len};

impl Core {
    // ----- ordering of answers -----

    pub(super) fn expect_reply(&mut self, e: Expect) {
        self.expect.push_back(e);
    }

    /// Queues proctor's own answer behind everything already forwarded.
    pub(super) fn inject(&mut self, bytes: Bytes, ready: bool) {
        self.expect.push_back(Expect::Inject { bytes, ready });
        self.emit_ready_injects();
    }

    /// Writes proctor's answers (and drops COPY markers) that have reached the head.
    pub(super) fn emit_ready_injects(&mut self) {
        loop {
            match self.expect.front() {
                Some(Expect::Inject { .. }) => {
                    if let Some(Expect::Inject { bytes, ready }) = self.expect.pop_front() {
                        self.cout.extend_from_slice(&bytes);
                        if ready {
                            put_ready(&mut self.cout, self.status);
                        }
                    }
                }
                Some(Expect::CopyEnd) => {
                    self.expect.pop_front();
                }
                _ => break,
            }
        }
    }

    // ----- target side -----

    pub(super) fn process_target(&mut self) -> Result<(), End> {
        let mut tin = std::mem::take(&mut self.tin);
        let mut off = 0;
        let result = loop {
            let len = match typed_frame_len(&tin[off..], self.cfg.max_message_bytes) {
                Ok(Some(len)) if tin.len() - off >= len => len,
                Ok(_) => break Ok(()),
                Err(e) => break Err(End::Target(e.to_string())),
            };
            if let Err(e) = self.on_target_frame(&tin[off..off + len]) {
                break Err(e);
            }
            off += len;
        };
        tin.advance(off);
        self.tin = tin;
        result?;
        self.flush_events();
        Ok(())
    }

    pub(super) fn on_target_frame(&mut self, frame: &[u8]) -> Result<(), End> {
        let tag = frame[0];
        let body = &frame[5..];
        if self.introspection_answer(tag, body)? {
            return Ok(());
        }
        // Forwarded before the bookkeeping below, which may release proctor's own answers
        // queued behind this one. Never relay the target's own cancel key or authentication.
        if !matches!(tag, b'K' | b'R' | b'v') {
            self.forward_target(frame);
        }
        match tag {
            b'D' => {
                self.with_result(|acc| acc.data_row(body));
            }
            b'd' => {
                if let Some(acc) = self.download.as_mut() {
                    acc.data(body);
                }
            }
            b'T' => {
                let cols = self.columns(body)?;
                match self.expect.front_mut() {
                    Some(Expect::Describe { portal, name }) => {
                        let (portal, name) = (*portal, std::mem::take(name));
                        // The Parse or Bind before this Describe was confirmed by now (answers
                        // come in order).
                        if portal {
                            if let Some(p) = self.names.confirmed_portal_mut(&name) {
                                p.columns = Some(cols.clone());
                            }
                        } else if let Some(s) = self.names.confirmed_statement_mut(&name) {
                            s.columns = Some(cols.clone());
                        }
                        // Executes already queued behind this Describe (a pipeline) get the
                        // columns now: by the time their rows arrive, the client may have closed
                        // the portal or statement.
                        for e in self.expect.iter_mut().skip(1) {
                            if let Expect::Execute(x) = e
                                && !x.columns_resolved
                                && (if portal {
                                    x.portal == name
                                } else {
                                    x.statement == name
                                })
                            {
                                x.columns_resolved = true;
                                x.acc.set_columns(if portal {
                                    cols.clone()
                                } else {
                                    Arc::new(cols.with_bind_formats(&x.result_formats))
                                });
                            }
                        }
                        self.pop_head();
                    }
                    Some(Expect::Query(_)) => {
                        self.with_result(|acc| acc.set_columns(cols));
                    }
                    _ => {}
                }
            }
            b't' => {
                // ParameterDescription: the types the server gave a statement's parameters,
                // for showing values bound in binary (the Parse may have left them to it).
                if let Some(Expect::Describe {
                    portal: false,
                    name,
                }) = self.expect.front()
                    && let Some(types) = parameter_types(body)
                    && let Some(s) = self.names.confirmed_statement_mut(name)
                {
                    s.param_types = types;
                }
            }
            b'n' => {
                if matches!(self.expect.front(), Some(Expect::Describe { .. })) {
                    self.pop_head();
                }
            }
            b'1' | b'2' | b'3' => {
                // The server's word: the statement, portal or close now exists as asked.
                if let Some(Expect::Parse(key) | Expect::Bind(key) | Expect::Close(key)) =
                    self.expect.front()
                {
                    let key = *key;
                    self.names.confirm(key);
                    self.pop_head();
                }
            }
            b'C' | b'I' => {
                if tag == b'C'
                    && let Some(id) = self.head_statement()
                {
                    self.names.confirm(Key::Statement(id));
                }
                let tag_text = if tag == b'C' {
                    Reader::new(body, "CommandComplete")
                        .cstr()
                        .map(lossy)
                        .unwrap_or_default()
                } else {
                    String::new()
                };
                self.complete(|acc| acc.complete(tag_text));
            }
            b's' => self.complete(|acc| acc.suspended()),
            b'V' => self.function_result(body),
            b'E' => {
                self.copy_in = false;
                let f = ErrorFields::parse(body);
                if f.is_fatal() {
                    self.target_sent_fatal = Some(format!("{} {}", f.code, f.message));
                }
                self.on_target_error(&f);
            }
            b'Z' => {
                self.copy_in = false;
                self.status = body.first().copied().unwrap_or(b'I');
                // After an error in an extended-protocol block the server skipped everything
                // up to the Sync, including messages proctor forwarded after the error arrived
                // and simple Queries (which then were no sync point).
                let skipped = self.target_skipping.take();
                while let Some(e) = self.expect.pop_front() {
                    match e {
                        Expect::Parse(key) | Expect::Bind(key) | Expect::Close(key) => {
                            self.names.discard(key);
                        }
                        Expect::Sync { upto } => {
                            self.names.settle_statements(upto);
                            break;
                        }
                        Expect::Execute(x) if skipped.is_some() => {
                            let id = x.acc.statement_id;
                            self.drop_changes([id]);
                            if let Some(err) = &skipped {
                                self.events
                                    .push(Event::StatementResult(ResultAcc::not_executed(id, err)));
                            }
                        }
                        Expect::Query(q) if skipped.is_some() => {
                            self.drop_changes(q.ids.iter().copied());
                            if let Some(err) = &skipped {
                                for &id in &q.ids {
                                    self.events.push(Event::StatementResult(
                                        ResultAcc::not_executed(id, err),
                                    ));
                                }
                            }
                        }
                        Expect::FunctionCall(f) if skipped.is_some() => {
                            if let Some(err) = &skipped {
                                self.events
                                    .push(Event::StatementResult(ResultAcc::not_executed(
                                        f.id, err,
                                    )));
                            }
                        }
                        Expect::FunctionCall(f) => {
                            if let Some(acc) = f.acc {
                                // Neither a result nor an error: recorded as what was seen.
                                self.events
                                    .push(Event::StatementResult(acc.complete(String::new())));
                            }
                            self.names.settle_statements(f.id);
                            break;
                        }
                        Expect::Query(mut q) => {
                            // Statements the server never reached (an earlier one failed).
                            q.acc = None;
                            self.names
                                .settle_statements(q.ids.last().copied().unwrap_or(0));
                            break;
                        }
                        _ => {}
                    }
                }
                if self.status == b'I' {
                    // Outside a transaction the server holds no portal.
                    self.names.transaction_ended();
                }
                if !self.expect.iter().any(|e| {
                    matches!(
                        e,
                        Expect::Sync { .. } | Expect::Query(_) | Expect::FunctionCall(_)
                    )
                }) {
                    self.names.settle_earlier_blocks();
                }
                self.emit_ready_injects();
            }
            b'N' => {
                let f = ErrorFields::parse(body);
                self.events.push(Event::TargetMessage {
                    kind: "notice".into(),
                    text: format!("{} {}: {}", f.severity, f.code, f.message),
                });
            }
            b'A' => {
                let mut r = Reader::new(body, "NotificationResponse");
                let pid = r.i32().unwrap_or(0);
                let channel = r.cstr().map(lossy).unwrap_or_default();
                let payload = r.cstr().map(lossy).unwrap_or_default();
                self.events.push(Event::TargetMessage {
                    kind: "notification".into(),
                    text: format!("{channel}: {payload} (pid {pid})"),
                });
            }
            b'S' => {
                let mut r = Reader::new(body, "ParameterStatus");
                let name = r.cstr().map(lossy).unwrap_or_default();
                let value = r.cstr().map(lossy).unwrap_or_default();
                note_parameter(&mut self.lex, &name, &value);
                self.events.push(Event::TargetMessage {
                    kind: "parameter_status".into(),
                    text: format!("{name}={value}"),
                });
            }
            b'G' => {
                self.copy_in = true;
                // The server now ignores Sync until the copy ends; forget the Syncs it will
                // not answer.
                let mut i = 1;
                let mut saw_end = false;
                while i < self.expect.len() {
                    match self.expect[i] {
                        Expect::CopyEnd => {
                            saw_end = true;
                            break;
                        }
                        Expect::Sync { .. } => {
                            self.expect.remove(i);
                        }
                        _ => i += 1,
                    }
                }
                if !saw_end {
                    self.ignore_syncs_in_copy = true;
                }
            }
            b'H' => {
                let id = self.head_statement().unwrap_or(self.last_forwarded);
                self.download = Some(CopyAcc::new(id));
            }
            b'c' => {
                if let Some(acc) = self.download.take() {
                    let statement_id = acc.statement_id;
                    let bytes = acc.bytes;
                    self.events.push(Event::Copy {
                        statement_id,
                        direction: Direction::Download,
                        bytes,
                        digest: acc.digest(),
                    });
                }
            }
            // Startup-only messages after startup are dropped (never relayed, and a
            // BackendKeyData here does not replace the cancel key taken at login). Noted once
            // per session so that a flood of them cannot flood the record.
            b'K' | b'R' | b'v' if !self.noted_late_startup_message => {
                self.noted_late_startup_message = true;
                let what = match tag {
                    b'K' => "BackendKeyData",
                    b'R' => "an authentication request",
                    _ => "NegotiateProtocolVersion",
                };
                self.events.push(Event::ProtocolError {
                    party: Party::Target,
                    message: format!("the target sent {what} after startup (ignored)"),
                });
            }
            _ => {}
        }
        Ok(())
    }

    /// Parsed RowDescription; the last one is kept because a workload tends to repeat it.
    pub(super) fn columns(&mut self, body: &[u8]) -> Result<Arc<Columns>, End> {
        if let Some((raw, cols)) = &self.last_row_description
            && raw.as_slice() == body
        {
            return Ok(cols.clone());
        }
        let cols = Arc::new(Columns::parse(body).map_err(|e| End::Target(e.to_string()))?);
        if body.len() <= 4096 {
            self.last_row_description = Some((body.to_vec(), cols.clone()));
        }
        Ok(cols)
    }

    pub(super) fn forward_target(&mut self, frame: &[u8]) {
        self.cout.extend_from_slice(frame);
    }

    pub(super) fn pop_head(&mut self) {
        self.expect.pop_front();
        self.emit_ready_injects();
    }

    pub(super) fn head_statement(&self) -> Option<u64> {
        match self.expect.front()? {
            Expect::Execute(x) => Some(x.acc.statement_id),
            Expect::Query(q) => q.ids.get(q.idx).or(q.ids.last()).copied(),
            _ => None,
        }
    }

    /// The result accumulator of the statement now answering, if any.
    pub(super) fn with_result(&mut self, f: impl FnOnce(&mut ResultAcc)) {
        let sample = self.cfg.sample_rows;
        match self.expect.front_mut() {
            Some(Expect::Execute(x)) => {
                if !x.columns_resolved {
                    x.columns_resolved = true;
                    let cols = self
                        .names
                        .confirmed_portal(&x.portal)
                        .and_then(|p| p.columns.clone())
                        .or_else(|| {
                            self.names.confirmed_statement(&x.statement).and_then(|s| {
                                s.columns
                                    .as_ref()
                                    .map(|c| Arc::new(c.with_bind_formats(&x.result_formats)))
                            })
                        });
                    if let Some(c) = cols {
                        x.acc.set_columns(c);
                    }
                }
                f(&mut x.acc);
            }
            Some(Expect::Query(q)) => {
                let acc = q.acc.get_or_insert_with(|| {
                    let id = q.ids.get(q.idx).or(q.ids.last()).copied().unwrap_or(0);
                    let mut a = ResultAcc::new(id, sample, None);
                    a.set_start(q.next_start);
                    a
                });
                f(acc);
            }
            _ => {}
        }
    }

    /// A statement finished (CommandComplete, EmptyQueryResponse, PortalSuspended).
    pub(super) fn complete(&mut self, f: impl FnOnce(ResultAcc) -> proctor_gate::StatementResult) {
        // Make sure an accumulator exists (statements without rows have none yet).
        self.with_result(|_| {});
        match self.expect.front_mut() {
            Some(Expect::Execute(_)) => {
                if let Some(Expect::Execute(x)) = self.expect.pop_front() {
                    self.events.push(Event::StatementResult(f(x.acc)));
                }
                self.emit_ready_injects();
            }
            Some(Expect::Query(q)) => {
                if let Some(acc) = q.acc.take() {
                    self.events.push(Event::StatementResult(f(acc)));
                }
                q.idx += 1;
                q.next_start = Instant::now();
            }
            _ => {}
        }
    }

    pub(super) fn on_target_error(&mut self, err: &ErrorFields) {
        match self.expect.front() {
            Some(Expect::Query(_)) => {
                self.with_result(|_| {});
                if let Some(Expect::Query(q)) = self.expect.front_mut() {
                    if let Some(acc) = q.acc.take() {
                        self.events.push(Event::StatementResult(acc.failed(err)));
                    }
                    // The server abandons the rest of the query string.
                    for &id in q.ids.iter().skip(q.idx + 1) {
                        self.events
                            .push(Event::StatementResult(ResultAcc::not_executed(id, err)));
                    }
                    q.idx = q.ids.len();
                }
            }
            Some(Expect::FunctionCall(_)) => {
                // The call failed; its ReadyForQuery follows and ends the entry.
                if let Some(Expect::FunctionCall(f)) = self.expect.front_mut()
                    && let Some(acc) = f.acc.take()
                {
                    self.events.push(Event::StatementResult(acc.failed(err)));
                }
            }
            Some(Expect::Sync { .. }) | None => {
                // Not tied to a statement: a failing COMMIT at Sync, or the server going away.
                self.events.push(Event::TargetMessage {
                    kind: "error".into(),
                    text: format!("{} {}: {}", err.severity, err.code, err.message),
                });
            }
            Some(_) => {
                if matches!(self.expect.front(), Some(Expect::Execute(_))) {
                    // Resolve the columns while the Execute is still at the head.
                    self.with_result(|_| {});
                }
                // The server now skips everything up to the next Sync, including anything
                // proctor would have said in between. The error belongs to the first statement
                // in that stretch: it failed while running, or its Parse/Bind did (a custom
                // plan is made, and constants folded, at Bind). Later ones never ran.
                self.target_skipping = Some(err.clone());
                // The error belongs to the first message in that stretch. A Parse, Bind,
                // Close or Describe that failed is recorded as such (what it asked of the
                // session's names did not happen), and the first Execute after it is still
                // given the error as its outcome; nothing after that ran.
                let mut reported = false;
                let mut noted = false;
                while let Some(e) = self.expect.front() {
                    if matches!(e, Expect::Sync { .. }) {
                        break;
                    }
                    match self.expect.pop_front() {
                        Some(Expect::Execute(x)) => {
                            noted = true;
                            // Whatever it asked of the names did not happen (it failed or
                            // never ran). Dropped now, not at the Sync: a message waiting on
                            // it may stand before that Sync in the client's pipeline.
                            self.drop_changes([x.acc.statement_id]);
                            let result = if reported {
                                ResultAcc::not_executed(x.acc.statement_id, err)
                            } else {
                                reported = true;
                                x.acc.failed(err)
                            };
                            self.events.push(Event::StatementResult(result));
                        }
                        Some(Expect::Parse(key) | Expect::Bind(key) | Expect::Close(key)) => {
                            let change = self.names.discard(key);
                            if !noted {
                                noted = true;
                                self.events.push(Event::TargetMessage {
                                    kind: "error".into(),
                                    text: format!(
                                        "{} failed, nothing changed: {} {}: {}",
                                        names::describe(change.as_ref()),
                                        err.severity,
                                        err.code,
                                        err.message
                                    ),
                                });
                            }
                        }
                        Some(Expect::Query(q)) => {
                            // Skipped like everything else up to the Sync: no answer at all,
                            // and no sync point either.
                            noted = true;
                            self.drop_changes(q.ids.iter().copied());
                            for &id in &q.ids {
                                self.events
                                    .push(Event::StatementResult(ResultAcc::not_executed(id, err)));
                            }
                        }
                        Some(Expect::FunctionCall(f)) => {
                            // Skipped like a Query: the server ignores it up to the Sync.
                            noted = true;
                            self.events
                                .push(Event::StatementResult(ResultAcc::not_executed(f.id, err)));
                        }
                        Some(Expect::Describe { portal, name }) if !noted => {
                            noted = true;
                            let what = if portal { "portal" } else { "statement" };
                            self.events.push(Event::TargetMessage {
                                kind: "error".into(),
                                text: format!(
                                    "Describe of {what} {name:?} failed: {} {}: {}",
                                    err.severity, err.code, err.message
                                ),
                            });
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

/// The OIDs of a ParameterDescription body; `None` when its count and length disagree.
fn parameter_types(body: &[u8]) -> Option<Arc<[u32]>> {
    let (n, rest) = body.split_first_chunk::<2>()?;
    let n = usize::from(u16::from_be_bytes(*n));
    if rest.len() != n * 4 {
        return None;
    }
    Some(
        rest.chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}
