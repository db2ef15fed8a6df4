//! Sessions: search, one session's record and its events (auditor); live sessions and kill
//! (operator).

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{Principal, Role, audit};
use super::{ApiError, ApiJson, ApiPath, ApiQuery, ApiState, blocking};
use crate::control::{self, Request};
use crate::ops::{self, Filter};
use crate::recorder::index::SessionMeta;

pub const DEFAULT_LIST_LIMIT: usize = 500;
pub const MAX_LIST_LIMIT: usize = 10_000;
pub const DEFAULT_EVENTS_LIMIT: usize = 500;
pub const MAX_EVENTS_LIMIT: usize = 5_000;

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
        Ok(ops::find_session(&index, &id)?)
    })
    .await
}

pub async fn list(
    State(st): State<ApiState>,
    p: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<SessionMeta>>, ApiError> {
    p.require(&[Role::Auditor], "search recorded sessions")?;
    let filter = q.into_filter()?;
    let core = st.core.clone();
    let found = blocking(move || {
        core.store.flush_index();
        let index = core.store.index();
        Ok(ops::list_sessions(&index, &filter)?)
    })
    .await?;
    Ok(Json(found))
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
    Ok(Json(json!(st.core.sessions.list())))
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
    // The seal's reason names the operator, so the recording says who ended it.
    let reason = format!("{} (killed by {})", body.reason.trim(), p.name);
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
