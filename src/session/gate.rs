//! `SessionGate`: one session's door into the core. Every action is judged by policy, recorded
//! with its verdict, and only then answered; holds wait for a person without blocking the
//! protocol; the end revokes credentials and seals the recording.
//!
//! This file holds the gate itself and its plain recording; the jobs around it are in
//! `gate/`: judging an action (`judge`), recording verdicts and waiting for durability
//! (`commit`), what an approver reads (`card`), holds (`hold`), and the end (`end`).

mod card;
mod commit;
mod end;
mod hold;
mod judge;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use proctor_gate::{
    Action, Decision, Durable, Event, Gate, GateError, Outcome, VerdictKind, VerdictRecord,
};
use tokio::sync::{Mutex, watch};

use super::core::Core;
use super::registry::LiveSession;
use crate::bus::LiveEvent;
use crate::clock::now_ns;
use crate::monitor::Response;
use crate::policy::RuleAction;
use crate::recorder::{RecorderError, Ticket, Urgency};

pub use self::end::Revocation;
use self::judge::new_approval_id;

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

pub struct SessionGate {
    core: Arc<Core>,
    live: Arc<LiveSession>,
    revocation: Mutex<Revocation>,
    ended: AtomicBool,
    /// Redaction state (sensitive result columns, open key blocks) of this session.
    redaction: std::sync::Mutex<crate::redact::SessionRedaction>,
    /// This session's place under `[limits]`, given back when it ends.
    admission: std::sync::Mutex<Option<super::limits::Admission>>,
    /// PostgreSQL `search_path` and role as the server confirmed them, for approval cards.
    pg_settings: std::sync::Mutex<super::pg_settings::PgSettings>,
    /// Judged shells' working directories, as the target gave them, for approval cards.
    shells: std::sync::Mutex<super::shell_context::ShellContexts>,
    /// Parameter types of statements about to be judged whose values are in binary format,
    /// by statement id (taken when judged), to show those values decoded.
    param_types: std::sync::Mutex<std::collections::HashMap<u64, Arc<[u32]>>>,
}

fn recorder_err(e: RecorderError) -> GateError {
    GateError::Recorder(e.to_string())
}

impl SessionGate {
    pub fn new(
        core: Arc<Core>,
        live: Arc<LiveSession>,
        revocation: Revocation,
        admission: Option<super::limits::Admission>,
        login_search_path: Option<String>,
    ) -> Self {
        let login_role = match &revocation {
            Revocation::PostgresRole { member_of, .. } => member_of.as_str(),
            _ => "",
        };
        SessionGate {
            pg_settings: std::sync::Mutex::new(super::pg_settings::PgSettings::new(
                login_role,
                login_search_path,
            )),
            shells: std::sync::Mutex::default(),
            param_types: std::sync::Mutex::default(),
            admission: std::sync::Mutex::new(admission),
            redaction: std::sync::Mutex::new(crate::redact::SessionRedaction::new(&live.id)),
            core,
            live,
            revocation: Mutex::new(revocation),
            ended: AtomicBool::new(false),
        }
    }

    pub fn live(&self) -> &Arc<LiveSession> {
        &self.live
    }

    fn check_open(&self) -> Result<(), GateError> {
        if self.ended.load(Ordering::Acquire) {
            return Err(GateError::Closed("session already ended".into()));
        }
        Ok(())
    }

    /// Records `event` as redaction leaves it: only the redacted/sealed form is hashed.
    async fn append(&self, event: &Event, urgency: Urgency) -> Result<Ticket, GateError> {
        if let Event::StatementResult(r) = event {
            lock(&self.pg_settings).answered(r);
        }
        let redacted = self
            .core
            .redactor()
            .event(&mut lock(&self.redaction), event);
        self.append_recorded(redacted.as_ref().unwrap_or(event), urgency)
            .await
    }

    /// Records an event that is already in its recorded (redacted) form.
    async fn append_recorded(&self, event: &Event, urgency: Urgency) -> Result<Ticket, GateError> {
        // Proctor's own notes (a record-only shell's unenforced verdicts, keys a judged shell
        // dropped) are evidence, not the agent's reasoning shown to approvers.
        if let Event::Annotation { text, source } = event
            && source != "proctor"
        {
            self.live.add_reasoning(text);
        }
        self.core
            .recorder
            .append(self.live.key, now_ns(), event, urgency)
            .await
            .map_err(recorder_err)
    }

    fn publish_alert(&self, a: &proctor_gate::AlertRecord) {
        self.core.bus.publish(LiveEvent::Alert {
            session_id: self.live.id.clone(),
            agent: self.live.agent.clone(),
            rule: a.rule.clone(),
            severity: a.severity.clone(),
            message: a.message.clone(),
            ts_ns: now_ns(),
        });
    }

    /// Runs the egress detectors over recorded traffic; their alerts follow the event.
    async fn observe(&self, event: &Event) -> Result<(), GateError> {
        if !matches!(
            event,
            Event::StatementResult(_) | Event::Output { .. } | Event::Sftp(_) | Event::Copy { .. }
        ) {
            return Ok(());
        }
        let findings = {
            let mut w = lock(&self.live.watch);
            self.core.monitor.on_event(&mut w, event)
        };
        for f in findings {
            self.append(&Event::Alert(f.alert.clone()), Urgency::Lazy)
                .await?;
            self.publish_alert(&f.alert);
            match f.response {
                Response::Alert => {}
                Response::Hold => {
                    *lock(&self.live.hold_next) =
                        Some((f.alert.rule.clone(), f.alert.message.clone()))
                }
                Response::Kill => {
                    self.core.sessions.kill(&self.live.id, &f.alert.message);
                }
            }
        }
        Ok(())
    }

    fn publish_verdict(&self, v: &VerdictRecord) {
        if v.verdict == VerdictKind::Allow {
            return;
        }
        self.core.bus.publish(LiveEvent::Verdict {
            session_id: self.live.id.clone(),
            agent: self.live.agent.clone(),
            subject: v.subject.clone(),
            verdict: v.verdict.as_str().into(),
            rule: v.rule.clone(),
            reason: v.reason.clone(),
            approval_id: v.approval_id.clone(),
            ts_ns: now_ns(),
        });
    }
}

#[async_trait]
impl Gate for SessionGate {
    fn session_id(&self) -> &str {
        &self.live.id
    }

    async fn record(&self, event: Event) -> Result<(), GateError> {
        self.check_open()?;
        let ticket = self.append(&event, Urgency::Now).await?;
        self.observe(&event).await?;
        ticket.wait().await.map_err(recorder_err)?;
        // An alert a protocol raised (a hold a record-only shell cannot enforce) reaches people
        // like any other, once durable.
        if let Event::Alert(a) = &event {
            self.publish_alert(a);
        }
        Ok(())
    }

    async fn enqueue(&self, event: Event) -> Result<Durable, GateError> {
        self.check_open()?;
        // Agent input is forwarded only once durable, so its ticket is awaited at once.
        let urgency = match event {
            Event::Input { .. } => Urgency::Now,
            _ => Urgency::Lazy,
        };
        let ticket = self.append(&event, urgency).await?;
        self.observe(&event).await?;
        Ok(Durable(Box::pin(async move {
            ticket.wait().await.map_err(recorder_err)
        })))
    }

    async fn decide(&self, action: Action) -> Result<Decision, GateError> {
        self.check_open()?;
        let judged = self.judge_large(action);
        let mut out = self.commit_judged(vec![judged]).await?;
        out.pop()
            .ok_or_else(|| GateError::Recorder("no decision was produced".into()))
    }

    fn param_types(&self, statement: u64, types: Arc<[u32]>) {
        let mut m = lock(&self.param_types);
        // Taken when the statement is judged; one that never is (a look-ahead cut short) must
        // not grow this: past a bound the oldest are simply not shown decoded.
        if m.len() >= 4096 {
            m.clear();
        }
        m.insert(statement, types);
    }

    async fn shell_context(
        &self,
        channel: u32,
        cwd: Option<String>,
        why: &str,
    ) -> Result<(), GateError> {
        let text = lock(&self.shells).update(channel, cwd, why);
        match text {
            Some(text) => {
                self.record(Event::Annotation {
                    source: "proctor".into(),
                    text,
                })
                .await
            }
            None => Ok(()),
        }
    }

    async fn shell_syntax(&self, text: &str) -> proctor_gate::ShellSyntax {
        crate::bash_syntax::system().check(text).await
    }

    /// What policy would let through is held instead, with why bash could not check it.
    async fn decide_unread(&self, action: Action, why: &str) -> Result<Decision, GateError> {
        self.check_open()?;
        let mut j = self.judge_large(action);
        if matches!(j.judgement.action, RuleAction::Allow | RuleAction::Alert) {
            j.judgement.action = RuleAction::Hold;
            j.judgement.rule = proctor_gate::RULE_SHELL_SYNTAX_UNCHECKED.into();
            j.judgement.reason = format!("proctor cannot read what this runs: {why}");
            j.judgement.min_approvals = j.judgement.min_approvals.max(1);
            j.approval_id = new_approval_id();
            j.verdict.verdict = VerdictKind::Hold;
            // The agent's limit on pending holds applies to this one too.
            let max = self.core.config.limits.pending_holds_per_agent as usize;
            if max > 0 && self.core.approvals.pending_for_agent(&self.live.agent) >= max {
                j.judgement.action = RuleAction::Deny;
                j.judgement.rule = "limit:pending-holds".into();
                j.judgement.reason = format!(
                    "agent {:?} already has {max} or more actions waiting for approval; this \
                     one, which bash could not check, is denied, not queued",
                    self.live.agent
                );
                j.approval_id.clear();
                j.verdict.verdict = VerdictKind::Deny;
            }
            j.verdict.rule = j.judgement.rule.clone();
            j.verdict.reason = j.judgement.reason.clone();
            j.verdict.approval_id = j.approval_id.clone();
        }
        let mut out = self.commit_judged(vec![j]).await?;
        out.pop()
            .ok_or_else(|| GateError::Recorder("no decision was produced".into()))
    }

    /// Judges in order and records everything judged under one group commit; stops after the
    /// first action that is not allowed (the protocol forwards nothing after it).
    async fn decide_all(&self, actions: Vec<Action>) -> Result<Vec<Decision>, GateError> {
        self.check_open()?;
        let mut judged = Vec::with_capacity(actions.len());
        for action in actions {
            let j = self.judge_large(action);
            let stop =
                j.judgement.action != RuleAction::Allow && j.judgement.action != RuleAction::Alert;
            judged.push(j);
            if stop {
                break;
            }
        }
        self.commit_judged(judged).await
    }

    /// Issue 15: when every action is allowed outright (no hold, denial, alert or kill), the
    /// batch is queued and the decisions returned before the fdatasync; nothing about them is
    /// published (allowed verdicts never are). Anything else is committed as `decide_all`.
    async fn decide_all_overlapped(
        &self,
        actions: Vec<Action>,
    ) -> Result<(Vec<Decision>, Option<Durable>), GateError> {
        self.check_open()?;
        let mut judged = Vec::with_capacity(actions.len());
        let mut plain = true;
        for action in actions {
            let j = self.judge_large(action);
            let allowed =
                j.judgement.action == RuleAction::Allow || j.judgement.action == RuleAction::Alert;
            plain &= j.judgement.action == RuleAction::Allow
                && j.judgement.alerts.is_empty()
                && j.kill_after.is_none();
            judged.push(j);
            if !allowed {
                break;
            }
        }
        if !plain {
            return Ok((self.commit_judged(judged).await?, None));
        }
        let ticket = self.append_judged(&judged).await?;
        let decisions = judged.iter().map(|_| Decision::Allow).collect();
        Ok((
            decisions,
            Some(Durable(Box::pin(async move {
                ticket.wait().await.map_err(recorder_err)
            }))),
        ))
    }

    fn kill_signal(&self) -> watch::Receiver<Option<String>> {
        self.live.kill.subscribe()
    }

    async fn end(&self, outcome: Outcome, reason: &str) -> Result<(), GateError> {
        self.finish(outcome, reason).await
    }
}
