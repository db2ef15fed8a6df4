//! The harness' pseudo-terminal, with waits that yield to the in-process proctor.

use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use proctor_harness::pty::{Pty, set_size};

use super::eventually;

const T: Duration = Duration::from_secs(20);

pub trait PtyWait {
    async fn wait_for(&self, needle: &str, count: usize) -> bool;
    /// Waits until nothing new has been printed for a moment.
    async fn quiet(&self);
}

impl PtyWait for Pty {
    async fn wait_for(&self, needle: &str, count: usize) -> bool {
        eventually(T, || self.output().matches(needle).count() >= count).await
    }

    async fn quiet(&self) {
        let mut last = self.printed();
        let mut since = Instant::now();
        let start = Instant::now();
        while start.elapsed() < T {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = self.printed();
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() > Duration::from_millis(300) {
                return;
            }
        }
    }
}
