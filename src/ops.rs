//! Read-side operations shared by the CLI (offline), the control socket and the HTTP API:
//! finding sessions, reading their events, verifying and exporting.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::export;
use crate::recorder::index::{Index, SessionMeta};
use crate::recorder::reader;
use crate::recorder::signing;
use crate::recorder::verify::{self, Report, VerifyOptions};

#[derive(Debug, Error)]
pub enum OpsError {
    #[error("no session matches {0:?}")]
    NoSuchSession(String),
    /// A prefix shared by several sessions (UUIDv7 ids of sessions started in the same
    /// moment share long prefixes): nothing is chosen for the caller.
    #[error("{0:?} matches {n} sessions; give more of the id: {list}", n = .1.len(), list = .1.join(", "))]
    Ambiguous(String, Vec<String>),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Failed(String),
}

impl From<std::io::Error> for OpsError {
    fn from(e: std::io::Error) -> Self {
        OpsError::Failed(e.to_string())
    }
}

/// Session search filters (the same for CLI and API).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Filter {
    pub agent: Option<String>,
    pub target: Option<String>,
    pub since_ns: Option<i64>,
    pub until_ns: Option<i64>,
    pub privilege: Option<String>,
    pub protocol: Option<String>,
    pub outcome: Option<String>,
    /// Only sessions that are still open.
    #[serde(default)]
    pub open: bool,
    pub limit: Option<usize>,
}

impl Filter {
    pub fn matches(&self, m: &SessionMeta) -> bool {
        self.agent.as_ref().is_none_or(|a| &m.agent == a)
            && self.target.as_ref().is_none_or(|t| &m.target == t)
            && self
                .since_ns
                .is_none_or(|s| m.started_ns >= s || m.ended_ns.is_none_or(|e| e >= s))
            && self.until_ns.is_none_or(|u| m.started_ns <= u)
            && self.privilege.as_ref().is_none_or(|p| &m.privilege == p)
            && self.protocol.as_ref().is_none_or(|p| &m.protocol == p)
            && self
                .outcome
                .as_ref()
                .is_none_or(|o| m.outcome.as_deref() == Some(o.as_str()))
            && (!self.open || !m.sealed)
    }
}

pub fn list_sessions(index: &Index, filter: &Filter) -> Result<Vec<SessionMeta>, OpsError> {
    let all = index
        .all_sessions()
        .map_err(|e| OpsError::Failed(e.to_string()))?;
    let mut out: Vec<SessionMeta> = all.into_iter().filter(|m| filter.matches(m)).collect();
    if let Some(l) = filter.limit {
        out.truncate(l);
    }
    Ok(out)
}

/// Shortest prefix accepted: shorter ones would match too much to be meant.
pub const MIN_PREFIX: usize = 4;

/// Picks the one id among `ids` that equals `id` or starts with it. Several matches are
/// refused with every candidate named, never resolved to the first.
pub fn resolve_prefix<'a>(
    id: &str,
    ids: impl IntoIterator<Item = &'a str>,
) -> Result<String, OpsError> {
    let id = id.trim();
    let mut found: Vec<String> = Vec::new();
    for candidate in ids {
        if candidate == id {
            return Ok(candidate.to_string());
        }
        if id.len() >= MIN_PREFIX && candidate.starts_with(id) {
            found.push(candidate.to_string());
        }
    }
    found.sort();
    found.dedup();
    match found.len() {
        0 => Err(OpsError::NoSuchSession(id.to_string())),
        1 => Ok(found.remove(0)),
        _ => Err(OpsError::Ambiguous(id.to_string(), found)),
    }
}

/// Finds a session by its full id or a unique prefix.
pub fn find_session(index: &Index, id: &str) -> Result<SessionMeta, OpsError> {
    let id = id.trim();
    if let Some(key) = crate::recorder::index::parse_session_id(id)
        && let Some(m) = index
            .get(&key)
            .map_err(|e| OpsError::Failed(e.to_string()))?
    {
        return Ok(m);
    }
    if id.len() < MIN_PREFIX {
        return Err(OpsError::NoSuchSession(id.to_string()));
    }
    let all = index
        .all_sessions()
        .map_err(|e| OpsError::Failed(e.to_string()))?;
    let chosen = resolve_prefix(id, all.iter().map(|m| m.id.as_str()))?;
    all.into_iter()
        .find(|m| m.id == chosen)
        .ok_or(OpsError::NoSuchSession(chosen))
}

/// Records of a session as JSON, from `from_seq`, at most `limit`.
pub fn events(
    data: &Path,
    meta: &SessionMeta,
    from_seq: u64,
    limit: usize,
) -> Result<Vec<Value>, OpsError> {
    let mut out = Vec::new();
    reader::for_each_record(data, meta, |r| {
        if r.header.seq >= from_seq {
            out.push(export::json::record_json(&r.header, &r.hash, &r.body));
            if out.len() >= limit {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Jsonl,
    Asciicast,
    Bundle,
}

impl ExportFormat {
    pub fn parse(s: &str) -> Result<Self, OpsError> {
        match s {
            "jsonl" | "json" => Ok(ExportFormat::Jsonl),
            "asciicast" | "cast" => Ok(ExportFormat::Asciicast),
            "bundle" => Ok(ExportFormat::Bundle),
            other => Err(OpsError::Invalid(format!(
                "unknown format {other:?}: expected jsonl, asciicast or bundle"
            ))),
        }
    }
}

pub fn export(
    data: &Path,
    meta: &SessionMeta,
    format: ExportFormat,
    out: &mut dyn Write,
) -> Result<(), OpsError> {
    match format {
        ExportFormat::Jsonl => export::jsonl::write(data, meta, out)?,
        ExportFormat::Asciicast => export::asciicast::write(data, meta, out)?,
        ExportFormat::Bundle => {
            export::bundle::write(data, meta, out).map_err(|e| OpsError::Failed(e.to_string()))?
        }
    }
    Ok(())
}

/// Verifies the store (or one session) with the pinned key, or the store's own public key.
pub fn verify(
    data: &Path,
    session: Option<&str>,
    pubkey: Option<&Path>,
    live: bool,
) -> Result<(Report, String), OpsError> {
    let (key, source) = match pubkey {
        Some(p) => (
            signing::load_public_key(p).map_err(|e| OpsError::Invalid(e.to_string()))?,
            format!("pinned key {}", p.display()),
        ),
        None => (
            signing::load_public_key(&signing::public_key_path(data)).map_err(|e| {
                OpsError::Invalid(format!(
                    "{e} (pass --pubkey with the recorder's public key)"
                ))
            })?,
            "the store's own public key (pin it with --pubkey)".to_string(),
        ),
    };
    let session = match session {
        None => None,
        Some(s) => Some(
            crate::recorder::index::parse_session_id(s)
                .ok_or_else(|| OpsError::Invalid(format!("{s:?} is not a full session id")))?,
        ),
    };
    let report = verify::verify_store(data, &VerifyOptions { key, session, live })?;
    Ok((report, source))
}

#[cfg(test)]
mod prefix_tests {
    use super::*;

    const A: &str = "01930b7e-1111-7000-8000-000000000001";
    const B: &str = "01930b7e-1111-7000-8000-000000000002";

    #[test]
    fn an_ambiguous_prefix_is_refused_with_every_candidate() {
        match resolve_prefix("01930b7e", [A, B]) {
            Err(OpsError::Ambiguous(p, c)) => {
                assert_eq!(p, "01930b7e");
                assert_eq!(c, vec![A.to_string(), B.to_string()]);
            }
            other => panic!("expected ambiguity, got {other:?}"),
        }
        let text = resolve_prefix("01930b7e", [B, A])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(text.contains(A) && text.contains(B), "{text}");
    }

    #[test]
    fn a_unique_prefix_or_full_id_resolves() {
        assert_eq!(
            resolve_prefix("01930b7e-1111-7000-8000-000000000002", [A, B]).ok(),
            Some(B.to_string())
        );
        assert_eq!(
            resolve_prefix("01930b7e-1111-7000-8000-0000000000", [A]).ok(),
            Some(A.to_string())
        );
        // A full id is never ambiguous, even if it prefixes nothing else.
        assert_eq!(resolve_prefix(A, [A, B]).ok(), Some(A.to_string()));
        assert!(matches!(
            resolve_prefix("0193", ["ffff"]),
            Err(OpsError::NoSuchSession(_))
        ));
        // Too short to mean anything.
        assert!(matches!(
            resolve_prefix("019", [A]),
            Err(OpsError::NoSuchSession(_))
        ));
    }
}
