//! Held actions: the queue (cluster-wide in cluster mode), one hold, and decisions. The
//! approver recorded is the actor's authenticated identity; self-approval and the
//! distinct-approver count are enforced by `crate::approvals`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{Actor, Command, NodeTag, Placed, Role, Service, ServiceError};
use crate::approvals::{ApprovalError, PendingView};
use crate::ops::{self, Candidate, OpsError};

/// A decision taken: the hold's full id, the approver as recorded, and what it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub id: String,
    pub approver: String,
    /// Approvals: whether the action is now released (false: more distinct approvers needed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<bool>,
    /// Denials: always true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied: Option<bool>,
    /// Cluster mode: the node that holds the action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// The hold `prefix` names among `candidates`, refusing a prefix several share.
fn resolve_hold(prefix: &str, candidates: Vec<Candidate>) -> Result<String, ServiceError> {
    match ops::resolve_prefix(prefix, "held actions", candidates) {
        Ok(c) => Ok(c.id),
        Err(OpsError::NoSuchSession(_)) => {
            Err(ApprovalError::NotFound(prefix.trim().to_string()).into())
        }
        Err(e) => Err(e.into()),
    }
}

fn candidates<'a>(holds: impl IntoIterator<Item = &'a PendingView>) -> Vec<Candidate> {
    holds
        .into_iter()
        .map(|h| Candidate::new(&h.id, &h.agent))
        .collect()
}

impl Service {
    /// Pending holds in the queue's order (grouped, worst first): the cluster's in cluster
    /// mode, each with its node; with the control plane unreachable, this node's own.
    pub async fn holds(&self, actor: &Actor) -> Result<Vec<Placed<PendingView>>, ServiceError> {
        self.require(actor, Role::Approver, "list held actions")?;
        let mut all = self.core.approvals.list();
        let Some(peers) = &self.peers else {
            return Ok(all.into_iter().map(Placed::here).collect());
        };
        let here = peers.here();
        let remote = match peers.holds().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "listing this node's pending holds only");
                return Ok(all
                    .into_iter()
                    .map(|v| Placed::on(v, here.clone()))
                    .collect());
            }
        };
        let mut nodes: HashMap<String, NodeTag> =
            all.iter().map(|v| (v.id.clone(), here.clone())).collect();
        for r in remote {
            if let Some(tag) = r.place {
                nodes.insert(r.item.id.clone(), tag);
            }
            all.push(r.item);
        }
        crate::approval_queue::order(&mut all);
        Ok(all
            .into_iter()
            .map(|v| match nodes.get(&v.id) {
                Some(tag) => Placed::on(v, tag.clone()),
                None => Placed::here(v),
            })
            .collect())
    }

    /// One hold of this node, by its full id or a prefix only it has.
    pub fn hold(&self, actor: &Actor, prefix: &str) -> Result<PendingView, ServiceError> {
        self.require(actor, Role::Approver, "read held actions")?;
        let list = self.core.approvals.list();
        let id = resolve_hold(prefix, candidates(&list))?;
        list.into_iter()
            .find(|h| h.id == id)
            .ok_or_else(|| ApprovalError::NotFound(id).into())
    }

    /// Which hold `prefix` names, and the node holding it when that is another node.
    async fn locate_hold(&self, prefix: &str) -> Result<(String, Option<String>), ServiceError> {
        let local = candidates(&self.core.approvals.list());
        let Some(peers) = &self.peers else {
            return Ok((resolve_hold(prefix, local)?, None));
        };
        if let Some(c) = local.iter().find(|c| c.id == prefix.trim()) {
            return Ok((c.id.clone(), None));
        }
        let remote = match peers.holds().await {
            Ok(r) => r,
            Err(e) => {
                return resolve_hold(prefix, local)
                    .map(|id| (id, None))
                    .map_err(|_| e);
            }
        };
        let here: Vec<String> = local.iter().map(|c| c.id.clone()).collect();
        let all = local
            .into_iter()
            .chain(candidates(remote.iter().map(|p| &p.item)))
            .collect();
        let id = resolve_hold(prefix, all)?;
        if here.contains(&id) {
            return Ok((id, None));
        }
        let node = remote
            .iter()
            .find(|p| p.item.id == id)
            .and_then(|p| p.place.as_ref())
            .map(|t| t.node.clone());
        Ok((id, node))
    }

    async fn relay_decision(
        &self,
        node: &str,
        command: Command,
        id: &str,
        actor: &Actor,
        reason: &str,
    ) -> Result<Decision, ServiceError> {
        let peers = self
            .peers
            .as_ref()
            .ok_or_else(|| ServiceError::Failed("no cluster to relay to".into()))?;
        let answer = peers.relay(node, command, id, actor, reason).await?;
        serde_json::from_value(answer).map_err(|e| {
            ServiceError::Failed(format!("node {node} answered the decision oddly: {e}"))
        })
    }

    fn here_node(&self) -> Option<String> {
        self.peers.as_ref().map(|p| p.here().node)
    }

    /// Approves the hold `prefix` names, on the node that holds it.
    pub async fn approve(
        &self,
        actor: &Actor,
        prefix: &str,
        reason: &str,
    ) -> Result<Decision, ServiceError> {
        self.require(actor, Role::Approver, "approve held actions")?;
        let (id, node) = self.locate_hold(prefix).await?;
        if let Some(node) = node {
            return self
                .relay_decision(&node, Command::Approve, &id, actor, reason)
                .await;
        }
        self.approve_here(actor, &id, reason)
    }

    /// Approves a hold of this node, by its full id.
    pub fn approve_here(
        &self,
        actor: &Actor,
        id: &str,
        reason: &str,
    ) -> Result<Decision, ServiceError> {
        self.require(actor, Role::Approver, "approve held actions")?;
        let a = actor.approver();
        let released = self.core.approvals.approve(id, &a, reason)?;
        tracing::info!(approval = %proctor_gate::inert::Line(id), approver = %proctor_gate::inert::Line(&a.shown()), released, "approval given");
        Ok(Decision {
            id: id.to_string(),
            approver: a.shown(),
            released: Some(released),
            denied: None,
            node: self.here_node(),
        })
    }

    /// Denies the hold `prefix` names, on the node that holds it.
    pub async fn deny(
        &self,
        actor: &Actor,
        prefix: &str,
        reason: &str,
    ) -> Result<Decision, ServiceError> {
        self.require(actor, Role::Approver, "deny held actions")?;
        let (id, node) = self.locate_hold(prefix).await?;
        if let Some(node) = node {
            return self
                .relay_decision(&node, Command::Deny, &id, actor, reason)
                .await;
        }
        self.deny_here(actor, &id, reason)
    }

    /// Denies a hold of this node, by its full id.
    pub fn deny_here(
        &self,
        actor: &Actor,
        id: &str,
        reason: &str,
    ) -> Result<Decision, ServiceError> {
        self.require(actor, Role::Approver, "deny held actions")?;
        let a = actor.approver();
        self.core.approvals.deny(id, &a, reason)?;
        tracing::info!(approval = %proctor_gate::inert::Line(id), approver = %proctor_gate::inert::Line(&a.shown()), "held action denied");
        Ok(Decision {
            id: id.to_string(),
            approver: a.shown(),
            released: None,
            denied: Some(true),
            node: self.here_node(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holds() -> Vec<Candidate> {
        vec![
            Candidate::new("a1b2c3d4e5", "agent-a"),
            Candidate::new("a1b2c3ffff", "agent-\u{202e}b"),
            Candidate::new("0000000000", "agent-c"),
        ]
    }

    #[test]
    fn a_hold_prefix_several_holds_share_is_refused_naming_each_with_its_agent() {
        match resolve_hold("a1b2c3", holds()) {
            Err(ServiceError::Ambiguous {
                message,
                candidates,
            }) => {
                assert_eq!(candidates.len(), 2);
                assert!(message.contains("matches 2 held actions"), "{message}");
                assert!(message.contains("a1b2c3d4e5 (agent agent-a)"), "{message}");
                assert!(message.contains("a1b2c3ffff"), "{message}");
                // The agent's name is agent-controlled: its override is shown, not obeyed.
                assert!(!message.contains('\u{202e}'), "{message:?}");
            }
            other => panic!("expected ambiguity, got {other:?}"),
        }
    }

    #[test]
    fn a_hold_is_found_by_its_id_or_a_prefix_only_it_has() {
        assert_eq!(
            resolve_hold("a1b2c3d", holds()).ok().as_deref(),
            Some("a1b2c3d4e5")
        );
        assert_eq!(
            resolve_hold("0000000000", holds()).ok().as_deref(),
            Some("0000000000")
        );
        // Too short, or nothing: the approvals core's own "not found".
        for p in ["a1b", "ffff"] {
            match resolve_hold(p, holds()) {
                Err(ServiceError::NotFound(m)) => {
                    assert!(m.starts_with("no pending approval"), "{m}")
                }
                other => panic!("{p}: expected not found, got {other:?}"),
            }
        }
    }
}
