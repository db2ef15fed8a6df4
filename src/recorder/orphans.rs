//! Blob files no durable record names (FORMAT.md, "External bodies").
//!
//! A session writes a large body to its blob and makes it durable before the kind-68 record
//! naming it is queued for the chain (`blobs::store`); a crash between the two leaves a blob
//! no record names, and a crash inside `store` leaves its temporary file. Neither is evidence
//! (the chain never committed to it), yet it is what an agent sent, perhaps a read that ran
//! while its record was in flight: so it is not deleted but moved out of the session's
//! directory to `blobs/orphans/`, and the recovery record names each file moved. Retention
//! leaves that directory alone; an operator removes it after reading the recovery notes.
//!
//! Which blobs can be orphans: those of a session the crash left open (its records are read
//! back to learn which blobs they name), every file of a directory whose session the log does
//! not know, and temporary files anywhere. A sealed session's blobs are not read back at
//! every start: its seal was committed after every record it names, and a blob is written
//! only while its session is open.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::blobs::{self, BLOBS_DIR, External};
use super::codec;
use super::frame::SessionKey;
use super::index::{Index, SessionMeta};
use super::segment::{self, Scanned, Scanner};
use super::wire::Reader;

/// Where orphaned blobs are moved, under the blobs directory (not a session id, so never a
/// session's directory).
pub const ORPHANS_DIR: &str = "orphans";

/// Moves every orphaned blob to `blobs/orphans/SESSION/NAME`; returns one note per file moved
/// (and per directory that could not be read), for the recovery record.
pub fn sweep(data: &Path, index: &Index) -> Vec<String> {
    let root = data.join(BLOBS_DIR);
    let entries = match fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => return vec![format!("cannot list {}: {e}", root.display())],
    };
    let mut notes = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == ORPHANS_DIR || !entry.path().is_dir() {
            continue;
        }
        let Ok(id) = uuid::Uuid::parse_str(&name) else {
            continue;
        };
        let key: SessionKey = *id.as_bytes();
        if let Err(e) = sweep_session(data, index, &key, &name, &mut notes) {
            notes.push(format!(
                "blobs of session {name}: cannot check for orphans: {e}"
            ));
        }
    }
    notes
}

fn sweep_session(
    data: &Path,
    index: &Index,
    key: &SessionKey,
    name: &str,
    notes: &mut Vec<String>,
) -> io::Result<()> {
    let dir = blobs::session_dir(data, key);
    let meta = index
        .get(key)
        .map_err(|e| io::Error::other(e.to_string()))?;
    // Blobs the session's durable records name; `None`: every finished blob is named.
    let named: Option<HashSet<String>> = match &meta {
        None => Some(HashSet::new()),
        Some(m) if m.is_open() => Some(named_blobs(data, key, m)?),
        Some(_) => None,
    };
    let mut moved = Vec::new();
    for entry in fs::read_dir(&dir)?.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let temporary = file.starts_with('.') && file.ends_with(".tmp");
        let orphan = temporary || named.as_ref().is_some_and(|n| !n.contains(&file));
        if orphan {
            moved.push((file, entry.path()));
        }
    }
    if moved.is_empty() {
        return Ok(());
    }
    let to_dir = data.join(BLOBS_DIR).join(ORPHANS_DIR).join(name);
    fs::create_dir_all(&to_dir)?;
    for (file, from) in moved {
        let to = to_dir.join(&file);
        let size = fs::metadata(&from).map(|m| m.len()).unwrap_or(0);
        fs::rename(&from, &to)?;
        let what = if file.ends_with(".tmp") {
            "an unfinished blob write"
        } else {
            "a blob no durable record names"
        };
        let msg = format!(
            "session {name}: {what} ({size} bytes; a crash came before its record was durable) moved to {}",
            display(data, &to)
        );
        tracing::warn!("{msg}");
        notes.push(msg);
    }
    // The moves must survive a crash as the recovery record does. A directory left empty (a
    // session the log does not know) goes too.
    segment::sync_dir(&dir)?;
    segment::sync_dir(&to_dir)?;
    let _ = fs::remove_dir(&dir);
    let root = data.join(BLOBS_DIR);
    segment::sync_dir(&root.join(ORPHANS_DIR))?;
    segment::sync_dir(&root)?;
    Ok(())
}

/// The names (hex SHA-256) of the blobs the session's records in the log name.
fn named_blobs(data: &Path, key: &SessionKey, meta: &SessionMeta) -> io::Result<HashSet<String>> {
    let mut named = HashSet::new();
    for span in &meta.spans {
        let path = segment::segment_path(data, span.segment);
        let len = fs::metadata(&path)?.len();
        let buf = segment::read_range(data, span.segment, span.start, Some(span.end.min(len)))?;
        for item in Scanner::new(&buf, 0) {
            if let Scanned::Frame { record, .. } = item
                && record.header.session == *key
                && record.header.kind == codec::kind::EXTERNAL
                && let Ok(ext) = External::decode(&mut Reader::new(record.body))
            {
                named.insert(hex::encode(ext.sha256));
            }
        }
    }
    Ok(named)
}

fn display(data: &Path, path: &Path) -> String {
    path.strip_prefix(data)
        .map(PathBuf::from)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}
