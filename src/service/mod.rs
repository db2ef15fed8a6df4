//! The application layer: the typed operations that the HTTP API, the control socket, the
//! cluster's remote commands and the CLI all call (live sessions, kills, held actions,
//! recorded sessions). Each caller only translates its wire format to these calls and their
//! typed results back; nothing inside the process goes through JSON to reach another part.
//!
//! Dependencies point one way: callers (`api`, `control`, `cluster`, `cli`) -> `service` ->
//! `session`, `approvals`, `ops`, `recorder`. Other cluster nodes are reached through the
//! [`Peers`] trait, which the cluster implements, so this layer never calls up into it.

mod actor;
mod approvals;
mod peers;
mod recorded;
mod sessions;

use std::sync::Arc;

use thiserror::Error;

pub use actor::{Actor, Role};
pub use approvals::Decision;
pub use peers::{Command, NodeTag, Peers, Placed};
pub use recorded::{
    MATCHES_PER_SESSION, SessionHit, TEXT_SCAN_BYTES, TEXT_SCAN_SESSIONS, TEXT_SCAN_TIME,
    TextMatch, TextSearch, find_session, list_sessions, search_text,
};
pub use sessions::Killed;

use crate::ops::OpsError;
pub use crate::ops::{Candidate, Filter};
use crate::session::Core;

/// Why an operation was refused or failed; each caller maps it to its own status.
#[derive(Debug, Error)]
pub enum ServiceError {
    #[error("{0}")]
    NotFound(String),
    /// An id prefix several things share: nothing is chosen for the caller.
    #[error("{message}")]
    Ambiguous {
        message: String,
        candidates: Vec<Candidate>,
    },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    /// Something this operation needs (the recorder, another cluster node) cannot do its part.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Failed(String),
}

impl ServiceError {
    /// The kind as the cluster's command table stores it (the issuing node maps it back).
    pub fn kind(&self) -> &'static str {
        match self {
            ServiceError::NotFound(_) => "not_found",
            ServiceError::Forbidden(_) => "forbidden",
            ServiceError::Conflict(_) => "conflict",
            ServiceError::Ambiguous { .. } | ServiceError::BadRequest(_) => "bad_request",
            ServiceError::Unavailable(_) => "unavailable",
            ServiceError::Failed(_) => "failed",
        }
    }

    /// The inverse of [`ServiceError::kind`], for an answer another node wrote.
    pub fn from_kind(kind: &str, message: String) -> ServiceError {
        match kind {
            "not_found" => ServiceError::NotFound(message),
            "forbidden" => ServiceError::Forbidden(message),
            "conflict" => ServiceError::Conflict(message),
            "bad_request" => ServiceError::BadRequest(message),
            _ => ServiceError::Unavailable(message),
        }
    }
}

impl From<OpsError> for ServiceError {
    fn from(e: OpsError) -> Self {
        let message = e.to_string();
        match e {
            OpsError::NoSuchSession(_) => ServiceError::NotFound(message),
            OpsError::Ambiguous { candidates, .. } => ServiceError::Ambiguous {
                message,
                candidates,
            },
            OpsError::Invalid(_) => ServiceError::BadRequest(message),
            OpsError::Failed(_) => ServiceError::Failed(message),
        }
    }
}

impl From<crate::approvals::ApprovalError> for ServiceError {
    fn from(e: crate::approvals::ApprovalError) -> Self {
        use crate::approvals::ApprovalError as E;
        let message = e.to_string();
        match e {
            E::NotFound(_) => ServiceError::NotFound(message),
            E::SelfApproval(_) => ServiceError::Forbidden(message),
            E::AlreadyApproved { .. } => ServiceError::Conflict(message),
            E::ReasonRequired => ServiceError::BadRequest(message),
        }
    }
}

/// The running proctor as its callers see it: the core, and the other cluster nodes (none on
/// a single node). Cheap to clone.
#[derive(Clone)]
pub struct Service {
    core: Arc<Core>,
    peers: Option<Arc<dyn Peers>>,
}

impl Service {
    pub fn new(core: Arc<Core>, peers: Option<Arc<dyn Peers>>) -> Service {
        Service { core, peers }
    }

    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// Refuses `actor` unless it holds `role`; `what` completes "may not ...".
    fn require(&self, actor: &Actor, role: Role, what: &str) -> Result<(), ServiceError> {
        if actor.may(role) {
            return Ok(());
        }
        Err(ServiceError::Forbidden(format!(
            "{} may not {what} (needs {})",
            actor.shown(),
            role.as_str()
        )))
    }
}
