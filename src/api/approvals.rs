//! Held actions (approver). The approver recorded is the token's name, never something the
//! caller types, so the evidence says which credential released an action; self-approval and
//! the distinct-approver count are enforced by `crate::approvals`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{Principal, Role};
use super::{ApiError, ApiJson, ApiPath, ApiState};
use crate::approvals::{ApprovalError, Approver, PendingView};

impl From<ApprovalError> for ApiError {
    fn from(e: ApprovalError) -> Self {
        match e {
            ApprovalError::NotFound(_) => ApiError::NotFound(e.to_string()),
            ApprovalError::SelfApproval(_) => ApiError::Forbidden(e.to_string()),
            ApprovalError::AlreadyApproved { .. } => ApiError::Conflict(e.to_string()),
            ApprovalError::ReasonRequired => ApiError::BadRequest(e.to_string()),
        }
    }
}

pub async fn list(State(st): State<ApiState>, p: Principal) -> Result<Json<Value>, ApiError> {
    p.require(&[Role::Approver], "list held actions")?;
    Ok(Json(crate::cluster::api::holds(&st.core).await))
}

/// In cluster mode, a hold pending on another node is decided there (`None`: it is local).
async fn relayed(
    st: &ApiState,
    p: &Principal,
    kind: crate::cluster::commands::Kind,
    id: &str,
    reason: &str,
) -> Result<Option<Value>, ApiError> {
    let who = crate::cluster::commands::Issuer {
        identity: p.name.clone(),
        label: None,
    };
    Ok(crate::cluster::api::decide(&st.core, kind, id, &who, reason).await?)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    #[serde(default)]
    pub reason: String,
}

pub async fn approve(
    State(st): State<ApiState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> Result<Json<Value>, ApiError> {
    p.require(&[Role::Approver], "approve held actions")?;
    let kind = crate::cluster::commands::Kind::Approve;
    if let Some(v) = relayed(&st, &p, kind, &id, body.reason.trim()).await? {
        return Ok(Json(v));
    }
    let released = st
        .core
        .approvals
        .approve(&id, &Approver::token(&p.name), body.reason.trim())?;
    tracing::info!(approval = %proctor_gate::inert::Line(&id), approver = %p.name, released, "approval given over the API");
    Ok(Json(
        json!({ "id": id, "approver": p.name, "released": released }),
    ))
}

pub async fn deny(
    State(st): State<ApiState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> Result<Json<Value>, ApiError> {
    p.require(&[Role::Approver], "deny held actions")?;
    let kind = crate::cluster::commands::Kind::Deny;
    if let Some(v) = relayed(&st, &p, kind, &id, body.reason.trim()).await? {
        return Ok(Json(v));
    }
    st.core
        .approvals
        .deny(&id, &Approver::token(&p.name), body.reason.trim())?;
    tracing::info!(approval = %proctor_gate::inert::Line(&id), approver = %p.name, "held action denied over the API");
    Ok(Json(
        json!({ "id": id, "approver": p.name, "denied": true }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevealBody {
    /// The auditor public key (hex) the caller opens the sealed values with.
    pub key: String,
}

/// Records that the caller opens a hold's sealed values, then hands the hold over: the
/// markers open only with the auditor's private key, which the caller holds and proctor never
/// sees. Nothing is handed over unless the note is durable in the store journal.
pub async fn reveal(
    State(st): State<ApiState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<RevealBody>,
) -> Result<Json<PendingView>, ApiError> {
    p.require(&[Role::Approver], "reveal sealed values of held actions")?;
    let key = body.key.trim();
    if key.is_empty() || key.len() > 128 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::BadRequest(
            "key: the auditor public key in hex".into(),
        ));
    }
    let hold = st
        .core
        .approvals
        .get(&id)
        .ok_or_else(|| ApiError::from(ApprovalError::NotFound(id.clone())))?;
    let note = crate::approval_queue::reveal_note(&format!("approver {:?}", p.name), &hold, key);
    st.core
        .recorder
        .journal("audit", &note)
        .await
        .map_err(|e| {
            ApiError::Unavailable(format!(
                "the reveal could not be recorded in the audit journal, so it is refused: {e}"
            ))
        })?;
    Ok(Json(hold))
}
