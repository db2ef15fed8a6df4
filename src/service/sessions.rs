//! Live sessions: the list (cluster-wide in cluster mode), kill, and annotations.

use serde::{Deserialize, Serialize};

use super::{Actor, Command, Placed, Role, Service, ServiceError};
use crate::ops::{self, Candidate, OpsError};
use crate::session::registry::LiveView;

/// A session asked to end: its full id, the reason its seal will carry, and (cluster mode) the
/// node that ended it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Killed {
    pub killed: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

fn no_live_session(prefix: &str, anywhere: bool) -> ServiceError {
    ServiceError::NotFound(if anywhere {
        format!("no live session matches {prefix:?} on any node")
    } else {
        format!("no live session matches {prefix:?}")
    })
}

/// The live session `prefix` names among `candidates`, refusing a prefix several share.
fn resolve_live(
    prefix: &str,
    candidates: Vec<Candidate>,
    anywhere: bool,
) -> Result<String, ServiceError> {
    match ops::resolve_prefix(prefix, "sessions", candidates) {
        Ok(c) => Ok(c.id),
        Err(OpsError::NoSuchSession(_)) => Err(no_live_session(prefix, anywhere)),
        Err(e) => Err(e.into()),
    }
}

impl Service {
    /// Live sessions, oldest first: the cluster's in cluster mode (each with its node); with
    /// the control plane unreachable, this node's own, still tagged, and the failure logged.
    pub async fn live(&self, actor: &Actor) -> Result<Vec<Placed<LiveView>>, ServiceError> {
        self.require(actor, Role::Operator, "list live sessions")?;
        let local = self.core.sessions.list();
        let Some(peers) = &self.peers else {
            return Ok(local.into_iter().map(Placed::here).collect());
        };
        let here = peers.here();
        let mut out: Vec<Placed<LiveView>> = local
            .into_iter()
            .map(|v| Placed::on(v, here.clone()))
            .collect();
        match peers.live().await {
            Ok(remote) => {
                out.extend(remote);
                out.sort_by_key(|p| p.item.started_ns);
            }
            Err(e) => tracing::warn!(error = %e, "listing this node's live sessions only"),
        }
        Ok(out)
    }

    /// Ends the live session `prefix` names (a full id or a prefix only it has, over the whole
    /// cluster in cluster mode), on the node that owns it. The seal's reason names `actor`.
    pub async fn kill(
        &self,
        actor: &Actor,
        prefix: &str,
        reason: &str,
    ) -> Result<Killed, ServiceError> {
        self.require(actor, Role::Operator, "kill sessions")?;
        let local: Vec<Candidate> = self
            .core
            .sessions
            .list()
            .iter()
            .map(|s| Candidate::new(&s.id, &s.agent))
            .collect();
        let Some(peers) = &self.peers else {
            let id = resolve_live(prefix, local, false)?;
            return self.kill_here(actor, &id, reason).await;
        };
        let remote = match peers.live().await {
            Ok(r) => r,
            // With the control plane down only this node's sessions can be found (killing
            // them stays possible).
            Err(e) => {
                let id = resolve_live(prefix, local, false).map_err(|_| e)?;
                return self.kill_here(actor, &id, reason).await;
            }
        };
        let here: Vec<String> = local.iter().map(|c| c.id.clone()).collect();
        let candidates = local.into_iter().chain(
            remote
                .iter()
                .map(|p| Candidate::new(&p.item.id, &p.item.agent)),
        );
        let id = resolve_live(prefix, candidates.collect(), true)?;
        if here.contains(&id) {
            return self.kill_here(actor, &id, reason).await;
        }
        let node = remote
            .iter()
            .find(|p| p.item.id == id)
            .and_then(|p| p.place.as_ref())
            .map(|t| t.node.clone())
            .unwrap_or_default();
        let answer = peers
            .relay(&node, Command::Kill, &id, actor, reason)
            .await?;
        serde_json::from_value(answer)
            .map_err(|e| ServiceError::Failed(format!("node {node} answered the kill oddly: {e}")))
    }

    /// Ends a session of this node, by its full id.
    pub async fn kill_here(
        &self,
        actor: &Actor,
        id: &str,
        reason: &str,
    ) -> Result<Killed, ServiceError> {
        self.require(actor, Role::Operator, "kill sessions")?;
        let reason = format!("{reason} (killed by {})", actor.shown());
        if !self.core.sessions.kill(id, &reason) {
            return Err(no_live_session(id, false));
        }
        tracing::info!(session = %id, by = %proctor_gate::inert::Line(&actor.shown()), "session killed");
        // The kill is also a note in the store journal; the session's own seal is the record.
        let note = match actor {
            Actor::Token { name, .. } => {
                Some(format!("operator {name:?} killed session {id}: {reason}"))
            }
            Actor::Relayed { identity, node, .. } => Some(format!(
                "operator {identity:?} on node {node:?} killed session {id}: {reason}"
            )),
            Actor::Local { .. } => None,
        };
        if let Some(note) = note {
            let _ = self.core.recorder.journal("kill", &note).await;
        }
        Ok(Killed {
            killed: id.to_string(),
            reason,
            node: self.peers.as_ref().map(|p| p.here().node),
        })
    }

    /// Records an annotation (agent reasoning) in the live session `id` (a full id): the
    /// caller has checked who may annotate it, and `source` names that caller.
    pub async fn annotate(&self, id: &str, source: &str, text: &str) -> Result<(), ServiceError> {
        let s = self
            .core
            .sessions
            .get(id)
            .ok_or_else(|| ServiceError::NotFound(format!("no live session {id:?}")))?;
        // Annotations bypass the session gate: redact them here.
        let text = self.core.redactor().text(&s.id, text).into_owned();
        s.add_reasoning(&text);
        let ev = proctor_gate::Event::Annotation {
            source: source.to_string(),
            text,
        };
        self.core
            .recorder
            .record(s.key, crate::clock::now_ns(), &ev)
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))
    }
}
