//! Live notifications (session start/end, verdicts, holds, alerts) for the event stream, the
//! web console and webhooks. Best effort by design: the recording, not this bus, is the evidence.

use serde::Serialize;
use tokio::sync::broadcast;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    SessionStart {
        session_id: String,
        agent: String,
        target: String,
        protocol: String,
        privilege: String,
        ts_ns: i64,
    },
    SessionEnd {
        session_id: String,
        agent: String,
        outcome: String,
        reason: String,
        ts_ns: i64,
    },
    Verdict {
        session_id: String,
        agent: String,
        subject: String,
        verdict: String,
        rule: String,
        reason: String,
        approval_id: String,
        ts_ns: i64,
    },
    Alert {
        session_id: String,
        agent: String,
        rule: String,
        severity: String,
        message: String,
        ts_ns: i64,
    },
    Approval {
        session_id: String,
        approval_id: String,
        outcome: String,
        approver: String,
        reason: String,
        ts_ns: i64,
    },
    Refused {
        agent: String,
        target: String,
        protocol: String,
        reason: String,
        ts_ns: i64,
    },
}

impl LiveEvent {
    pub fn session_id(&self) -> Option<&str> {
        match self {
            LiveEvent::SessionStart { session_id, .. }
            | LiveEvent::SessionEnd { session_id, .. }
            | LiveEvent::Verdict { session_id, .. }
            | LiveEvent::Alert { session_id, .. }
            | LiveEvent::Approval { session_id, .. } => Some(session_id),
            LiveEvent::Refused { .. } => None,
        }
    }

    pub fn agent(&self) -> Option<&str> {
        match self {
            LiveEvent::SessionStart { agent, .. }
            | LiveEvent::SessionEnd { agent, .. }
            | LiveEvent::Verdict { agent, .. }
            | LiveEvent::Alert { agent, .. }
            | LiveEvent::Refused { agent, .. } => Some(agent),
            LiveEvent::Approval { .. } => None,
        }
    }
}

#[derive(Clone)]
pub struct Bus {
    tx: broadcast::Sender<LiveEvent>,
}

impl Default for Bus {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(4096);
        Bus { tx }
    }
}

impl Bus {
    pub fn publish(&self, e: LiveEvent) {
        let _ = self.tx.send(e);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.tx.subscribe()
    }
}
