//! State of one admitted agent session, shared by its channels.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use proctor_gate::{Gate, SshTarget};
use tokio::sync::watch;

use crate::target::TargetConn;

/// Why every channel of a session must end now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    Killed(String),
    TargetLost,
    Shutdown,
}

impl Stop {
    /// What the agent is told.
    pub(crate) fn notice(&self) -> String {
        match self {
            Stop::Killed(reason) => format!("proctor: session killed by an operator: {reason}"),
            Stop::TargetLost => "proctor: the connection to the target was lost".to_string(),
            Stop::Shutdown => "proctor: proctor is shutting down".to_string(),
        }
    }
}

/// Bounds that keep a session's memory use fixed.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Agent input buffered while a request waits for a verdict or an approval.
    pub held_input_bytes: usize,
    /// Agent input read ahead while output waits for the agent's window (see `channel`).
    pub input_hard_bytes: usize,
    /// Largest batch of agent input recorded and forwarded at once.
    pub input_batch_bytes: usize,
    /// Largest batch of target output recorded as one event.
    pub output_batch_bytes: usize,
    /// Output events queued but not yet known durable.
    pub output_tickets: usize,
    pub output_ticket_bytes: usize,
}

/// Channels of one agent connection whose input is queued beyond the soft bound.
///
/// russh grants window to the agent as data arrives and lets the handler only choose the
/// connection-wide size of the next grants; while any channel is under pressure, grants
/// shrink to a trickle (a couple of bytes), which still brings a packet, and so the next
/// chance to grant in full, once the pressure is gone.
#[derive(Default)]
pub(crate) struct Pressure {
    over: Mutex<HashSet<u32>>,
    any: AtomicBool,
}

/// The grant size while throttled: enough to keep packets (and decisions) coming.
pub(crate) const TRICKLE_WINDOW: u32 = 2;

impl Pressure {
    pub(crate) fn set(&self, channel: u32, on: bool) {
        if on == self.any.load(Ordering::Acquire) && !on {
            return;
        }
        if let Ok(mut over) = self.over.lock() {
            if on {
                over.insert(channel);
            } else {
                over.remove(&channel);
            }
            self.any.store(!over.is_empty(), Ordering::Release);
        }
    }

    pub(crate) fn any(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }
}

pub(crate) struct Session {
    pub gate: Arc<dyn Gate>,
    pub pressure: Arc<Pressure>,
    pub target: SshTarget,
    pub conn: TargetConn,
    pub stop: watch::Receiver<Option<Stop>>,
    pub limits: Limits,
}

// Waits on watch channels that return only owned values: a `watch::Ref` held inside a
// `select!` would make the enclosing future non-`Send`.

/// `true` once `rx` holds `true`; `false` if its sender is gone first.
pub(crate) async fn wait_true(rx: &mut watch::Receiver<bool>) -> bool {
    rx.wait_for(|v| *v).await.is_ok()
}

/// The value once `rx` holds `Some`; `None` if its sender is gone first.
pub(crate) async fn wait_some<T: Clone>(rx: &mut watch::Receiver<Option<T>>) -> Option<T> {
    rx.wait_for(|v| v.is_some())
        .await
        .ok()
        .and_then(|v| v.clone())
}

/// Whether `rx` came to satisfy `pred` (rather than losing its sender).
pub(crate) async fn wait_until<T>(
    rx: &mut watch::Receiver<T>,
    pred: impl FnMut(&T) -> bool,
) -> bool {
    rx.wait_for(pred).await.is_ok()
}
