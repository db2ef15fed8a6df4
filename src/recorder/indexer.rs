//! The indexer thread: applies to the index what the writer made durable, off the writer's
//! thread. The writer hands each committed batch over an unbounded channel and goes on; so a
//! reader of the index (a long search, an export, `sessions list`) can at most delay the
//! index, never an acknowledgement. Readers that must see their own writes (`sessions show`
//! right after a seal) first call `sync`, which waits until everything handed over before it
//! is applied and flushed.

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::frame::SessionKey;
use super::index::{Index, Indexed};

/// A record written in a batch, for the index once the batch is durable.
pub struct PendingIndex {
    pub session: SessionKey,
    pub kind: u8,
    pub seq: u64,
    pub ts_ns: i64,
    pub hash: [u8; 32],
    /// Offset of the frame within the batch, and its length.
    pub at: usize,
    pub frame_len: usize,
    /// Where the body is, for the kinds the index reads: within the batch buffer while the
    /// writer builds it, within the job's `bodies` once handed over.
    pub body: Option<(usize, usize)>,
}

pub enum IndexJob {
    /// The records of one durable batch, written at `base` of `segment`; each record's `body`
    /// range is into `bodies`.
    Records {
        segment: u64,
        base: u64,
        records: Vec<PendingIndex>,
        bodies: Vec<u8>,
    },
    /// Ledger positions of sealed sessions.
    LedgerIndex(Vec<(SessionKey, u64)>),
    /// Answered once everything before it is applied and flushed.
    Sync(Sender<()>),
}

/// How long a reader waits for the index to catch up before reading what it has.
const SYNC_WAIT: Duration = Duration::from_secs(10);

pub fn spawn(index: Arc<Index>) -> std::io::Result<(Sender<IndexJob>, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("proctor-indexer".into())
        .spawn(move || run(&index, &rx))?;
    Ok((tx, handle))
}

/// Waits until the indexer has applied everything sent before this call.
pub fn sync(tx: &Sender<IndexJob>) {
    let (ack, done) = mpsc::channel();
    if tx.send(IndexJob::Sync(ack)).is_err() {
        return;
    }
    if done.recv_timeout(SYNC_WAIT).is_err() {
        tracing::warn!("the index did not catch up in time; reading what it has");
    }
}

/// How often, at most, the index's changes are written to sled while records keep coming.
/// Readers merge the in-memory state with sled, so a later flush hides nothing from them; it
/// only means a rescan of a little more log after a crash. Flushing after every durable batch
/// (thousands a second under load) kept sled's I/O threads busy with a third of proctor's CPU.
const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Runs until every sender is gone. Applies all queued jobs; flushes when a reader asks
/// (`Sync`), at most every [`FLUSH_EVERY`] otherwise, and at the end.
fn run(index: &Index, rx: &Receiver<IndexJob>) {
    let mut syncs = Vec::new();
    // Changes applied since the last flush, and when that flush was.
    let mut unflushed = false;
    let mut flushed_at = Instant::now();
    loop {
        let next = if unflushed {
            let wait = FLUSH_EVERY.saturating_sub(flushed_at.elapsed());
            match rx.recv_timeout(wait) {
                Ok(job) => Some(job),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(job) => Some(job),
                Err(_) => break,
            }
        };
        if let Some(job) = next {
            apply(index, job, &mut syncs);
            while let Ok(job) = rx.try_recv() {
                apply(index, job, &mut syncs);
            }
            unflushed = true;
        }
        if unflushed && (!syncs.is_empty() || flushed_at.elapsed() >= FLUSH_EVERY) {
            flush(index);
            unflushed = false;
            flushed_at = Instant::now();
            for s in syncs.drain(..) {
                let _ = s.send(());
            }
        }
    }
    flush(index);
    for s in syncs {
        let _ = s.send(());
    }
}

fn flush(index: &Index) {
    if let Err(e) = index.flush() {
        tracing::warn!(error = %e, "index flush failed");
    }
}

fn apply(index: &Index, job: IndexJob, syncs: &mut Vec<Sender<()>>) {
    match job {
        IndexJob::Records {
            segment,
            base,
            records,
            bodies,
        } => {
            for pi in &records {
                let body = pi
                    .body
                    .and_then(|(s, e)| bodies.get(s..e))
                    .unwrap_or(&[][..]);
                let rec = Indexed {
                    session: pi.session,
                    kind: pi.kind,
                    seq: pi.seq,
                    ts_ns: pi.ts_ns,
                    hash: pi.hash,
                    segment,
                    offset: base + pi.at as u64,
                    frame_len: pi.frame_len as u64,
                    body,
                };
                if let Err(e) = index.apply(&rec) {
                    tracing::warn!(error = %e, "index update failed; `proctor reindex` will rebuild it");
                }
            }
        }
        IndexJob::LedgerIndex(positions) => {
            for (session, li) in positions {
                if let Err(e) = index.set_ledger_index(&session, li) {
                    tracing::warn!(error = %e, "index update failed");
                }
            }
        }
        IndexJob::Sync(ack) => syncs.push(ack),
    }
}
