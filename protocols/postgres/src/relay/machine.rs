//! The relay's decisions as a state machine without I/O, in the style of rustls' and
//! quinn-proto's cores: the adapter ([`super::driver`]) appends what it reads to the core's
//! input buffers, tells it what happened (bytes arrived, a verdict, a durability ack, a
//! resolution, a cancel, a kill, an end of stream), carries out the actions it returns, in
//! order, and writes out what the core has made ready for each side. Nothing here awaits,
//! touches a socket or knows tokio.
//!
//! The contract with the adapter, which is what keeps rules 1, 3 and 4:
//! - actions ([`Out`]) are carried out in the order they are returned. A `Record` whose enqueue
//!   fails, a verdict the gate could not give, a durability ack that failed: each is handed
//!   back ([`Core::gate_failed`], [`Core::durable`]) and ends the session; the core then drops
//!   every action still queued and returns only [`Out::End`];
//! - while the core waits for an answer ([`Core::waiting`]: a verdict or the settling of the
//!   records), the adapter feeds it only that answer (or ends the session). The core reads no
//!   client message while it waits or while a statement is held;
//! - bytes reach the target only from [`Core::to_target`], where a judged message is put only
//!   after the verdict allowed it; bytes reach the agent only from [`Core::to_client`], and only
//!   as far as [`Core::client_sendable`] says: answers to a statement forwarded before its record
//!   was durable wait for that record's ack (rule 3).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::BytesMut;
use proctor_gate::{Action, Decision, Event, GateError, Resolution, Statement};

use super::names;
use super::*;
use crate::results::Columns;

/// Which of the gate's calls answers a [`Out::Judge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// `Gate::decide` of the one action.
    One,
    /// `Gate::decide_all`: decisions up to the first that is not `Allow`, all durable.
    All,
    /// `Gate::decide_all_overlapped`: as `All`, and the records may become durable later (a
    /// ticket the adapter keeps and acks with [`Core::durable`]).
    Overlapped,
}

/// What the adapter does, in order.
#[derive(Debug)]
pub enum Out {
    /// Queue the event for the recorder (`Gate::enqueue`); a failure goes to
    /// [`Core::gate_failed`].
    Record(Event),
    /// Ask the gate; answer with [`Core::verdict`].
    Judge { ask: Ask, actions: Vec<Action> },
    /// Wait until every event recorded so far is durable; answer with [`Core::settled`].
    Settle,
    /// More than `pending` durability tickets are unacked: wait for the oldest (acking each
    /// with [`Core::durable`]) until at most `pending` remain.
    Bound { pending: usize },
    /// The parameter type OIDs of statement `statement`, sent before it is judged when some of
    /// its values are binary (`Gate::param_types`: the card shows them decoded).
    ParamTypes {
        statement: u64,
        types: std::sync::Arc<[u32]>,
    },
    /// Pass a CancelRequest on to the target backend.
    CancelBackend,
    /// The held statement with this approval is withdrawn: drop its approval.
    Withdraw(String),
    /// The session is over; nothing more comes.
    End(End),
}

/// The core's view of a hold: the approval waits in the adapter (it owns the future).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldInfo {
    pub approval_id: String,
    pub rule: String,
    pub reason: String,
}

/// A decision as the core sees it (the gate's [`Decision`] without the approval's future).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny { rule: String, reason: String },
    Held(HoldInfo),
}

impl Verdict {
    /// The core's view of `d`; a held decision's approval future is handed to `keep`.
    pub fn from_decision(d: Decision, keep: &mut impl FnMut(proctor_gate::Hold)) -> Verdict {
        match d {
            Decision::Allow => Verdict::Allow,
            Decision::Deny { rule, reason } => Verdict::Deny { rule, reason },
            Decision::Held(h) => {
                let info = HoldInfo {
                    approval_id: h.approval_id.clone(),
                    rule: h.rule.clone(),
                    reason: h.reason.clone(),
                };
                keep(h);
                Verdict::Held(info)
            }
        }
    }
}

/// The gate's answer to a [`Out::Judge`].
#[derive(Debug)]
pub struct GateVerdict {
    pub decisions: Vec<Verdict>,
    /// `Ask::Overlapped` only: the records are not durable yet; the adapter keeps the ticket and
    /// acks it with [`Core::durable`] in the order tickets were given.
    pub ticket: bool,
}

/// A gate or recorder error, with the kill reason if the session was being killed (an error
/// caused by the kill ends the session as killed).
#[derive(Debug)]
pub struct GateFailure {
    pub error: GateError,
    pub killed: Option<String>,
}

/// What the core waits for before it reads anything more.
pub(super) enum Waiting {
    Query {
        frame: Frame,
        ids: Vec<u64>,
        rest: VecDeque<Statement>,
        overlap: bool,
        ask: Ask,
    },
    Execute(Box<ExecWait>),
    FunctionCall {
        frame: Frame,
        id: u64,
        columns: Arc<Columns>,
    },
    /// A CopyDone, forwarded once every record before it is durable.
    CopyDone(Frame),
}

pub(super) struct ExecWait {
    pub frame: Frame,
    pub id: u64,
    pub portal: String,
    pub statement: String,
    pub result_formats: Vec<i16>,
    /// The later Executes of the pipeline judged in the same batch: portal, id, text.
    pub lookahead: Vec<(String, u64, String)>,
}

/// The session's state: everything the relay knows, and nothing that does I/O.
pub struct Core {
    pub(super) cfg: Arc<PgFrontendConfig>,
    pub(super) session_id: String,
    pub(super) cin: BytesMut,
    pub(super) cout: BytesMut,
    pub(super) tin: BytesMut,
    pub(super) tout: BytesMut,
    pub(super) out: VecDeque<Out>,
    pub(super) waiting: Option<Waiting>,
    pub(super) ended: bool,

    pub(super) next_id: u64,
    pub(super) status: u8,
    /// What the server has confirmed it reads text with (ParameterStatus).
    pub(super) lex: LexContext,
    /// Prepared statements and portals, changed only on the server's word.
    pub(super) names: names::Names,
    /// A client message that cannot be judged until the server has answered what was
    /// forwarded before it (see `must_wait`).
    pub(super) deferred: Option<Frame>,
    /// An Execute went to the server since the last Sync: settings it changes are reported
    /// only at the next ReadyForQuery, so text that depends on them cannot be read yet.
    pub(super) statement_in_block: bool,
    /// A client message went to the server since the last sync point (Sync, Query): the server
    /// is inside an extended-protocol block, where proctor cannot slip in a query of its own.
    pub(super) block_open: bool,
    /// The target reported an error in an extended-protocol block and skips every message
    /// up to the next Sync (the error, for the record of what it skipped).
    pub(super) target_skipping: Option<crate::wire::ErrorFields>,
    pub(super) expect: VecDeque<Expect>,
    /// After a denied Execute: drop client messages until Sync, as the server would after an
    /// error.
    pub(super) skip_until_sync: bool,
    /// The server is in copy-in mode and ignores the client's Syncs until CopyDone/CopyFail.
    pub(super) ignore_syncs_in_copy: bool,
    /// The server sent CopyInResponse and the copy has not ended (no CopyDone/CopyFail
    /// forwarded, no error or ReadyForQuery since): it would take a FunctionCall as a broken
    /// COPY, not as a call.
    pub(super) copy_in: bool,
    pub(super) paused: Option<Paused>,
    pub(super) predecided: VecDeque<Predecided>,
    pub(super) upload: Option<CopyAcc>,
    pub(super) download: Option<CopyAcc>,
    pub(super) last_forwarded: u64,
    pub(super) events: Vec<Event>,
    /// Answers held back until the records of statements forwarded before them are durable.
    pub(super) release: release::Release,
    /// The target sent a FATAL error: the session is over whatever happens next.
    pub(super) target_sent_fatal: Option<String>,
    /// A startup-only message (BackendKeyData, Authentication, NegotiateProtocolVersion) came
    /// from the target mid-session and was recorded.
    pub(super) noted_late_startup_message: bool,
    pub(super) last_row_description: Option<(Vec<u8>, Arc<Columns>)>,
}

impl Core {
    /// A session whose login is done: `params` are the login's ParameterStatus pairs, `status`
    /// the first ReadyForQuery's; `cin` what the agent sent past its login, `cout` the greeting
    /// still to send it, `tin` what the target sent past its first ReadyForQuery.
    pub fn new(
        cfg: Arc<PgFrontendConfig>,
        session_id: String,
        params: &[(String, String)],
        status: u8,
        cin: BytesMut,
        cout: BytesMut,
        tin: BytesMut,
    ) -> Core {
        let mut lex = LexContext::default();
        let mut events = Vec::new();
        for (k, v) in params {
            note_parameter(&mut lex, k, v);
            events.push(Event::TargetMessage {
                kind: "parameter_status".into(),
                text: format!("{k}={v}"),
            });
        }
        Core {
            cfg,
            session_id,
            cin,
            cout,
            tin,
            tout: BytesMut::with_capacity(CLIENT_READ_CHUNK),
            out: VecDeque::new(),
            waiting: None,
            ended: false,
            next_id: 0,
            status,
            lex,
            names: names::Names::default(),
            deferred: None,
            statement_in_block: false,
            block_open: false,
            target_skipping: None,
            expect: VecDeque::new(),
            skip_until_sync: false,
            ignore_syncs_in_copy: false,
            copy_in: false,
            paused: None,
            predecided: VecDeque::new(),
            upload: None,
            download: None,
            last_forwarded: 0,
            events,
            release: release::Release::default(),
            target_sent_fatal: None,
            noted_late_startup_message: false,
            last_row_description: None,
        }
    }

    // ----- inputs -----

    /// The session starts: the login's records, and anything the target sent together with
    /// its first ReadyForQuery.
    pub fn start(&mut self) {
        self.flush_events();
        if !self.tin.is_empty() {
            self.step(|c| c.process_target());
        }
        self.pump();
    }

    /// Bytes were appended to [`Core::client_in`].
    pub fn client_data(&mut self) {
        self.pump();
    }

    /// Bytes were appended to [`Core::target_in`].
    pub fn target_data(&mut self) {
        if self.ended || self.waiting.is_some() {
            return;
        }
        self.step(|c| c.process_target());
        self.pump();
    }

    /// The gate's answer to the last [`Out::Judge`].
    pub fn verdict(&mut self, v: Result<GateVerdict, GateFailure>) {
        if self.ended {
            return;
        }
        match v {
            Ok(v) => {
                let Some(w) = self.waiting.take() else {
                    return self.end(End::Recorder("a verdict nobody asked for".into()));
                };
                self.step(|c| c.on_verdict(w, v));
                self.pump();
            }
            Err(f) => self.gate_failed(f),
        }
    }

    /// Every event recorded before the last [`Out::Settle`] is durable (or not).
    pub fn settled(&mut self, r: Result<(), GateFailure>) {
        if self.ended {
            return;
        }
        match r {
            Ok(()) => {
                if let Some(Waiting::CopyDone(frame)) = self.waiting.take() {
                    self.copy_end_forward(&frame);
                }
                self.pump();
            }
            Err(f) => self.gate_failed(f),
        }
    }

    /// The oldest durability ticket given with a verdict resolved.
    pub fn durable(&mut self, r: Result<(), GateFailure>) {
        match r {
            Ok(()) => self.release.ack(),
            Err(f) => {
                self.release.fail();
                self.gate_failed(f);
            }
        }
    }

    /// Recording or judging failed: the session ends, and nothing queued after it moves.
    pub fn gate_failed(&mut self, f: GateFailure) {
        let end = gate_error(f);
        self.end(end);
    }

    /// The held statement's approval resolved.
    pub fn resolved(&mut self, res: Resolution, killed: Option<String>) {
        if self.ended {
            return;
        }
        self.step(|c| c.hold_resolved(res, killed));
        self.pump();
    }

    /// A CancelRequest with this session's key.
    pub fn cancel(&mut self) {
        if self.ended {
            return;
        }
        self.step(|c| c.cancel_requested());
        self.pump();
    }

    /// A kill, a shutdown, or a stream's end: the session is over.
    pub fn stop(&mut self, end: End) {
        self.end(end);
    }

    /// The agent's stream ended or failed.
    pub fn client_gone(&mut self, reason: String) {
        let end = if let Some(m) = &self.target_sent_fatal {
            // The client left because the target's FATAL error told it to.
            End::TargetLost(format!("the target ended the session: {m}"))
        } else {
            let held = if self.paused.is_some() {
                " while a statement was held"
            } else {
                ""
            };
            End::Client(format!("{reason}{held}"))
        };
        self.end(end);
    }

    /// The target's stream ended or failed.
    pub fn target_gone(&mut self, reason: String) {
        let r = match &self.target_sent_fatal {
            Some(m) => format!("{reason} after FATAL {m}"),
            None => reason,
        };
        self.end(End::TargetLost(r));
    }

    /// `n` bytes of [`Core::client_sendable`] were written to the agent.
    pub fn wrote_client(&mut self, n: usize) {
        bytes::Buf::advance(&mut self.cout, n);
        self.release.wrote(n);
    }

    // ----- outputs -----

    /// The next action, in order.
    pub fn poll_action(&mut self) -> Option<Out> {
        self.out.pop_front()
    }

    /// What the core waits for, if anything (then it reads nothing more).
    pub fn waiting(&self) -> bool {
        self.waiting.is_some()
    }

    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The approval the core is paused on, if a statement is held.
    pub fn held(&self) -> Option<&str> {
        self.paused.as_ref().map(|p| p.hold.approval_id.as_str())
    }

    /// How many of the bytes queued for the agent may be written now (rule 3).
    pub fn client_sendable(&self) -> usize {
        self.release.sendable(self.cout.len())
    }

    /// Bytes queued for the agent (only the first [`Core::client_sendable`] may be written).
    pub fn to_client(&self) -> &[u8] {
        &self.cout
    }

    /// Bytes queued for the target: every judged message in it was allowed.
    pub fn to_target(&mut self) -> &mut BytesMut {
        &mut self.tout
    }

    /// How many bytes wait to go to the target.
    pub fn target_pending(&self) -> usize {
        self.tout.len()
    }

    pub fn client_in(&mut self) -> &mut BytesMut {
        &mut self.cin
    }

    pub fn target_in(&mut self) -> &mut BytesMut {
        &mut self.tin
    }

    /// Durability tickets given and not yet acked.
    pub fn unacked(&self) -> usize {
        self.release.pending()
    }

    // ----- internals -----

    /// Runs one handler; an error ends the session.
    fn step(&mut self, f: impl FnOnce(&mut Core) -> Result<(), End>) {
        if self.ended {
            return;
        }
        if let Err(e) = f(self) {
            self.end(e);
        }
    }

    /// Reads client messages as far as it may, then hands the gathered events on.
    fn pump(&mut self) {
        if self.ended || self.waiting.is_some() {
            return;
        }
        if self.paused.is_none() {
            self.step(|c| c.process_client());
        }
        if !self.ended && self.waiting.is_none() {
            self.flush_events();
        }
    }

    /// Ends the session: nothing queued after the failure or end moves (rule 4).
    pub(super) fn end(&mut self, end: End) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.waiting = None;
        // Records queued before a recording failure are dropped with it, as the old loop
        // dropped the rest of a failed batch; for any other end they are still written.
        let keep_records = !matches!(end, End::Recorder(_));
        let queued = std::mem::take(&mut self.out);
        if keep_records {
            for ev in self.events.drain(..) {
                self.out.push_back(Out::Record(ev));
            }
            self.out.extend(
                queued.into_iter().filter(|o| {
                    matches!(o, Out::Record(_) | Out::CancelBackend | Out::Withdraw(_))
                }),
            );
        }
        self.events.clear();
        self.out.push_back(Out::End(end));
    }

    /// Asks the gate, and waits for the answer.
    pub(super) fn ask(&mut self, ask: Ask, actions: Vec<Action>, then: Waiting) {
        self.out.push_back(Out::Judge { ask, actions });
        self.waiting = Some(then);
    }

    /// Hands the events gathered so far to the adapter for the recorder.
    pub(super) fn flush_events(&mut self) {
        for ev in self.events.drain(..) {
            self.out.push_back(Out::Record(ev));
        }
    }

    /// Keeps the number of unacked tickets bounded (the adapter waits for the oldest).
    pub(super) fn bound(&mut self) {
        if self.release.pending() > release::MAX_PENDING {
            self.out.push_back(Out::Bound {
                pending: release::MAX_PENDING,
            });
        }
    }

    fn on_verdict(&mut self, w: Waiting, v: GateVerdict) -> Result<(), End> {
        if v.ticket {
            // Everything queued to the agent from here on answers what was just judged (its
            // error or notice too): it waits for the records.
            self.hold_answers();
        }
        match w {
            Waiting::Query {
                frame,
                ids,
                rest,
                overlap,
                ask,
            } => self.query_verdict(frame, ids, rest, overlap, ask, v.decisions),
            Waiting::Execute(e) => self.execute_verdict(*e, v.decisions),
            Waiting::FunctionCall { frame, id, columns } => {
                let Some(d) = v.decisions.into_iter().next() else {
                    return Err(End::Recorder("the gate returned no decision".into()));
                };
                self.function_call_verdict(frame, id, columns, d);
                Ok(())
            }
            Waiting::CopyDone(frame) => {
                // Not a judgement: put the wait back.
                self.waiting = Some(Waiting::CopyDone(frame));
                Err(End::Recorder("a verdict while waiting for records".into()))
            }
        }
    }
}

fn gate_error(f: GateFailure) -> End {
    if let Some(reason) = f.killed {
        return End::Killed(reason);
    }
    match f.error {
        GateError::Recorder(m) => End::Recorder(m),
        GateError::Closed(m) => End::Killed(m),
    }
}

/// The names model as the property test sees it: the text of what the core takes a name to
/// hold, only where it is sure.
#[cfg(feature = "fuzzing")]
impl Core {
    pub(crate) fn known_statement(&self, name: &str) -> Option<String> {
        match self.names.statement(name) {
            names::Lookup::Known(p) => Some(p.judged.text.clone()),
            _ => None,
        }
    }

    pub(crate) fn known_portal(&self, name: &str) -> Option<Option<String>> {
        match self.names.portal(name) {
            names::Lookup::Known(p) => Some(p.judged.as_ref().map(|j| j.text.clone())),
            _ => None,
        }
    }
}
