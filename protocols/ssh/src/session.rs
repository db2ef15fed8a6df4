//! State of one admitted agent session, shared by its channels.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// Agent input recorded (or waiting to be) but not yet written to the target.
    pub forward_bytes: usize,
    /// Largest batch of target output recorded as one event.
    pub output_batch_bytes: usize,
    /// Output events queued but not yet known durable.
    pub output_tickets: usize,
    pub output_ticket_bytes: usize,
}

/// Agent input queued per channel of one connection, for per-channel flow control.
///
/// russh grants window to the agent as data arrives (not as it is consumed) and lets the
/// handler choose only the size of the next grant, connection-wide. So each grant is sized from
/// the queue of the channel that just received one: what is left of a full window after the
/// bytes that channel still has queued. A channel whose consumer is slow (a durable write, a
/// hold, a slow target) thus shrinks its agent's window in proportion, while an idle channel
/// keeps full-size grants; the queue stays near one window instead of flapping between full
/// speed and a standstill.
#[derive(Default)]
pub(crate) struct Pressure {
    queued: Mutex<HashMap<u32, Arc<AtomicUsize>>>,
}

/// The smallest grant: still brings a packet, and with it the next chance to grant more.
pub(crate) const TRICKLE_WINDOW: u32 = 2;

impl Pressure {
    /// The counter a channel's input queue keeps up to date.
    pub(crate) fn register(&self, channel: u32) -> Arc<AtomicUsize> {
        let counter = Arc::new(AtomicUsize::new(0));
        if let Ok(mut q) = self.queued.lock() {
            q.insert(channel, counter.clone());
        }
        counter
    }

    pub(crate) fn unregister(&self, channel: u32) {
        if let Ok(mut q) = self.queued.lock() {
            q.remove(&channel);
        }
    }

    pub(crate) fn queued(&self, channel: u32) -> usize {
        self.queued
            .lock()
            .ok()
            .and_then(|q| q.get(&channel).map(|c| c.load(Ordering::Acquire)))
            .unwrap_or(0)
    }

    /// Size of the next window grant after `channel` received data.
    pub(crate) fn grant(&self, channel: u32, window: u32) -> u32 {
        let left = (window as usize).saturating_sub(self.queued(channel));
        u32::try_from(left)
            .unwrap_or(window)
            .clamp(TRICKLE_WINDOW, window.max(TRICKLE_WINDOW))
    }
}

pub(crate) struct Session {
    pub gate: Arc<dyn Gate>,
    pub pressure: Arc<Pressure>,
    pub target: SshTarget,
    pub conn: TargetConn,
    pub stop: watch::Receiver<Option<Stop>>,
    pub limits: Limits,
    /// `SetEnv` names that may reach the target.
    pub accept_env: Arc<crate::env::EnvAllowList>,
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
