//! Recording judged actions: each action, its notes, alerts and verdict go to the recorder in
//! one batch; only once that batch is durable are the decisions published and answered.

use proctor_gate::{Action, Decision, Event, GateError, SftpOp};

use super::card::binary_values_note;
use super::judge::JudgedAction;
use super::{SessionGate, lock, recorder_err};
use crate::clock::now_ns;
use crate::policy::RuleAction;
use crate::recorder::Ticket;

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

impl SessionGate {
    /// Records every judged action with its alerts and verdict in one batch, waits until all of
    /// it is durable, then publishes and answers (starting holds).
    pub(super) async fn commit_judged(
        &self,
        judged: Vec<JudgedAction>,
    ) -> Result<Vec<Decision>, GateError> {
        let ticket = self.append_judged(&judged).await?;
        ticket.wait().await.map_err(recorder_err)?;
        Ok(self.answer_judged(judged))
    }

    /// Queues every judged action with its alerts and verdict in one batch; the ticket covers
    /// all of it (the writer acknowledges in order).
    pub(super) async fn append_judged(&self, judged: &[JudgedAction]) -> Result<Ticket, GateError> {
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
}
