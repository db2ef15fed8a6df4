//! The message loop of an admitted session.
//!
//! One task per connection. Each pass of [`Relay::poll_io`] looks at: kill/shutdown/cancel, a
//! pending approval, both outgoing buffers (written as far as the sockets take them) and both
//! incoming sockets. Reads and writes go through buffers that are filled and drained
//! independently, so neither direction can stall the other, and every socket write carries
//! everything that was ready. [`agent`] handles the agent's messages (judging, holds),
//! [`answers`] the target's (ordering, results).
//!
//! Ordering: every message forwarded to the target that will be answered has an entry in
//! `expect`, in order. Target messages complete the entry at the head. Proctor's own answers
//! (a denied statement's error) are entries too, so they reach the client exactly where the
//! server's answer would have been, after everything sent before them.

mod agent;
mod answers;
mod execute;
pub mod fastpath;
mod judge;
mod names;
mod release;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use proctor_gate::{Durable, Event, Gate, GateError, Hold, Outcome, Party, Resolution, Statement};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio_util::io::poll_read_buf;

use crate::PgFrontendConfig;
use crate::cancel::BackendCancel;
use crate::classify::{LexContext, SqlPrepared};
use crate::results::{Columns, CopyAcc, ResultAcc};
use crate::stream::Stream;
use crate::target::TargetConn;
use crate::wire::{Frame, Severity, error_bytes};

/// Stop reading one side while the other side's outgoing buffer is this full.
const HIGH_WATER: usize = 1 << 20;
/// While a statement is held, keep reading the client only to notice it going away.
const PAUSED_READ_LIMIT: usize = 1 << 20;
const CLIENT_READ_CHUNK: usize = 16 << 10;
const TARGET_READ_CHUNK: usize = 64 << 10;
/// Un-awaited durability tickets allowed before the session waits for the recorder.
const MAX_TICKETS: usize = 256;
const MAX_TICKET_BYTES: usize = 4 << 20;
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

struct ExecRun {
    acc: ResultAcc,
    portal: String,
    statement: String,
    result_formats: Vec<i16>,
    columns_resolved: bool,
}

/// A forwarded fast-path FunctionCall: its result is recorded at the FunctionCallResponse or
/// error, and the entry ends at the ReadyForQuery that follows either.
struct FunctionRun {
    id: u64,
    acc: Option<ResultAcc>,
}

struct QueryRun {
    ids: Vec<u64>,
    idx: usize,
    acc: Option<ResultAcc>,
    next_start: Instant,
}

enum Expect {
    /// Parse, Bind and Close carry the key of the change they ask for: the server's
    /// ParseComplete/BindComplete/CloseComplete confirms it, an error or a skip drops it.
    Parse(names::Key),
    Bind(names::Key),
    Close(names::Key),
    Describe {
        portal: bool,
        name: String,
    },
    Execute(Box<ExecRun>),
    /// `upto`: the last statement id judged before this Sync; SQL-level changes of statements
    /// up to it that the server did not confirm by its ReadyForQuery did not happen.
    Sync {
        upto: u64,
    },
    Query(Box<QueryRun>),
    FunctionCall(Box<FunctionRun>),
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
    FunctionCall {
        frame: Frame,
        id: u64,
        columns: Arc<Columns>,
    },
}

struct Paused {
    hold: Hold,
    cont: Cont,
}

/// A later Execute of a pipeline, judged together with an earlier one (one durable write for
/// the batch); used when its frame is processed.
struct Predecided {
    portal: String,
    id: u64,
    text: String,
    decision: proctor_gate::Decision,
}

/// Most Executes judged in one batch.
const MAX_PIPELINE_BATCH: usize = 64;

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

    /// Waits until every enqueued event is durable.
    async fn settle(&mut self) -> Result<(), GateError> {
        while let Some((d, w)) = self.q.pop_front() {
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
    /// Both streams are read and written from the single poll pass, so they are not split.
    client: Stream,
    target: Stream,
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
    /// What the server has confirmed it reads text with (ParameterStatus).
    lex: LexContext,
    /// Prepared statements and portals, changed only on the server's word.
    names: names::Names,
    /// A client message that cannot be judged until the server has answered what was
    /// forwarded before it (see `must_wait`).
    deferred: Option<Frame>,
    /// An Execute went to the server since the last Sync: settings it changes are reported
    /// only at the next ReadyForQuery, so text that depends on them cannot be read yet.
    statement_in_block: bool,
    /// The target reported an error in an extended-protocol block and skips every message
    /// up to the next Sync (the error, for the record of what it skipped).
    target_skipping: Option<crate::wire::ErrorFields>,
    expect: VecDeque<Expect>,
    /// After a denied Execute: drop client messages until Sync, as the server would after an
    /// error.
    skip_until_sync: bool,
    /// The server is in copy-in mode and ignores the client's Syncs until CopyDone/CopyFail.
    ignore_syncs_in_copy: bool,
    /// The server sent CopyInResponse and the copy has not ended (no CopyDone/CopyFail
    /// forwarded, no error or ReadyForQuery since): it would take a FunctionCall as a broken
    /// COPY, not as a call.
    copy_in: bool,
    paused: Option<Paused>,
    predecided: VecDeque<Predecided>,
    upload: Option<CopyAcc>,
    download: Option<CopyAcc>,
    last_forwarded: u64,
    events: Vec<Event>,
    tickets: Tickets,
    /// Answers held back until the records of statements forwarded before them are durable.
    release: release::Release,
    /// The target sent a FATAL error: the session is over whatever happens next.
    target_sent_fatal: Option<String>,
    /// A startup-only message (BackendKeyData, Authentication, NegotiateProtocolVersion) came
    /// from the target mid-session and was recorded.
    noted_late_startup_message: bool,
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
            client,
            target: target.stream,
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
            names: names::Names::default(),
            deferred: None,
            statement_in_block: false,
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
            tickets: Tickets {
                q: VecDeque::new(),
                bytes: 0,
            },
            release: release::Release::default(),
            target_sent_fatal: None,
            noted_late_startup_message: false,
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
                Ev::RecordFailed(e) => Err(self.gate_error(e)),
                Ev::TargetData => self.process_target().await,
                Ev::ClientData => Ok(()),
                Ev::TargetGone(r) => Err(End::TargetLost(match &self.target_sent_fatal {
                    Some(m) => format!("{r} after FATAL {m}"),
                    None => r,
                })),
                Ev::ClientGone(_) if self.target_sent_fatal.is_some() => {
                    // The client left because the target's FATAL error told it to.
                    let m = self.target_sent_fatal.clone().unwrap_or_default();
                    Err(End::TargetLost(format!(
                        "the target ended the session: {m}"
                    )))
                }
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
        // Writes, to the agent only as far as the records before them are durable.
        let mut sendable = match self.release.poll_sendable(cx, self.cout.len()) {
            Ok(n) => n,
            Err(e) => return Poll::Ready(Ev::RecordFailed(e)),
        };
        while sendable > 0 {
            match Pin::new(&mut self.client).poll_write(cx, &self.cout[..sendable]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Ev::ClientGone("client connection closed".into()));
                }
                Poll::Ready(Ok(n)) => {
                    self.cout.advance(n);
                    self.release.wrote(n);
                    sendable -= n;
                    self.c_dirty = self.c_tls;
                }
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Ev::ClientGone(format!("client connection lost: {e}")));
                }
                Poll::Pending => break,
            }
        }
        if sendable == 0 && self.c_dirty {
            match Pin::new(&mut self.client).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.c_dirty = false,
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Ev::ClientGone(format!("client connection lost: {e}")));
                }
                Poll::Pending => {}
            }
        }
        while !self.tout.is_empty() {
            match Pin::new(&mut self.target).poll_write(cx, &self.tout) {
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
            match Pin::new(&mut self.target).poll_flush(cx) {
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
            match poll_read_buf(Pin::new(&mut self.target), cx, &mut self.tin) {
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
        // Client messages left unprocessed while the target's buffer was full: process them now
        // that it has drained (nothing else would wake the loop for them).
        if self.paused.is_none() && self.deferred.is_none() && self.tout.len() < HIGH_WATER {
            match crate::wire::typed_frame_len(&self.cin, self.cfg.max_message_bytes) {
                Ok(Some(len)) if self.cin.len() >= len => return Poll::Ready(Ev::ClientData),
                // Let process_client report the bad frame.
                Err(_) => return Poll::Ready(Ev::ClientData),
                _ => {}
            }
        }
        // While a message waits for a hold or for the server's answers, the client is read
        // only so far (and to notice it going away).
        let client_room = if self.paused.is_some() || self.deferred.is_some() {
            self.cin.len() < PAUSED_READ_LIMIT
        } else {
            self.tout.len() < HIGH_WATER
        };
        if client_room {
            if self.cin.capacity() - self.cin.len() < CLIENT_READ_CHUNK / 4 {
                self.cin.reserve(CLIENT_READ_CHUNK);
            }
            match poll_read_buf(Pin::new(&mut self.client), cx, &mut self.cin) {
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

    // ----- recording -----

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
        let record_failed = matches!(end, End::Recorder(_));
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
                    let msg = self.target_sent_fatal.is_none().then(|| {
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
        // Answers held back for records that are not durable never reach the agent: after a
        // recorder failure not at all, otherwise once they are (or not, after the goodbye
        // timeout).
        let wait = if record_failed {
            Duration::ZERO
        } else {
            GOODBYE_TIMEOUT
        };
        let keep = self.release.settle(self.cout.len(), wait).await;
        self.cout.truncate(keep);
        if let Some(b) = to_client {
            self.cout.extend_from_slice(&b);
        }
        let cout = std::mem::take(&mut self.cout);
        let client = async {
            let _ = self.client.write_all(&cout).await;
            let _ = self.client.flush().await;
            let _ = self.client.shutdown().await;
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
                let _ = self.target.write_all(&self.tout).await;
                let _ = self.target.flush().await;
                let _ = self.target.shutdown().await;
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
    /// A statement forwarded before its record was durable could not be recorded.
    RecordFailed(GateError),
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

/// See [`names::fuzz`].
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_names(data: &[u8]) {
    names::fuzz(data);
}

pub(crate) fn note_parameter(lex: &mut LexContext, name: &str, value: &str) {
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
