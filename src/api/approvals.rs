//! Held actions (approver). The approver recorded is the token's name, never something the
//! caller types, so the evidence says which credential released an action; self-approval and
//! the distinct-approver count are enforced by `crate::approvals`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use super::auth::{Principal, Role};
use super::{ApiError, ApiJson, ApiPath, ApiState};
use crate::approvals::PendingView;
use crate::service::{Decision, Placed};

pub async fn list(
    State(st): State<ApiState>,
    p: Principal,
) -> Result<Json<Vec<Placed<PendingView>>>, ApiError> {
    p.require(&[Role::Approver], "list held actions")?;
    Ok(Json(st.service.holds(&p.actor()).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    #[serde(default)]
    pub reason: String,
}

/// Approves the hold the id or prefix names, on whichever node holds it.
pub async fn approve(
    State(st): State<ApiState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> Result<Json<Decision>, ApiError> {
    p.require(&[Role::Approver], "approve held actions")?;
    let d = st
        .service
        .approve(&p.actor(), &id, body.reason.trim())
        .await?;
    Ok(Json(d))
}

/// Denies the hold the id or prefix names, on whichever node holds it.
pub async fn deny(
    State(st): State<ApiState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> Result<Json<Decision>, ApiError> {
    p.require(&[Role::Approver], "deny held actions")?;
    let d = st.service.deny(&p.actor(), &id, body.reason.trim()).await?;
    Ok(Json(d))
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
    let hold = st.service.hold(&p.actor(), &id)?;
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
