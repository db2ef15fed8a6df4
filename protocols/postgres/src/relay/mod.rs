//! The message loop of an admitted session.
//!
//! One task per connection. Each pass of [`Relay::poll_io`] ([`io`]) looks at: kill/shutdown/
//! cancel ([`control`]), a pending approval, both outgoing buffers (written as far as the
//! streams take them) and both incoming streams. Reads and writes go through buffers that are
//! filled and drained independently, so neither direction can stall the other, and every write
//! carries everything that was ready. [`agent`] handles the agent's messages (judging, holds),
//! [`answers`] the target's (ordering, results), [`finish`] the end.
//!
//! The relay owns no socket: it is given two byte streams ([`Io`]: TCP, TLS, or in-memory pipes)
//! and a [`Gate`], so the fuzz target `pg_relay` and tests run this same code without a network.
//!
//! Ordering: every message forwarded to the target that will be answered has an entry in
//! `expect`, in order. Target messages complete the entry at the head. Proctor's own answers
//! (a denied statement's error) are entries too, so they reach the client exactly where the
//! server's answer would have been, after everything sent before them.

mod agent;
mod answers;
mod control;
mod execute;
pub mod fastpath;
mod finish;
mod io;
mod judge;
mod names;
mod release;

pub use io::{Io, TargetSide};

use control::{Control, ControlFuture, ControlRx, Tickets, control};
use io::Ev;

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

pub struct Relay {
    gate: Arc<dyn Gate>,
    cfg: Arc<PgFrontendConfig>,
    /// Both streams are read and written from the single poll pass ([`io`]), so they are not
    /// split.
    client: Box<dyn Io>,
    target: Box<dyn Io>,
    cin: BytesMut,
    cout: BytesMut,
    tin: BytesMut,
    tout: BytesMut,
    /// Written but maybe not yet flushed (a TLS stream holds written bytes until flushed; for
    /// TCP and pipes the flush is free).
    c_dirty: bool,
    t_dirty: bool,
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
        client: Box<dyn Io>,
        client_buffered: BytesMut,
        target: TargetSide,
        greeting: BytesMut,
        shutdown: Option<watch::Receiver<bool>>,
        hold_cancel_tx: Arc<watch::Sender<u64>>,
        backend_cancel: Option<BackendCancel>,
    ) -> Relay {
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
            target: target.io,
            cin: client_buffered,
            cout: greeting,
            tin: target.leftover,
            tout: BytesMut::with_capacity(CLIENT_READ_CHUNK),
            c_dirty: false,
            t_dirty: false,
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
