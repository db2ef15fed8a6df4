//! Sessions: search, one session's record and its events (auditor); live sessions and kill
//! (operator).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{Principal, Role, audit};
use super::{ApiError, ApiJson, ApiPath, ApiQuery, ApiState, blocking};
use crate::ops;
use crate::recorder::index::SessionMeta;
use crate::service::{Filter, Killed, Placed};
use crate::session::registry::LiveView;

pub const DEFAULT_LIST_LIMIT: usize = 500;
pub const MAX_LIST_LIMIT: usize = 10_000;
pub const DEFAULT_EVENTS_LIMIT: usize = 500;
pub const MAX_EVENTS_LIMIT: usize = 5_000;

/// Text search (`q`) reads the recordings themselves, so it is bounded: the longest query, the
/// newest matching sessions it opens, the recorded bytes it reads, how long it may run, and the
/// matches it reports per session. When a bound stops it early the response says so in the
/// `X-Proctor-Search-Incomplete` header (how many candidate sessions were left unread).
pub const MAX_QUERY_CHARS: usize = 256;
pub const SEARCH_INCOMPLETE_HEADER: &str = "x-proctor-search-incomplete";

pub use crate::service::{
    MATCHES_PER_SESSION, TEXT_SCAN_BYTES, TEXT_SCAN_SESSIONS, TEXT_SCAN_TIME, TextSearch,
    search_text,
};

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
    Ok(state.service.session(&id).await?)
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
        let found = st.service.sessions(filter).await?;
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
        let candidates = crate::service::list_sessions(index, &filter)?;
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

pub async fn live(
    State(st): State<ApiState>,
    p: Principal,
) -> Result<Json<Vec<Placed<LiveView>>>, ApiError> {
    p.require(&[Role::Operator], "list live sessions")?;
    Ok(Json(st.service.live(&p.actor()).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillBody {
    pub reason: String,
}

/// Kills the live session the id or prefix names, on whichever node owns it (an ambiguous
/// prefix is a 400 listing the candidates); the seal's reason names the operator.
pub async fn kill(
    State(st): State<ApiState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<KillBody>,
) -> Result<Json<Killed>, ApiError> {
    p.require(&[Role::Operator], "kill sessions")?;
    if body.reason.trim().is_empty() {
        return Err(ApiError::BadRequest(
            "a reason is required to kill a session".into(),
        ));
    }
    Ok(Json(
        st.service.kill(&p.actor(), &id, body.reason.trim()).await?,
    ))
}
