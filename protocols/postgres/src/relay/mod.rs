//! The message loop of an admitted session, as an I/O-free core and a thin adapter.
//!
//! [`Core`] ([`machine`]) holds every decision: it takes the agent's and the target's bytes,
//! the gate's verdicts, the records' durability acks, approvals, cancels and kills, and returns
//! actions in order ([`Out`]: record, judge, settle, bound, cancel the backend, withdraw an
//! approval, end) plus the bytes it made ready for each side. It has no async, no tokio and no
//! sockets, so the property test and the fuzz target `pg_core` drive it directly. [`agent`]
//! handles the agent's messages (judging, holds), [`answers`] the target's (ordering, results),
//! [`finish`] the end.
//!
//! [`Relay`] ([`driver`], [`io`]) is the adapter: one task per connection; it carries out the
//! core's actions (the gate's calls) and each pass of [`Relay::poll_io`] looks at kill/shutdown/
//! cancel ([`control`]), a pending approval, the durability tickets, both outgoing buffers
//! (written as far as the streams take them) and both incoming streams. It owns no socket
//! either: it is given two byte streams ([`Io`]: TCP, TLS, or in-memory pipes) and a [`Gate`],
//! so the fuzz target `pg_relay` and tests run this same code without a network.
//!
//! Ordering: every message forwarded to the target that will be answered has an entry in
//! `expect`, in order. Target messages complete the entry at the head. Proctor's own answers
//! (a denied statement's error) are entries too, so they reach the client exactly where the
//! server's answer would have been, after everything sent before them.

mod agent;
mod answers;
mod control;
mod driver;
mod execute;
pub mod fastpath;
mod finish;
mod introspect;
mod io;
mod judge;
pub mod machine;
mod names;
mod release;

pub use driver::Relay;
pub use io::{Io, TargetSide};
pub use machine::{Ask, Core, GateFailure, GateVerdict, HoldInfo, Out, Verdict};

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

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
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
    /// Proctor's own query of the target's prepared statements ([`introspect`]): its answer
    /// is consumed, never forwarded.
    Introspect(Box<introspect::Introspection>),
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
    hold: HoldInfo,
    cont: Cont,
}

/// A later Execute of a pipeline, judged together with an earlier one (one durable write for
/// the batch); used when its frame is processed.
struct Predecided {
    portal: String,
    id: u64,
    text: String,
    decision: Verdict,
}

/// Most Executes judged in one batch.
const MAX_PIPELINE_BATCH: usize = 64;

/// Proctor's own query of the target's prepared statements: the one message it sends the
/// target that the agent did not (see [`introspect`]).
#[cfg(feature = "fuzzing")]
pub(crate) const INTROSPECT_QUERY: &str = introspect::QUERY;

/// See [`names::fuzz`].
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_names(data: &[u8]) {
    names::fuzz(data);
}

pub(crate) fn note_parameter(lex: &mut LexContext, name: &str, value: &str) {
    match name {
        "standard_conforming_strings" => lex.standard_strings = value.eq_ignore_ascii_case("on"),
        "client_encoding" => lex.set_client_encoding(value),
        // Reported from PostgreSQL 18 on: a path that shadows built-ins counts from then on.
        "search_path" => lex.catalog_shadowed |= crate::classify::path_shadows(value),
        _ => {}
    }
}
