//! Making a batch durable: one write and one fdatasync, then the index, the acknowledgements,
//! the ledger leaves, and rotation of the segment.

use super::super::RecorderError;
use super::super::frame::SessionKey;
use super::super::indexer::IndexJob;
use super::super::ledger::{LEAF_SESSION_SEALED, Leaf};
use super::super::segment::SegmentWriter;
use super::{LedgerAck, Pending, SealAck, SealInfo, WriterThread};
use crate::clock::now_ns;

impl WriterThread {
    pub(super) fn commit(&mut self, p: Pending) {
        let Pending {
            acks,
            urgent: _,
            seals,
            ledger_requests,
            anchors,
            index,
            buf,
            rotate,
        } = p;
        if buf.is_empty() && seals.is_empty() && ledger_requests.is_empty() && rotate.is_empty() {
            for a in acks {
                let _ = a.send(match self.failed_reason() {
                    Some(r) => Err(RecorderError::Failed(r)),
                    None => Ok(()),
                });
            }
            return;
        }
        let base = self.segment.len;
        let segment_no = self.segment.number;
        let result = if buf.is_empty() {
            Ok(())
        } else {
            self.segment
                .append(&buf)
                .and_then(|()| self.segment.sync())
                .map_err(|e| format!("cannot write segment {segment_no}: {e}"))
        };
        if let Err(reason) = result {
            self.fail(reason.clone());
            for a in acks {
                let _ = a.send(Err(RecorderError::Failed(reason.clone())));
            }
            for (_, _, a) in seals {
                let _ = a.send(Err(RecorderError::Failed(reason.clone())));
            }
            for (_, a) in ledger_requests {
                let _ = a.send(Err(RecorderError::Failed(reason.clone())));
            }
            for a in rotate {
                let _ = a.send(Err(RecorderError::Failed(reason.clone())));
            }
            return;
        }
        self.store.gauges.committed(index.len());
        // The events are durable. The indexer gets them first (a channel send, it never
        // waits), so a reader that syncs with the index after an acknowledgement sees them;
        // then the acknowledgements, before the ledger work.
        if !index.is_empty() {
            // Only the few bodies the index reads travel (not the batch), so an indexer that
            // lags holds little memory. A closed indexer (shutdown) only costs a rescan.
            let mut index = index;
            let mut bodies = Vec::new();
            for pi in index.iter_mut() {
                if let Some(slice) = pi.body.and_then(|(s, e)| buf.get(s..e)) {
                    let at = bodies.len();
                    bodies.extend_from_slice(slice);
                    pi.body = Some((at, bodies.len()));
                }
            }
            let _ = self.index.send(IndexJob::Records {
                segment: segment_no,
                base,
                records: index,
                bodies,
            });
        }
        for a in acks {
            let _ = a.send(Ok(()));
        }
        self.segment.release_cache();
        self.commit_ledger(anchors, seals, ledger_requests);
        let rotate_now =
            !rotate.is_empty() && self.segment.len > super::super::segment::SEGMENT_HEADER_LEN;
        if self.segment.len >= self.opts.max_segment_bytes || rotate_now {
            let next = self.segment.number + 1;
            self.close_segment();
            match SegmentWriter::create(&self.data, next) {
                Ok(s) => self.segment = s,
                Err(e) => self.fail(format!("cannot create segment {next}: {e}")),
            }
        } else {
            // After the acknowledgements: zero-filling ahead costs the next batch, not this one.
            self.segment.reserve();
        }
        for a in rotate {
            let _ = a.send(match self.failed_reason() {
                Some(r) => Err(RecorderError::Failed(r)),
                None => Ok(()),
            });
        }
    }

    fn commit_ledger(
        &mut self,
        anchors: Vec<Leaf>,
        seals: Vec<(SessionKey, Leaf, SealAck)>,
        requests: Vec<(Vec<Leaf>, LedgerAck)>,
    ) {
        if anchors.is_empty() && seals.is_empty() && requests.is_empty() {
            return;
        }
        let now = now_ns();
        let n_anchors = anchors.len();
        let mut leaves: Vec<Leaf> = anchors;
        leaves.extend(seals.iter().map(|(_, l, _)| l.clone()));
        for (ls, _) in &requests {
            leaves.extend(ls.iter().cloned());
        }
        for l in leaves.iter_mut() {
            l.logged_ns = now;
        }
        let result = {
            let mut ledger = match self.ledger.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            ledger.append(&leaves, &self.key, now)
        };
        let indexes = match result {
            Ok(i) => i,
            Err(e) => {
                let reason = format!("cannot append to the ledger: {e}");
                self.fail(reason.clone());
                for (_, _, a) in seals {
                    let _ = a.send(Err(RecorderError::Failed(reason.clone())));
                }
                for (_, a) in requests {
                    let _ = a.send(Err(RecorderError::Failed(reason.clone())));
                }
                return;
            }
        };
        let mut it = indexes.into_iter().skip(n_anchors);
        // The index learns the positions before anyone hears of them, so a reader that syncs
        // with the indexer after its seal is acknowledged sees the session's ledger leaf.
        let mut positions = Vec::new();
        let mut seal_acks = Vec::with_capacity(seals.len());
        for (session, leaf, ack) in seals {
            let li = it.next().unwrap_or_default();
            positions.push((session, li));
            seal_acks.push((
                ack,
                SealInfo {
                    final_seq: leaf.final_seq,
                    final_hash: leaf.final_hash,
                    ledger_index: li,
                },
            ));
        }
        let mut request_acks = Vec::with_capacity(requests.len());
        for (ls, ack) in requests {
            let mut out = Vec::with_capacity(ls.len());
            for leaf in &ls {
                let li = it.next().unwrap_or_default();
                // The index keeps the seal's leaf: the one bundles prove inclusion of.
                if leaf.kind == LEAF_SESSION_SEALED {
                    positions.push((leaf.session, li));
                }
                out.push(li);
            }
            request_acks.push((ack, out));
        }
        if !positions.is_empty() {
            let _ = self.index.send(IndexJob::LedgerIndex(positions));
        }
        for (ack, info) in seal_acks {
            let _ = ack.send(Ok(info));
        }
        for (ack, out) in request_acks {
            let _ = ack.send(Ok(out));
        }
    }
}
