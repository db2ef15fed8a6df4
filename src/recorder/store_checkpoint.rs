//! The store checkpoint (FORMAT.md, "Store checkpoints"): one signature, at most every
//! `store_checkpoint_every` (100 ms by default) while anything was written, over the latest
//! chain position of every session that received records since the previous one. It is a
//! record of the store journal, chained to the previous store checkpoint, so the window of
//! records no signature covers is bounded by that interval, whatever the per-session
//! checkpoint cadence, at the cost of one signature per interval rather than per event.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::codec::{self, Body, Signed, kind};
use super::frame::{JOURNAL_SESSION, SessionKey};
use super::gauges::Gauges;
use super::signing;
use super::wire::{DecodeError, Reader, Writer};
use super::writer::{Pending, WriterThread};
use crate::clock::now_ns;

pub const STORE_CHECKPOINT_CONTEXT: &[u8] = b"proctor store checkpoint v1\0";

/// One chain's position as a store checkpoint signs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainPosition {
    pub session: SessionKey,
    pub seq: u64,
    pub hash: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreCheckpoint {
    /// The journal record just before this one (this record signs the journal like a
    /// checkpoint), with the key and signature.
    pub signed: Signed,
    /// Chain hash of the previous store checkpoint record (zero for the store's first).
    pub previous: [u8; 32],
    /// Every other chain that received records since the previous store checkpoint.
    pub chains: Vec<ChainPosition>,
}

/// The signed part of the body: everything before `key_id`.
fn signed_part(
    covered_seq: u64,
    covered_hash: &[u8; 32],
    previous: &[u8; 32],
    chains: &[ChainPosition],
) -> Writer {
    let mut w = Writer::with_capacity(80 + chains.len() * 56);
    w.u64(covered_seq);
    w.h32(covered_hash);
    w.h32(previous);
    w.list(chains.iter(), |w, c| {
        for b in c.session {
            w.u8(b);
        }
        w.u64(c.seq);
        w.h32(&c.hash);
    });
    w
}

/// The message the recorder key signs: the context, then the signed part of the body.
pub fn message(
    covered_seq: u64,
    covered_hash: &[u8; 32],
    previous: &[u8; 32],
    chains: &[ChainPosition],
) -> Vec<u8> {
    let part = signed_part(covered_seq, covered_hash, previous, chains);
    [STORE_CHECKPOINT_CONTEXT, part.buf.as_slice()].concat()
}

impl StoreCheckpoint {
    /// Signs a store checkpoint covering the journal up to `covered_seq`.
    pub fn sign(
        key: &signing::RecorderKey,
        covered_seq: u64,
        covered_hash: [u8; 32],
        previous: [u8; 32],
        chains: Vec<ChainPosition>,
    ) -> StoreCheckpoint {
        let signature = key.sign(&message(covered_seq, &covered_hash, &previous, &chains));
        StoreCheckpoint {
            signed: Signed {
                covered_seq,
                covered_hash,
                key_id: key.key_id,
                signature,
            },
            previous,
            chains,
        }
    }

    pub fn message(&self) -> Vec<u8> {
        message(
            self.signed.covered_seq,
            &self.signed.covered_hash,
            &self.previous,
            &self.chains,
        )
    }

    pub fn encode(&self, w: &mut Writer) {
        let part = signed_part(
            self.signed.covered_seq,
            &self.signed.covered_hash,
            &self.previous,
            &self.chains,
        );
        w.buf.extend_from_slice(&part.buf);
        w.h32(&self.signed.key_id);
        w.bytes(&self.signed.signature);
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<StoreCheckpoint, DecodeError> {
        let covered_seq = r.u64()?;
        let covered_hash = r.h32()?;
        let previous = r.h32()?;
        let chains = r.list(|r| {
            let mut session = [0u8; 16];
            for b in session.iter_mut() {
                *b = r.u8()?;
            }
            Ok(ChainPosition {
                session,
                seq: r.u64()?,
                hash: r.h32()?,
            })
        })?;
        let key_id = r.h32()?;
        let sig = r.bytes()?;
        let signature: [u8; 64] = sig.try_into().map_err(|_| DecodeError::BadValue {
            field: "signature length",
            value: sig.len().to_string(),
        })?;
        Ok(StoreCheckpoint {
            signed: Signed {
                covered_seq,
                covered_hash,
                key_id,
                signature,
            },
            previous,
            chains,
        })
    }
}

/// What the writer keeps between store checkpoints.
pub struct StoreCheckpoints {
    pub every: Duration,
    /// Chains (the journal included) that received records since the last store checkpoint.
    dirty: HashSet<SessionKey>,
    last: Instant,
    /// Chain hash of the last store checkpoint record (zero before the store's first).
    previous: [u8; 32],
    /// What `GET /metrics` reads: the unsigned window.
    pub gauges: Arc<Gauges>,
}

impl StoreCheckpoints {
    pub fn new(every: Duration, previous: [u8; 32], gauges: Arc<Gauges>) -> Self {
        StoreCheckpoints {
            every,
            dirty: HashSet::new(),
            last: Instant::now(),
            previous,
            gauges,
        }
    }

    pub fn written(&mut self, session: SessionKey) {
        if self.dirty.is_empty() {
            self.gauges.first_unsigned(now_ns());
        }
        self.dirty.insert(session);
    }
}

impl WriterThread {
    /// Appends a store checkpoint to the batch when records were written and the interval has
    /// passed (or `now`, at shutdown): one signature for every chain written since the last.
    pub(super) fn store_checkpoint(&mut self, p: &mut Pending, now: bool) {
        if self.store.dirty.is_empty() || self.failed_reason().is_some() {
            return;
        }
        if !now && self.store.last.elapsed() < self.store.every {
            return;
        }
        self.store.last = Instant::now();
        let journal_written = self.store.dirty.contains(&JOURNAL_SESSION);
        // Sessions sealed since are signed by their seals (and no longer have a chain).
        let mut chains: Vec<ChainPosition> = self
            .store
            .dirty
            .drain()
            .filter(|s| *s != JOURNAL_SESSION)
            .filter_map(|s| {
                self.chains.get(&s).map(|c| ChainPosition {
                    session: s,
                    seq: c.next_seq - 1,
                    hash: c.prev_hash,
                })
            })
            .collect();
        if chains.is_empty() && !journal_written {
            // Only sealed sessions were written: their seals sign them.
            self.store.gauges.all_signed(None);
            return;
        }
        chains.sort_by_key(|c| c.session);
        if !self.chains.contains_key(&JOURNAL_SESSION) {
            // The journal's first record is a note, never a checkpoint (FORMAT.md).
            let mut w = Writer::default();
            codec::encode_body(
                &Body::JournalNote {
                    topic: "recorder".into(),
                    text: format!(
                        "store checkpoints every {} ms",
                        self.store.every.as_millis()
                    ),
                },
                &mut w,
            );
            self.append(p, JOURNAL_SESSION, kind::JOURNAL_NOTE, now_ns(), &w.buf);
        }
        let Some((covered_seq, covered_hash)) = self
            .chains
            .get(&JOURNAL_SESSION)
            .map(|j| (j.next_seq - 1, j.prev_hash))
        else {
            return;
        };
        let ts_ns = now_ns();
        let checkpoint = StoreCheckpoint::sign(
            &self.key,
            covered_seq,
            covered_hash,
            self.store.previous,
            chains,
        );
        let mut w = Writer::with_capacity(200 + checkpoint.chains.len() * 56);
        checkpoint.encode(&mut w);
        self.append(p, JOURNAL_SESSION, kind::STORE_CHECKPOINT, ts_ns, &w.buf);
        if let Some(j) = self.chains.get(&JOURNAL_SESSION) {
            self.store.previous = j.prev_hash;
        }
        // The journal note above, if any, is covered by this checkpoint.
        self.store.dirty.clear();
        self.store.gauges.all_signed(Some(ts_ns));
    }
}
