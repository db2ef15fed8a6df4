//! `SessionGate`: one session's door into the core. Every action is judged by policy, recorded
//! with its verdict, and only then answered; holds wait for a person without blocking the
//! protocol; the end revokes credentials and seals the recording.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use proctor_gate::{
    Action, ApprovalOutcome, ApprovalRecord, Decision, DenyCause, Durable, Event, Gate, GateError,
    Hold, Outcome, Resolution, SftpOp, VerdictKind, VerdictRecord,
};
use tokio::sync::{Mutex, oneshot, watch};

use super::core::Core;
use super::registry::LiveSession;
use crate::approvals::{Answer, PendingView};
use crate::bus::LiveEvent;
use crate::clock::now_ns;
use crate::credentials::pg_roles::AdminTarget;
use crate::monitor::Response;
use crate::policy::{Context, RuleAction};
use crate::recorder::{RecorderError, Ticket, Urgency};

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// What must be undone when the session ends.
pub enum Revocation {
    PostgresRole {
        target: AdminTarget,
        user: String,
        member_of: String,
    },
    SshCertificate {
        name: String,
        valid_before_ns: i64,
    },
    None,
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

/// The event that records an action itself.
fn action_event(action: &Action) -> Event {
    match action {
        Action::Statement(s) => Event::Statement(s.clone()),
        Action::Exec { channel, command } => Event::Exec {
            channel: *channel,
            command: command.clone(),
        },
        Action::CommandLine { channel, line } => Event::CommandLine {
            channel: *channel,
            line: line.clone(),
        },
        Action::Channel {
            channel,
            kind,
            detail,
        } => Event::ChannelOpen {
            channel: *channel,
            kind: *kind,
            detail: detail.clone(),
        },
        Action::SftpChange {
            channel,
            op,
            path,
            target_path,
        } => Event::Sftp(SftpOp {
            channel: *channel,
            op: op.clone(),
            path: path.clone(),
            target_path: target_path.clone(),
            detail: "requested".into(),
            bytes_read: 0,
            bytes_written: 0,
            digest_read: None,
            digest_written: None,
            status: String::new(),
        }),
    }
}

/// A statement as an approver must see it to judge it: its text, the statement an EXECUTE
/// runs (the name alone says nothing), and every bound parameter value in full (`UPDATE
/// accounts SET owner = $1` says nothing without `$1`).
fn statement_detail(s: &proctor_gate::Statement, types: Option<&[u32]>) -> String {
    use std::fmt::Write;
    let mut out = s.text.clone();
    if out.is_empty() && s.extended {
        // An Execute of a portal proctor does not know (never bound, refused by the server,
        // or opened or closed by SQL) carries no text: the approver is told so rather than
        // shown an empty card. The name is the agent's: Debug quoting keeps it inert.
        let _ = write!(
            out,
            "-- Execute of portal {:?}: proctor does not know which statement it runs (never bound, refused by the server, or opened or closed by SQL)",
            s.portal
        );
    }
    if let Some(body) = &s.runs {
        let _ = write!(out, "\n-- runs the prepared statement: {body}");
    }
    for (i, p) in s.params.iter().enumerate() {
        let value = match &p.value {
            None => "NULL".to_string(),
            // Decoded by the type the server gives it, or its bytes with the type named.
            Some(v) if p.binary => match types.and_then(|t| t.get(i)) {
                Some(&oid) => proctor_postgres::params::show_binary(oid, v),
                None => format!("(binary) \\x{}", hex::encode(v)),
            },
            Some(v) => match std::str::from_utf8(v) {
                Ok(t) => format!("'{}'", t.replace('\'', "''")),
                // Shown as the bytes they are, never as U+FFFD: two different values must
                // not look the same.
                Err(_) => format!("(text, not UTF-8) \\x{}", hex::encode(v)),
            },
        };
        let _ = write!(out, "\n-- ${} = {value}", i + 1);
    }
    out
}

/// How an approver sees the action: its kind, text, class and tables.
#[cfg(test)]
fn describe(action: &Action) -> (String, String, String, Vec<String>) {
    describe_typed(action, None)
}

/// [`describe`], with the parameter types of a statement whose values are in binary format.
fn describe_typed(action: &Action, types: Option<&[u32]>) -> (String, String, String, Vec<String>) {
    match action {
        Action::Statement(s) => (
            "statement".into(),
            statement_detail(s, types),
            s.class.as_str().into(),
            s.tables.clone(),
        ),
        Action::Exec { command, .. } => ("exec".into(), command.clone(), String::new(), vec![]),
        Action::CommandLine { line, .. } => ("line".into(), line.clone(), String::new(), vec![]),
        Action::Channel { kind, detail, .. } => (
            "channel".into(),
            if detail.is_empty() {
                kind.as_str().to_string()
            } else {
                format!("{} {detail}", kind.as_str())
            },
            String::new(),
            vec![],
        ),
        Action::SftpChange {
            op,
            path,
            target_path,
            ..
        } => {
            let detail = if target_path.is_empty() {
                format!("{op} {path}")
            } else {
                format!("{op} {path} -> {target_path}")
            };
            ("sftp".into(), detail, String::new(), vec![])
        }
    }
}

fn new_approval_id() -> String {
    hex::encode(rand::random::<[u8; 5]>())
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

/// One action judged, not yet recorded.
struct JudgedAction {
    /// The action as recorded (redacted).
    action: Action,
    judgement: crate::policy::Judgement,
    verdict: VerdictRecord,
    approval_id: String,
    kill_after: Option<String>,
    /// What the statement changes of `search_path` or the role, read from the clear text
    /// here (off the shared worker for large actions), applied once the server confirms it.
    settings_change: Option<super::pg_settings::Pending>,
    /// Parameter types of a statement with values in binary format (`Gate::param_types`).
    param_types: Option<Arc<[u32]>>,
}

/// A proctor note recorded after a statement with values bound in binary format: each such
/// value as the server reads it (the statement's record keeps the bytes as sent). Read from
/// the recorded (redacted) statement: a sealed value is a marker, never decoded.
fn binary_values_note(action: &Action, types: Option<&Arc<[u32]>>) -> Option<Event> {
    let (Action::Statement(s), Some(types)) = (action, types) else {
        return None;
    };
    let mut text = format!(
        "statement {}: values bound in binary format, as the server reads them",
        s.id
    );
    let mut any = false;
    for (i, p) in s.params.iter().enumerate() {
        if let (true, Some(v)) = (p.binary, &p.value) {
            any = true;
            let oid = types.get(i).copied().unwrap_or(0);
            let shown = proctor_postgres::params::show_binary(oid, v);
            text.push_str(&format!("\n${} = {shown}", i + 1));
        }
    }
    any.then(|| Event::Annotation {
        source: "proctor".into(),
        text,
    })
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
                super::limits::statement_too_large(s.text.len(), limits.statement_bytes)
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
            s.text = super::limits::oversized_recorded(&s.text);
        }
        // Read from the recorded text, so the card never shows what redaction took out.
        let settings_change = match &action {
            Action::Statement(s) => super::pg_settings::PgSettings::changes(s),
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

    /// Records every judged action with its alerts and verdict in one batch, waits until all of
    /// it is durable, then publishes and answers (starting holds).
    async fn commit_judged(&self, judged: Vec<JudgedAction>) -> Result<Vec<Decision>, GateError> {
        let ticket = self.append_judged(&judged).await?;
        ticket.wait().await.map_err(recorder_err)?;
        Ok(self.answer_judged(judged))
    }

    /// Queues every judged action with its alerts and verdict in one batch; the ticket covers
    /// all of it (the writer acknowledges in order).
    async fn append_judged(&self, judged: &[JudgedAction]) -> Result<Ticket, GateError> {
        let mut events: Vec<Event> = Vec::with_capacity(judged.len() * 2);
        {
            let mut red = lock(&self.redaction);
            let redactor = self.core.redactor();
            for j in judged {
                events.push(action_event(&j.action));
                if let Some(ev) = binary_values_note(&j.action, j.param_types.as_ref()) {
                    events.push(redactor.event(&mut red, &ev).unwrap_or(ev));
                }
                for a in &j.judgement.alerts {
                    let ev = Event::Alert(a.clone());
                    events.push(redactor.event(&mut red, &ev).unwrap_or(ev));
                }
                let ev = Event::Verdict(j.verdict.clone());
                events.push(redactor.event(&mut red, &ev).unwrap_or(ev));
            }
        }
        let ts = now_ns();
        let refs: Vec<(i64, &Event)> = events.iter().map(|e| (ts, e)).collect();
        self.core
            .recorder
            .append_many(self.live.key, &refs)
            .await
            .map_err(recorder_err)
    }

    /// Publishes and answers judged actions whose records are durable (starting holds).
    fn answer_judged(&self, judged: Vec<JudgedAction>) -> Vec<Decision> {
        let mut out = Vec::with_capacity(judged.len());
        for mut j in judged {
            for a in &j.judgement.alerts {
                self.publish_alert(a);
            }
            let verdict = j.verdict.clone();
            let kill_after = j.kill_after.clone();
            let changes = match j.judgement.action {
                RuleAction::Allow | RuleAction::Alert | RuleAction::Hold => {
                    j.settings_change.take()
                }
                RuleAction::Deny => None,
            };
            // The hold is queued before it is announced, so an approver reacting to the
            // announcement always finds it.
            out.push(self.answer(j));
            // After its own card: a statement's changes are pending for the ones after it.
            if let Some(c) = changes {
                lock(&self.pg_settings).decided(c);
            }
            self.publish_verdict(&verdict);
            if let Some(reason) = &kill_after {
                self.core.sessions.kill(&self.live.id, reason);
            }
        }
        out
    }

    fn answer(&self, j: JudgedAction) -> Decision {
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
}

/// Text past which judging (policy, redaction, detectors) may take milliseconds.
const LARGE_ACTION_BYTES: usize = 64 * 1024;

impl SessionGate {
    /// [`Self::judge`], told to the runtime as blocking when the action is large, so that one
    /// agent's huge statements do not hold up the sessions sharing its worker thread.
    fn judge_large(&self, action: Action) -> JudgedAction {
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
        if self.ended.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let (outcome, reason) = match self.live.kill_reason() {
            Some(k) => (Outcome::Killed, format!("killed: {k}")),
            None => (outcome, reason.to_string()),
        };
        for id in self.live.take_holds() {
            self.core
                .approvals
                .expire(&id, ApprovalOutcome::Cancelled, "session ended");
        }
        let revocation = std::mem::replace(&mut *self.revocation.lock().await, Revocation::None);
        let revoke_event = match revocation {
            Revocation::PostgresRole {
                target,
                user,
                member_of,
            } => Some(
                match self.core.pg_roles.revoke(&target, &user, &member_of).await {
                    Ok(detail) => Event::CredentialRevoked { name: user, detail },
                    Err(e) => Event::ProtocolError {
                        party: proctor_gate::Party::Proctor,
                        message: format!("could not drop role {user}: {e}; the reaper will retry"),
                    },
                },
            ),
            Revocation::SshCertificate {
                name,
                valid_before_ns,
            } => Some(Event::CredentialRevoked {
                name,
                detail: format!(
                    "ephemeral key discarded; the certificate expires at {}",
                    crate::clock::format_ns(valid_before_ns)
                ),
            }),
            Revocation::None => None,
        };
        let mut result = Ok(());
        if let Some(ev) = revoke_event
            && let Err(e) = self
                .core
                .recorder
                .record(self.live.key, now_ns(), &ev)
                .await
        {
            result = Err(recorder_err(e));
        }
        let retention = self.core.retention_event(&self.live.target);
        if let Err(e) = self
            .core
            .recorder
            .record(self.live.key, now_ns(), &retention)
            .await
        {
            result = Err(recorder_err(e));
        }
        if let Err(e) = self
            .core
            .recorder
            .seal(self.live.key, now_ns(), outcome, &reason)
            .await
        {
            tracing::error!(session = %self.live.id, error = %e, "could not seal a session");
            result = Err(recorder_err(e));
        }
        self.core.sessions.remove(&self.live.id);
        // The place is free once the role is dropped and the session sealed.
        drop(lock(&self.admission).take());
        self.core.bus.publish(LiveEvent::SessionEnd {
            session_id: self.live.id.clone(),
            agent: self.live.agent.clone(),
            outcome: outcome.as_str().into(),
            reason,
            ts_ns: now_ns(),
        });
        tracing::info!(session = %self.live.id, outcome = outcome.as_str(), "session ended");
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proctor_gate::{Param, Statement, StatementClass};

    /// Issue 18, item 5: the card shows bound values and what an EXECUTE runs, whole.
    #[test]
    fn an_approver_sees_parameters_and_the_prepared_statement() {
        let s = Statement {
            id: 1,
            text: "EXECUTE give($1, $2, $3)".into(),
            params: vec![
                Param {
                    binary: false,
                    value: Some(Bytes::from_static(b"o'brien")),
                },
                Param {
                    binary: true,
                    value: Some(Bytes::from_static(&[0, 1, 255])),
                },
                Param {
                    binary: false,
                    value: None,
                },
                // LATIN1 `\xfe` and `\xff` would both be U+FFFD if decoded lossily.
                Param {
                    binary: false,
                    value: Some(Bytes::from_static(&[b'x', 0xfe])),
                },
            ],
            statement_name: String::new(),
            portal: String::new(),
            extended: true,
            class: StatementClass::Write,
            command: "UPDATE".into(),
            tables: vec!["accounts".into()],
            reasoning: None,
            runs: Some("UPDATE accounts SET owner = $1".into()),
        };
        let (_, detail, class, _) = describe(&Action::Statement(s));
        assert_eq!(
            detail,
            "EXECUTE give($1, $2, $3)\n-- runs the prepared statement: UPDATE accounts SET owner = $1\n-- $1 = 'o''brien'\n-- $2 = (binary) \\x0001ff\n-- $3 = NULL\n-- $4 = (text, not UTF-8) \\x78fe"
        );
        assert_eq!(class, "write");
    }

    /// An Execute of a portal proctor does not know is held as unknown; its card says why
    /// instead of showing nothing, with the agent's portal name quoted inert.
    #[test]
    fn an_unknown_portal_is_named_on_the_card() {
        let s = Statement {
            id: 2,
            text: String::new(),
            params: Vec::new(),
            statement_name: String::new(),
            portal: "c\u{1b}[2K".into(),
            extended: true,
            class: StatementClass::Unknown,
            command: String::new(),
            tables: Vec::new(),
            reasoning: None,
            runs: None,
        };
        let (_, detail, class, _) = describe(&Action::Statement(s));
        assert!(
            detail.starts_with("-- Execute of portal \"c\\u{1b}[2K\": proctor does not know"),
            "{detail}"
        );
        assert!(!detail.contains('\u{1b}'));
        assert_eq!(class, "unknown");
    }
}
