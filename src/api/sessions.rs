//! Sessions: search, one session's record and its events (auditor); live sessions and kill
//! (operator).

use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use proctor_gate::Event;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{Principal, Role, audit};
use super::{ApiError, ApiJson, ApiPath, ApiQuery, ApiState, blocking};
use crate::control::{self, Request};
use crate::ops::{self, Filter};
use crate::recorder::codec::Body;
use crate::recorder::index::text_filter::{TextFilter, TrigramSet};
use crate::recorder::index::{Index, SessionMeta};
use crate::recorder::reader;

pub const DEFAULT_LIST_LIMIT: usize = 500;
pub const MAX_LIST_LIMIT: usize = 10_000;
pub const DEFAULT_EVENTS_LIMIT: usize = 500;
pub const MAX_EVENTS_LIMIT: usize = 5_000;

/// Text search (`q`) reads the recordings themselves, so it is bounded: the longest query, the
/// newest matching sessions it opens, the recorded bytes it reads, how long it may run, and the
/// matches it reports per session. When a bound stops it early the response says so in the
/// `X-Proctor-Search-Incomplete` header (how many candidate sessions were left unread).
pub const MAX_QUERY_CHARS: usize = 256;
pub const TEXT_SCAN_SESSIONS: usize = 2_000;
pub const TEXT_SCAN_BYTES: u64 = 512 * 1024 * 1024;
pub const TEXT_SCAN_TIME: Duration = Duration::from_secs(10);
pub const MATCHES_PER_SESSION: usize = 5;
pub const SEARCH_INCOMPLETE_HEADER: &str = "x-proctor-search-incomplete";

/// The CLI's `sessions list` filters. Unknown parameters are refused: a misspelt filter must
/// not silently widen a search into "everything".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub agent: Option<String>,
    pub target: Option<String>,
    /// RFC 3339 time, a date, or a duration ago (`2h`), as on the command line.
    pub since: Option<String>,
    pub until: Option<String>,
    pub privilege: Option<String>,
    pub protocol: Option<String>,
    pub outcome: Option<String>,
    pub open: Option<bool>,
    pub limit: Option<usize>,
    /// Text inside the sessions' statements, exec commands and submitted command lines
    /// (case-insensitive substring).
    pub q: Option<String>,
}

fn time(name: &str, v: Option<String>) -> Result<Option<i64>, ApiError> {
    v.as_deref()
        .map(crate::clock::parse_time)
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("{name}: {e}")))
}

impl ListQuery {
    pub fn into_filter(self) -> Result<Filter, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIST_LIMIT);
        if limit == 0 || limit > MAX_LIST_LIMIT {
            return Err(ApiError::BadRequest(format!(
                "limit must be 1..={MAX_LIST_LIMIT}"
            )));
        }
        Ok(Filter {
            agent: self.agent,
            target: self.target,
            since_ns: time("since", self.since)?,
            until_ns: time("until", self.until)?,
            privilege: self.privilege,
            protocol: self.protocol.map(|p| {
                if p == "pg" || p == "postgresql" {
                    "postgres".into()
                } else {
                    p
                }
            }),
            outcome: self.outcome,
            open: self.open.unwrap_or(false),
            limit: Some(limit),
        })
    }
}

/// Finds a session by full id or unique prefix (as the CLI does).
pub async fn find(state: &ApiState, id: String) -> Result<SessionMeta, ApiError> {
    let core = state.core.clone();
    blocking(move || {
        core.store.flush_index();
        let index = core.store.index();
        Ok(ops::find_session(index, &id)?)
    })
    .await
}

pub async fn list(
    State(st): State<ApiState>,
    p: Principal,
    ApiQuery(mut q): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    p.require(&[Role::Auditor], "search recorded sessions")?;
    let text = q.q.take().map(|t| t.trim().to_string());
    let mut filter = q.into_filter()?;
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        let core = st.core.clone();
        let found = blocking(move || {
            core.store.flush_index();
            let index = core.store.index();
            Ok(ops::list_sessions(index, &filter)?)
        })
        .await?;
        return Ok(Json(found).into_response());
    };
    if text.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::BadRequest(format!(
            "q must be at most {MAX_QUERY_CHARS} characters"
        )));
    }
    let wanted = filter.limit.take().unwrap_or(DEFAULT_LIST_LIMIT);
    let core = st.core.clone();
    let data = st.core.data_dir();
    let needle = text.clone();
    let search = super::search_lane::run(move || {
        core.store.flush_index();
        let index = core.store.index();
        let candidates = ops::list_sessions(index, &filter)?;
        let search = search_text(index, &data, candidates, &needle, wanted);
        // The answer is built here too, at the search's priority: it can be large.
        let body = serde_json::to_vec(&search.found)
            .map_err(|e| ApiError::Internal(format!("search results: {e}")))?;
        Ok((search, body))
    })
    .await?;
    let (search, body) = search;
    // Reading recorded statements and commands is a read of those recordings.
    let note = format!(
        "{} {:?} searched the text of {} sessions for {:?} ({} matched)",
        p.role.as_str(),
        p.name,
        search.scanned,
        text,
        search.found.len()
    );
    st.core
        .recorder
        .journal("audit", &note)
        .await
        .map_err(|e| {
            ApiError::Unavailable(format!(
                "the search could not be recorded in the audit journal, so it is refused: {e}"
            ))
        })?;
    let mut resp = (
        [(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    if search.unread > 0 {
        resp.headers_mut()
            .insert(SEARCH_INCOMPLETE_HEADER, HeaderValue::from(search.unread));
    }
    Ok(resp)
}

pub struct TextSearch {
    /// Each matching session's record with `matches`: `[{seq, kind, ts_ns, text}]`.
    pub found: Vec<Value>,
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
                matches.push(json!({
                    "seq": r.header.seq,
                    "kind": kind,
                    "ts_ns": r.header.ts_ns,
                    "text": text,
                }));
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
            let mut v = json!(meta);
            v["matches"] = Value::Array(matches);
            out.found.push(v);
        }
    }
    out
}

pub async fn show(
    State(st): State<ApiState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SessionMeta>, ApiError> {
    p.require(&[Role::Auditor], "read recorded sessions")?;
    let meta = find(&st, id).await?;
    audit(&st, &p, "read the record of", &meta.id).await?;
    Ok(Json(meta))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    pub from: Option<u64>,
    pub limit: Option<usize>,
}

pub async fn events(
    State(st): State<ApiState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    p.require(&[Role::Auditor], "read recorded sessions")?;
    let limit = q.limit.unwrap_or(DEFAULT_EVENTS_LIMIT);
    if limit == 0 || limit > MAX_EVENTS_LIMIT {
        return Err(ApiError::BadRequest(format!(
            "limit must be 1..={MAX_EVENTS_LIMIT}"
        )));
    }
    let from = q.from.unwrap_or(0);
    let meta = find(&st, id).await?;
    audit(
        &st,
        &p,
        &format!("read events from seq {from} (at most {limit}) of"),
        &meta.id,
    )
    .await?;
    let data = st.core.data_dir();
    let session = meta.id.clone();
    let events = blocking(move || Ok(ops::events(&data, &meta, from, limit)?)).await?;
    let next_from = if events.len() == limit {
        events
            .last()
            .and_then(|e| e.get("seq"))
            .and_then(Value::as_u64)
            .map(|s| s + 1)
    } else {
        None
    };
    Ok(Json(
        json!({ "session": session, "events": events, "next_from": next_from }),
    ))
}

pub async fn live(State(st): State<ApiState>, p: Principal) -> Result<Json<Value>, ApiError> {
    p.require(&[Role::Operator], "list live sessions")?;
    Ok(Json(crate::cluster::api::live(&st.core).await))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillBody {
    pub reason: String,
}

pub async fn kill(
    State(st): State<ApiState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<KillBody>,
) -> Result<Json<Value>, ApiError> {
    p.require(&[Role::Operator], "kill sessions")?;
    if body.reason.trim().is_empty() {
        return Err(ApiError::BadRequest(
            "a reason is required to kill a session".into(),
        ));
    }
    // In cluster mode a session on another node is killed there, in the owner's record.
    let who = crate::cluster::commands::Issuer {
        identity: p.name.clone(),
        label: None,
    };
    let id = match crate::cluster::api::kill(&st.core, &id, &who, body.reason.trim()).await? {
        crate::cluster::api::Routed::Local(id) => id,
        crate::cluster::api::Routed::Done(v) => return Ok(Json(v)),
    };
    // The seal's reason names the operator, so the recording says who ended it.
    let reason = format!("{} (killed by {})", body.reason.trim(), p.name);
    // Resolved here so an ambiguous prefix is a 400 listing the candidates, not a 404.
    let live = st.core.sessions.list();
    let id = match ops::resolve_prefix(&id, live.iter().map(|s| s.id.as_str())) {
        Ok(full) => full,
        Err(ops::OpsError::NoSuchSession(_)) => {
            return Err(ApiError::NotFound(format!(
                "no live session matches {id:?}"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let resp = control::handle(
        &st.core,
        Request::Kill {
            id,
            reason: reason.clone(),
        },
    )
    .await;
    if !resp.ok {
        return Err(ApiError::NotFound(
            resp.error.unwrap_or_else(|| "no such live session".into()),
        ));
    }
    let killed = resp
        .result
        .get("killed")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    tracing::info!(session = %killed, operator = %p.name, "session killed over the API");
    let _ = st
        .core
        .recorder
        .journal(
            "kill",
            &format!("operator {:?} killed session {killed}: {reason}", p.name),
        )
        .await;
    Ok(Json(json!({ "killed": killed, "reason": reason })))
}
