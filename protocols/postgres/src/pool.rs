//! Optional session threads: each runs its own single-threaded runtime and the sessions handed
//! to it, so a session's socket wake-ups never bounce between worker threads. On a small
//! machine shared with the database this is measurably cheaper than a work-stealing runtime
//! (see the relay benchmark); the accept loop stays on the caller's runtime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proctor_gate::Authority;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::{PgFrontendConfig, session};

type Conn = (std::net::TcpStream, SocketAddr);

pub struct SessionPool {
    senders: Vec<mpsc::UnboundedSender<Conn>>,
    done: Vec<oneshot::Receiver<()>>,
    next: usize,
}

impl SessionPool {
    pub fn start(
        threads: usize,
        config: Arc<PgFrontendConfig>,
        authority: Arc<dyn Authority>,
        shutdown: watch::Receiver<bool>,
        grace: Duration,
    ) -> std::io::Result<SessionPool> {
        let mut senders = Vec::with_capacity(threads);
        let mut done = Vec::with_capacity(threads);
        for i in 0..threads {
            let (tx, rx) = mpsc::unbounded_channel::<Conn>();
            let (done_tx, done_rx) = oneshot::channel();
            let (config, authority, shutdown) =
                (config.clone(), authority.clone(), shutdown.clone());
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            std::thread::Builder::new()
                .name(format!("proctor-pg-{i}"))
                .spawn(move || {
                    rt.block_on(run_thread(rx, config, authority, shutdown, grace));
                    let _ = done_tx.send(());
                })?;
            senders.push(tx);
            done.push(done_rx);
        }
        Ok(SessionPool {
            senders,
            done,
            next: 0,
        })
    }

    /// Hands a connection to the next thread (round robin).
    pub fn dispatch(&mut self, stream: tokio::net::TcpStream, peer: SocketAddr) {
        // Deregistered from this runtime's reactor so the session thread can own it.
        let std_stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, %peer, "postgres listener: cannot hand over a connection");
                return;
            }
        };
        let n = self.senders.len();
        let mut conn = (std_stream, peer);
        for _ in 0..n {
            let i = self.next % n;
            self.next = self.next.wrapping_add(1);
            match self.senders[i].send(conn) {
                Ok(()) => return,
                // That thread is gone; try the next one with the same connection.
                Err(mpsc::error::SendError(c)) => conn = c,
            }
        }
        tracing::error!(%peer, "postgres listener: no session thread is running");
    }

    /// Stops taking connections and waits until every session thread has finished.
    pub async fn join(self) {
        drop(self.senders);
        for d in self.done {
            let _ = d.await;
        }
    }
}

async fn run_thread(
    mut rx: mpsc::UnboundedReceiver<Conn>,
    config: Arc<PgFrontendConfig>,
    authority: Arc<dyn Authority>,
    shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            conn = rx.recv() => match conn {
                Some((std_stream, peer)) => match tokio::net::TcpStream::from_std(std_stream) {
                    Ok(stream) => {
                        let (config, authority, rx) = (config.clone(), authority.clone(), shutdown.clone());
                        tasks.spawn(session::run(stream, peer, config, authority, Some(rx)));
                    }
                    Err(e) => tracing::warn!(error = %e, %peer, "postgres: cannot adopt a connection"),
                },
                None => break,
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drain).await.is_err() {
        tracing::warn!("postgres session thread: sessions still running after the grace period");
        tasks.shutdown().await;
    }
}
