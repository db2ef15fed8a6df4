//! The single writer: takes encoded events from every session, chains and frames them, appends
//! them to the active segment, and acknowledges a whole batch with one fdatasync (group commit).
//! It also signs checkpoints and seals, and appends sealed sessions to the ledger.

mod chain;
mod commit;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, oneshot, watch};

use super::RecorderError;
use super::codec::{self, Body, kind};
use super::frame::{GENESIS_HASH, JOURNAL_SESSION, SessionKey};
use super::indexer::{IndexJob, PendingIndex};
use super::lanes::Deferred;
use super::ledger::{LEAF_SESSION_SEALED, Leaf, Ledger};
use super::segment::SegmentWriter;
use super::signing::{self, RecorderKey};
use super::store_checkpoint::StoreCheckpoints;
use super::wire::Writer;
use crate::clock::now_ns;

/// Tunables of the writer.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub checkpoint_every_events: u32,
    pub checkpoint_every: Duration,
    pub max_segment_bytes: u64,
    /// Largest amount of framed data written under one fdatasync.
    pub max_batch_bytes: usize,
    /// How long events nobody waits for yet (results, output) may wait for company before
    /// they are committed on their own: one fdatasync then covers them and the next action.
    pub lazy_delay: Duration,
    /// Longest time records wait for a store checkpoint (FORMAT.md, "Store checkpoints").
    pub store_checkpoint_every: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            checkpoint_every_events: 1024,
            checkpoint_every: Duration::from_secs(2),
            max_segment_bytes: 128 * 1024 * 1024,
            max_batch_bytes: 16 * 1024 * 1024,
            lazy_delay: Duration::from_millis(2),
            store_checkpoint_every: Duration::from_millis(100),
        }
    }
}

/// The chain position of one open session.
#[derive(Debug, Clone)]
pub struct ChainState {
    pub next_seq: u64,
    pub prev_hash: [u8; 32],
    pub started_ns: i64,
    pub agent: String,
    pub target: String,
    /// Events since the last checkpoint, and when the first of them was written.
    pub unsigned: u32,
    pub unsigned_since: Option<Instant>,
}

impl ChainState {
    pub fn new() -> Self {
        ChainState {
            next_seq: 0,
            prev_hash: GENESIS_HASH,
            started_ns: 0,
            agent: String::new(),
            target: String::new(),
            unsigned: 0,
            unsigned_since: None,
        }
    }
}

impl Default for ChainState {
    fn default() -> Self {
        Self::new()
    }
}

/// What a seal produced: the session's last record and its place in the ledger.
#[derive(Debug, Clone, Copy)]
pub struct SealInfo {
    pub final_seq: u64,
    pub final_hash: [u8; 32],
    pub ledger_index: u64,
}

pub type Ack = oneshot::Sender<Result<(), RecorderError>>;

pub enum Command {
    Append {
        session: SessionKey,
        kind: u8,
        ts_ns: i64,
        body: Vec<u8>,
        ack: Option<Ack>,
        /// Someone waits for `ack` now; otherwise the event may wait for the lazy delay.
        urgent: bool,
        _permit: Option<OwnedSemaphorePermit>,
    },
    /// Several records of one session, in order, acknowledged together (an action, its alerts
    /// and its verdict): one message and one wake-up instead of one per record.
    AppendMany {
        session: SessionKey,
        /// (kind, ts_ns, body) of each record.
        records: Vec<(u8, i64, Vec<u8>)>,
        ack: Ack,
        _permit: Option<OwnedSemaphorePermit>,
    },
    /// Appends `SessionEnd` (already encoded), then the seal, then the ledger leaf.
    Seal {
        session: SessionKey,
        ts_ns: i64,
        end_body: Vec<u8>,
        outcome: String,
        ack: oneshot::Sender<Result<SealInfo, RecorderError>>,
    },
    /// Adds ledger leaves for sessions sealed before a crash cut off their ledger append.
    Ledger {
        leaves: Vec<Leaf>,
        ack: oneshot::Sender<Result<Vec<u64>, RecorderError>>,
    },
    /// Acknowledged once everything queued before it is durable.
    Barrier { ack: Ack },
    /// Someone now waits for a lazily queued event: commit without the lazy delay.
    Nudge,
    /// Closes the active segment and starts the next one (so closed ones can be compacted).
    Rotate { ack: Ack },
    /// Signs what is unsigned, makes everything durable, acknowledges and stops the writer.
    Shutdown { ack: Ack },
}

type SealAck = oneshot::Sender<Result<SealInfo, RecorderError>>;
type LedgerAck = oneshot::Sender<Result<Vec<u64>, RecorderError>>;

pub(super) struct Pending {
    acks: Vec<Ack>,
    /// Commands in this batch that someone waits for (the batch is committed without delay).
    urgent: usize,
    seals: Vec<(SessionKey, Leaf, SealAck)>,
    ledger_requests: Vec<(Vec<Leaf>, LedgerAck)>,
    /// Leaves of this batch's records: sessions opened, journal checkpoints.
    anchors: Vec<Leaf>,
    index: Vec<PendingIndex>,
    buf: Vec<u8>,
    rotate: Vec<Ack>,
}

impl Pending {
    fn new() -> Self {
        Pending {
            acks: Vec::new(),
            urgent: 0,
            seals: Vec::new(),
            ledger_requests: Vec::new(),
            anchors: Vec::new(),
            index: Vec::new(),
            buf: Vec::with_capacity(1 << 20),
            rotate: Vec::new(),
        }
    }
}

pub struct WriterThread {
    pub data: PathBuf,
    pub key: Arc<RecorderKey>,
    pub opts: WriterOptions,
    pub segment: SegmentWriter,
    pub ledger: Arc<Mutex<Ledger>>,
    /// The indexer thread: the writer hands it what is durable and never waits on it.
    pub index: mpsc::Sender<IndexJob>,
    pub chains: HashMap<SessionKey, ChainState>,
    pub failed: watch::Sender<Option<String>>,
    pub stopping: Option<Ack>,
    /// Chains written since the last store checkpoint, and that checkpoint.
    pub store: StoreCheckpoints,
    /// Large commands set aside to commit after the small ones (see `lanes`).
    pub deferred: Deferred,
}

impl WriterThread {
    pub fn run(mut self, rx: mpsc::Receiver<Command>) {
        let tick = self
            .opts
            .checkpoint_every
            .min(self.opts.store_checkpoint_every)
            .min(Duration::from_millis(500));
        loop {
            let mut p = Pending::new();
            let mut disconnected = false;
            // With large commands set aside, the small ones that came meanwhile are committed
            // first, without waiting for more.
            let first = if self.deferred.is_empty() {
                rx.recv_timeout(tick)
            } else {
                rx.try_recv().map_err(|e| match e {
                    mpsc::TryRecvError::Empty => RecvTimeoutError::Timeout,
                    mpsc::TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                })
            };
            match first {
                Ok(cmd) => {
                    self.offer(cmd, &mut p);
                    disconnected = self.gather(&rx, &mut p);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => disconnected = true,
            }
            if disconnected {
                for cmd in self.deferred.take_all() {
                    self.handle(cmd, &mut p);
                }
                self.store_checkpoint(&mut p, true);
                self.checkpoint_all(&mut p, true);
                self.commit(p);
                self.close_segment();
                return;
            }
            self.checkpoint_all(&mut p, false);
            self.store_checkpoint(&mut p, false);
            self.commit(p);
            // Then one large command (with what was set aside before it), in a batch of its
            // own: the small records that arrive meanwhile wait for this one commit at most.
            if !self.deferred.is_empty() && self.stopping.is_none() {
                let mut large = Pending::new();
                for cmd in self.deferred.next_batch() {
                    self.handle(cmd, &mut large);
                }
                self.commit(large);
            }
            if let Some(ack) = self.stopping.take() {
                let mut p = Pending::new();
                self.store_checkpoint(&mut p, true);
                self.checkpoint_all(&mut p, true);
                self.commit(p);
                self.close_segment();
                let _ = ack.send(Ok(()));
                return;
            }
        }
    }

    /// Completes a batch after its first command; returns whether every sender is gone.
    ///
    /// An fdatasync costs about the same for one event as for a hundred, and on a small machine
    /// its CPU competes with the sessions themselves, so events nobody waits for yet (results,
    /// output) wait up to the lazy delay for an action that must be committed anyway. Once
    /// someone waits, the batch is committed at once: lingering for more sessions was measured
    /// to lose throughput (8 pgbench clients: 13.6k TPS with a 150 µs linger, 16.3k without),
    /// because it lines every session up behind the slowest, while committing back to back
    /// batches whatever arrived during the previous fdatasync anyway.
    fn gather(&mut self, rx: &mpsc::Receiver<Command>, p: &mut Pending) -> bool {
        self.drain(rx, p);
        let deadline = Instant::now() + self.opts.lazy_delay;
        while p.urgent == 0
            && p.buf.len() < self.opts.max_batch_bytes
            && self.stopping.is_none()
            && self.deferred.is_empty()
        {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match rx.recv_timeout(left) {
                Ok(cmd) => {
                    self.offer(cmd, p);
                    self.drain(rx, p);
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return true,
            }
        }
        false
    }

    /// Takes every queued command (up to the batch size limit).
    fn drain(&mut self, rx: &mpsc::Receiver<Command>, p: &mut Pending) {
        while p.buf.len() < self.opts.max_batch_bytes {
            match rx.try_recv() {
                Ok(cmd) => self.offer(cmd, p),
                Err(_) => break,
            }
        }
    }

    /// Handles `cmd` in this batch, unless it is set aside for a batch of its own (`lanes`).
    fn offer(&mut self, cmd: Command, p: &mut Pending) {
        if let Some(cmd) = self.deferred.offer(cmd) {
            self.handle(cmd, p);
        }
    }

    /// Cuts the active segment's preallocated tail (at shutdown; recovery does it after a crash).
    fn close_segment(&mut self) {
        if let Err(e) = self.segment.close() {
            tracing::warn!(segment = self.segment.number, error = %e, "cannot close the segment");
        }
    }

    pub(super) fn failed_reason(&self) -> Option<String> {
        self.failed.borrow().clone()
    }

    fn fail(&self, reason: String) {
        tracing::error!(%reason, "recorder failed; refusing all further actions");
        self.failed.send_replace(Some(reason));
    }

    fn handle(&mut self, cmd: Command, p: &mut Pending) {
        if !matches!(cmd, Command::Append { urgent: false, .. }) {
            p.urgent += 1;
        }
        if let Some(reason) = self.failed_reason() {
            if let Command::Shutdown { ack } = cmd {
                self.stopping = Some(ack);
                return;
            }
            reject(cmd, &reason);
            return;
        }
        match cmd {
            Command::Append {
                session,
                kind,
                ts_ns,
                body,
                ack,
                urgent: _,
                _permit,
            } => {
                if !self.accepts(&session, kind) {
                    if let Some(ack) = ack {
                        let _ = ack.send(Err(RecorderError::Sealed));
                    }
                    return;
                }
                self.append(p, session, kind, ts_ns, &body);
                if let Some(ack) = ack {
                    p.acks.push(ack);
                }
                self.maybe_checkpoint(p, session, false);
            }
            Command::AppendMany {
                session,
                records,
                ack,
                _permit,
            } => {
                if let Some((kind, _, _)) = records.first()
                    && !self.accepts(&session, *kind)
                {
                    let _ = ack.send(Err(RecorderError::Sealed));
                    return;
                }
                for (kind, ts_ns, body) in &records {
                    self.append(p, session, *kind, *ts_ns, body);
                    self.maybe_checkpoint(p, session, false);
                }
                p.acks.push(ack);
            }
            Command::Seal {
                session,
                ts_ns,
                end_body,
                outcome,
                ack,
            } => {
                if !self.chains.contains_key(&session) {
                    let _ = ack.send(Err(RecorderError::Closed(
                        "session has no open recording to seal".into(),
                    )));
                    return;
                }
                self.append(p, session, kind::SESSION_END, ts_ns, &end_body);
                let Some((covered_seq, covered_hash)) = self
                    .chains
                    .get(&session)
                    .map(|c| (c.next_seq - 1, c.prev_hash))
                else {
                    return;
                };
                let signed = self.sign(&session, signing::SEAL_CONTEXT, covered_seq, &covered_hash);
                let mut w = Writer::with_capacity(160);
                codec::encode_body(&Body::Seal(signed), &mut w);
                let seal_ts = now_ns();
                self.append(p, session, kind::SEAL, seal_ts, &w.buf);
                let Some(chain) = self.chains.remove(&session) else {
                    return;
                };
                let leaf = Leaf {
                    kind: LEAF_SESSION_SEALED,
                    session,
                    final_seq: chain.next_seq - 1,
                    final_hash: chain.prev_hash,
                    started_ns: chain.started_ns,
                    ended_ns: seal_ts,
                    agent: chain.agent,
                    target: chain.target,
                    outcome,
                    logged_ns: 0,
                    note: String::new(),
                };
                p.seals.push((session, leaf, ack));
            }
            Command::Ledger { leaves, ack } => p.ledger_requests.push((leaves, ack)),
            Command::Barrier { ack } => p.acks.push(ack),
            Command::Nudge => {}
            Command::Rotate { ack } => p.rotate.push(ack),
            Command::Shutdown { ack } => self.stopping = Some(ack),
        }
    }

    /// A chain starts only with its session_start (the journal's with anything): a record for a
    /// session with no open chain is one racing or following its seal, and starting a fresh
    /// chain at seq 0 for it would make an intact store read as tampered.
    fn accepts(&self, session: &SessionKey, kind_code: u8) -> bool {
        self.chains.contains_key(session) || kind_code == kind::SESSION_START || is_journal(session)
    }
}

fn reject(cmd: Command, reason: &str) {
    let err = || RecorderError::Failed(reason.to_string());
    match cmd {
        Command::Append { ack, .. } => {
            if let Some(a) = ack {
                let _ = a.send(Err(err()));
            }
        }
        Command::AppendMany { ack, .. } => {
            let _ = ack.send(Err(err()));
        }
        Command::Seal { ack, .. } => {
            let _ = ack.send(Err(err()));
        }
        Command::Ledger { ack, .. } => {
            let _ = ack.send(Err(err()));
        }
        Command::Barrier { ack } | Command::Rotate { ack } => {
            let _ = ack.send(Err(err()));
        }
        Command::Shutdown { ack } => {
            let _ = ack.send(Ok(()));
        }
        Command::Nudge => {}
    }
}

/// The journal's chain starts like any other; it is never sealed.
pub fn is_journal(session: &SessionKey) -> bool {
    *session == JOURNAL_SESSION
}
