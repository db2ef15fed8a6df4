//! The end of a session: what the agent and the target are told, and what is recorded, for
//! each way a session ends.

use super::*;

impl Relay {
    pub(super) async fn finish(mut self, end: End) -> (Outcome, String) {
        // Dropping a pending hold cancels its approval.
        self.paused = None;
        let _ = self.flush_events().await;
        let terminate = b"X\0\0\0\x04";
        let record_failed = matches!(end, End::Recorder(_));
        let (outcome, reason, to_client, to_target): (Outcome, String, Option<Bytes>, bool) =
            match end {
                End::Client(r) => (Outcome::Completed, r, None, true),
                End::Killed(r) => (
                    Outcome::Killed,
                    r.clone(),
                    Some(error_bytes(
                        Severity::Fatal,
                        "57P01",
                        &format!("terminating connection due to administrator command: {r}"),
                    )),
                    true,
                ),
                End::Shutdown => (
                    Outcome::Interrupted,
                    "proctor shutting down".into(),
                    Some(error_bytes(
                        Severity::Fatal,
                        "57P01",
                        "proctor shutting down",
                    )),
                    true,
                ),
                End::TargetLost(r) => {
                    let _ = self
                        .gate
                        .record(Event::ProtocolError {
                            party: Party::Target,
                            message: r.clone(),
                        })
                        .await;
                    let msg = self.target_sent_fatal.is_none().then(|| {
                        error_bytes(
                            Severity::Fatal,
                            "08006",
                            &format!("proctor: lost the connection to the target: {r}"),
                        )
                    });
                    (Outcome::TargetLost, r, msg, false)
                }
                End::Target(r) => {
                    let _ = self
                        .gate
                        .record(Event::ProtocolError {
                            party: Party::Target,
                            message: r.clone(),
                        })
                        .await;
                    (
                        Outcome::TargetLost,
                        format!("target protocol error: {r}"),
                        Some(error_bytes(
                            Severity::Fatal,
                            "08P01",
                            "proctor: the target sent an invalid message",
                        )),
                        true,
                    )
                }
                End::Agent(code, r) => {
                    let _ = self
                        .gate
                        .record(Event::ProtocolError {
                            party: Party::Agent,
                            message: r.clone(),
                        })
                        .await;
                    (
                        Outcome::Interrupted,
                        format!("protocol violation by the agent: {r}"),
                        Some(error_bytes(Severity::Fatal, code, &format!("proctor: {r}"))),
                        true,
                    )
                }
                End::Recorder(r) => (
                    Outcome::Interrupted,
                    format!("recording failed: {r}"),
                    Some(error_bytes(
                        Severity::Fatal,
                        "58030",
                        "proctor: the session could not be recorded and was closed",
                    )),
                    true,
                ),
            };
        // Answers held back for records that are not durable never reach the agent: after a
        // recorder failure not at all, otherwise once they are (or not, after the goodbye
        // timeout).
        let wait = if record_failed {
            Duration::ZERO
        } else {
            GOODBYE_TIMEOUT
        };
        let keep = self.release.settle(self.cout.len(), wait).await;
        self.cout.truncate(keep);
        if let Some(b) = to_client {
            self.cout.extend_from_slice(&b);
        }
        let cout = std::mem::take(&mut self.cout);
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, self.write_client_goodbye(&cout)).await;
        if to_target {
            // A backend busy with a statement would not read the Terminate until the statement
            // ends (it does not notice a closed socket either), so stop the statement first.
            let busy = self
                .expect
                .iter()
                .any(|e| !matches!(e, Expect::Inject { .. } | Expect::CopyEnd));
            if busy && let Some(b) = self.backend_cancel.clone() {
                let _ =
                    tokio::time::timeout(GOODBYE_TIMEOUT, crate::cancel::cancel_backend(b)).await;
            }
            if !matches!(outcome, Outcome::Completed) || !self.tout.ends_with(terminate) {
                self.tout.extend_from_slice(terminate);
            }
            let _ = tokio::time::timeout(GOODBYE_TIMEOUT, self.write_target_goodbye()).await;
        }
        self.tickets.drain().await;
        (outcome, reason)
    }
}
