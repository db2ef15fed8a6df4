//! The shipping loop: spool what is new, PUT what is spooled (oldest first), and count an
//! object shipped only when the store's SHA-256 equals ours. An unreachable store stops
//! nothing but this loop; the spool keeps growing and the next round catches up in order.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::client::{Put, S3};
use super::collect::{Collector, Cursor};
use super::spool::Spool;
use crate::session::Core;

pub struct Shipper {
    pub core: Arc<Core>,
    pub spool: Arc<Spool>,
    pub s3: S3,
    pub max_bytes: u64,
    pub interval: Duration,
}

/// What the journal has been told, so each change is noted once, not every round.
#[derive(Default)]
struct Noted {
    outage: bool,
    over: bool,
}

impl Shipper {
    async fn note(&self, text: String) {
        tracing::warn!("{text}");
        if let Err(e) = self.core.recorder.journal("object_store", &text).await {
            tracing::error!(error = %e, "journal note about the object store failed");
        }
    }

    /// Spools new evidence (file reads, off the async threads).
    async fn collect(&self, cursor: Cursor) -> (Cursor, Result<usize, String>) {
        let core = self.core.clone();
        let spool = self.spool.clone();
        let total = core.config.retention.total;
        tokio::task::spawn_blocking(move || {
            let mut cursor = cursor;
            let c = Collector {
                data: &core.store.data,
                index: core.store.index(),
                spool: &spool,
                retention_total: total,
            };
            let r = c.run(&mut cursor);
            (cursor, r)
        })
        .await
        .unwrap_or_else(|e| (Cursor::default(), Err(format!("collector panicked: {e}"))))
    }

    /// Ships everything spooled; `Err` names the first failure of the store (the rest wait).
    async fn ship_all(&self) -> Result<usize, String> {
        let list = self
            .spool
            .pending()
            .map_err(|e| format!("reading the spool: {e}"))?;
        let mut shipped = 0;
        for (p, path) in list {
            let bytes = tokio::fs::read(&path)
                .await
                .map_err(|e| format!("spool object {}: {e}", path.display()))?;
            let sha: [u8; 32] = Sha256::digest(&bytes).into();
            if hex::encode(sha) != p.sha256 {
                // The spooled bytes changed on disk: never ship them as the evidence.
                return Err(format!(
                    "spooled object for {} no longer has its SHA-256 (spool damaged at {})",
                    p.key,
                    path.display()
                ));
            }
            match self
                .s3
                .put_locked(&p.key, bytes, &sha, p.retain_until_ns)
                .await
                .map_err(|e| e.0)?
            {
                Put::Stored | Put::AlreadyThere => {
                    self.spool
                        .shipped(&p)
                        .map_err(|e| format!("recording {} as shipped: {e}", p.key))?;
                    shipped += 1;
                }
                Put::Mismatch { theirs } => {
                    // Someone else's bytes under our key, or a store that stored other bytes:
                    // it stays spooled (and counted) until a person looks.
                    return Err(format!(
                        "the store holds {} with SHA-256 {theirs} (base64), not ours {}; it stays in the spool",
                        p.key, p.sha256
                    ));
                }
            }
        }
        Ok(shipped)
    }

    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut cursor = Cursor::default();
        let mut noted = Noted::default();
        loop {
            let (c, r) = self.collect(cursor).await;
            cursor = c;
            if let Err(e) = r {
                tracing::error!(error = %e, "collecting evidence for the object store");
            }
            match self.ship_all().await {
                Ok(n) => {
                    if n > 0 {
                        tracing::debug!(objects = n, "shipped to the object store");
                    }
                    if noted.outage && self.spool.bytes() == 0 {
                        noted.outage = false;
                        self.note("object store reachable again; the spool is empty".into())
                            .await;
                    }
                }
                Err(e) if !noted.outage => {
                    noted.outage = true;
                    self.note(format!(
                        "object store: shipping stopped ({e}); evidence stays in the spool ({} bytes) and ships when it can",
                        self.spool.bytes()
                    ))
                    .await;
                }
                Err(e) => tracing::debug!(error = %e, "object store still failing"),
            }
            let over = self.spool.bytes() > self.max_bytes;
            if over != noted.over {
                noted.over = over;
                self.note(if over {
                    format!(
                        "object store spool holds {} bytes, over spool_max ({}): new sessions are refused until it ships",
                        self.spool.bytes(),
                        self.max_bytes
                    )
                } else {
                    "object store spool back under spool_max: new sessions are admitted".into()
                })
                .await;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
