//! An in-process TCP fault proxy for tests: sits between a client and proctor, or between
//! proctor and a target, and misbehaves on command: delays, writes split into single bytes,
//! resets, black holes (the connection stays open but nothing more crosses).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Pass = 0,
    /// Every write goes out one byte at a time.
    SingleBytes = 1,
    /// Each chunk waits `delay` before going on.
    Delay = 2,
    /// Nothing more crosses, in either direction, but the connections stay open.
    BlackHole = 3,
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    delay_ms: Arc<AtomicU64>,
    /// Bumping it resets every connection open at the time (RST to both sides).
    reset: watch::Sender<u64>,
    pub bytes: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let mode = Arc::new(AtomicU8::new(Mode::Pass as u8));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let (reset, _) = watch::channel(0u64);
        let (m, d, b, r) = (mode.clone(), delay_ms.clone(), bytes.clone(), reset.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                // A reset must look like one (RST), not like an orderly close.
                let _ = client.set_zero_linger();
                let _ = server.set_zero_linger();
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, m.clone(), d.clone(), b.clone(), r.subscribe()));
                tokio::spawn(pump(sr, cw, m.clone(), d.clone(), b.clone(), r.subscribe()));
            }
        });
        FaultProxy {
            addr,
            mode,
            delay_ms,
            reset,
            bytes,
            task,
        }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    pub fn set_delay(&self, d: Duration) {
        self.delay_ms.store(d.as_millis() as u64, Ordering::SeqCst);
        self.set(Mode::Delay);
    }

    /// Resets every open connection (both sides see a reset / EOF).
    pub fn reset_all(&self) {
        self.reset.send_modify(|n| *n += 1);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.reset_all();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mode: Arc<AtomicU8>,
    delay_ms: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    mut reset: watch::Receiver<u64>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            _ = reset.changed() => {
                // Dropping both halves with unread data makes the kernel send RST.
                return;
            }
        };
        bytes.fetch_add(n as u64, Ordering::Relaxed);
        let m = mode.load(Ordering::SeqCst);
        let result = match m {
            x if x == Mode::BlackHole as u8 => {
                // Swallow this and everything after, keeping both sockets open.
                let _ = reset.changed().await;
                return;
            }
            x if x == Mode::SingleBytes as u8 => {
                let mut r = Ok(());
                for b in &buf[..n] {
                    r = to.write_all(std::slice::from_ref(b)).await;
                    if r.is_err() {
                        break;
                    }
                    let _ = to.flush().await;
                }
                r
            }
            x if x == Mode::Delay as u8 => {
                tokio::time::sleep(Duration::from_millis(delay_ms.load(Ordering::SeqCst))).await;
                to.write_all(&buf[..n]).await
            }
            _ => to.write_all(&buf[..n]).await,
        };
        if result.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
