//! The end of a session: pending holds are cancelled, the credential is revoked, the
//! retention and the seal are recorded, the session's place under `[limits]` is given back.

use std::sync::atomic::Ordering;

use proctor_gate::{ApprovalOutcome, Event, GateError, Outcome};

use super::{SessionGate, lock, recorder_err};
use crate::bus::LiveEvent;
use crate::clock::now_ns;
use crate::credentials::pg_roles::AdminTarget;

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

impl SessionGate {
    /// `Gate::end`: runs once; later calls return at once.
    pub(super) async fn finish(&self, outcome: Outcome, reason: &str) -> Result<(), GateError> {
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
