//! Kill, shutdown and CancelRequests, and the durability tickets of enqueued events (the
//! adapter's side: futures the core never sees).

use super::*;

/// Kill, shutdown and cancel, watched by one long-lived future so that the hot loop does not
/// re-register with three channels on every pass.
pub(super) enum Control {
    Killed(String),
    Shutdown,
    Cancel,
}

pub(super) struct ControlRx {
    pub(super) kill: watch::Receiver<Option<String>>,
    pub(super) kill_live: bool,
    pub(super) shutdown: Option<watch::Receiver<bool>>,
    pub(super) cancels: watch::Receiver<u64>,
}

pub(super) type ControlFuture = Pin<Box<dyn Future<Output = (Control, ControlRx)> + Send>>;

pub(super) async fn control(mut rx: ControlRx) -> (Control, ControlRx) {
    loop {
        tokio::select! {
            r = rx.kill.changed(), if rx.kill_live => {
                if r.is_err() {
                    // The gate dropped its sender: no kill can come any more.
                    rx.kill_live = false;
                } else {
                    let reason = rx.kill.borrow_and_update().clone();
                    if let Some(reason) = reason {
                        return (Control::Killed(reason), rx);
                    }
                }
            }
            _ = shutdown_requested(&mut rx.shutdown) => return (Control::Shutdown, rx),
            r = rx.cancels.changed() => {
                if r.is_ok() {
                    rx.cancels.borrow_and_update();
                    return (Control::Cancel, rx);
                }
                std::future::pending::<()>().await;
            }
        }
    }
}

async fn shutdown_requested(rx: &mut Option<watch::Receiver<bool>>) {
    let Some(r) = rx.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        if *r.borrow_and_update() {
            return;
        }
        if r.changed().await.is_err() {
            // The listener is gone without asking for a shutdown: keep serving.
            return std::future::pending().await;
        }
    }
}

/// Durability tickets of enqueued events, awaited oldest first once too many are pending.
pub(super) struct Tickets {
    pub(super) q: VecDeque<(Durable, usize)>,
    pub(super) bytes: usize,
}

impl Tickets {
    pub(super) async fn push(&mut self, d: Durable, weight: usize) -> Result<(), GateError> {
        self.q.push_back((d, weight));
        self.bytes += weight;
        while self.q.len() > MAX_TICKETS || self.bytes > MAX_TICKET_BYTES {
            let Some((d, w)) = self.q.pop_front() else {
                break;
            };
            self.bytes -= w;
            d.wait().await?;
        }
        Ok(())
    }

    /// Waits until every enqueued event is durable.
    pub(super) async fn settle(&mut self) -> Result<(), GateError> {
        while let Some((d, w)) = self.q.pop_front() {
            self.bytes -= w;
            d.wait().await?;
        }
        Ok(())
    }

    pub(super) async fn drain(&mut self) {
        while let Some((d, _)) = self.q.pop_front() {
            if let Err(e) = d.wait().await {
                tracing::warn!(error = %e, "postgres: an event did not become durable");
            }
        }
        self.bytes = 0;
    }
}
