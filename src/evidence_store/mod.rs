//! `[object_store]`: evidence in write-once object storage. Each sealed session (as its
//! bundle), every ledger leaf and tree head, and every timestamp attestation is spooled on disk
//! and shipped as one whole object (no multipart) under a COMPLIANCE Object Lock until its
//! retain-until, with `If-None-Match: *` and a SHA-256 the store must return. The local store
//! is never changed by shipping: the local copy stays. Object names: FORMAT.md, "Object storage".

pub mod client;
pub mod collect;
pub mod fetch;
mod shipper;
pub mod spool;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::object_store::{ObjectStoreConfig, secret};
use crate::session::Core;

/// What a session start asks of the object store: that the spool has room.
pub struct SpoolGate {
    spool: Arc<spool::Spool>,
    max_bytes: u64,
}

impl crate::session::core::EvidenceAdmission for SpoolGate {
    fn admit(&self) -> Result<(), String> {
        let held = self.spool.bytes();
        if held > self.max_bytes {
            return Err(format!(
                "proctor refuses new sessions: {held} bytes of evidence wait to be shipped to the object store, over spool_max ({} bytes); the store is unreachable or refusing",
                self.max_bytes
            ));
        }
        Ok(())
    }
}

/// Opens the spool, installs the admission check and starts the shipping loop.
pub fn start(
    core: &Arc<Core>,
    config: &ObjectStoreConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let secret = secret(config).map_err(|(k, m)| format!("{k}: {m}"))?;
    let max_bytes = crate::config::parse_size(&config.spool_max)
        .map_err(|e| format!("object_store.spool_max: {e}"))?;
    let spool = Arc::new(
        spool::Spool::open(&core.store.data)
            .map_err(|e| format!("opening the object-store spool: {e}"))?,
    );
    let _ = core.evidence.set(Arc::new(SpoolGate {
        spool: spool.clone(),
        max_bytes,
    }));
    let s3 = client::S3::new(
        &config.endpoint,
        &config.region,
        &config.access_key_id,
        &secret,
        &config.bucket,
    );
    tracing::info!(
        endpoint = %config.endpoint,
        bucket = %config.bucket,
        spooled_bytes = spool.bytes(),
        "shipping evidence to the object store (COMPLIANCE lock; the local copy is kept)"
    );
    let shipper = shipper::Shipper {
        core: core.clone(),
        spool,
        s3,
        max_bytes,
        interval: Duration::from_millis(config.interval_ms),
    };
    Ok(tokio::spawn(shipper.run(shutdown)))
}
