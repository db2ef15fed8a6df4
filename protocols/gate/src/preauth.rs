//! Bounds on connections that have not authenticated yet, shared by every listener: a few
//! slots per source address and a total, so idle or slow strangers cannot take the places
//! agents need. A slot is held by a [`PreAuthPermit`] and returned when it is dropped (the
//! connection authenticated, was refused, or went away).
//!
//! A connection that finds its source's slots taken may wait a little for one
//! ([`PreAuthLimiter::acquire`]): a pool that opens twenty connections at once is served in
//! waves instead of losing the ones past the limit. The waiting line is bounded too (per
//! source and in total), so waiting costs a stranger as little as holding a slot does.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// Connections of one source that may wait for a slot, per slot of the source.
const WAITING_PER_SLOT: usize = 4;

/// Counts unauthenticated connections per source address and in total.
#[derive(Debug)]
pub struct PreAuthLimiter {
    per_source: usize,
    total: usize,
    counts: Mutex<Counts>,
    /// Woken whenever a slot is returned.
    freed: Notify,
}

#[derive(Debug, Default)]
struct Counts {
    held: HashMap<IpAddr, usize>,
    held_total: usize,
    waiting: HashMap<IpAddr, usize>,
    waiting_total: usize,
}

/// A place in the waiting line, given back when dropped.
struct Waiting<'a> {
    limiter: &'a PreAuthLimiter,
    ip: IpAddr,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Ok(mut g) = self.limiter.counts.lock() {
            g.waiting_total = g.waiting_total.saturating_sub(1);
            if let Some(n) = g.waiting.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    g.waiting.remove(&self.ip);
                }
            }
        }
    }
}

/// One unauthenticated connection's slot.
#[derive(Debug)]
pub struct PreAuthPermit {
    limiter: Arc<PreAuthLimiter>,
    ip: IpAddr,
}

/// Why a connection got no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSlot {
    /// This source already holds its share.
    Source,
    /// Every slot is taken.
    Total,
}

impl PreAuthLimiter {
    pub fn new(per_source: usize, total: usize) -> Arc<Self> {
        Arc::new(PreAuthLimiter {
            per_source: per_source.max(1),
            total: total.max(1),
            counts: Mutex::new(Counts::default()),
            freed: Notify::new(),
        })
    }

    /// Takes a slot for `ip`, or says why there is none. A poisoned lock refuses (fail closed).
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<PreAuthPermit, NoSlot> {
        let mut g = self.counts.lock().map_err(|_| NoSlot::Total)?;
        let n = g.held.get(&ip).copied().unwrap_or(0);
        if n >= self.per_source {
            return Err(NoSlot::Source);
        }
        if g.held_total >= self.total {
            return Err(NoSlot::Total);
        }
        g.held.insert(ip, n + 1);
        g.held_total += 1;
        Ok(PreAuthPermit {
            limiter: self.clone(),
            ip,
        })
    }

    /// Takes a slot for `ip`, waiting up to `patience` for one to be returned when none is
    /// free. The wait itself is bounded: past `WAITING_PER_SLOT` waiters per slot of the
    /// source (or as many waiters as slots in total) the answer is at once no.
    pub async fn acquire(
        self: &Arc<Self>,
        ip: IpAddr,
        patience: Duration,
    ) -> Result<PreAuthPermit, NoSlot> {
        let mut why = match self.try_acquire(ip) {
            Ok(p) => return Ok(p),
            Err(why) => why,
        };
        let Some(_place) = self.wait_in_line(ip) else {
            return Err(why);
        };
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            // Registered before the check, so a slot returned in between is not missed.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match self.try_acquire(ip) {
                Ok(p) => return Ok(p),
                Err(w) => why = w,
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(why);
            }
        }
    }

    fn wait_in_line(&self, ip: IpAddr) -> Option<Waiting<'_>> {
        let mut g = self.counts.lock().ok()?;
        let n = g.waiting.get(&ip).copied().unwrap_or(0);
        if n >= self.per_source.saturating_mul(WAITING_PER_SLOT) || g.waiting_total >= self.total {
            return None;
        }
        g.waiting.insert(ip, n + 1);
        g.waiting_total += 1;
        Some(Waiting { limiter: self, ip })
    }

    /// Slots in use, all sources together.
    pub fn in_use(&self) -> usize {
        self.counts.lock().map(|g| g.held_total).unwrap_or(0)
    }
}

impl Drop for PreAuthPermit {
    fn drop(&mut self) {
        if let Ok(mut g) = self.limiter.counts.lock() {
            g.held_total = g.held_total.saturating_sub(1);
            if let Some(n) = g.held.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    g.held.remove(&self.ip);
                }
            }
        }
        self.limiter.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_per_source_and_in_total_and_releases() {
        let l = PreAuthLimiter::new(2, 3);
        let a: IpAddr = "127.0.0.1".parse().expect("ip");
        let b: IpAddr = "127.0.0.2".parse().expect("ip");
        let p1 = l.try_acquire(a).expect("first");
        let _p2 = l.try_acquire(a).expect("second");
        assert_eq!(l.try_acquire(a).err(), Some(NoSlot::Source));
        let _p3 = l.try_acquire(b).expect("other source");
        assert_eq!(l.try_acquire(b).err(), Some(NoSlot::Total));
        drop(p1);
        let _p4 = l.try_acquire(a).expect("released slot");
        assert_eq!(l.in_use(), 3);
    }

    #[tokio::test]
    async fn a_waiter_gets_the_next_returned_slot_and_the_line_is_bounded() {
        let l = PreAuthLimiter::new(1, 8);
        let a: IpAddr = "127.0.0.1".parse().expect("ip");
        let held = l.try_acquire(a).expect("first");
        // Nobody returns the slot: the waiter gives up after its patience.
        let t = tokio::time::Instant::now();
        assert_eq!(
            l.acquire(a, Duration::from_millis(50)).await.err(),
            Some(NoSlot::Source)
        );
        assert!(t.elapsed() >= Duration::from_millis(50));
        // The slot comes back while four wait: one of them gets it, the line holds four.
        let waiters: Vec<_> = (0..WAITING_PER_SLOT)
            .map(|_| {
                let l = l.clone();
                // Each returns its slot at once, so the next waiter can have it.
                tokio::spawn(async move { l.acquire(a, Duration::from_secs(5)).await.map(drop) })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The line is full: a fifth is refused at once.
        let t = tokio::time::Instant::now();
        assert_eq!(
            l.acquire(a, Duration::from_secs(5)).await.err(),
            Some(NoSlot::Source)
        );
        assert!(t.elapsed() < Duration::from_secs(1));
        drop(held);
        let mut served = 0;
        for w in waiters {
            if let Ok(Ok(Ok(()))) = tokio::time::timeout(Duration::from_secs(10), w).await {
                served += 1;
            }
        }
        assert_eq!(served, WAITING_PER_SLOT, "each waiter got the slot in turn");
        assert_eq!(l.in_use(), 0);
    }
}
