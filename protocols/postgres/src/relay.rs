//! The message loop of an admitted session.
//!
//! One task, one `select!` over: client readable, target readable, client writable, target
//! writable, a pending approval, a cancel of that approval, kill and shutdown. Reads and writes
//! go through buffers that are filled and drained independently, so neither direction can
//! stall the other and every socket write carries everything that was ready.
//!
//! Ordering: every message forwarded to the target that will be answered has an entry in
//! `expect`, in order. Target messages complete the entry at the head. Proctor's own answers
//! (a denied statement's error) are entries too, so they reach the client exactly where the
//! server's answer would have been, after everything sent before them.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use proctor_gate::{
    Action, Decision, DenyCause, Direction, Durable, Event, Gate, GateError, Hold, Outcome, Party,
    Resolution, Statement, StatementClass,
};
use tokio::io::{AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::watch;
use tokio_util::io::poll_read_buf;

use crate::PgFrontendConfig;
use crate::cancel::BackendCancel;
use crate::classify::{self, Classified, Judged, LexContext};
use crate::frontend;
use crate::results::{Columns, CopyAcc, ResultAcc};
use crate::stream::Stream;
use crate::target::TargetConn;
use crate::wire::{
    ErrorFields, Frame, FrameError, Malformed, Reader, Severity, error_bytes, lossy, put_error,
    put_ready, take_typed_frame, typed_frame_len,
};

/// Stop reading one side while the other side's outgoing buffer is this full.
const HIGH_WATER: usize = 1 << 20;
/// While a statement is held, keep reading the client only to notice it going away.
const PAUSED_READ_LIMIT: usize = 1 << 20;
const CLIENT_READ_CHUNK: usize = 16 << 10;
const TARGET_READ_CHUNK: usize = 64 << 10;
/// Un-awaited durability tickets allowed before the session waits for the recorder.
const MAX_TICKETS: usize = 256;
const MAX_TICKET_BYTES: usize = 4 << 20;
/// Prepared statements and portals remembered per session (a client that never closes them
/// cannot grow proctor's memory without bound; a forgotten one is judged as unknown).
const MAX_NAMES: usize = 10_000;
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the loop ended.
#[derive(Debug)]
enum End {
    /// The client sent Terminate or closed the connection.
    Client(String),
    TargetLost(String),
    Killed(String),
    Shutdown,
    /// The client broke the protocol: SQLSTATE and message.
    Agent(&'static str, String),
    /// The target broke the protocol.
    Target(String),
    Recorder(String),
}

struct Prepared {
    judged: Arc<Judged>,
    columns: Option<Arc<Columns>>,
}

struct Portal {
    statement: String,
    judged: Option<Arc<Judged>>,
    params: Vec<proctor_gate::Param>,
    result_formats: Vec<i16>,
    columns: Option<Arc<Columns>>,
    /// Set once an Execute of this portal was allowed: later Executes (after PortalSuspended)
    /// continue the same statement.
    executed: Option<u64>,
}

struct ExecRun {
    acc: ResultAcc,
    portal: String,
    statement: String,
    result_formats: Vec<i16>,
    columns_resolved: bool,
}

struct QueryRun {
    ids: Vec<u64>,
    idx: usize,
    acc: Option<ResultAcc>,
    next_start: Instant,
}

enum Expect {
    Parse,
    Bind,
    Close,
    Describe {
        portal: bool,
        name: String,
    },
    Execute(Box<ExecRun>),
    Sync,
    Query(Box<QueryRun>),
    /// Proctor's own ErrorResponse, followed by ReadyForQuery when `ready`.
    Inject {
        bytes: Bytes,
        ready: bool,
    },
    /// Where the client ended a COPY; Syncs before it were ignored by the server.
    CopyEnd,
}

enum Cont {
    Query {
        frame: Frame,
        ids: Vec<u64>,
        rest: VecDeque<Statement>,
    },
    Execute {
        frame: Frame,
        id: u64,
        portal: String,
        statement: String,
        result_formats: Vec<i16>,
    },
}

struct Paused {
    hold: Hold,
    cont: Cont,
}

/// Durability tickets of enqueued events, awaited oldest first once too many are pending.
struct Tickets {
    q: VecDeque<(Durable, usize)>,
    bytes: usize,
}

impl Tickets {
    async fn push(&mut self, d: Durable, weight: usize) -> Result<(), GateError> {
        self.q.push_back((d, weight));
        self.bytes += weight;
        while self.q.len() > MAX_TICKETS || self.bytes > MAX_TICKET_BYTES {
            let Some((d, w)) = self.q.pop_front() else {
                break;
            };
            self.bytes -= w;
            d.wait().await?;
        }
        Ok(())
    }

    async fn drain(&mut self) {
        while let Some((d, _)) = self.q.pop_front() {
            if let Err(e) = d.wait().await {
                tracing::warn!(error = %e, "postgres: an event did not become durable");
            }
        }
        self.bytes = 0;
    }
}

pub struct Relay {
    gate: Arc<dyn Gate>,
    cfg: Arc<PgFrontendConfig>,
    crd: ReadHalf<Stream>,
    cwr: WriteHalf<Stream>,
    trd: ReadHalf<Stream>,
    twr: WriteHalf<Stream>,
    cin: BytesMut,
    cout: BytesMut,
    tin: BytesMut,
    tout: BytesMut,
    /// Written but maybe not yet flushed out of TLS buffers.
    c_dirty: bool,
    t_dirty: bool,
    c_tls: bool,
    t_tls: bool,
    /// Kill, shutdown, and CancelRequests carrying this session's key.
    control: ControlFuture,
    /// For reading the kill reason outside the control future.
    kill_view: watch::Receiver<Option<String>>,
    _cancels_tx: Arc<watch::Sender<u64>>,
    backend_cancel: Option<BackendCancel>,

    next_id: u64,
    status: u8,
    lex: LexContext,
    statements: HashMap<String, Prepared>,
    portals: HashMap<String, Portal>,
    expect: VecDeque<Expect>,
    /// After a denied Execute: drop client messages until Sync, as the server would after an
    /// error.
    skip_until_sync: bool,
    /// The server is in copy-in mode and ignores the client's Syncs until CopyDone/CopyFail.
    ignore_syncs_in_copy: bool,
    paused: Option<Paused>,
    upload: Option<CopyAcc>,
    download: Option<CopyAcc>,
    last_forwarded: u64,
    events: Vec<Event>,
    tickets: Tickets,
    target_sent_fatal: bool,
    last_row_description: Option<(Vec<u8>, Arc<Columns>)>,
}

impl Relay {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gate: Arc<dyn Gate>,
        cfg: Arc<PgFrontendConfig>,
        client: Stream,
        client_buffered: BytesMut,
        target: TargetConn,
        greeting: BytesMut,
        shutdown: Option<watch::Receiver<bool>>,
        hold_cancel_tx: Arc<watch::Sender<u64>>,
        backend_cancel: Option<BackendCancel>,
    ) -> Relay {
        let (c_tls, t_tls) = (client.is_tls(), target.stream.is_tls());
        let (crd, cwr) = tokio::io::split(client);
        let (trd, twr) = tokio::io::split(target.stream);
        let mut lex = LexContext::default();
        let mut events = Vec::new();
        for (k, v) in &target.params {
            note_parameter(&mut lex, k, v);
            events.push(Event::TargetMessage {
                kind: "parameter_status".into(),
                text: format!("{k}={v}"),
            });
        }
        let kill = gate.kill_signal();
        let kill_view = kill.clone();
        let control: ControlFuture = Box::pin(control(ControlRx {
            kill,
            kill_live: true,
            shutdown,
            cancels: hold_cancel_tx.subscribe(),
        }));
        Relay {
            gate,
            cfg,
            crd,
            cwr,
            trd,
            twr,
            cin: client_buffered,
            cout: greeting,
            tin: target.leftover,
            tout: BytesMut::with_capacity(CLIENT_READ_CHUNK),
            c_dirty: false,
            t_dirty: false,
            c_tls,
            t_tls,
            control,
            kill_view,
            _cancels_tx: hold_cancel_tx,
            backend_cancel,
            next_id: 0,
            status: target.status,
            lex,
            statements: HashMap::new(),
            portals: HashMap::new(),
            expect: VecDeque::new(),
            skip_until_sync: false,
            ignore_syncs_in_copy: false,
            paused: None,
            upload: None,
            download: None,
            last_forwarded: 0,
            events,
            tickets: Tickets {
                q: VecDeque::new(),
                bytes: 0,
            },
            target_sent_fatal: false,
            last_row_description: None,
        }
    }

    /// Runs the session to its end and says how it ended. The caller calls `Gate::end`.
    pub async fn run(mut self) -> (Outcome, String) {
        let end = self.main_loop().await;
        self.finish(end).await
    }

    async fn main_loop(&mut self) -> End {
        if let Some(reason) = self.kill_view.borrow().clone() {
            return End::Killed(reason);
        }
        if let Err(e) = self.flush_events().await {
            return e;
        }
        // Anything the target sent together with its first ReadyForQuery.
        if !self.tin.is_empty()
            && let Err(e) = self.process_target().await
        {
            return e;
        }
        loop {
            if self.paused.is_none()
                && let Err(e) = self.process_client().await
            {
                return e;
            }
            if let Err(e) = self.flush_events().await {
                return e;
            }
            let ev = std::future::poll_fn(|cx| self.poll_io(cx)).await;
            let step = match ev {
                Ev::Control(Control::Killed(reason)) => Err(End::Killed(reason)),
                Ev::Control(Control::Shutdown) => Err(End::Shutdown),
                Ev::Control(Control::Cancel) => self.cancel_requested(),
                Ev::Hold(res) => self.hold_resolved(res).await,
                Ev::TargetData => self.process_target().await,
                Ev::ClientData => Ok(()),
                Ev::TargetGone(r) => Err(End::TargetLost(r)),
                Ev::ClientGone(r) => {
                    let held = if self.paused.is_some() {
                        " while a statement was held"
                    } else {
                        ""
                    };
                    Err(End::Client(format!("{r}{held}")))
                }
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// One pass over everything the session waits for. Writes are pushed as far as the sockets
    /// take them without returning; the pass returns on the first thing that needs handling
    /// (data read, an approval, a kill...). Every branch that is not ready has registered its
    /// waker, so `Pending` is safe.
    fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<Ev> {
        if let Poll::Ready((ev, rx)) = self.control.as_mut().poll(cx) {
            self.control = Box::pin(control(rx));
            return Poll::Ready(Ev::Control(ev));
        }
        if let Some(p) = self.paused.as_mut()
            && let Poll::Ready(r) = p.hold.outcome.as_mut().poll(cx)
        {
            return Poll::Ready(Ev::Hold(r));
        }
        // Writes.
        while !self.cout.is_empty() {
            match Pin::new(&mut self.cwr).poll_write(cx, &self.cout) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Ev::ClientGone("client connection closed".into()));
                }
                Poll::Ready(Ok(n)) => {
                    self.cout.advance(n);
                    self.c_dirty = self.c_tls;
                }
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Ev::ClientGone(format!("client connection lost: {e}")));
                }
                Poll::Pending => break,
            }
        }
        if self.cout.is_empty() && self.c_dirty {
            match Pin::new(&mut self.cwr).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.c_dirty = false,
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Ev::ClientGone(format!("client connection lost: {e}")));
                }
                Poll::Pending => {}
            }
        }
        while !self.tout.is_empty() {
            match Pin::new(&mut self.twr).poll_write(cx, &self.tout) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Ev::TargetGone("the target closed the connection".into()));
                }
                Poll::Ready(Ok(n)) => {
                    self.tout.advance(n);
                    self.t_dirty = self.t_tls;
                }
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Ev::TargetGone(format!(
                        "writing to the target failed: {e}"
                    )));
                }
                Poll::Pending => break,
            }
        }
        if self.tout.is_empty() && self.t_dirty {
            match Pin::new(&mut self.twr).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.t_dirty = false,
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Ev::TargetGone(format!(
                        "writing to the target failed: {e}"
                    )));
                }
                Poll::Pending => {}
            }
        }
        // Reads, each side only while the other side's outgoing buffer has room.
        if self.cout.len() < HIGH_WATER {
            if self.tin.capacity() - self.tin.len() < TARGET_READ_CHUNK / 4 {
                self.tin.reserve(TARGET_READ_CHUNK);
            }
            match poll_read_buf(Pin::new(&mut self.trd), cx, &mut self.tin) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Ev::TargetGone("the target closed the connection".into()));
                }
                Poll::Ready(Ok(_)) => return Poll::Ready(Ev::TargetData),
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Ev::TargetGone(format!(
                        "reading from the target failed: {e}"
                    )));
                }
                Poll::Pending => {}
            }
        }
        let client_room = if self.paused.is_some() {
            self.cin.len() < PAUSED_READ_LIMIT
        } else {
            self.tout.len() < HIGH_WATER
        };
        if client_room {
            if self.cin.capacity() - self.cin.len() < CLIENT_READ_CHUNK / 4 {
                self.cin.reserve(CLIENT_READ_CHUNK);
            }
            match poll_read_buf(Pin::new(&mut self.crd), cx, &mut self.cin) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Ev::ClientGone("client disconnected".into()));
                }
                Poll::Ready(Ok(_)) => return Poll::Ready(Ev::ClientData),
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Ev::ClientGone(format!("client connection lost: {e}")));
                }
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }

    // ----- client side -----

    async fn process_client(&mut self) -> Result<(), End> {
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

    fn forward(&mut self, frame: &Frame) {
        self.tout.extend_from_slice(&frame.bytes);
    }

    fn next_statement_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    async fn on_client_frame(&mut self, frame: Frame) -> Result<(), End> {
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

    fn statement_from(&mut self, judged: &Judged, info: &Classified, extended: bool) -> Statement {
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

    async fn simple_query(&mut self, frame: Frame, text: &str) -> Result<(), End> {
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
    async fn judge_query(
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

    async fn execute(&mut self, frame: Frame, portal_name: String) -> Result<(), End> {
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

    async fn judge_execute(
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

    fn forward_execute(
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
        let acc = ResultAcc::new(id, self.cfg.sample_rows, None);
        self.expect_reply(Expect::Execute(Box::new(ExecRun {
            acc,
            portal,
            statement,
            result_formats,
            columns_resolved: false,
        })));
    }

    async fn decide(&mut self, stmt: Statement) -> Result<Decision, End> {
        match self.gate.decide(Action::Statement(stmt)).await {
            Ok(d) => Ok(d),
            Err(e) => Err(self.gate_error(e)),
        }
    }

    fn gate_error(&self, e: GateError) -> End {
        if let Some(reason) = self.kill_view.borrow().clone() {
            return End::Killed(reason);
        }
        match e {
            GateError::Recorder(m) => End::Recorder(m),
            GateError::Closed(m) => End::Killed(m),
        }
    }

    fn hold_notice(&mut self, hold: &Hold) {
        let text = self
            .cfg
            .hold_notice
            .replace("{id}", &hold.approval_id)
            .replace("{rule}", &hold.rule)
            .replace("{reason}", &hold.reason);
        // Notices may arrive at any time, so this goes out at once.
        put_error(&mut self.cout, Severity::Notice, "00000", &text);
    }

    fn deny_message(&mut self, rule: &str, reason: &str, ready: bool) {
        let msg = format!("proctor: statement denied by rule {rule}: {reason}");
        self.inject(error_bytes(Severity::Error, "42501", &msg), ready);
    }

    async fn hold_resolved(&mut self, res: Resolution) -> Result<(), End> {
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
    fn cancel_requested(&mut self) -> Result<(), End> {
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

    // ----- ordering of answers -----

    fn expect_reply(&mut self, e: Expect) {
        self.expect.push_back(e);
    }

    /// Queues proctor's own answer behind everything already forwarded.
    fn inject(&mut self, bytes: Bytes, ready: bool) {
        self.expect.push_back(Expect::Inject { bytes, ready });
        self.emit_ready_injects();
    }

    /// Writes proctor's answers (and drops COPY markers) that have reached the head.
    fn emit_ready_injects(&mut self) {
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

    async fn process_target(&mut self) -> Result<(), End> {
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
        self.flush_events().await
    }

    fn on_target_frame(&mut self, frame: &[u8]) -> Result<(), End> {
        let tag = frame[0];
        let body = &frame[5..];
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
                        if *portal {
                            if let Some(p) = self.portals.get_mut(name.as_str()) {
                                p.columns = Some(cols);
                            }
                        } else if let Some(s) = self.statements.get_mut(name.as_str()) {
                            s.columns = Some(cols);
                        }
                        self.pop_head();
                    }
                    Some(Expect::Query(_)) => {
                        self.with_result(|acc| acc.set_columns(cols));
                    }
                    _ => {}
                }
            }
            b'n' => {
                if matches!(self.expect.front(), Some(Expect::Describe { .. })) {
                    self.pop_head();
                }
            }
            b'1' => self.pop_if(|e| matches!(e, Expect::Parse)),
            b'2' => self.pop_if(|e| matches!(e, Expect::Bind)),
            b'3' => self.pop_if(|e| matches!(e, Expect::Close)),
            b'C' | b'I' => {
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
            b'E' => {
                let f = ErrorFields::parse(body);
                if f.is_fatal() {
                    self.target_sent_fatal = true;
                }
                self.on_target_error(&f);
            }
            b'Z' => {
                self.status = body.first().copied().unwrap_or(b'I');
                while let Some(e) = self.expect.pop_front() {
                    if matches!(e, Expect::Sync | Expect::Query(_)) {
                        if let Expect::Query(mut q) = e {
                            // Statements the server never reached (an earlier one failed).
                            q.acc = None;
                        }
                        break;
                    }
                }
                self.forward_target(frame);
                self.emit_ready_injects();
                return Ok(());
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
                        Expect::Sync => {
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
            // Never relay the target's own cancel key or authentication traffic.
            b'K' | b'R' | b'v' => return Ok(()),
            _ => {}
        }
        self.forward_target(frame);
        Ok(())
    }

    /// Parsed RowDescription; the last one is kept because a workload tends to repeat it.
    fn columns(&mut self, body: &[u8]) -> Result<Arc<Columns>, End> {
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

    fn forward_target(&mut self, frame: &[u8]) {
        self.cout.extend_from_slice(frame);
    }

    fn pop_head(&mut self) {
        self.expect.pop_front();
        self.emit_ready_injects();
    }

    fn pop_if(&mut self, f: impl Fn(&Expect) -> bool) {
        if self.expect.front().is_some_and(f) {
            self.pop_head();
        }
    }

    fn head_statement(&self) -> Option<u64> {
        match self.expect.front()? {
            Expect::Execute(x) => Some(x.acc.statement_id),
            Expect::Query(q) => q.ids.get(q.idx).or(q.ids.last()).copied(),
            _ => None,
        }
    }

    /// The result accumulator of the statement now answering, if any.
    fn with_result(&mut self, f: impl FnOnce(&mut ResultAcc)) {
        let sample = self.cfg.sample_rows;
        match self.expect.front_mut() {
            Some(Expect::Execute(x)) => {
                if !x.columns_resolved {
                    x.columns_resolved = true;
                    let cols = self
                        .portals
                        .get(&x.portal)
                        .and_then(|p| p.columns.clone())
                        .or_else(|| {
                            self.statements.get(&x.statement).and_then(|s| {
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
    fn complete(&mut self, f: impl FnOnce(ResultAcc) -> proctor_gate::StatementResult) {
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

    fn on_target_error(&mut self, err: &ErrorFields) {
        match self.expect.front() {
            Some(Expect::Query(_)) => {
                self.with_result(|_| {});
                if let Some(Expect::Query(q)) = self.expect.front_mut() {
                    if let Some(acc) = q.acc.take() {
                        self.events.push(Event::StatementResult(acc.failed(err)));
                    }
                    // The server abandons the rest of the query string.
                    q.idx = q.ids.len();
                }
            }
            Some(Expect::Sync) | None => {}
            Some(_) => {
                if matches!(self.expect.front(), Some(Expect::Execute(_))) {
                    self.with_result(|_| {});
                    if let Some(Expect::Execute(x)) = self.expect.pop_front() {
                        self.events.push(Event::StatementResult(x.acc.failed(err)));
                    }
                }
                // The server now skips everything up to the next Sync, including anything
                // proctor would have said in between.
                while let Some(e) = self.expect.front() {
                    if matches!(e, Expect::Sync) {
                        break;
                    }
                    self.expect.pop_front();
                }
            }
        }
    }

    // ----- recording -----

    async fn record_now(&mut self, ev: Event) -> Result<(), End> {
        self.gate.record(ev).await.map_err(|e| self.gate_error(e))
    }

    async fn flush_events(&mut self) -> Result<(), End> {
        if self.events.is_empty() {
            return Ok(());
        }
        // Swapped out and back so the vector's allocation is reused.
        let mut events = std::mem::take(&mut self.events);
        let mut result = Ok(());
        for ev in events.drain(..) {
            let w = ev.weight();
            let d = match self.gate.enqueue(ev).await {
                Ok(d) => d,
                Err(e) => {
                    result = Err(self.gate_error(e));
                    break;
                }
            };
            if let Err(e) = self.tickets.push(d, w).await {
                result = Err(self.gate_error(e));
                break;
            }
        }
        events.clear();
        self.events = events;
        result
    }

    // ----- the end -----

    async fn finish(mut self, end: End) -> (Outcome, String) {
        // Dropping a pending hold cancels its approval.
        self.paused = None;
        let _ = self.flush_events().await;
        let terminate = b"X\0\0\0\x04";
        let (outcome, reason, to_client, to_target): (Outcome, String, Option<Bytes>, bool) =
            match end {
                End::Client(r) => (Outcome::Completed, r, None, true),
                End::Killed(r) => (
                    Outcome::Killed,
                    r.clone(),
                    Some(error_bytes(
                        Severity::Fatal,
                        "57P01",
                        &format!("terminating connection due to administrator command: {r}"),
                    )),
                    true,
                ),
                End::Shutdown => (
                    Outcome::Interrupted,
                    "proctor shutting down".into(),
                    Some(error_bytes(
                        Severity::Fatal,
                        "57P01",
                        "proctor shutting down",
                    )),
                    true,
                ),
                End::TargetLost(r) => {
                    let _ = self
                        .gate
                        .record(Event::ProtocolError {
                            party: Party::Target,
                            message: r.clone(),
                        })
                        .await;
                    let msg = (!self.target_sent_fatal).then(|| {
                        error_bytes(
                            Severity::Fatal,
                            "08006",
                            &format!("proctor: lost the connection to the target: {r}"),
                        )
                    });
                    (Outcome::TargetLost, r, msg, false)
                }
                End::Target(r) => {
                    let _ = self
                        .gate
                        .record(Event::ProtocolError {
                            party: Party::Target,
                            message: r.clone(),
                        })
                        .await;
                    (
                        Outcome::TargetLost,
                        format!("target protocol error: {r}"),
                        Some(error_bytes(
                            Severity::Fatal,
                            "08P01",
                            "proctor: the target sent an invalid message",
                        )),
                        true,
                    )
                }
                End::Agent(code, r) => {
                    let _ = self
                        .gate
                        .record(Event::ProtocolError {
                            party: Party::Agent,
                            message: r.clone(),
                        })
                        .await;
                    (
                        Outcome::Interrupted,
                        format!("protocol violation by the agent: {r}"),
                        Some(error_bytes(Severity::Fatal, code, &format!("proctor: {r}"))),
                        true,
                    )
                }
                End::Recorder(r) => (
                    Outcome::Interrupted,
                    format!("recording failed: {r}"),
                    Some(error_bytes(
                        Severity::Fatal,
                        "58030",
                        "proctor: the session could not be recorded and was closed",
                    )),
                    true,
                ),
            };
        if let Some(b) = to_client {
            self.cout.extend_from_slice(&b);
        }
        let cout = std::mem::take(&mut self.cout);
        let client = async {
            let _ = self.cwr.write_all(&cout).await;
            let _ = self.cwr.flush().await;
            let _ = self.cwr.shutdown().await;
        };
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, client).await;
        if to_target {
            // A backend busy with a statement would not read the Terminate until the statement
            // ends (it does not notice a closed socket either), so stop the statement first.
            let busy = self
                .expect
                .iter()
                .any(|e| !matches!(e, Expect::Inject { .. } | Expect::CopyEnd));
            if busy && let Some(b) = self.backend_cancel.clone() {
                let _ =
                    tokio::time::timeout(GOODBYE_TIMEOUT, crate::cancel::cancel_backend(b)).await;
            }
            let target = async {
                if !matches!(outcome, Outcome::Completed) || !self.tout.ends_with(terminate) {
                    self.tout.extend_from_slice(terminate);
                }
                let _ = self.twr.write_all(&self.tout).await;
                let _ = self.twr.flush().await;
                let _ = self.twr.shutdown().await;
            };
            let _ = tokio::time::timeout(GOODBYE_TIMEOUT, target).await;
        }
        self.tickets.drain().await;
        (outcome, reason)
    }
}

enum Ev {
    Control(Control),
    Hold(Resolution),
    ClientData,
    TargetData,
    ClientGone(String),
    TargetGone(String),
}

/// Kill, shutdown and cancel, watched by one long-lived future so that the hot loop does not
/// re-register with three channels on every pass.
enum Control {
    Killed(String),
    Shutdown,
    Cancel,
}

struct ControlRx {
    kill: watch::Receiver<Option<String>>,
    kill_live: bool,
    shutdown: Option<watch::Receiver<bool>>,
    cancels: watch::Receiver<u64>,
}

type ControlFuture = Pin<Box<dyn Future<Output = (Control, ControlRx)> + Send>>;

async fn control(mut rx: ControlRx) -> (Control, ControlRx) {
    loop {
        tokio::select! {
            r = rx.kill.changed(), if rx.kill_live => {
                if r.is_err() {
                    // The gate dropped its sender: no kill can come any more.
                    rx.kill_live = false;
                } else {
                    let reason = rx.kill.borrow_and_update().clone();
                    if let Some(reason) = reason {
                        return (Control::Killed(reason), rx);
                    }
                }
            }
            _ = shutdown_requested(&mut rx.shutdown) => return (Control::Shutdown, rx),
            r = rx.cancels.changed() => {
                if r.is_ok() {
                    rx.cancels.borrow_and_update();
                    return (Control::Cancel, rx);
                }
                std::future::pending::<()>().await;
            }
        }
    }
}

fn note_parameter(lex: &mut LexContext, name: &str, value: &str) {
    match name {
        "standard_conforming_strings" => lex.standard_strings = value.eq_ignore_ascii_case("on"),
        "client_encoding" => lex.set_client_encoding(value),
        _ => {}
    }
}

async fn shutdown_requested(rx: &mut Option<watch::Receiver<bool>>) {
    let Some(r) = rx.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        if *r.borrow_and_update() {
            return;
        }
        if r.changed().await.is_err() {
            // The listener is gone without asking for a shutdown: keep serving.
            return std::future::pending().await;
        }
    }
}
