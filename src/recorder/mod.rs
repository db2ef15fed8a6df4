//! The evidence recorder: hash-chained, signed, group-committed session recordings, a
//! store-wide Merkle ledger, an index that can always be rebuilt, and verification.
//! The byte layout is specified in `FORMAT.md` beside this file.

pub mod baseline;
pub mod blobs;
pub mod codec;
pub mod consistency;
pub mod frame;
pub mod gauges;
pub mod index;
mod indexer;
mod interrupted;
mod lanes;
pub mod ledger;
pub mod orphans;
pub mod reader;
pub mod recover;
pub mod segment;
pub mod signing;
pub mod store_checkpoint;
pub mod timestamp;
pub mod verify;
pub mod wire;
pub mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use proctor_gate::{Event, Outcome};
use std::sync::mpsc;
use thiserror::Error;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};

use self::codec::Body;
use self::frame::{JOURNAL_SESSION, SessionKey};
use self::index::Index;
use self::ledger::Ledger;
use self::signing::RecorderKey;
use self::store_checkpoint::StoreCheckpoints;
use self::wire::Writer;
use self::writer::{Command, WriterThread};
pub use self::writer::{SealInfo, WriterOptions};

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RecorderError {
    /// The writer could not make data durable; proctor refuses all actions until restarted.
    #[error("recorder failed: {0}")]
    Failed(String),
    #[error("recorder closed: {0}")]
    Closed(String),
    /// A record for a session whose recording is sealed (or was never opened): a chain is
    /// never restarted, so nothing can follow a seal.
    #[error("the recording of this session is sealed; nothing more is recorded in it")]
    Sealed,
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error(
        "data directory {0} is in use by a running proctor (its lock is held); use the control socket or stop it"
    )]
    Locked(PathBuf),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Key(#[from] signing::KeyError),
    #[error(transparent)]
    Index(#[from] index::IndexError),
}

impl StoreError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
        let context = context.into();
        move |source| StoreError::Io { context, source }
    }
}

/// Encodes an event's body; done by the calling session so that encoding runs in parallel.
pub fn encode_event(event: &Event) -> (u8, Vec<u8>) {
    let mut w = Writer::with_capacity(event.weight());
    codec::encode_event_into(event, &mut w);
    (codec::event_kind(event), w.buf)
}

/// Bytes of encoded-but-unwritten events allowed in memory before sessions are paused (once
/// for small records and once for large ones).
pub const DEFAULT_QUEUE_BUDGET: usize = 64 * 1024 * 1024;

/// Whether someone waits for an event as soon as it is queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// Nobody waits yet (results, output): the writer may hold the event back for its lazy
    /// delay to share one fdatasync with later ones; awaiting the ticket ends that delay.
    Lazy,
    /// The ticket is awaited at once (actions, anything forwarded only once durable).
    Now,
}

/// A durability ticket: resolves when the event is on disk.
pub struct Ticket {
    rx: oneshot::Receiver<Result<(), RecorderError>>,
    /// Set for an event queued without urgency: waiting on it tells the writer that someone
    /// now waits, so it commits at once instead of when its lazy delay runs out.
    nudge: Option<mpsc::Sender<Command>>,
}

impl Ticket {
    fn urgent(rx: oneshot::Receiver<Result<(), RecorderError>>) -> Ticket {
        Ticket { rx, nudge: None }
    }

    pub async fn wait(mut self) -> Result<(), RecorderError> {
        if let Some(tx) = self.nudge.take() {
            match self.rx.try_recv() {
                Ok(r) => return r,
                Err(oneshot::error::TryRecvError::Empty) => {
                    let _ = tx.send(Command::Nudge);
                }
                Err(oneshot::error::TryRecvError::Closed) => {
                    return Err(RecorderError::Closed("recorder stopped".into()));
                }
            }
        }
        match self.rx.await {
            Ok(r) => r,
            Err(_) => Err(RecorderError::Closed("recorder stopped".into())),
        }
    }
}

/// Cheap, clonable handle to the writer.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Command>,
    budget: Arc<Semaphore>,
    /// Large records (`lanes::LARGE_RECORD_BYTES` and up) queue in a budget of their own:
    /// the semaphore is fair, so a small record behind a large one waiting for room in one
    /// shared budget waited for a whole large commit (or several) before it was even queued.
    large_budget: Arc<Semaphore>,
    budget_max: usize,
    failed: watch::Receiver<Option<String>>,
    gauges: Arc<gauges::Gauges>,
    /// The data directory, where large bodies are written out of line (`blobs`).
    data: Arc<PathBuf>,
}

impl Recorder {
    pub fn failure(&self) -> Option<String> {
        self.failed.borrow().clone()
    }

    pub fn failure_watch(&self) -> watch::Receiver<Option<String>> {
        self.failed.clone()
    }

    /// The writer's figures (durable records, the unsigned window).
    pub fn gauges(&self) -> &gauges::Gauges {
        &self.gauges
    }

    /// Bytes of events queued for the writer and not yet durable (its memory budget in use).
    pub fn queued_bytes(&self) -> usize {
        (2 * self.budget_max)
            .saturating_sub(self.budget.available_permits() + self.large_budget.available_permits())
    }

    fn check(&self) -> Result<(), RecorderError> {
        match self.failure() {
            Some(r) => Err(RecorderError::Failed(r)),
            None => Ok(()),
        }
    }

    /// Queues an event; waits only for room in the bounded queue. The ticket resolves when the
    /// event is durable.
    pub async fn append(
        &self,
        session: SessionKey,
        ts_ns: i64,
        event: &Event,
        urgency: Urgency,
    ) -> Result<Ticket, RecorderError> {
        self.check()?;
        let (kind, body) = encode_event(event);
        self.append_raw(session, ts_ns, kind, body, urgency).await
    }

    pub async fn append_raw(
        &self,
        session: SessionKey,
        ts_ns: i64,
        kind: u8,
        body: Vec<u8>,
        urgency: Urgency,
    ) -> Result<Ticket, RecorderError> {
        let urgent = urgency == Urgency::Now;
        let (kind, body) = self.out_of_line(session, kind, body).await?;
        let bytes = body.len() + 128;
        let mut ticket = self
            .send_weighted(bytes, |ack, permit| Command::Append {
                session,
                kind,
                ts_ns,
                body,
                ack: Some(ack),
                urgent,
                _permit: Some(permit),
            })
            .await?;
        if !urgent {
            ticket.nudge = Some(self.tx.clone());
        }
        Ok(ticket)
    }

    /// A large body is written to its own blob file and made durable there, on a blocking
    /// thread, before anything is queued (see `blobs`): the record queued for the chain is
    /// the small kind-68 record that names it. Other bodies are returned as they are.
    async fn out_of_line(
        &self,
        session: SessionKey,
        kind: u8,
        body: Vec<u8>,
    ) -> Result<(u8, Vec<u8>), RecorderError> {
        if !blobs::goes_external(&session, kind, body.len()) {
            return Ok((kind, body));
        }
        let data = self.data.clone();
        let stored =
            tokio::task::spawn_blocking(move || blobs::store(&data, &session, kind, &body))
                .await
                .map_err(|e| RecorderError::Failed(format!("blob writer stopped: {e}")))?;
        match stored {
            Ok(reference) => Ok((codec::kind::EXTERNAL, reference)),
            Err(e) => {
                tracing::error!(error = %e, "cannot write a large record body; the action is refused");
                Err(RecorderError::Failed(format!(
                    "cannot write a large record body: {e}"
                )))
            }
        }
    }

    /// Waits for `bytes` of the writer's memory budget, then queues the command built with the
    /// acknowledgement channel and the budget permit.
    async fn send_weighted(
        &self,
        bytes: usize,
        command: impl FnOnce(writer::Ack, OwnedSemaphorePermit) -> Command,
    ) -> Result<Ticket, RecorderError> {
        let weight = bytes.min(self.budget_max) as u32;
        let budget = if bytes >= lanes::LARGE_RECORD_BYTES {
            &self.large_budget
        } else {
            &self.budget
        };
        let permit = budget
            .clone()
            .acquire_many_owned(weight)
            .await
            .map_err(|_| RecorderError::Closed("recorder stopped".into()))?;
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(command(ack, permit))
            .map_err(|_| RecorderError::Closed("recorder stopped".into()))?;
        Ok(Ticket::urgent(rx))
    }

    /// Queues several events of one session in order under one ticket, which resolves when the
    /// last (and so every one) of them is durable.
    pub async fn append_many(
        &self,
        session: SessionKey,
        events: &[(i64, &Event)],
    ) -> Result<Ticket, RecorderError> {
        self.check()?;
        let mut records: Vec<(u8, i64, Vec<u8>)> = Vec::with_capacity(events.len());
        for (ts, ev) in events {
            let (kind, body) = encode_event(ev);
            let (kind, body) = self.out_of_line(session, kind, body).await?;
            records.push((kind, *ts, body));
        }
        let bytes: usize = records.iter().map(|(_, _, b)| b.len() + 128).sum();
        self.send_weighted(bytes, |ack, permit| Command::AppendMany {
            session,
            records,
            ack,
            _permit: Some(permit),
        })
        .await
    }

    /// Records an event and waits until it is durable.
    pub async fn record(
        &self,
        session: SessionKey,
        ts_ns: i64,
        event: &Event,
    ) -> Result<(), RecorderError> {
        self.append(session, ts_ns, event, Urgency::Now)
            .await?
            .wait()
            .await
    }

    /// Ends a recording: `SessionEnd`, the signed seal, and the ledger leaf, all durable.
    pub async fn seal(
        &self,
        session: SessionKey,
        ts_ns: i64,
        outcome: Outcome,
        reason: &str,
    ) -> Result<SealInfo, RecorderError> {
        self.check()?;
        let (_, end_body) = encode_event(&Event::SessionEnd {
            outcome,
            reason: reason.to_string(),
        });
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Command::Seal {
                session,
                ts_ns,
                end_body,
                outcome: outcome.as_str().to_string(),
                ack,
            })
            .map_err(|_| RecorderError::Closed("recorder stopped".into()))?;
        rx.await
            .map_err(|_| RecorderError::Closed("recorder stopped".into()))?
    }

    /// Records a store-level fact in the journal chain, durably.
    pub async fn journal(&self, topic: &str, text: &str) -> Result<(), RecorderError> {
        self.check()?;
        let mut w = Writer::default();
        codec::encode_body(
            &Body::JournalNote {
                topic: topic.into(),
                text: text.into(),
            },
            &mut w,
        );
        self.append_raw(
            JOURNAL_SESSION,
            crate::clock::now_ns(),
            codec::kind::JOURNAL_NOTE,
            w.buf,
            Urgency::Now,
        )
        .await?
        .wait()
        .await
    }

    pub async fn ledger(&self, leaves: Vec<ledger::Leaf>) -> Result<Vec<u64>, RecorderError> {
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Command::Ledger { leaves, ack })
            .map_err(|_| RecorderError::Closed("recorder stopped".into()))?;
        rx.await
            .map_err(|_| RecorderError::Closed("recorder stopped".into()))?
    }

    /// Starts a new segment once everything queued so far is durable.
    pub async fn rotate(&self) -> Result<(), RecorderError> {
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Command::Rotate { ack })
            .map_err(|_| RecorderError::Closed("recorder stopped".into()))?;
        Ticket::urgent(rx).wait().await
    }

    /// Waits until everything queued so far is durable.
    pub async fn barrier(&self) -> Result<(), RecorderError> {
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Command::Barrier { ack })
            .map_err(|_| RecorderError::Closed("recorder stopped".into()))?;
        Ticket::urgent(rx).wait().await
    }
}

/// An open store: the data directory, locked, with its writer running.
pub struct Store {
    pub data: PathBuf,
    pub recorder: Recorder,
    pub key: Arc<RecorderKey>,
    index: Arc<Index>,
    /// The indexer thread's channel (see `indexer`), and the thread.
    indexer: Mutex<Option<mpsc::Sender<indexer::IndexJob>>>,
    indexer_thread: Mutex<Option<JoinHandle<()>>>,
    ledger: Arc<Mutex<Ledger>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    pub recovery: recover::RecoveryReport,
    /// Retention (online, total) given to sessions recovery seals; `serve` sets the config's.
    pub default_retention: (std::time::Duration, std::time::Duration),
    lock: Mutex<Option<File>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Store {
    /// Opens the store for writing: locks it, recovers from any crash (torn tails quarantined,
    /// index brought up to date) and starts the writer. Sessions left open by a crash are
    /// sealed `interrupted` by `finish_recovery`, which needs the writer running.
    pub fn open(data: &Path, opts: WriterOptions) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data)
            .map_err(StoreError::io(format!("create {}", data.display())))?;
        let lock = lock_data_dir(data)?;
        let key = Arc::new(RecorderKey::load_or_init(data)?);
        let prepared = recover::prepare(data, &key)?;
        let (failed_tx, failed_rx) = watch::channel(None);
        let (tx, rx) = mpsc::channel();
        let index = Arc::new(prepared.index);
        let (index_tx, indexer_thread) =
            indexer::spawn(index.clone()).map_err(StoreError::io("start the indexer thread"))?;
        let ledger = Arc::new(Mutex::new(prepared.ledger));
        let gauges = Arc::new(gauges::Gauges::default());
        let store_checkpoints = StoreCheckpoints::new(
            opts.store_checkpoint_every,
            prepared.store_previous,
            gauges.clone(),
        );
        let thread = WriterThread {
            data: data.to_path_buf(),
            key: key.clone(),
            opts,
            segment: prepared.segment,
            ledger: ledger.clone(),
            index: index_tx.clone(),
            chains: prepared.chains,
            failed: failed_tx,
            stopping: None,
            store: store_checkpoints,
            deferred: Default::default(),
        };
        let writer = std::thread::Builder::new()
            .name("proctor-recorder".into())
            .spawn(move || thread.run(rx))
            .map_err(StoreError::io("start the recorder thread"))?;
        Ok(Store {
            data: data.to_path_buf(),
            recorder: Recorder {
                tx,
                budget: Arc::new(Semaphore::new(DEFAULT_QUEUE_BUDGET)),
                large_budget: Arc::new(Semaphore::new(DEFAULT_QUEUE_BUDGET)),
                budget_max: DEFAULT_QUEUE_BUDGET,
                failed: failed_rx,
                data: Arc::new(data.to_path_buf()),
                gauges,
            },
            key,
            index,
            indexer: Mutex::new(Some(index_tx)),
            indexer_thread: Mutex::new(Some(indexer_thread)),
            ledger,
            writer: Mutex::new(Some(writer)),
            recovery: prepared.report,
            default_retention: (
                std::time::Duration::from_secs(365 * 86_400),
                std::time::Duration::from_secs(5 * 365 * 86_400 + 86_400),
            ),
            lock: Mutex::new(Some(lock)),
        })
    }

    /// Seals sessions a crash left open, fills ledger gaps, and journals what recovery found.
    pub async fn finish_recovery(&mut self) -> Result<(), RecorderError> {
        recover::finish(self).await
    }

    /// The index, for reading (and for retention's changes). No outer lock: see `index`.
    pub fn index(&self) -> &Index {
        &self.index
    }

    pub fn ledger(&self) -> MutexGuard<'_, Ledger> {
        lock(&self.ledger)
    }

    /// Waits until the index holds everything durable so far (a reader's own writes).
    pub fn flush_index(&self) {
        let tx = lock(&self.indexer).clone();
        if let Some(tx) = tx {
            indexer::sync(&tx);
        }
    }

    /// Stops the writer after everything queued is durable (signing what is unsigned),
    /// persists the index and releases the data directory's lock. Later appends fail.
    pub async fn shutdown(&self) {
        let (ack, rx) = oneshot::channel();
        if self.recorder.tx.send(Command::Shutdown { ack }).is_ok() {
            let _ = rx.await;
        }
        self.finish_shutdown();
    }

    fn finish_shutdown(&self) {
        let writer = lock(&self.writer).take();
        if let Some(w) = writer {
            let _ = w.join();
        }
        // The writer is gone: the indexer applies what it sent and stops once its last
        // sender is dropped; joined so that sled is closed when the data lock is released.
        lock(&self.indexer).take();
        if let Some(t) = lock(&self.indexer_thread).take() {
            let _ = t.join();
        }
        if let Err(e) = self.index().persist() {
            tracing::warn!(error = %e, "index persist failed");
        }
        lock(&self.lock).take();
    }

    /// `shutdown` for callers outside a runtime.
    pub fn close(self) {
        let (ack, _rx) = oneshot::channel();
        let _ = self.recorder.tx.send(Command::Shutdown { ack });
        self.finish_shutdown();
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if lock(&self.lock).is_some() {
            self.finish_shutdown_on_drop();
        }
    }
}

impl Store {
    fn finish_shutdown_on_drop(&self) {
        let (ack, _rx) = oneshot::channel();
        let _ = self.recorder.tx.send(Command::Shutdown { ack });
        self.finish_shutdown();
    }
}

/// Takes the data directory's exclusive lock, held for the life of the process.
pub fn lock_data_dir(data: &Path) -> Result<File, StoreError> {
    let path = data.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(StoreError::io(format!("open {}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked(data.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(StoreError::io(format!("lock {}", path.display()))(e))
        }
    }
}

/// Whether a running proctor holds the data directory.
pub fn is_locked(data: &Path) -> bool {
    let path = data.join("LOCK");
    match std::fs::OpenOptions::new().write(true).open(&path) {
        Ok(f) => matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests;
