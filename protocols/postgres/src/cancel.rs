//! Cancel keys. Clients get proctor's own random key; a CancelRequest with that key reaches the
//! session, which withdraws a statement held for approval or sends a CancelRequest with the
//! target's real key to the target backend.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// What a cancel key leads to: the session, which decides whether the cancel withdraws a held
/// statement or goes on to the target backend.
#[derive(Clone)]
pub struct CancelTarget {
    pub notify: Arc<watch::Sender<u64>>,
}

type Key = (i32, i32);

fn registry() -> &'static Mutex<HashMap<Key, CancelTarget>> {
    static R: OnceLock<Mutex<HashMap<Key, CancelTarget>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(HashMap::new()))
}

/// A registered key; removed from the registry when dropped.
pub struct CancelKey {
    pub pid: i32,
    pub secret: i32,
}

impl CancelKey {
    pub fn register(target: CancelTarget) -> CancelKey {
        let Ok(mut map) = registry().lock() else {
            // A poisoned registry only loses cancel support; hand out an unregistered key.
            return CancelKey {
                pid: 0,
                secret: rand::random(),
            };
        };
        loop {
            // Positive like a real backend PID; clients print it.
            let pid = (rand::random::<u32>() >> 1) as i32;
            let secret: i32 = rand::random();
            if pid != 0 && !map.contains_key(&(pid, secret)) {
                map.insert((pid, secret), target);
                return CancelKey { pid, secret };
            }
        }
    }
}

impl Drop for CancelKey {
    fn drop(&mut self) {
        if let Ok(mut map) = registry().lock() {
            map.remove(&(self.pid, self.secret));
        }
    }
}

/// Handles a CancelRequest from a client. Unknown keys are ignored silently, as PostgreSQL
/// does, so that keys cannot be probed.
pub fn cancel(pid: i32, secret: i32) {
    let target = registry()
        .lock()
        .ok()
        .and_then(|m| m.get(&(pid, secret)).cloned());
    match target {
        Some(t) => t.notify.send_modify(|n| *n = n.wrapping_add(1)),
        None => tracing::debug!("cancel request with an unknown key"),
    }
}

/// Where the session sends a cancel for its target backend.
#[derive(Debug, Clone)]
pub struct BackendCancel {
    pub host: String,
    pub port: u16,
    pub connect_timeout: Duration,
    pub pid: i32,
    pub secret: i32,
}

/// Sends a CancelRequest to the target over a new connection, as libpq does.
pub async fn cancel_backend(t: BackendCancel) {
    let connect = TcpStream::connect((t.host.as_str(), t.port));
    match tokio::time::timeout(t.connect_timeout, connect).await {
        Ok(Ok(mut s)) => {
            let mut msg = [0u8; 16];
            msg[0..4].copy_from_slice(&16i32.to_be_bytes());
            msg[4..8].copy_from_slice(&80877102i32.to_be_bytes());
            msg[8..12].copy_from_slice(&t.pid.to_be_bytes());
            msg[12..16].copy_from_slice(&t.secret.to_be_bytes());
            if s.write_all(&msg).await.is_ok() {
                // The server closes the connection once it has handled the request.
                let mut sink = [0u8; 16];
                let _ = tokio::time::timeout(t.connect_timeout, s.read(&mut sink)).await;
            }
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "cancel: target unreachable"),
        Err(_) => tracing::warn!("cancel: target connect timed out"),
    }
}
