//! Figures the writer thread publishes for monitoring (`GET /metrics`): a few relaxed atomics
//! it updates once per batch or per store checkpoint, never per event on a path that waits.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Gauges {
    durable_records: AtomicU64,
    last_store_checkpoint_ns: AtomicI64,
    unsigned_since_ns: AtomicI64,
}

impl Gauges {
    /// Records made durable (fdatasync done) since the writer started.
    pub fn durable_records(&self) -> u64 {
        self.durable_records.load(Ordering::Relaxed)
    }

    /// When the writer last appended a store checkpoint, if it has since it started.
    pub fn last_store_checkpoint_ns(&self) -> Option<i64> {
        Some(self.last_store_checkpoint_ns.load(Ordering::Relaxed)).filter(|&t| t != 0)
    }

    /// When the first record no store checkpoint has signed yet was written (None: every
    /// record written is signed).
    pub fn unsigned_since_ns(&self) -> Option<i64> {
        Some(self.unsigned_since_ns.load(Ordering::Relaxed)).filter(|&t| t != 0)
    }

    pub(super) fn committed(&self, records: usize) {
        self.durable_records
            .fetch_add(records as u64, Ordering::Relaxed);
    }

    pub(super) fn first_unsigned(&self, ts_ns: i64) {
        self.unsigned_since_ns.store(ts_ns, Ordering::Relaxed);
    }

    /// Everything written is signed; `checkpoint_ns`: a store checkpoint was appended then.
    pub(super) fn all_signed(&self, checkpoint_ns: Option<i64>) {
        self.unsigned_since_ns.store(0, Ordering::Relaxed);
        if let Some(t) = checkpoint_ns {
            self.last_store_checkpoint_ns.store(t, Ordering::Relaxed);
        }
    }
}
