//! Bounds on connections that have not authenticated yet, shared by every listener: a few
//! slots per source address and a total, so idle or slow strangers cannot take the places
//! agents need. A slot is held by a [`PreAuthPermit`] and returned when it is dropped (the
//! connection authenticated, was refused, or went away).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Counts unauthenticated connections per source address and in total.
#[derive(Debug)]
pub struct PreAuthLimiter {
    per_source: usize,
    total: usize,
    counts: Mutex<(HashMap<IpAddr, usize>, usize)>,
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
            counts: Mutex::new((HashMap::new(), 0)),
        })
    }

    /// Takes a slot for `ip`, or says why there is none. A poisoned lock refuses (fail closed).
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<PreAuthPermit, NoSlot> {
        let mut g = self.counts.lock().map_err(|_| NoSlot::Total)?;
        let (map, total) = &mut *g;
        let n = map.get(&ip).copied().unwrap_or(0);
        if n >= self.per_source {
            return Err(NoSlot::Source);
        }
        if *total >= self.total {
            return Err(NoSlot::Total);
        }
        map.insert(ip, n + 1);
        *total += 1;
        Ok(PreAuthPermit {
            limiter: self.clone(),
            ip,
        })
    }

    /// Slots in use, all sources together.
    pub fn in_use(&self) -> usize {
        self.counts.lock().map(|g| g.1).unwrap_or(0)
    }
}

impl Drop for PreAuthPermit {
    fn drop(&mut self) {
        if let Ok(mut g) = self.limiter.counts.lock() {
            let (map, total) = &mut *g;
            *total = total.saturating_sub(1);
            if let Some(n) = map.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(&self.ip);
                }
            }
        }
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
}
