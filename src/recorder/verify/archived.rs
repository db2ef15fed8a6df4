//! Completeness of an archive directory against the store's ledger (FORMAT.md "Archives").
//!
//! An archive's manifests are not signed, so an archive checked on its own proves what each
//! bundle holds, not that none was removed with its manifest entry. The ledger is signed and
//! its archived leaf (kind 2) names every archived session's file and its SHA-256: every such
//! leaf that points into the archive must find its file there, unchanged and listed.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::super::index::session_id_string;
use super::super::ledger::{self, Entry, LEAF_SESSION_ARCHIVED, Leaf};

/// Where an archived leaf's note says the bundle went: `archived to PATH (sha256 HEX)`.
fn archived_to(note: &str) -> Option<(PathBuf, String)> {
    let rest = note.strip_prefix("archived to ")?;
    let (path, sha) = rest.rsplit_once(" (sha256 ")?;
    let sha = sha.strip_suffix(')')?;
    Some((PathBuf::from(path), sha.to_ascii_lowercase()))
}

/// The sessions the archive's manifests list (`MANIFEST-*.json`, `sessions[].session`).
fn listed_sessions(dir: &Path) -> io::Result<HashSet<String>> {
    let mut out = HashSet::new();
    for e in std::fs::read_dir(dir)? {
        let path = e?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !(name.starts_with("MANIFEST-") && name.ends_with(".json")) {
            continue;
        }
        // An unreadable manifest lists nothing here; the archive check reports it.
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&std::fs::read(&path)?) else {
            continue;
        };
        for s in v["sessions"].as_array().into_iter().flatten() {
            if let Some(id) = s["session"].as_str() {
                out.insert(id.to_string());
            }
        }
    }
    Ok(out)
}

/// One problem per archived leaf of the store at `data` that points into `dir` (by its
/// canonical path) and whose bundle is not there, differs from the leaf's SHA-256, or is not
/// listed by any manifest.
pub fn archive_completeness(data: &Path, dir: &Path) -> io::Result<Vec<String>> {
    let dir = dir.canonicalize()?;
    let listed = listed_sessions(&dir)?;
    let scan = ledger::scan_ledger(&ledger::ledger_path(data))?;
    let mut problems = Vec::new();
    for (_, entry) in &scan.entries {
        let Entry::Leaf { index, data } = entry else {
            continue;
        };
        let Ok(leaf) = Leaf::decode(data) else {
            continue; // `verify` on the store reports a leaf that does not decode
        };
        if leaf.kind != LEAF_SESSION_ARCHIVED {
            continue;
        }
        let id = session_id_string(&leaf.session);
        let Some((path, sha)) = archived_to(&leaf.note) else {
            continue;
        };
        let into_here = path
            .parent()
            .and_then(|p| p.canonicalize().ok())
            .is_some_and(|p| p == dir);
        if !into_here && !listed.contains(&id) {
            continue; // archived elsewhere
        }
        let Some(name) = path.file_name() else {
            continue;
        };
        let file = dir.join(name);
        let what = match std::fs::read(&file) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Some("is missing".to_string()),
            Err(e) => Some(format!("is unreadable ({e})")),
            Ok(bytes) if hex::encode(Sha256::digest(&bytes)) != sha => {
                Some("differs from the SHA-256 the ledger recorded".to_string())
            }
            Ok(_) if !listed.contains(&id) => Some("is listed by no manifest".to_string()),
            Ok(_) => None,
        };
        if let Some(what) = what {
            problems.push(format!(
                "session {id}: the ledger (leaf {index}) says it was archived to {}, which {what}",
                name.to_string_lossy()
            ));
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_note_proctor_writes_parses() {
        let (p, sha) = archived_to("archived to /a (b)/x.bundle.gz (sha256 ABCD)").expect("parses");
        assert_eq!(p, PathBuf::from("/a (b)/x.bundle.gz"));
        assert_eq!(sha, "abcd");
        assert!(archived_to("purged: past retention").is_none());
    }
}
