//! `POST /api/sessions/{id}/annotations`: agent frameworks push reasoning or tool-selection
//! rationale into the agent's own live session (clause 4.6). Only agent tokens may: what an
//! operator wrote would reach approvers as the agent's reasoning. Annotations are appended to
//! the recording like any other event; nothing existing is changed.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{Principal, Role};
use super::{ApiError, ApiJson, ApiPath, ApiState};

pub const MAX_TEXT_BYTES: usize = 16 * 1024;
pub const MAX_SOURCE_BYTES: usize = 128;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnotationBody {
    /// What produced the text (`planner`, `tool-router`...); the token's name is prefixed.
    #[serde(default)]
    pub source: Option<String>,
    pub text: String,
}

pub async fn create(
    State(st): State<ApiState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AnnotationBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    p.require(&[Role::Agent], "annotate sessions")?;
    if body.text.trim().is_empty() {
        return Err(ApiError::BadRequest("text is empty".into()));
    }
    let source = body.source.as_deref().map(str::trim).unwrap_or_default();
    if source.len() > MAX_SOURCE_BYTES || source.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!(
            "source must be at most {MAX_SOURCE_BYTES} bytes without control characters"
        )));
    }
    // The recorded source says which credential spoke, whatever the body claims.
    let source = if source.is_empty() {
        p.name.clone()
    } else {
        format!("{}/{source}", p.name)
    };

    let (id, owner) = match st.core.sessions.get(&id) {
        Some(s) => (id, s.agent.clone()),
        None => {
            // A prefix, an ended session or no session: the index knows which. An agent token
            // learns nothing about other agents' sessions either way.
            let meta = super::sessions::find(&st, id.clone()).await?;
            if p.role == Role::Agent && p.agent.as_deref() != Some(meta.agent.as_str()) {
                return Err(forbidden(&p));
            }
            if st.core.sessions.get(&meta.id).is_none() {
                return Err(ApiError::Conflict(format!(
                    "session {} is not live; annotations go to live sessions only",
                    meta.id
                )));
            }
            (meta.id, meta.agent)
        }
    };
    if p.role == Role::Agent && p.agent.as_deref() != Some(owner.as_str()) {
        return Err(forbidden(&p));
    }
    if body.text.len() > MAX_TEXT_BYTES {
        return Err(refuse_oversized(&st, &id, &source, &body.text).await);
    }
    if let Err(e) = st.service.annotate(&id, &source, &body.text).await {
        return Err(if st.core.sessions.get(&id).is_none() {
            ApiError::Conflict(format!(
                "session {id} ended before the annotation was recorded"
            ))
        } else {
            ApiError::Unavailable(format!("the annotation could not be recorded: {e}"))
        });
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({ "session": id, "source": source, "recorded": true })),
    ))
}

/// Refuses an annotation over `MAX_TEXT_BYTES` (413) and records the refusal in the session,
/// with the text's size and digest, so the attempt is evidence too.
async fn refuse_oversized(st: &ApiState, id: &str, source: &str, text: &str) -> ApiError {
    use sha2::{Digest, Sha256};
    let reason = format!(
        "annotation from {source:?} of {} bytes (sha256 {}) refused: the limit is \
         {MAX_TEXT_BYTES} bytes",
        text.len(),
        hex::encode(Sha256::digest(text.as_bytes()))
    );
    if let Some(s) = st.core.sessions.get(id) {
        let ev = proctor_gate::Event::Verdict(proctor_gate::VerdictRecord {
            subject: "annotation".into(),
            verdict: proctor_gate::VerdictKind::Deny,
            rule: "limit:annotation-size".into(),
            reason: reason.clone(),
            approval_id: String::new(),
        });
        if let Err(e) = st
            .core
            .recorder
            .record(s.key, crate::clock::now_ns(), &ev)
            .await
        {
            return ApiError::Unavailable(format!("the refusal could not be recorded: {e}"));
        }
    }
    ApiError::Status {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!("{reason}; send a shorter text (split it, or summarise)"),
    }
}

fn forbidden(p: &Principal) -> ApiError {
    ApiError::Forbidden(format!(
        "agent token {:?} may only annotate live sessions of agent {:?}",
        p.name,
        p.agent.as_deref().unwrap_or_default()
    ))
}
