//! Read-side operations shared by the CLI (offline), the control socket and the HTTP API:
//! finding sessions, reading their events, verifying and exporting.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use proctor_gate::inert::Line;

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
    #[error("{} matches {n} {what}; give more of the id: {list}", Line(.prefix), n = .candidates.len(), list = Candidates(.candidates))]
    Ambiguous {
        prefix: String,
        /// What the ids name ("sessions", "held actions"), for the message.
        what: &'static str,
        candidates: Vec<Candidate>,
    },
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

/// One id a prefix could mean, with whose it is, so a person can tell the candidates apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub id: String,
    pub agent: String,
}

impl Candidate {
    pub fn new(id: &str, agent: &str) -> Candidate {
        Candidate {
            id: id.to_string(),
            agent: agent.to_string(),
        }
    }
}

/// The candidates as a person reads them: agent names are agent-controlled text, so inert.
struct Candidates<'a>(&'a [Candidate]);

impl std::fmt::Display for Candidates<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} (agent {})", Line(&c.id), Line(&c.agent))?;
        }
        Ok(())
    }
}

/// Picks the one candidate that equals `id` or starts with it. Several matches are refused
/// with every candidate named, never resolved to the first; `what` names them in the message.
pub fn resolve_prefix(
    id: &str,
    what: &'static str,
    candidates: impl IntoIterator<Item = Candidate>,
) -> Result<Candidate, OpsError> {
    let id = id.trim();
    let mut found: Vec<Candidate> = Vec::new();
    for candidate in candidates {
        if candidate.id == id {
            return Ok(candidate);
        }
        if id.len() >= MIN_PREFIX && candidate.id.starts_with(id) {
            found.push(candidate);
        }
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    found.dedup_by(|a, b| a.id == b.id);
    match found.len() {
        0 => Err(OpsError::NoSuchSession(id.to_string())),
        1 => Ok(found.remove(0)),
        _ => Err(OpsError::Ambiguous {
            prefix: id.to_string(),
            what,
            candidates: found,
        }),
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
    let chosen = resolve_prefix(
        id,
        "sessions",
        all.iter().map(|m| Candidate::new(&m.id, &m.agent)),
    )?;
    all.into_iter()
        .find(|m| m.id == chosen.id)
        .ok_or(OpsError::NoSuchSession(chosen.id))
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

    fn of(ids: &[&str]) -> Vec<Candidate> {
        ids.iter().map(|id| Candidate::new(id, "agent-x")).collect()
    }

    fn resolved(id: &str, ids: &[&str]) -> Option<String> {
        resolve_prefix(id, "sessions", of(ids)).ok().map(|c| c.id)
    }

    #[test]
    fn an_ambiguous_prefix_is_refused_with_every_candidate() {
        match resolve_prefix("01930b7e", "sessions", of(&[A, B])) {
            Err(OpsError::Ambiguous {
                prefix, candidates, ..
            }) => {
                assert_eq!(prefix, "01930b7e");
                assert_eq!(candidates, of(&[A, B]));
            }
            other => panic!("expected ambiguity, got {other:?}"),
        }
        let text = resolve_prefix("01930b7e", "sessions", of(&[B, A]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(text.contains(A) && text.contains(B), "{text}");
    }

    #[test]
    fn the_candidates_agents_are_shown_inert() {
        let evil = "agent\u{1b}]52;c;AAAA\u{7}\u{202e}x";
        let c = vec![Candidate::new(A, evil), Candidate::new(B, "ok")];
        let text = resolve_prefix("01930b7e", "sessions", c)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(text.contains("(agent ok)"), "{text}");
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{202e}') && !text.contains('\u{7}'),
            "{text:?}"
        );
    }

    #[test]
    fn a_unique_prefix_or_full_id_resolves() {
        assert_eq!(
            resolved("01930b7e-1111-7000-8000-000000000002", &[A, B]),
            Some(B.to_string())
        );
        assert_eq!(
            resolved("01930b7e-1111-7000-8000-0000000000", &[A]),
            Some(A.to_string())
        );
        // A full id is never ambiguous, even if it prefixes nothing else.
        assert_eq!(resolved(A, &[A, B]), Some(A.to_string()));
        assert!(matches!(
            resolve_prefix("0193", "sessions", of(&["ffff"])),
            Err(OpsError::NoSuchSession(_))
        ));
        // Too short to mean anything.
        assert!(matches!(
            resolve_prefix("019", "sessions", of(&[A])),
            Err(OpsError::NoSuchSession(_))
        ));
    }
}
