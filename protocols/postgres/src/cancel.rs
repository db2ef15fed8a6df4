//! Cancel keys. Clients get proctor's own random key; a CancelRequest with that key is turned
//! into one to the target backend with the target's real key, and also cancels a statement
//! that is waiting for approval inside proctor.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

#[derive(Clone)]
pub struct CancelTarget {
    pub host: String,
    pub port: u16,
    pub connect_timeout: Duration,
    /// The target backend's key, when it sent one.
    pub backend: Option<(i32, i32)>,
    /// Woken to cancel a held statement.
    pub hold: Arc<watch::Sender<u64>>,
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
pub async fn cancel(pid: i32, secret: i32) {
    let target = registry()
        .lock()
        .ok()
        .and_then(|m| m.get(&(pid, secret)).cloned());
    let Some(t) = target else {
        tracing::debug!("cancel request with an unknown key");
        return;
    };
    t.hold.send_modify(|n| *n = n.wrapping_add(1));
    let Some((tpid, tsecret)) = t.backend else {
        return;
    };
    let connect = TcpStream::connect((t.host.as_str(), t.port));
    match tokio::time::timeout(t.connect_timeout, connect).await {
        Ok(Ok(mut s)) => {
            let mut msg = [0u8; 16];
            msg[0..4].copy_from_slice(&16i32.to_be_bytes());
            msg[4..8].copy_from_slice(&80877102i32.to_be_bytes());
            msg[8..12].copy_from_slice(&tpid.to_be_bytes());
            msg[12..16].copy_from_slice(&tsecret.to_be_bytes());
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
