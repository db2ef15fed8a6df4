//! Recorded sessions: search by their index fields or by their text, and one session by id or
//! prefix. Reads of the store run off the async workers; the caller decides who may read
//! (auditors over the API, the local operator over the control socket) and journals the read.

use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use proctor_gate::Event;
use serde::Serialize;

use super::{Service, ServiceError};
use crate::ops::{self, Filter};
use crate::recorder::codec::Body;
use crate::recorder::index::text_filter::{TextFilter, TrigramSet};
use crate::recorder::index::{Index, SessionMeta};
use crate::recorder::reader;

/// Text search (`q`) reads the recordings themselves, so it is bounded: the newest matching
/// sessions it opens, the recorded bytes it reads, how long it may run, and the matches it
/// reports per session.
pub const TEXT_SCAN_SESSIONS: usize = 2_000;
pub const TEXT_SCAN_BYTES: u64 = 512 * 1024 * 1024;
pub const TEXT_SCAN_TIME: Duration = Duration::from_secs(10);
pub const MATCHES_PER_SESSION: usize = 5;

/// Sessions in `index` that `filter` selects, newest first (the offline CLI calls this with
/// the index it opened itself).
pub fn list_sessions(index: &Index, filter: &Filter) -> Result<Vec<SessionMeta>, ServiceError> {
    Ok(ops::list_sessions(index, filter)?)
}

/// The session `id` names in `index`: a full id, or a prefix only it has (a shared prefix is
/// refused with every candidate and its agent).
pub fn find_session(index: &Index, id: &str) -> Result<SessionMeta, ServiceError> {
    Ok(ops::find_session(index, id)?)
}

impl Service {
    /// Recorded sessions `filter` selects, from the running store's index.
    pub async fn sessions(&self, filter: Filter) -> Result<Vec<SessionMeta>, ServiceError> {
        let core = self.core.clone();
        blocking(move || {
            core.store.flush_index();
            list_sessions(core.store.index(), &filter)
        })
        .await
    }

    /// One recorded session by full id or unique prefix, from the running store's index.
    pub async fn session(&self, id: &str) -> Result<SessionMeta, ServiceError> {
        let core = self.core.clone();
        let id = id.to_string();
        blocking(move || {
            core.store.flush_index();
            find_session(core.store.index(), &id)
        })
        .await
    }
}

async fn blocking<T, F>(f: F) -> Result<T, ServiceError>
where
    F: FnOnce() -> Result<T, ServiceError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServiceError::Failed(format!("background task failed: {e}")))?
}

/// One recorded statement, exec command or command line that contains the searched text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TextMatch {
    /// The record's place in its session's chain.
    pub seq: u64,
    /// `statement`, `exec` or `command_line`.
    pub kind: &'static str,
    pub ts_ns: i64,
    /// The recorded (redacted) text, whole.
    pub text: String,
}

/// A session with text that matched: its index record and its first matches. Serialised (at
/// the HTTP edge) as the session's fields with `matches` beside them.
#[derive(Debug, Clone, Serialize)]
pub struct SessionHit {
    #[serde(flatten)]
    pub session: SessionMeta,
    pub matches: Vec<TextMatch>,
}

pub struct TextSearch {
    /// Each matching session, newest first, with at most `MATCHES_PER_SESSION` matches.
    pub found: Vec<SessionHit>,
    /// Candidate sessions whose recordings were read.
    pub scanned: usize,
    /// Candidate sessions left unread because a bound was reached (0: the search was complete).
    pub unread: usize,
}

/// Searches the statements, exec commands and command lines of `candidates` (newest first)
/// for `needle`, case-insensitively, within the `TEXT_SCAN_*` bounds, until `wanted` sessions
/// matched. Sealed sessions whose text filter shows they cannot match are not read (nor
/// counted against the bounds); a sealed session read to its end gets its filter.
pub fn search_text(
    index: &Index,
    data: &Path,
    candidates: Vec<SessionMeta>,
    needle: &str,
    wanted: usize,
) -> TextSearch {
    let needle = needle.to_lowercase();
    let started = Instant::now();
    let mut bytes = 0u64;
    let mut out = TextSearch {
        found: Vec::new(),
        scanned: 0,
        unread: 0,
    };
    let total = candidates.len();
    for (i, meta) in candidates.into_iter().enumerate() {
        if out.found.len() >= wanted {
            break;
        }
        // Sessions with nothing to search, or whose frames are no longer online.
        if (meta.statements == 0 && meta.commands == 0) || meta.purged || meta.archived.is_some() {
            continue;
        }
        match index.text_filter(&meta) {
            Ok(Some(filter)) if !filter.may_contain(&needle) => continue,
            Ok(_) => {}
            Err(e) => tracing::debug!(session = %meta.id, error = %e, "no text filter"),
        }
        if out.scanned >= TEXT_SCAN_SESSIONS
            || bytes.saturating_add(meta.record_bytes) > TEXT_SCAN_BYTES
            || started.elapsed() > TEXT_SCAN_TIME
        {
            out.unread = total - i;
            break;
        }
        out.scanned += 1;
        bytes += meta.record_bytes;
        let mut matches = Vec::new();
        // Collected only while the read may still reach the end of a sealed session.
        let mut trigrams = meta.sealed.then(TrigramSet::default);
        let result = reader::for_each_record(data, &meta, |r| {
            let Ok(Body::Event(e)) = &r.body else {
                return ControlFlow::Continue(());
            };
            let (kind, text) = match e {
                Event::Statement(s) => ("statement", s.text.as_str()),
                Event::Exec { command, .. } => ("exec", command.as_str()),
                Event::CommandLine { line, .. } => ("command_line", line.as_str()),
                _ => return ControlFlow::Continue(()),
            };
            let lowered = text.to_lowercase();
            if let Some(set) = &mut trigrams {
                set.add(&lowered);
            }
            if lowered.contains(&needle) {
                matches.push(TextMatch {
                    seq: r.header.seq,
                    kind,
                    ts_ns: r.header.ts_ns,
                    text: text.to_string(),
                });
                if matches.len() >= MATCHES_PER_SESSION {
                    trigrams = None;
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        });
        if let Err(e) = result {
            tracing::warn!(session = %meta.id, error = %e, "text search could not read a session");
            continue;
        }
        // Read to the end: the filter describes every text the session has.
        if let Some(set) = trigrams
            && let Err(e) = index.set_text_filter(&meta, &TextFilter::build(&set))
        {
            tracing::debug!(session = %meta.id, error = %e, "text filter not kept");
        }
        if !matches.is_empty() {
            out.found.push(SessionHit {
                session: meta,
                matches,
            });
        }
    }
    out
}
