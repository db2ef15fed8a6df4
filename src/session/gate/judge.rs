//! Judging one action: policy, detectors, limits, break-glass, kill and redaction checks,
//! with no I/O. What comes out is recorded by `commit` before anyone is answered.

use std::sync::Arc;

use proctor_gate::{Action, VerdictKind, VerdictRecord};

use super::{SessionGate, lock};
use crate::clock::now_ns;
use crate::monitor::Response;
use crate::policy::{Context, RuleAction};

/// One action judged, not yet recorded.
pub(super) struct JudgedAction {
    /// The action as recorded (redacted).
    pub(super) action: Action,
    pub(super) judgement: crate::policy::Judgement,
    pub(super) verdict: VerdictRecord,
    pub(super) approval_id: String,
    pub(super) kill_after: Option<String>,
    /// What the statement changes of `search_path` or the role, read from the clear text
    /// here (off the shared worker for large actions), applied once the server confirms it.
    pub(super) settings_change: Option<crate::session::pg_settings::Pending>,
    /// Parameter types of a statement with values in binary format (`Gate::param_types`).
    pub(super) param_types: Option<Arc<[u32]>>,
}

pub(super) fn new_approval_id() -> String {
    hex::encode(rand::random::<[u8; 5]>())
}

impl SessionGate {
    /// Policy, monitor, break-glass and kill checks for one action; no I/O.
    fn judge(&self, action: Action) -> JudgedAction {
        let policy = self.core.policy();
        let shell_cwd = match &action {
            Action::CommandLine { channel, .. } => lock(&self.shells).cwd(*channel),
            _ => None,
        };
        let ctx = Context {
            agent: &self.live.agent,
            target: &self.live.target,
            login: &self.live.login,
            privilege: self.live.privilege,
            protocol: self.live.protocol,
            shell_cwd: shell_cwd.as_deref(),
        };
        let limits = &self.core.config.limits;
        // An oversized statement is refused before policy and the detectors read it: neither
        // its cost nor its table names reach anything but the recording.
        let oversize = match &action {
            Action::Statement(s) => {
                crate::session::limits::statement_too_large(s.text.len(), limits.statement_bytes)
            }
            _ => None,
        };
        let mut judgement = match &oversize {
            Some(reason) => crate::policy::Judgement {
                action: RuleAction::Deny,
                rule: proctor_gate::RULE_STATEMENT_SIZE.into(),
                reason: reason.clone(),
                alerts: Vec::new(),
                min_approvals: 0,
            },
            None => policy.judge(&ctx, &action),
        };
        let now = now_ns();
        let findings = if oversize.is_some() {
            Vec::new()
        } else {
            let mut w = lock(&self.live.watch);
            let (core, live) = (&self.core, &self.live);
            core.monitor.on_action(
                &live.agent,
                live.active_hours,
                &mut w,
                &action,
                now,
                |item| {
                    core.store
                        .index()
                        .baseline_insert(&live.agent, item, &live.id)
                        .unwrap_or(false)
                },
            )
        };
        let mut monitor_hold = lock(&self.live.hold_next).take();
        let mut kill_after = None;
        for f in findings {
            match f.response {
                Response::Alert => {}
                Response::Hold => {
                    monitor_hold = Some((f.alert.rule.clone(), f.alert.message.clone()))
                }
                Response::Kill => kill_after = Some(f.alert.message.clone()),
            }
            judgement.alerts.push(f.alert);
        }
        if let Some((rule, reason)) = monitor_hold
            && matches!(judgement.action, RuleAction::Allow | RuleAction::Alert)
        {
            judgement.action = RuleAction::Hold;
            judgement.rule = rule;
            judgement.reason = reason;
            judgement.min_approvals = 1;
        }
        if let Some(reason) = &kill_after {
            judgement.action = RuleAction::Deny;
            judgement.rule = "monitor:kill".into();
            judgement.reason = reason.clone();
        }
        if self.live.privilege == proctor_gate::Privilege::BreakGlass
            && self.live.reasoning().is_empty()
        {
            judgement.action = RuleAction::Deny;
            judgement.rule = "break-glass".into();
            judgement.reason = "break-glass access needs a stated reason first: set PROCTOR_REASON (ssh -o SetEnv=PROCTOR_REASON=...)".into();
        }
        // A grant with `shell = "deny"` allows no interpreter reading the session either.
        if let Action::Exec { command, .. } = &action
            && self.core.config.grants.iter().any(|g| {
                g.name == self.live.grant && g.shell_mode() == proctor_gate::ShellMode::Deny
            })
            && crate::policy::shell::analyze(command).interactive
        {
            judgement.action = RuleAction::Deny;
            judgement.rule = "grant:shell-deny".into();
            judgement.reason = "the grant allows no interactive shell or interpreter \
                                (shell = \"deny\")"
                .into();
        }
        if let Some(reason) = self.live.kill_reason() {
            judgement.action = RuleAction::Deny;
            judgement.rule = "killed".into();
            judgement.reason = reason;
        }
        // Policy judged the clear action; what is recorded, and shown to approvers, is the
        // redacted one (one search of the text for both: `action_checked`).
        let (redacted, hides_code) = self
            .core
            .redactor()
            .action_checked(&mut lock(&self.redaction), &action);
        // What is recorded and shown to approvers is the redacted action, so redaction must
        // not hide code: an action where it would is held, whatever the policy said.
        if matches!(judgement.action, RuleAction::Allow | RuleAction::Alert)
            && let Some(kind) = hides_code
        {
            judgement.action = RuleAction::Hold;
            judgement.rule = "redaction-hides-text".into();
            judgement.reason = format!(
                "a {kind} secret would be redacted together with text around it that may run; \
                 held so that nothing runs unseen (an auditor key reveals the sealed text)"
            );
            judgement.min_approvals = judgement.min_approvals.max(1);
        }
        // One agent cannot fill the approvers' queue: past its limit a new hold is denied,
        // not queued.
        let max_holds = limits.pending_holds_per_agent as usize;
        if judgement.action == RuleAction::Hold && max_holds > 0 {
            let pending = self.core.approvals.pending_for_agent(&self.live.agent);
            if pending >= max_holds {
                judgement.action = RuleAction::Deny;
                judgement.reason = format!(
                    "agent {:?} already has {pending} actions waiting for approval (limit \
                     {max_holds}, [limits] pending_holds_per_agent); this one would have been \
                     held by rule {}: it is denied, not queued; retry once those are decided",
                    self.live.agent, judgement.rule
                );
                judgement.rule = "limit:pending-holds".into();
            }
        }
        let mut action = redacted.unwrap_or(action);
        let param_types = match &action {
            Action::Statement(s) => lock(&self.param_types).remove(&s.id),
            _ => None,
        };
        // A statement refused for its size is recorded cut (with its size and digest), cut
        // after redaction so that no secret is split: see `limits::oversized_recorded`.
        if oversize.is_some()
            && let Action::Statement(s) = &mut action
        {
            s.text = crate::session::limits::oversized_recorded(&s.text);
        }
        // Read from the recorded text, so the card never shows what redaction took out.
        let settings_change = match &action {
            Action::Statement(s) => crate::session::pg_settings::PgSettings::changes(s),
            _ => None,
        };
        if let Action::Statement(s) = &action
            && let Some(r) = &s.reasoning
        {
            self.live.add_reasoning(r);
        }
        let subject = action.subject();
        let approval_id = if judgement.action == RuleAction::Hold {
            new_approval_id()
        } else {
            String::new()
        };
        let verdict = VerdictRecord {
            subject,
            verdict: match judgement.action {
                RuleAction::Deny => VerdictKind::Deny,
                RuleAction::Hold => VerdictKind::Hold,
                _ => VerdictKind::Allow,
            },
            rule: judgement.rule.clone(),
            reason: judgement.reason.clone(),
            approval_id: approval_id.clone(),
        };
        JudgedAction {
            action,
            judgement,
            verdict,
            approval_id,
            kill_after,
            settings_change,
            param_types,
        }
    }
}

/// Text past which judging (policy, redaction, detectors) may take milliseconds.
const LARGE_ACTION_BYTES: usize = 64 * 1024;

impl SessionGate {
    /// [`Self::judge`], told to the runtime as blocking when the action is large, so that one
    /// agent's huge statements do not hold up the sessions sharing its worker thread.
    pub(super) fn judge_large(&self, action: Action) -> JudgedAction {
        let large = match &action {
            Action::Statement(s) => s.text.len() > LARGE_ACTION_BYTES,
            Action::Exec { command, .. } => command.len() > LARGE_ACTION_BYTES,
            Action::CommandLine { line, .. } => line.len() > LARGE_ACTION_BYTES,
            _ => false,
        };
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if large && multi_thread {
            tokio::task::block_in_place(|| self.judge(action))
        } else {
            self.judge(action)
        }
    }
}
