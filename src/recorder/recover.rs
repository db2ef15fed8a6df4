//! Start-up recovery: bring the index up to date from the log, quarantine a torn tail (a write
//! a crash interrupted, never acknowledged), and seal sessions a crash left open as
//! `interrupted`. Nothing is dropped silently: every finding is journaled and logged.

use std::collections::{HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use proctor_gate::Outcome;

use super::frame::{JOURNAL_SESSION, SessionKey};
use super::index::{Index, Indexed, parse_session_id, wants_body};
use super::ledger::{self, Entry, LEAF_SESSION_SEALED, Leaf, Ledger};
use super::segment::{self, Scanned, Scanner, SegmentWriter};
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
    index: &mut Index,
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
    let mut index = match Index::open(&dir) {
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
    report.reindexed_records = catch_up_index(data, &mut index, from, repair_tail, report)?;
    if report.full_reindex {
        restore_ledger_positions(data, &mut index)?;
    }
    index.flush()?;
    Ok(index)
}

/// After a full rebuild, the index learns each session's ledger position from the ledger.
fn restore_ledger_positions(data: &Path, index: &mut Index) -> Result<(), StoreError> {
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

pub fn prepare(data: &Path) -> Result<Prepared, StoreError> {
    let mut report = RecoveryReport::default();
    let index = open_index(data, &mut report, true)?;
    let (ledger, note) = Ledger::open(data).map_err(StoreError::io("open the ledger"))?;
    report.notes.extend(note);
    let segments = segment::list_segments(data).map_err(StoreError::io("list segments"))?;
    let next = segments.last().map_or(1, |n| n + 1);
    let segment = SegmentWriter::create(data, next).map_err(StoreError::io("create a segment"))?;
    let mut chains = HashMap::new();
    let mut open_metas = index.open_sessions();
    if let Ok(Some(j)) = index.get(&JOURNAL_SESSION) {
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
        report,
    })
}

/// Seals what a crash left open and makes the ledger account for every sealed session.
pub async fn finish(store: &mut Store) -> Result<(), RecorderError> {
    let open = store.index().open_sessions();
    for meta in open {
        let Some(key) = parse_session_id(&meta.id) else {
            continue;
        };
        let reason = "proctor stopped before this session ended (sealed at restart)";
        let now = now_ns();
        let (online, total) = store.default_retention;
        store
            .recorder
            .record(
                key,
                now,
                &proctor_gate::Event::Retention {
                    online_until_ns: now.saturating_add(online.as_nanos() as i64),
                    retain_until_ns: now.saturating_add(total.as_nanos() as i64),
                    policy: "default (sealed at restart)".into(),
                },
            )
            .await?;
        store
            .recorder
            .seal(key, now_ns(), Outcome::Interrupted, reason)
            .await?;
        tracing::warn!(session = %meta.id, "sealed an interrupted session");
        store.recovery.interrupted_sessions.push(meta.id.clone());
    }
    let unledgered = store
        .index()
        .unledgered_sessions()
        .map_err(|e| RecorderError::Failed(e.to_string()))?;
    let in_ledger: HashSet<SessionKey> = {
        let scan = ledger::scan_ledger(&ledger::ledger_path(&store.data))
            .map_err(|e| RecorderError::Failed(e.to_string()))?;
        scan.entries
            .into_iter()
            .filter_map(|(_, e)| match e {
                Entry::Leaf { data, .. } => Leaf::decode(&data).ok().map(|l| l.session),
                _ => None,
            })
            .collect()
    };
    let mut leaves = Vec::new();
    for meta in unledgered {
        let Some(key) = parse_session_id(&meta.id) else {
            continue;
        };
        if in_ledger.contains(&key) {
            continue;
        }
        let mut final_hash = [0u8; 32];
        if hex::decode_to_slice(&meta.last_hash, &mut final_hash).is_err() {
            continue;
        }
        leaves.push(Leaf {
            kind: LEAF_SESSION_SEALED,
            session: key,
            final_seq: meta.last_seq,
            final_hash,
            started_ns: meta.started_ns,
            ended_ns: meta.last_ts_ns,
            agent: meta.agent.clone(),
            target: meta.target.clone(),
            outcome: meta.outcome.clone().unwrap_or_default(),
            logged_ns: 0,
            note: "appended at restart: the seal was durable but the ledger append was interrupted"
                .into(),
        });
        store.recovery.notes.push(format!(
            "session {}: ledger entry completed at restart",
            meta.id
        ));
    }
    if !leaves.is_empty() {
        store.recorder.ledger(leaves).await?;
    }
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
    let mut index = open_index(data, &mut report, false)?;
    index.persist()?;
    Ok(report)
}

pub fn index_for_reading(data: &Path) -> Result<(Index, RecoveryReport), StoreError> {
    let mut report = RecoveryReport::default();
    let index = open_index(data, &mut report, false)?;
    Ok((index, report))
}
