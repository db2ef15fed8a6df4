//! Holds: the card an approver is shown, and the task that waits for the first of a person's
//! answer, the timeout, the client going away or a kill, records it, then tells the protocol.

use std::sync::Arc;

use proctor_gate::{
    Action, ApprovalOutcome, ApprovalRecord, Decision, DenyCause, Event, Hold, Resolution,
};
use tokio::sync::{oneshot, watch};

use super::card::describe_typed;
use super::judge::JudgedAction;
use super::{SessionGate, lock};
use crate::approvals::{Answer, PendingView};
use crate::bus::LiveEvent;
use crate::clock::now_ns;
use crate::policy::RuleAction;
use crate::recorder::Urgency;
use crate::session::core::Core;
use crate::session::registry::LiveSession;

impl SessionGate {
    pub(super) fn answer(&self, j: JudgedAction) -> Decision {
        let JudgedAction {
            action,
            judgement,
            approval_id,
            param_types,
            ..
        } = j;
        match judgement.action {
            RuleAction::Deny => Decision::Deny {
                rule: judgement.rule,
                reason: judgement.reason,
            },
            RuleAction::Hold => {
                let (kind, detail, class, tables) = describe_typed(&action, param_types.as_deref());
                let settings = match &action {
                    Action::Statement(_) => lock(&self.pg_settings).view(),
                    Action::CommandLine { channel, .. } => lock(&self.shells).view(*channel),
                    _ => Vec::new(),
                };
                let severity = crate::approval_queue::severity(&action, &judgement.rule);
                let group = crate::approval_queue::group(&self.live.agent, &kind, &action);
                let now = now_ns();
                let view = PendingView {
                    id: approval_id.clone(),
                    session_id: self.live.id.clone(),
                    agent: self.live.agent.clone(),
                    target: self.live.target.clone(),
                    protocol: self.live.protocol.as_str().into(),
                    privilege: self.live.privilege.as_str().into(),
                    kind,
                    detail,
                    class,
                    tables,
                    rule: judgement.rule,
                    reason: judgement.reason,
                    reasoning: self.live.reasoning(),
                    created_ns: now,
                    expires_ns: now + self.core.approvals.timeout.as_nanos() as i64,
                    min_approvals: judgement.min_approvals,
                    approvals: vec![],
                    settings,
                    severity,
                    group,
                };
                Decision::Held(self.start_hold(approval_id, view))
            }
            RuleAction::Allow | RuleAction::Alert => Decision::Allow,
        }
    }

    fn start_hold(&self, approval_id: String, view: PendingView) -> Hold {
        let answer_rx = self.core.approvals.hold(view.clone());
        self.live.add_hold(&approval_id);
        let (res_tx, res_rx) = oneshot::channel::<Resolution>();
        let core = self.core.clone();
        let live = self.live.clone();
        let id = approval_id.clone();
        let timeout = self.core.approvals.timeout;
        tokio::spawn(async move {
            hold_task(core, live, id, answer_rx, res_tx, timeout).await;
        });
        Hold {
            approval_id,
            rule: view.rule,
            reason: view.reason,
            outcome: Box::pin(async move {
                res_rx.await.unwrap_or(Resolution::Deny {
                    rule: "approval".into(),
                    reason: "the approval was cancelled".into(),
                    cause: DenyCause::Killed,
                })
            }),
        }
    }
}

/// Waits for the first of: a person's answer, the timeout, the protocol dropping the hold, or
/// a kill. Records the outcome durably, then tells the protocol.
async fn hold_task(
    core: Arc<Core>,
    live: Arc<LiveSession>,
    id: String,
    answer_rx: oneshot::Receiver<Answer>,
    mut res_tx: oneshot::Sender<Resolution>,
    timeout: std::time::Duration,
) {
    let mut kill: watch::Receiver<Option<String>> = live.kill.subscribe();
    let answer = tokio::select! {
        a = answer_rx => a.ok(),
        _ = tokio::time::sleep(timeout) => {
            core.approvals.expire(&id, ApprovalOutcome::TimedOut, "no decision in time");
            Some(Answer { outcome: ApprovalOutcome::TimedOut, approver: String::new(), reason: format!("no decision within {}", humantime::format_duration(timeout)) })
        }
        _ = res_tx.closed() => {
            core.approvals.expire(&id, ApprovalOutcome::Cancelled, "the client went away");
            Some(Answer { outcome: ApprovalOutcome::Cancelled, approver: String::new(), reason: "the agent disconnected while the action was held".into() })
        }
        _ = kill.wait_for(|k| k.is_some()) => {
            core.approvals.expire(&id, ApprovalOutcome::Cancelled, "session killed");
            Some(Answer { outcome: ApprovalOutcome::Cancelled, approver: String::new(), reason: "the session was killed".into() })
        }
    };
    let answer = answer.unwrap_or(Answer {
        outcome: ApprovalOutcome::Cancelled,
        approver: String::new(),
        reason: "approval withdrawn".into(),
    });
    live.remove_hold(&id);
    let event = Event::Approval(ApprovalRecord {
        approval_id: id.clone(),
        outcome: answer.outcome,
        approver: answer.approver.clone(),
        reason: answer.reason.clone(),
    });
    let recorded = match core
        .recorder
        .append(live.key, now_ns(), &event, Urgency::Now)
        .await
    {
        Ok(t) => t.wait().await,
        Err(e) => Err(e),
    };
    core.bus.publish(LiveEvent::Approval {
        session_id: live.id.clone(),
        approval_id: id,
        outcome: answer.outcome.as_str().into(),
        approver: answer.approver.clone(),
        reason: answer.reason.clone(),
        ts_ns: now_ns(),
    });
    let resolution = match (recorded, answer.outcome) {
        (Err(e), _) => Resolution::Deny {
            rule: "recorder".into(),
            reason: format!("the approval could not be recorded: {e}"),
            cause: DenyCause::Killed,
        },
        (Ok(()), ApprovalOutcome::Approved) => Resolution::Allow,
        (Ok(()), ApprovalOutcome::Denied) => Resolution::Deny {
            rule: "approval".into(),
            reason: format!("denied by {}: {}", answer.approver, answer.reason),
            cause: DenyCause::Approver,
        },
        (Ok(()), ApprovalOutcome::TimedOut) => Resolution::Deny {
            rule: "timeout".into(),
            reason: answer.reason,
            cause: DenyCause::Timeout,
        },
        (Ok(()), ApprovalOutcome::Cancelled) => Resolution::Deny {
            rule: "cancelled".into(),
            reason: answer.reason,
            cause: DenyCause::Killed,
        },
    };
    let _ = res_tx.send(resolution);
}
