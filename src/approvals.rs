//! Held actions waiting for a person. A hold ends exactly once: approved, denied, timed out, or
//! cancelled (the client went away or the session was killed). The outcome is recorded in the
//! session before the protocol hears it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use proctor_gate::ApprovalOutcome;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::{broadcast, oneshot};

/// One setting as the approval card shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    pub name: String,
    pub value: String,
    /// Where the value comes from, or why it is uncertain.
    pub note: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ApprovalError {
    #[error("no pending approval {0} (it may have been decided, timed out or cancelled)")]
    NotFound(String),
    #[error("{0} may not decide a hold in their own session")]
    SelfApproval(String),
    #[error("{approver} already approved {id}; it needs {needed} distinct approvers")]
    AlreadyApproved {
        id: String,
        approver: String,
        needed: u32,
    },
    #[error("a reason is required to deny")]
    ReasonRequired,
}

/// What an approver sees about a held action.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingView {
    pub id: String,
    pub session_id: String,
    pub agent: String,
    pub target: String,
    pub protocol: String,
    pub privilege: String,
    /// `statement`, `exec`, `line`, `channel`, `sftp`.
    pub kind: String,
    /// The statement text or command line.
    pub detail: String,
    pub class: String,
    pub tables: Vec<String>,
    pub rule: String,
    pub reason: String,
    /// The agent's reasoning captured so far in the session (clause 4.6).
    pub reasoning: Vec<String>,
    pub created_ns: i64,
    pub expires_ns: i64,
    pub min_approvals: u32,
    pub approvals: Vec<String>,
    /// Session settings that change what the action means (PostgreSQL: `search_path`, role).
    #[serde(default)]
    pub settings: Vec<Setting>,
    /// How dangerous the action is, from its class and rule: the queue shows the worst first.
    #[serde(default)]
    pub severity: crate::approval_queue::Severity,
    /// Holds of one agent whose text is the same once literals, case and whitespace are
    /// folded; `count` is filled in when the queue is listed.
    #[serde(default)]
    pub group: crate::approval_queue::Group,
}

/// Who decides a hold: an authenticated identity (an API token's name, or a local user proven
/// by the control socket's peer credentials) and, beside it, a free-text label that person
/// chose. Only the identity counts towards `min_approvals`; the label is recorded, never trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approver {
    identity: String,
    label: Option<String>,
    /// The cluster node that authenticated the identity, when it is not this one.
    via: Option<String>,
}

impl Approver {
    /// An API token, by its configured name.
    pub fn token(name: &str) -> Approver {
        Approver {
            identity: name.to_string(),
            label: None,
            via: None,
        }
    }

    /// A local OS user, by the name of the uid the kernel vouched for.
    pub fn os_user(user: &str, label: Option<&str>) -> Approver {
        Approver {
            identity: format!("os:{user}"),
            label: label
                .map(str::trim)
                .filter(|l| !l.is_empty() && *l != user)
                .map(|l| l.chars().take(128).collect()),
            via: None,
        }
    }

    /// An identity another cluster node authenticated (a token name, or `os:USER`), relayed
    /// through the control plane; it counts as that identity, and the record names the node.
    pub fn relayed(identity: &str, label: Option<&str>, node: &str) -> Approver {
        let mut a = match identity.strip_prefix("os:") {
            Some(user) => Approver::os_user(user, label),
            None => Approver::token(identity),
        };
        a.via = Some(node.to_string());
        a
    }

    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The name behind the identity, without its kind: what an agent's name is compared with.
    fn bare(&self) -> &str {
        self.identity.strip_prefix("os:").unwrap_or(&self.identity)
    }

    /// What the record says: the identity, then the label quoted (it is only a claim).
    pub fn shown(&self) -> String {
        let shown = match &self.label {
            Some(l) => format!("{} (as {l:?})", self.identity),
            None => self.identity.clone(),
        };
        match &self.via {
            Some(node) => format!("{shown} via node {node:?}"),
            None => shown,
        }
    }
}

/// A person's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub outcome: ApprovalOutcome,
    pub approver: String,
    pub reason: String,
}

struct Pending {
    view: PendingView,
    /// The identities behind `view.approvals`, what distinctness is judged on.
    identities: Vec<String>,
    answer: Option<oneshot::Sender<Answer>>,
}

/// Change notifications for live views (SSE, web console).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ApprovalEvent {
    Held {
        approval: Box<PendingView>,
    },
    Resolved {
        id: String,
        session_id: String,
        outcome: String,
        approver: String,
        reason: String,
    },
}

#[derive(Clone)]
pub struct Approvals {
    inner: Arc<Mutex<HashMap<String, Pending>>>,
    pub timeout: Duration,
    events: broadcast::Sender<ApprovalEvent>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Approvals {
    pub fn new(timeout: Duration) -> Self {
        let (events, _) = broadcast::channel(1024);
        Approvals {
            inner: Arc::new(Mutex::new(HashMap::new())),
            timeout,
            events,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ApprovalEvent> {
        self.events.subscribe()
    }

    /// Registers a hold; the receiver yields the first final answer.
    pub fn hold(&self, view: PendingView) -> oneshot::Receiver<Answer> {
        let (tx, rx) = oneshot::channel();
        let approval = Box::new(view.clone());
        // Queued first, announced after: whoever reacts to the announcement finds it pending.
        lock(&self.inner).insert(
            view.id.clone(),
            Pending {
                view,
                identities: Vec::new(),
                answer: Some(tx),
            },
        );
        let _ = self.events.send(ApprovalEvent::Held { approval });
        rx
    }

    /// Every pending hold, grouped and worst first (see [`crate::approval_queue::order`]).
    pub fn list(&self) -> Vec<PendingView> {
        let mut v: Vec<PendingView> = lock(&self.inner).values().map(|p| p.view.clone()).collect();
        crate::approval_queue::order(&mut v);
        v
    }

    /// Holds of `agent` waiting for a decision (for `[limits] pending_holds_per_agent`).
    pub fn pending_for_agent(&self, agent: &str) -> usize {
        lock(&self.inner)
            .values()
            .filter(|p| p.view.agent == agent)
            .count()
    }

    pub fn get(&self, id: &str) -> Option<PendingView> {
        lock(&self.inner).get(id).map(|p| p.view.clone())
    }

    /// Approves; the hold resolves once `min_approvals` distinct identities have approved.
    /// Returns whether the action is now released.
    pub fn approve(
        &self,
        id: &str,
        approver: &Approver,
        reason: &str,
    ) -> Result<bool, ApprovalError> {
        let mut map = lock(&self.inner);
        let p = map
            .get_mut(id)
            .ok_or_else(|| ApprovalError::NotFound(id.to_string()))?;
        if p.view.agent == approver.bare() {
            return Err(ApprovalError::SelfApproval(approver.identity().to_string()));
        }
        if p.identities.iter().any(|a| a == approver.identity()) {
            return Err(ApprovalError::AlreadyApproved {
                id: id.to_string(),
                approver: approver.identity().to_string(),
                needed: p.view.min_approvals,
            });
        }
        p.identities.push(approver.identity().to_string());
        p.view.approvals.push(approver.shown());
        if (p.view.approvals.len() as u32) < p.view.min_approvals.max(1) {
            return Ok(false);
        }
        let approvers = p.view.approvals.join(", ");
        if let Some(p) = map.remove(id) {
            self.resolve(p, ApprovalOutcome::Approved, &approvers, reason);
        }
        Ok(true)
    }

    pub fn deny(&self, id: &str, approver: &Approver, reason: &str) -> Result<(), ApprovalError> {
        if reason.trim().is_empty() {
            return Err(ApprovalError::ReasonRequired);
        }
        let mut map = lock(&self.inner);
        let p = map
            .get(id)
            .ok_or_else(|| ApprovalError::NotFound(id.to_string()))?;
        if p.view.agent == approver.bare() {
            return Err(ApprovalError::SelfApproval(approver.identity().to_string()));
        }
        if let Some(p) = map.remove(id) {
            self.resolve(p, ApprovalOutcome::Denied, &approver.shown(), reason);
        }
        Ok(())
    }

    /// Ends a hold without a person's answer (timeout, client gone, session killed).
    pub fn expire(&self, id: &str, outcome: ApprovalOutcome, reason: &str) {
        if let Some(p) = lock(&self.inner).remove(id) {
            self.resolve(p, outcome, "", reason);
        }
    }

    fn resolve(&self, mut p: Pending, outcome: ApprovalOutcome, approver: &str, reason: &str) {
        let _ = self.events.send(ApprovalEvent::Resolved {
            id: p.view.id.clone(),
            session_id: p.view.session_id.clone(),
            outcome: outcome.as_str().into(),
            approver: approver.into(),
            reason: reason.into(),
        });
        if let Some(tx) = p.answer.take() {
            let _ = tx.send(Answer {
                outcome,
                approver: approver.into(),
                reason: reason.into(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: &str, min: u32) -> PendingView {
        PendingView {
            id: id.into(),
            session_id: "s".into(),
            agent: "agent-a".into(),
            target: "db".into(),
            protocol: "postgres".into(),
            privilege: "elevated".into(),
            kind: "statement".into(),
            detail: "drop table t".into(),
            class: "ddl".into(),
            tables: vec![],
            rule: "r".into(),
            reason: "x".into(),
            reasoning: vec![],
            created_ns: 0,
            expires_ns: 0,
            min_approvals: min,
            approvals: vec![],
            settings: vec![],
            severity: Default::default(),
            group: Default::default(),
        }
    }

    #[test]
    fn two_person_rule_and_no_self_approval() {
        let a = Approvals::new(Duration::from_secs(5));
        let mut rx = a.hold(view("h1", 2));
        assert_eq!(
            a.approve("h1", &Approver::token("agent-a"), ""),
            Err(ApprovalError::SelfApproval("agent-a".into()))
        );
        assert_eq!(
            a.approve("h1", &Approver::os_user("agent-a", None), ""),
            Err(ApprovalError::SelfApproval("os:agent-a".into()))
        );
        assert_eq!(a.approve("h1", &Approver::token("alice"), "ok"), Ok(false));
        assert!(matches!(
            a.approve("h1", &Approver::token("alice"), "again"),
            Err(ApprovalError::AlreadyApproved { .. })
        ));
        assert!(rx.try_recv().is_err());
        assert_eq!(a.approve("h1", &Approver::token("bob"), "ok"), Ok(true));
        let ans = rx.try_recv().expect("resolved");
        assert_eq!(ans.outcome, ApprovalOutcome::Approved);
        assert_eq!(ans.approver, "alice, bob");
        assert!(a.list().is_empty());
    }

    #[test]
    fn a_label_is_not_a_second_person() {
        let a = Approvals::new(Duration::from_secs(5));
        let mut rx = a.hold(view("h3", 2));
        let as_alice = Approver::os_user("ops", Some("alice"));
        let as_bob = Approver::os_user("ops", Some("bob"));
        assert_eq!(a.approve("h3", &as_alice, "ok"), Ok(false));
        assert!(matches!(
            a.approve("h3", &as_bob, "ok"),
            Err(ApprovalError::AlreadyApproved { .. })
        ));
        assert!(matches!(
            a.approve("h3", &Approver::os_user("ops", None), "ok"),
            Err(ApprovalError::AlreadyApproved { .. })
        ));
        assert_eq!(
            a.get("h3").expect("pending").approvals,
            vec!["os:ops (as \"alice\")".to_string()]
        );
        assert_eq!(a.approve("h3", &Approver::token("ops"), "ok"), Ok(true));
        let ans = rx.try_recv().expect("resolved");
        assert_eq!(ans.approver, "os:ops (as \"alice\"), ops");
    }

    #[test]
    fn deny_needs_a_reason() {
        let a = Approvals::new(Duration::from_secs(5));
        let _rx = a.hold(view("h2", 1));
        let bob = Approver::token("bob");
        assert_eq!(a.deny("h2", &bob, " "), Err(ApprovalError::ReasonRequired));
        assert_eq!(a.deny("h2", &bob, "no"), Ok(()));
        assert_eq!(
            a.deny("h2", &bob, "no"),
            Err(ApprovalError::NotFound("h2".into()))
        );
    }
}
