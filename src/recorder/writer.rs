//! Group commit without a hand-off: sessions stage their framed, chained events in memory, and
//! the first one that needs durability while no commit is running writes and fdatasyncs the
//! whole stage itself (it leads); the others wait for that commit, and one of them leads the
//! next. A background thread commits what nobody waits for (results, output) within the lazy
//! delay, signs timed checkpoints and seals, and appends sealed sessions to the ledger.
//!
//! Why no dedicated writer on the hot path: on a small machine the thread hop (wake the writer,
//! then wake each session back) cost more than the fdatasync itself; with 8 pgbench clients
//! the sessions' context switches were twice pgbouncer's per transaction.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use proctor_gate::Event;
use tokio::sync::{OwnedSemaphorePermit, oneshot, watch};

use super::RecorderError;
use super::codec::{self, Body, Signed, kind};
use super::frame::{self, FORMAT_VERSION, GENESIS_HASH, JOURNAL_SESSION, RecordHeader, SessionKey};
use super::index::{Index, Indexed, wants_body};
use super::ledger::{LEAF_SESSION_SEALED, Leaf, Ledger};
use super::segment::SegmentWriter;
use super::signing::{self, RecorderKey};
use super::wire::Writer;
use crate::clock::now_ns;

/// Tunables of the writer.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub checkpoint_every_events: u32,
    pub checkpoint_every: Duration,
    pub max_segment_bytes: u64,
    /// Staged bytes beyond which the next session to wait commits them even if lazy.
    pub max_batch_bytes: usize,
    /// How long events nobody waits for yet (results, output) may wait for company before
    /// they are committed on their own: one fdatasync then covers them and the next action.
    pub lazy_delay: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            checkpoint_every_events: 1024,
            checkpoint_every: Duration::from_secs(2),
            max_segment_bytes: 128 * 1024 * 1024,
            max_batch_bytes: 16 * 1024 * 1024,
            lazy_delay: Duration::from_millis(2),
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
type SealAck = oneshot::Sender<Result<SealInfo, RecorderError>>;
type LedgerAck = oneshot::Sender<Result<Vec<u64>, RecorderError>>;

/// What only the background thread carries out (rare); events go straight to the stage.
pub enum Command {
    /// Appends `SessionEnd` (already encoded), then the seal, then the ledger leaf.
    Seal {
        session: SessionKey,
        ts_ns: i64,
        end_body: Vec<u8>,
        outcome: String,
        ack: SealAck,
    },
    /// Adds ledger leaves for sessions sealed before a crash cut off their ledger append.
    Ledger { leaves: Vec<Leaf>, ack: LedgerAck },
    /// Acknowledged once everything staged before it is durable.
    Barrier { ack: Ack },
    /// Something was staged while the thread slept long: look again.
    Nudge,
    /// Closes the active segment and starts the next one (so closed ones can be compacted).
    Rotate { ack: Ack },
    /// Signs what is unsigned, makes everything durable, acknowledges and stops.
    Shutdown { ack: Ack },
}

/// A record staged in this batch, for the index once the batch is durable.
struct PendingIndex {
    session: SessionKey,
    kind: u8,
    seq: u64,
    ts_ns: i64,
    hash: [u8; 32],
    /// Offset of the frame within the batch buffer, and its length.
    at: usize,
    frame_len: usize,
    /// Body bytes within the batch buffer, for the kinds the index reads.
    body: Option<(usize, usize)>,
}

/// One batch: everything staged since the last commit began.
struct Pending {
    acks: Vec<Ack>,
    /// Staged records or requests someone waits for: the batch is committed without delay.
    urgent: usize,
    /// When the first thing was staged into this batch (the lazy delay runs from here).
    since: Option<Instant>,
    seals: Vec<(SessionKey, Leaf, SealAck)>,
    ledger_requests: Vec<(Vec<Leaf>, LedgerAck)>,
    index: Vec<PendingIndex>,
    buf: Vec<u8>,
    rotate: Vec<Ack>,
    /// The queue budget the staged events hold until they are written.
    permits: Vec<OwnedSemaphorePermit>,
}

impl Pending {
    fn new() -> Self {
        Pending {
            acks: Vec::new(),
            urgent: 0,
            since: None,
            seals: Vec::new(),
            ledger_requests: Vec::new(),
            index: Vec::new(),
            buf: Vec::new(),
            rotate: Vec::new(),
            permits: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.acks.is_empty()
            && self.buf.is_empty()
            && self.seals.is_empty()
            && self.ledger_requests.is_empty()
            && self.rotate.is_empty()
    }

    fn touch(&mut self) {
        self.since.get_or_insert_with(Instant::now);
    }
}

/// Chains and the batch being staged. Held only for the few microseconds of framing.
pub struct Staging {
    key: Arc<RecorderKey>,
    opts: WriterOptions,
    pub chains: HashMap<SessionKey, ChainState>,
    pending: Pending,
    /// Batches taken for commit so far: a record staged while this is `e` is in batch `e`.
    taken: u64,
    /// Batches whose commit has finished (durable, or failed and reported).
    committed: u64,
    /// A batch is being written and synced; nobody else may take one (batches stay in order).
    committing: bool,
    /// Sessions waiting while a commit runs; the one handed the turn leads the next.
    turn_waiters: VecDeque<oneshot::Sender<()>>,
    /// The background thread waits on [`Core::turn`] for the running commit to end.
    thread_waiting: bool,
    /// The background thread sleeps until a command: staging a lazy event must nudge it.
    thread_asleep: bool,
    /// Set at shutdown: nothing more is accepted.
    closed: bool,
}

/// The active segment and what follows a commit (index, ledger). Only a leader touches it.
struct Disk {
    data: PathBuf,
    segment: SegmentWriter,
    ledger: Arc<Mutex<Ledger>>,
    index: Arc<Mutex<Index>>,
    key: Arc<RecorderKey>,
    max_segment_bytes: u64,
}

/// Shared by every session's recorder handle and the background thread.
pub struct Core {
    staging: Mutex<Staging>,
    /// Signalled when a commit ends while the background thread waits for its turn.
    turn: Condvar,
    disk: Mutex<Disk>,
    failed: watch::Sender<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// What a waiting session should do next.
pub enum Step {
    /// It holds the turn: it commits what is staged itself ([`Core::lead_reserved`]).
    Lead,
    /// A commit is running: wait for the ticket, or for the turn to lead the next one.
    Wait(oneshot::Receiver<()>),
    /// Its batch is committed: the ticket is resolved.
    Done,
}

/// A record (or several) staged: its batch and its acknowledgement.
pub struct Staged {
    pub batch: u64,
    pub rx: oneshot::Receiver<Result<(), RecorderError>>,
    /// The background thread sleeps and nobody waits for this: the caller must nudge it.
    pub nudge: bool,
}

/// What the recorder starts from: the store's files and the chains recovery found open.
pub struct Parts {
    pub data: PathBuf,
    pub key: Arc<RecorderKey>,
    pub opts: WriterOptions,
    pub segment: SegmentWriter,
    pub ledger: Arc<Mutex<Ledger>>,
    pub index: Arc<Mutex<Index>>,
    pub chains: HashMap<SessionKey, ChainState>,
}

impl Core {
    pub fn new(parts: Parts, failed: watch::Sender<Option<String>>) -> Core {
        let Parts {
            data,
            key,
            opts,
            segment,
            ledger,
            index,
            chains,
        } = parts;
        let max_segment_bytes = opts.max_segment_bytes;
        Core {
            staging: Mutex::new(Staging {
                key: key.clone(),
                opts,
                chains,
                pending: Pending::new(),
                taken: 0,
                committed: 0,
                committing: false,
                turn_waiters: VecDeque::new(),
                thread_waiting: false,
                thread_asleep: false,
                closed: false,
            }),
            turn: Condvar::new(),
            disk: Mutex::new(Disk {
                data,
                segment,
                ledger,
                index,
                key,
                max_segment_bytes,
            }),
            failed,
        }
    }

    fn failed_reason(&self) -> Option<String> {
        self.failed.borrow().clone()
    }

    fn fail(&self, reason: String) {
        tracing::error!(%reason, "recorder failed; refusing all further actions");
        self.failed.send_replace(Some(reason));
    }

    /// Frames and chains records of one session into the current batch, in order, under one
    /// acknowledgement.
    pub fn stage(
        &self,
        session: SessionKey,
        records: &[(u8, i64, Vec<u8>)],
        urgent: bool,
        permit: OwnedSemaphorePermit,
    ) -> Result<Staged, RecorderError> {
        if let Some(r) = self.failed_reason() {
            return Err(RecorderError::Failed(r));
        }
        let mut st = lock(&self.staging);
        if st.closed {
            return Err(RecorderError::Closed("recorder stopped".into()));
        }
        let was_empty = st.pending.is_empty();
        for (kind_code, ts_ns, body) in records {
            st.append(session, *kind_code, *ts_ns, body);
            st.maybe_checkpoint(session, false);
        }
        let (ack, rx) = oneshot::channel();
        let max_batch_bytes = st.opts.max_batch_bytes;
        let p = &mut st.pending;
        p.acks.push(ack);
        p.permits.push(permit);
        p.touch();
        if urgent || p.buf.len() >= max_batch_bytes {
            p.urgent += 1;
        }
        let nudge = !urgent && was_empty && st.thread_asleep;
        if nudge {
            st.thread_asleep = false;
        }
        Ok(Staged {
            batch: st.taken,
            rx,
            nudge,
        })
    }

    /// For a session waiting for its record in `batch`: lead a commit if none runs, else wait.
    /// `newly_urgent` marks a lazily staged record as awaited now. On `Step::Lead` the caller
    /// holds the turn and must call [`Core::lead_reserved`] without awaiting in between.
    pub fn step(&self, batch: u64, newly_urgent: bool) -> Step {
        let mut st = lock(&self.staging);
        if st.committed > batch {
            return Step::Done;
        }
        if newly_urgent && st.taken == batch {
            st.pending.urgent += 1;
        }
        if st.committing {
            let (tx, rx) = oneshot::channel();
            st.turn_waiters.push_back(tx);
            return Step::Wait(rx);
        }
        // Not committed and nothing in flight: the record is still staged.
        st.committing = true;
        Step::Lead
    }

    /// Commits what is staged, for a caller that reserved the turn with `step`.
    pub fn lead_reserved(&self) {
        let st = lock(&self.staging);
        self.lead(st);
    }

    /// Takes the staged batch and commits it on the calling thread, then hands the turn on.
    fn lead(&self, mut st: MutexGuard<'_, Staging>) {
        st.committing = true;
        st.taken += 1;
        let batch = std::mem::replace(&mut st.pending, Pending::new());
        drop(st);
        {
            let mut disk = lock(&self.disk);
            disk.commit(batch, self);
        }
        let mut st = lock(&self.staging);
        st.committing = false;
        st.committed += 1;
        self.pass_turn(&mut st);
    }

    /// After a commit: if someone waits for what is staged now, wake one of them to lead.
    fn pass_turn(&self, st: &mut Staging) {
        if st.committing {
            return;
        }
        if st.pending.urgent > 0 {
            while let Some(w) = st.turn_waiters.pop_front() {
                if w.send(()).is_ok() {
                    break;
                }
            }
        } else {
            st.turn_waiters.retain(|w| !w.is_closed());
        }
        if st.thread_waiting {
            self.turn.notify_all();
        }
    }

    /// A waiter handed the turn went away without using it.
    pub fn turn_lost(&self) {
        let mut st = lock(&self.staging);
        self.pass_turn(&mut st);
    }

    /// Commits everything staged up to now from the background thread, waiting for its turn.
    fn commit_from_thread(&self) {
        let mut st = lock(&self.staging);
        let batch = st.taken;
        loop {
            if st.committed > batch {
                return;
            }
            if !st.committing {
                if st.taken > batch {
                    // Our batch was taken and its commit has ended.
                    return;
                }
                self.lead(st);
                return;
            }
            st.thread_waiting = true;
            st = match self.turn.wait(st) {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            st.thread_waiting = false;
        }
    }

    /// Runs a command from the background thread against the stage.
    fn handle(&self, cmd: Command, stopping: &mut Option<Ack>) {
        if let Some(reason) = self.failed_reason() {
            if let Command::Shutdown { ack } = cmd {
                *stopping = Some(ack);
                return;
            }
            reject(cmd, &reason);
            return;
        }
        let mut st = lock(&self.staging);
        match cmd {
            Command::Seal {
                session,
                ts_ns,
                end_body,
                outcome,
                ack,
            } => st.seal(session, ts_ns, &end_body, outcome, ack),
            Command::Ledger { leaves, ack } => {
                st.pending.ledger_requests.push((leaves, ack));
                st.pending.urgent += 1;
            }
            Command::Barrier { ack } => {
                st.pending.acks.push(ack);
                st.pending.urgent += 1;
            }
            Command::Nudge => {}
            Command::Rotate { ack } => {
                st.pending.rotate.push(ack);
                st.pending.urgent += 1;
            }
            Command::Shutdown { ack } => *stopping = Some(ack),
        }
        st.pending.touch();
    }

    /// The background thread: commands, timed checkpoints, and commits of what nobody waits
    /// for once it has waited the lazy delay.
    pub fn run(self: Arc<Self>, rx: mpsc::Receiver<Command>) {
        let mut stopping: Option<Ack> = None;
        let mut disconnected = false;
        loop {
            let timeout = {
                let mut st = lock(&self.staging);
                let tick = st.opts.checkpoint_every.min(Duration::from_millis(500));
                match st.pending.since {
                    Some(since) if !st.pending.is_empty() => {
                        st.thread_asleep = false;
                        st.opts.lazy_delay.saturating_sub(since.elapsed())
                    }
                    _ => {
                        st.thread_asleep = true;
                        tick
                    }
                }
            };
            match rx.recv_timeout(timeout) {
                Ok(cmd) => {
                    self.handle(cmd, &mut stopping);
                    while let Ok(cmd) = rx.try_recv() {
                        self.handle(cmd, &mut stopping);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => disconnected = true,
            }
            let finishing = disconnected || stopping.is_some();
            let due = {
                let mut st = lock(&self.staging);
                st.thread_asleep = false;
                if self.failed_reason().is_none() {
                    st.checkpoint_all(finishing);
                }
                let p = &st.pending;
                !p.is_empty()
                    && (finishing
                        || p.urgent > 0
                        || p.since.is_some_and(|s| s.elapsed() >= st.opts.lazy_delay))
            };
            if due {
                self.commit_from_thread();
            }
            if finishing {
                {
                    let mut st = lock(&self.staging);
                    st.closed = true;
                }
                // Anything staged between the last commit and `closed`.
                self.commit_from_thread();
                lock(&self.disk).close_segment();
                if let Some(ack) = stopping.take() {
                    let _ = ack.send(Ok(()));
                }
                return;
            }
        }
    }
}

impl Staging {
    fn append(&mut self, session: SessionKey, kind_code: u8, ts_ns: i64, body: &[u8]) {
        let p = &mut self.pending;
        let chain = self.chains.entry(session).or_default();
        let seq = chain.next_seq;
        if seq == 0 {
            chain.started_ns = ts_ns;
            if kind_code == kind::SESSION_START
                && let Ok(Body::Event(Event::SessionStart(info))) =
                    codec::decode_body(kind_code, body)
            {
                chain.agent = info.agent;
                chain.target = info.target;
            }
        }
        let header = RecordHeader {
            version: FORMAT_VERSION,
            kind: kind_code,
            session,
            seq,
            ts_ns,
        };
        let at = p.buf.len();
        let hash = frame::write_frame(&mut p.buf, &header, body, &chain.prev_hash);
        let frame_len = p.buf.len() - at;
        chain.prev_hash = hash;
        chain.next_seq += 1;
        if kind_code != kind::CHECKPOINT && kind_code != kind::SEAL {
            chain.unsigned += 1;
            chain.unsigned_since.get_or_insert_with(Instant::now);
        } else {
            chain.unsigned = 0;
            chain.unsigned_since = None;
        }
        let body_range = wants_body(kind_code).then(|| {
            let start = at + frame::FRAME_HEADER_LEN + frame::RECORD_HEADER_LEN;
            (start, start + body.len())
        });
        p.index.push(PendingIndex {
            session,
            kind: kind_code,
            seq,
            ts_ns,
            hash,
            at,
            frame_len,
            body: body_range,
        });
    }

    fn seal(
        &mut self,
        session: SessionKey,
        ts_ns: i64,
        end_body: &[u8],
        outcome: String,
        ack: SealAck,
    ) {
        if !self.chains.contains_key(&session) {
            let _ = ack.send(Err(RecorderError::Closed(
                "session has no open recording to seal".into(),
            )));
            return;
        }
        self.append(session, kind::SESSION_END, ts_ns, end_body);
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
        self.append(session, kind::SEAL, seal_ts, &w.buf);
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
        self.pending.seals.push((session, leaf, ack));
        self.pending.urgent += 1;
    }

    fn sign(&self, session: &SessionKey, context: &[u8], seq: u64, hash: &[u8; 32]) -> Signed {
        Signed {
            covered_seq: seq,
            covered_hash: *hash,
            key_id: self.key.key_id,
            signature: self
                .key
                .sign(&signing::checkpoint_message(context, session, seq, hash)),
        }
    }

    fn maybe_checkpoint(&mut self, session: SessionKey, by_time: bool) {
        let Some(chain) = self.chains.get(&session) else {
            return;
        };
        let due = chain.unsigned >= self.opts.checkpoint_every_events
            || (by_time
                && chain.unsigned > 0
                && chain
                    .unsigned_since
                    .is_some_and(|t| t.elapsed() >= self.opts.checkpoint_every));
        if !due {
            return;
        }
        let covered_seq = chain.next_seq - 1;
        let signed = self.sign(
            &session,
            signing::CHECKPOINT_CONTEXT,
            covered_seq,
            &chain.prev_hash,
        );
        let mut w = Writer::with_capacity(160);
        codec::encode_body(&Body::Checkpoint(signed), &mut w);
        self.append(session, kind::CHECKPOINT, now_ns(), &w.buf);
    }

    /// Signs every session whose unsigned events are older than the checkpoint interval
    /// (or all of them at shutdown).
    fn checkpoint_all(&mut self, everything: bool) {
        let keys: Vec<SessionKey> = self
            .chains
            .iter()
            .filter(|(_, c)| {
                c.unsigned > 0
                    && (everything
                        || c.unsigned_since
                            .is_some_and(|t| t.elapsed() >= self.opts.checkpoint_every))
            })
            .map(|(k, _)| *k)
            .collect();
        if !keys.is_empty() {
            self.pending.touch();
        }
        for k in keys {
            if everything {
                if let Some(c) = self.chains.get_mut(&k) {
                    c.unsigned = self.opts.checkpoint_every_events;
                }
                self.maybe_checkpoint(k, false);
            } else {
                self.maybe_checkpoint(k, true);
            }
        }
    }
}

impl Disk {
    /// Cuts the active segment's preallocated tail (at shutdown; recovery does it after a crash).
    fn close_segment(&mut self) {
        if let Err(e) = self.segment.close() {
            tracing::warn!(segment = self.segment.number, error = %e, "cannot close the segment");
        }
    }

    /// Writes and fdatasyncs one batch, acknowledges it, then updates the index and ledger.
    fn commit(&mut self, p: Pending, core: &Core) {
        let Pending {
            acks,
            urgent: _,
            since: _,
            seals,
            ledger_requests,
            index,
            buf,
            rotate,
            permits,
        } = p;
        let result = match core.failed_reason() {
            Some(r) => Err(r),
            None if buf.is_empty() => Ok(()),
            None => {
                let segment_no = self.segment.number;
                self.segment
                    .append(&buf)
                    .and_then(|()| self.segment.sync())
                    .map_err(|e| {
                        let reason = format!("cannot write segment {segment_no}: {e}");
                        core.fail(reason.clone());
                        reason
                    })
            }
        };
        drop(permits);
        if let Err(reason) = result {
            let err = || RecorderError::Failed(reason.clone());
            for a in acks {
                let _ = a.send(Err(err()));
            }
            for (_, _, a) in seals {
                let _ = a.send(Err(err()));
            }
            for (_, a) in ledger_requests {
                let _ = a.send(Err(err()));
            }
            for a in rotate {
                let _ = a.send(Err(err()));
            }
            return;
        }
        let segment_no = self.segment.number;
        let base = self.segment.len - buf.len() as u64;
        // The events are durable: acknowledge before the ledger and index work.
        for a in acks {
            let _ = a.send(Ok(()));
        }
        if buf.is_empty() && seals.is_empty() && ledger_requests.is_empty() && rotate.is_empty() {
            return;
        }
        self.segment.release_cache();
        {
            let mut idx = lock(&self.index);
            for pi in &index {
                let body = pi.body.map_or(&[][..], |(s, e)| &buf[s..e]);
                let rec = Indexed {
                    session: pi.session,
                    kind: pi.kind,
                    seq: pi.seq,
                    ts_ns: pi.ts_ns,
                    hash: pi.hash,
                    segment: segment_no,
                    offset: base + pi.at as u64,
                    frame_len: pi.frame_len as u64,
                    body,
                };
                if let Err(e) = idx.apply(&rec) {
                    tracing::warn!(error = %e, "index update failed; `proctor reindex` will rebuild it");
                }
            }
        }
        self.commit_ledger(seals, ledger_requests, core);
        let rotate_now =
            !rotate.is_empty() && self.segment.len > super::segment::SEGMENT_HEADER_LEN;
        if self.segment.len >= self.max_segment_bytes || rotate_now {
            let next = self.segment.number + 1;
            self.close_segment();
            match SegmentWriter::create(&self.data, next) {
                Ok(s) => self.segment = s,
                Err(e) => core.fail(format!("cannot create segment {next}: {e}")),
            }
        } else {
            // After the acknowledgements: zero-filling ahead costs the next batch, not this one.
            self.segment.reserve();
        }
        for a in rotate {
            let _ = a.send(match core.failed_reason() {
                Some(r) => Err(RecorderError::Failed(r)),
                None => Ok(()),
            });
        }
    }

    fn commit_ledger(
        &mut self,
        seals: Vec<(SessionKey, Leaf, SealAck)>,
        requests: Vec<(Vec<Leaf>, LedgerAck)>,
        core: &Core,
    ) {
        if seals.is_empty() && requests.is_empty() {
            return;
        }
        let now = now_ns();
        let mut leaves: Vec<Leaf> = seals.iter().map(|(_, l, _)| l.clone()).collect();
        for (ls, _) in &requests {
            leaves.extend(ls.iter().cloned());
        }
        for l in leaves.iter_mut() {
            l.logged_ns = now;
        }
        let result = lock(&self.ledger).append(&leaves, &self.key, now);
        let indexes = match result {
            Ok(i) => i,
            Err(e) => {
                let reason = format!("cannot append to the ledger: {e}");
                core.fail(reason.clone());
                for (_, _, a) in seals {
                    let _ = a.send(Err(RecorderError::Failed(reason.clone())));
                }
                for (_, a) in requests {
                    let _ = a.send(Err(RecorderError::Failed(reason.clone())));
                }
                return;
            }
        };
        let mut it = indexes.into_iter();
        let mut idx = lock(&self.index);
        for (session, leaf, ack) in seals {
            let li = it.next().unwrap_or_default();
            if let Err(e) = idx.set_ledger_index(&session, li) {
                tracing::warn!(error = %e, "index update failed");
            }
            let _ = ack.send(Ok(SealInfo {
                final_seq: leaf.final_seq,
                final_hash: leaf.final_hash,
                ledger_index: li,
            }));
        }
        for (ls, ack) in requests {
            let mut out = Vec::with_capacity(ls.len());
            for leaf in &ls {
                let li = it.next().unwrap_or_default();
                if let Err(e) = idx.set_ledger_index(&leaf.session, li) {
                    tracing::warn!(error = %e, "index update failed");
                }
                out.push(li);
            }
            let _ = ack.send(Ok(out));
        }
        if let Err(e) = idx.flush() {
            tracing::warn!(error = %e, "index flush failed");
        }
    }
}

fn reject(cmd: Command, reason: &str) {
    let err = || RecorderError::Failed(reason.to_string());
    match cmd {
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
