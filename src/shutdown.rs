//! How long-running tasks learn that proctor is stopping: one watch channel that `serve`
//! flips once. It lives below every task that waits on it, so no module has to reach up into
//! `serve` (the server's assembly) to know when to stop.

use tokio::sync::watch;

/// Resolves once `rx` says the server is stopping (the guard `wait_for` returns is not held
/// across other awaits, which would make the task !Send).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
