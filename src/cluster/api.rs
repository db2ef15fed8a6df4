//! What the HTTP API and the control socket ask of the cluster: the cluster-wide lists, and
//! routing a kill or a decision to the node that owns the session or hold. Without `[cluster]`
//! every call answers "local", and the callers go on exactly as on a single node.

use serde_json::{Value, json};

use super::ClusterError;
use super::commands::{Issuer, Kind};
use super::registry::Owner;
use crate::api::ApiError;
use crate::session::Core;

impl From<ClusterError> for ApiError {
    fn from(e: ClusterError) -> Self {
        let message = e.to_string();
        match e {
            ClusterError::NotFound(_) => ApiError::NotFound(message),
            ClusterError::Ambiguous(_) => ApiError::BadRequest(message),
            ClusterError::Refused { kind, .. } => match kind.as_str() {
                "not_found" => ApiError::NotFound(message),
                "forbidden" => ApiError::Forbidden(message),
                "conflict" => ApiError::Conflict(message),
                "bad_request" => ApiError::BadRequest(message),
                _ => ApiError::Unavailable(message),
            },
            _ => ApiError::Unavailable(message),
        }
    }
}

/// Where a kill goes: this node (with the session's full id) or done by its owner.
pub enum Routed {
    Local(String),
    Done(Value),
}

/// Kills through the owning node when the session `prefix` names lives on another node.
pub async fn kill(
    core: &Core,
    prefix: &str,
    who: &Issuer,
    reason: &str,
) -> Result<Routed, ClusterError> {
    let Some(c) = core.cluster.get() else {
        return Ok(Routed::Local(prefix.to_string()));
    };
    match c.route_session(core, prefix).await? {
        Owner::Local(id) => Ok(Routed::Local(id)),
        Owner::Remote { node, id } => c
            .relay(&node, Kind::Kill, &id, who, reason)
            .await
            .map(Routed::Done),
    }
}

/// Decides a hold through its owning node when it is pending on another node; `None` when
/// it is this node's (or nobody's: the local path then says it is not found).
pub async fn decide(
    core: &Core,
    kind: Kind,
    id: &str,
    who: &Issuer,
    reason: &str,
) -> Result<Option<Value>, ClusterError> {
    let Some(c) = core.cluster.get() else {
        return Ok(None);
    };
    if core.approvals.get(id).is_some() {
        return Ok(None);
    }
    match c.hold_owner(id).await? {
        Some(node) => c.relay(&node, kind, id, who, reason).await.map(Some),
        None => Ok(None),
    }
}

/// Live sessions: the cluster's when in cluster mode (each with its node); with the control
/// plane unreachable, this node's own, still tagged, and the failure logged.
pub async fn live(core: &Core) -> Value {
    let Some(c) = core.cluster.get() else {
        return json!(core.sessions.list());
    };
    match c.live(core).await {
        Ok(v) => json!(v),
        Err(e) => {
            tracing::warn!(error = %e, "listing this node's live sessions only");
            json!(
                core.sessions
                    .list()
                    .into_iter()
                    .map(|v| c.tag(json!(v), &c.node, &c.advertise, true))
                    .collect::<Vec<_>>()
            )
        }
    }
}

/// Pending holds, likewise.
pub async fn holds(core: &Core) -> Value {
    let Some(c) = core.cluster.get() else {
        return json!(core.approvals.list());
    };
    match c.holds(core).await {
        Ok(v) => json!(v),
        Err(e) => {
            tracing::warn!(error = %e, "listing this node's pending holds only");
            json!(
                core.approvals
                    .list()
                    .into_iter()
                    .map(|v| c.tag(json!(v), &c.node, &c.advertise, true))
                    .collect::<Vec<_>>()
            )
        }
    }
}
