//! Start-up recovery: bring the index up to date from the log, quarantine a torn tail (a write
//! a crash interrupted, never acknowledged), and seal sessions a crash left open as
//! `interrupted`. Nothing is dropped silently: every finding is journaled and logged.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use super::frame::{JOURNAL_SESSION, SessionKey};
use super::index::{Index, Indexed, parse_session_id, wants_body};
use super::ledger::{self, Entry, LEAF_SESSION_SEALED, Leaf, Ledger};
use super::segment::{self, Scanned, Scanner, SegmentWriter};
use super::signing::RecorderKey;
use super::writer::ChainState;
use super::{RecorderError, Store, StoreError};
use crate::clock::now_ns;

#[derive(Debug, Default, Clone)]
pub struct RecoveryReport {
    pub notes: Vec<String>,
    pub reindexed_records: u64,
    pub full_reindex: bool,
    pub interrupted_sessions: Vec<String>,
}

pub struct Prepared {
    pub index: Index,
    pub ledger: Ledger,
    pub segment: SegmentWriter,
    pub chains: HashMap<SessionKey, ChainState>,
    /// Chain hash of the journal's last store checkpoint (zero when there is none yet).
    pub store_previous: [u8; 32],
    pub report: RecoveryReport,
}

pub fn index_dir(data: &Path) -> PathBuf {
    data.join("index")
}

/// Copies `bytes` bytes at `offset` of `path` into `DATA/quarantine/` and truncates the file
/// there. Returns the quarantine file.
pub fn quarantine(
    data: &Path,
    label: &str,
    path: &Path,
    offset: u64,
    bytes: u64,
) -> io::Result<PathBuf> {
    let qdir = data.join("quarantine");
    fs::create_dir_all(&qdir)?;
    let content = segment::read_range_path(path, offset, offset + bytes)?;
    let name = format!("{label}-{}-at-{offset}-{}.torn", file_stem(path), now_ns());
    let qpath = qdir.join(name);
    fs::write(&qpath, &content)?;
    fs::File::open(&qpath)?.sync_all()?;
    segment::sync_dir(&qdir)?;
    let f = OpenOptions::new().write(true).open(path)?;
    f.set_len(offset)?;
    f.sync_all()?;
    Ok(qpath)
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Feeds the index every record from `(segment, offset)` onwards. Returns records applied.
pub fn catch_up_index(
    data: &Path,
    index: &Index,
    from: (u64, u64),
    repair_tail: bool,
    report: &mut RecoveryReport,
) -> Result<u64, StoreError> {
    let segments = segment::list_segments(data).map_err(StoreError::io("list segments"))?;
    let last = segments.last().copied();
    let mut applied = 0u64;
    for &number in &segments {
        if number < from.0 {
            continue;
        }
        let start = if number == from.0 {
            from.1.max(segment::SEGMENT_HEADER_LEN)
        } else {
            segment::SEGMENT_HEADER_LEN
        };
        let path = segment::segment_path(data, number);
        let buf = fs::read(&path).map_err(StoreError::io(format!("read {}", path.display())))?;
        if let Err(what) = segment::check_header(&buf) {
            report
                .notes
                .push(format!("segment {number}: {what}; skipped"));
            continue;
        }
        // Where the data ends (after the last frame), for trimming a preallocated tail.
        let mut data_end = start as usize;
        let mut torn = false;
        for item in Scanner::new(&buf, start as usize) {
            match item {
                Scanned::Frame {
                    offset,
                    record,
                    frame,
                } => {
                    data_end = offset as usize + frame.len();
                    let rec = Indexed {
                        session: record.header.session,
                        kind: record.header.kind,
                        seq: record.header.seq,
                        ts_ns: record.header.ts_ns,
                        hash: record.hash,
                        segment: number,
                        offset,
                        frame_len: frame.len() as u64,
                        body: if wants_body(record.header.kind) {
                            record.body
                        } else {
                            &[]
                        },
                    };
                    index.apply(&rec)?;
                    applied += 1;
                }
                Scanned::Damage { offset, what, .. } => {
                    let msg = format!(
                        "segment {number} offset {offset}: {what}; run `proctor verify` (records here are not trusted)"
                    );
                    tracing::error!("{msg}");
                    report.notes.push(msg);
                }
                Scanned::TornTail { offset, bytes } => {
                    torn = true;
                    if repair_tail && Some(number) == last {
                        let q = quarantine(data, "segment", &path, offset, bytes)
                            .map_err(StoreError::io("quarantine a torn tail"))?;
                        let msg = format!(
                            "segment {number} ended with a torn write of {bytes} bytes at offset {offset} (interrupted by a crash, never acknowledged); moved to {}",
                            q.display()
                        );
                        tracing::warn!("{msg}");
                        report.notes.push(msg);
                    } else {
                        let msg = format!(
                            "segment {number} has {bytes} unreadable bytes at offset {offset} (torn or cut)"
                        );
                        tracing::error!("{msg}");
                        report.notes.push(msg);
                    }
                }
            }
        }
        // A segment its writer never closed (a crash) ends with preallocated zeros: cut them
        // so that only the active segment ever has a zero tail.
        if repair_tail && !torn && Some(number) == last {
            match segment::trim_zero_tail(&path, &buf, data_end) {
                Ok(true) => tracing::info!(
                    segment = number,
                    bytes = buf.len() - data_end,
                    "trimmed the preallocated tail of a segment left open"
                ),
                Ok(false) => {}
                Err(e) => report.notes.push(format!(
                    "segment {number}: cannot trim its preallocated tail: {e}"
                )),
            }
        }
    }
    Ok(applied)
}

/// Opens the index, rebuilding it from the log when it is missing or unreadable.
pub fn open_index(
    data: &Path,
    report: &mut RecoveryReport,
    repair_tail: bool,
) -> Result<Index, StoreError> {
    let dir = index_dir(data);
    let index = match Index::open(&dir) {
        Ok(i) => i,
        Err(e) => {
            let aside = data.join(format!("index.broken-{}", now_ns()));
            let msg = format!(
                "index unreadable ({e}); moved to {} and rebuilt from the log",
                aside.display()
            );
            tracing::warn!("{msg}");
            report.notes.push(msg);
            fs::rename(&dir, &aside).map_err(StoreError::io("move the broken index aside"))?;
            Index::open(&dir)?
        }
    };
    let from = index.indexed_upto();
    if from == (0, 0) {
        report.full_reindex = true;
    }
    report.reindexed_records = catch_up_index(data, &index, from, repair_tail, report)?;
    if report.full_reindex {
        restore_ledger_positions(data, &index)?;
        // The first-use baseline lives in the index too, and is derived from the log as well.
        match super::baseline::rebuild(data, &index) {
            Ok(0) => {}
            Ok(n) => report.notes.push(format!(
                "first-use baseline rebuilt from the log: {n} entries"
            )),
            Err(e) => report
                .notes
                .push(format!("cannot rebuild the first-use baseline: {e}")),
        }
    }
    index.flush()?;
    Ok(index)
}

/// After a full rebuild, the index learns each session's ledger position from the ledger.
fn restore_ledger_positions(data: &Path, index: &Index) -> Result<(), StoreError> {
    let scan = ledger::scan_ledger(&ledger::ledger_path(data))
        .map_err(StoreError::io("read the ledger"))?;
    let mut n = 0u64;
    for (_, e) in scan.entries {
        if let Entry::Leaf { data, .. } = e {
            if let Ok(leaf) = Leaf::decode(&data)
                && leaf.kind == LEAF_SESSION_SEALED
            {
                index.set_ledger_index(&leaf.session, n)?;
            }
            n += 1;
        }
    }
    Ok(())
}

pub fn prepare(data: &Path, key: &RecorderKey) -> Result<Prepared, StoreError> {
    let mut report = RecoveryReport::default();
    let index = open_index(data, &mut report, true)?;
    // Blobs a crash left without their record, now that the log's tail is settled.
    report.notes.extend(super::orphans::sweep(data, &index));
    let (mut ledger, note) = Ledger::open(data).map_err(StoreError::io("open the ledger"))?;
    report.notes.extend(note);
    if ledger.size() == 0 {
        // A new ledger is format 2 from its first leaf; an older one is upgraded by `finish`
        // once the sessions a crash left open are sealed.
        ledger
            .append(&[Leaf::format(now_ns())], key, now_ns())
            .map_err(StoreError::io("start the ledger"))?;
    }
    let segments = segment::list_segments(data).map_err(StoreError::io("list segments"))?;
    let next = segments.last().map_or(1, |n| n + 1);
    let segment = SegmentWriter::create(data, next).map_err(StoreError::io("create a segment"))?;
    let mut chains = HashMap::new();
    let mut open_metas = index.open_sessions();
    let mut store_previous = [0u8; 32];
    if let Ok(Some(j)) = index.get(&JOURNAL_SESSION) {
        if let Some(h) = &j.last_store_checkpoint
            && hex::decode_to_slice(h, &mut store_previous).is_err()
        {
            report
                .notes
                .push("the journal's last store checkpoint hash in the index is unreadable".into());
        }
        open_metas.push(j);
    }
    for meta in open_metas {
        let Some(key) = parse_session_id(&meta.id) else {
            continue;
        };
        let mut prev = [0u8; 32];
        if hex::decode_to_slice(&meta.last_hash, &mut prev).is_err() {
            report.notes.push(format!(
                "session {}: index has no usable chain position",
                meta.id
            ));
            continue;
        }
        chains.insert(
            key,
            ChainState {
                next_seq: meta.last_seq + 1,
                prev_hash: prev,
                started_ns: meta.started_ns,
                agent: meta.agent.clone(),
                target: meta.target.clone(),
                unsigned: 0,
                unsigned_since: None,
            },
        );
    }
    Ok(Prepared {
        index,
        ledger,
        segment,
        chains,
        store_previous,
        report,
    })
}

/// Seals what a crash left open and makes the ledger account for every session.
pub async fn finish(store: &mut Store) -> Result<(), RecorderError> {
    super::interrupted::seal_open_sessions(store).await?;
    super::interrupted::fill_ledger(store).await?;
    let notes = store.recovery.notes.clone();
    for n in &notes {
        store.recorder.journal("recovery", n).await?;
    }
    if !store.recovery.interrupted_sessions.is_empty() {
        let text = format!(
            "sealed {} interrupted session(s): {}",
            store.recovery.interrupted_sessions.len(),
            store.recovery.interrupted_sessions.join(", ")
        );
        store.recorder.journal("recovery", &text).await?;
    }
    store.flush_index();
    Ok(())
}

/// Rebuilds the index from scratch (`proctor reindex`).
pub fn reindex(data: &Path) -> Result<RecoveryReport, StoreError> {
    let _lock = super::lock_data_dir(data)?;
    let dir = index_dir(data);
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(StoreError::io("remove the old index"))?;
    }
    let mut report = RecoveryReport::default();
    let index = open_index(data, &mut report, false)?;
    index.persist()?;
    Ok(report)
}

pub fn index_for_reading(data: &Path) -> Result<(Index, RecoveryReport), StoreError> {
    let mut report = RecoveryReport::default();
    let index = open_index(data, &mut report, false)?;
    Ok((index, report))
}
