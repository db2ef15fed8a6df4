//! The end of a session: what the agent and the target are told, and what is recorded, for
//! each way a session ends. The core says what ([`Core::goodbye`]); the adapter does it.

use super::*;

/// What ending the session does, decided by the core.
pub(super) struct Goodbye {
    pub outcome: Outcome,
    pub reason: String,
    /// Recorded (durably) before anything else of the end.
    pub record: Option<Event>,
    /// The agent's last message (after whatever answers may still go to it).
    pub to_client: Option<Bytes>,
    /// The target is told Terminate (otherwise it is gone already).
    pub to_target: bool,
    /// A recorder failure: nothing held back for a record is released, not even after a wait.
    pub record_failed: bool,
}

impl Core {
    pub(super) fn goodbye(&self, end: End) -> Goodbye {
        let record_failed = matches!(end, End::Recorder(_));
        let (outcome, reason, record, to_client, to_target) = match end {
            End::Client(r) => (Outcome::Completed, r, None, None, true),
            End::Killed(r) => {
                let msg = error_bytes(
                    Severity::Fatal,
                    "57P01",
                    &format!("terminating connection due to administrator command: {r}"),
                );
                (Outcome::Killed, r, None, Some(msg), true)
            }
            End::Shutdown => (
                Outcome::Interrupted,
                "proctor shutting down".into(),
                None,
                Some(error_bytes(
                    Severity::Fatal,
                    "57P01",
                    "proctor shutting down",
                )),
                true,
            ),
            End::TargetLost(r) => {
                let msg = self.target_sent_fatal.is_none().then(|| {
                    error_bytes(
                        Severity::Fatal,
                        "08006",
                        &format!("proctor: lost the connection to the target: {r}"),
                    )
                });
                let ev = Event::ProtocolError {
                    party: Party::Target,
                    message: r.clone(),
                };
                (Outcome::TargetLost, r, Some(ev), msg, false)
            }
            End::Target(r) => (
                Outcome::TargetLost,
                format!("target protocol error: {r}"),
                Some(Event::ProtocolError {
                    party: Party::Target,
                    message: r,
                }),
                Some(error_bytes(
                    Severity::Fatal,
                    "08P01",
                    "proctor: the target sent an invalid message",
                )),
                true,
            ),
            End::Agent(code, r) => (
                Outcome::Interrupted,
                format!("protocol violation by the agent: {r}"),
                Some(Event::ProtocolError {
                    party: Party::Agent,
                    message: r.clone(),
                }),
                Some(error_bytes(Severity::Fatal, code, &format!("proctor: {r}"))),
                true,
            ),
            End::Recorder(r) => (
                Outcome::Interrupted,
                format!("recording failed: {r}"),
                None,
                Some(error_bytes(
                    Severity::Fatal,
                    "58030",
                    "proctor: the session could not be recorded and was closed",
                )),
                true,
            ),
        };
        Goodbye {
            outcome,
            reason,
            record,
            to_client,
            to_target,
            record_failed,
        }
    }

    /// The agent's last bytes: what may still go to it (answers held back for records that
    /// are not durable never do), then `last`.
    pub(super) fn client_goodbye(&mut self, last: Option<Bytes>) -> BytesMut {
        let keep = self.client_sendable();
        self.cout.truncate(keep);
        if let Some(b) = last {
            self.cout.extend_from_slice(&b);
        }
        std::mem::take(&mut self.cout)
    }

    /// A statement is running on the target (it would not read a Terminate until it ends).
    pub(super) fn target_busy(&self) -> bool {
        self.expect
            .iter()
            .any(|e| !matches!(e, Expect::Inject { .. } | Expect::CopyEnd))
    }

    /// Terminate goes after whatever is still queued for the target.
    pub(super) fn target_goodbye(&mut self, outcome: &Outcome) {
        let terminate = b"X\0\0\0\x04";
        if !matches!(outcome, Outcome::Completed) || !self.tout.ends_with(terminate) {
            self.tout.extend_from_slice(terminate);
        }
    }
}

impl Relay {
    pub(super) async fn finish(mut self, end: End) -> (Outcome, String) {
        // Dropping a pending hold cancels its approval.
        self.holds.clear();
        let bye = self.core.goodbye(end);
        if let Some(ev) = bye.record {
            let _ = self.gate.record(ev).await;
        }
        // Answers held back for records that are not durable never reach the agent: after a
        // recorder failure not at all, otherwise once they are (or not, after the goodbye
        // timeout).
        let wait = if bye.record_failed {
            Duration::ZERO
        } else {
            GOODBYE_TIMEOUT
        };
        let deadline = tokio::time::Instant::now() + wait;
        while let Some(d) = self.durables.pop_front() {
            match tokio::time::timeout_at(deadline, d.wait()).await {
                Ok(Ok(())) => self.core.release.ack(),
                _ => {
                    self.core.release.fail();
                    self.durables.clear();
                }
            }
        }
        let cout = self.core.client_goodbye(bye.to_client);
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, self.write_client_goodbye(&cout)).await;
        if bye.to_target {
            // A backend busy with a statement would not read the Terminate until the statement
            // ends (it does not notice a closed socket either), so stop the statement first.
            if self.core.target_busy()
                && let Some(b) = self.backend_cancel.clone()
            {
                let _ =
                    tokio::time::timeout(GOODBYE_TIMEOUT, crate::cancel::cancel_backend(b)).await;
            }
            self.core.target_goodbye(&bye.outcome);
            let _ = tokio::time::timeout(GOODBYE_TIMEOUT, self.write_target_goodbye()).await;
        }
        self.tickets.drain().await;
        (bye.outcome, bye.reason)
    }
}
