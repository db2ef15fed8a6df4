//! Extending a session's chain within a batch: framing and hashing each record, the ledger
//! anchors a record implies, and the signed checkpoints.

use std::time::Instant;

use proctor_gate::Event;

use super::super::codec::{self, Body, Signed, kind};
use super::super::frame::{self, FORMAT_VERSION, JOURNAL_SESSION, RecordHeader, SessionKey};
use super::super::index::wants_body;
use super::super::indexer::PendingIndex;
use super::super::ledger::{LEAF_JOURNAL, LEAF_SESSION_OPENED, Leaf};
use super::super::signing;
use super::super::wire::Writer;
use super::{Pending, WriterThread};
use crate::clock::now_ns;

impl WriterThread {
    pub(in crate::recorder) fn append(
        &mut self,
        p: &mut Pending,
        session: SessionKey,
        kind_code: u8,
        ts_ns: i64,
        body: &[u8],
    ) {
        // The journal's own checkpoint does not make the store dirty: it signs itself, and the
        // next store checkpoint (due only when something else is written) covers the journal's
        // head anyway. Counting it would loop at idle: checkpoint -> store checkpoint ->
        // checkpoint.
        if kind_code != kind::STORE_CHECKPOINT
            && !(session == JOURNAL_SESSION && kind_code == kind::CHECKPOINT)
        {
            self.store.written(session);
        }
        let chain = self.chains.entry(session).or_default();
        let seq = chain.next_seq;
        if seq == 0 {
            chain.started_ns = ts_ns;
            if kind_code == kind::SESSION_START
                && let Ok(Body::Event(Event::SessionStart(info))) =
                    codec::decode_body(kind_code, body)
            {
                chain.agent = info.agent;
                chain.target = info.target;
            }
        }
        let header = RecordHeader {
            version: FORMAT_VERSION,
            kind: kind_code,
            session,
            seq,
            ts_ns,
        };
        let at = p.buf.len();
        let hash = frame::write_frame(&mut p.buf, &header, body, &chain.prev_hash);
        let frame_len = p.buf.len() - at;
        if session == JOURNAL_SESSION && kind_code == kind::CHECKPOINT {
            // The journal is anchored in the ledger at each of its checkpoints (it is never
            // sealed), so cutting or deleting it is detected.
            p.anchors.push(Leaf {
                kind: LEAF_JOURNAL,
                session,
                final_seq: seq,
                final_hash: hash,
                started_ns: chain.started_ns,
                ended_ns: ts_ns,
                agent: String::new(),
                target: String::new(),
                outcome: String::new(),
                logged_ns: 0,
                note: String::new(),
            });
        }
        if seq == 0 && kind_code == kind::SESSION_START && session != JOURNAL_SESSION {
            // The ledger lists a session from its first record (FORMAT.md, "Ledger"), so that
            // deleting a session still open is detected.
            p.anchors.push(Leaf {
                kind: LEAF_SESSION_OPENED,
                session,
                final_seq: 0,
                final_hash: hash,
                started_ns: ts_ns,
                ended_ns: 0,
                agent: chain.agent.clone(),
                target: chain.target.clone(),
                outcome: String::new(),
                logged_ns: 0,
                note: String::new(),
            });
        }
        chain.prev_hash = hash;
        chain.next_seq += 1;
        match kind_code {
            kind::CHECKPOINT | kind::SEAL => {
                chain.unsigned = 0;
                chain.unsigned_since = None;
            }
            // A store checkpoint counts toward the journal's own checkpoint (its ledger anchor,
            // a kind-6 leaf) like any journal record: without it, while sessions ran and nothing
            // else was journaled, the journal's anchor did not move at all (34 s behind in a
            // real run) and everything the store checkpoints alone signed could be cut
            // unnoticed. Now the anchor lags by at most `checkpoint_every` (FORMAT.md, "Named
            // gap").
            _ => {
                chain.unsigned += 1;
                chain.unsigned_since.get_or_insert_with(Instant::now);
            }
        }
        let body_range = wants_body(kind_code).then(|| {
            let start = at + frame::FRAME_HEADER_LEN + frame::RECORD_HEADER_LEN;
            (start, start + body.len())
        });
        p.index.push(PendingIndex {
            session,
            kind: kind_code,
            seq,
            ts_ns,
            hash,
            at,
            frame_len,
            body: body_range,
        });
    }

    pub(super) fn sign(
        &self,
        session: &SessionKey,
        context: &[u8],
        seq: u64,
        hash: &[u8; 32],
    ) -> Signed {
        Signed {
            covered_seq: seq,
            covered_hash: *hash,
            key_id: self.key.key_id,
            signature: self
                .key
                .sign(&signing::checkpoint_message(context, session, seq, hash)),
        }
    }

    pub(super) fn maybe_checkpoint(&mut self, p: &mut Pending, session: SessionKey, by_time: bool) {
        let Some(chain) = self.chains.get(&session) else {
            return;
        };
        let due = chain.unsigned >= self.opts.checkpoint_every_events
            || (by_time
                && chain.unsigned > 0
                && chain
                    .unsigned_since
                    .is_some_and(|t| t.elapsed() >= self.opts.checkpoint_every));
        if !due {
            return;
        }
        let covered_seq = chain.next_seq - 1;
        let signed = self.sign(
            &session,
            signing::CHECKPOINT_CONTEXT,
            covered_seq,
            &chain.prev_hash,
        );
        let mut w = Writer::with_capacity(160);
        codec::encode_body(&Body::Checkpoint(signed), &mut w);
        self.append(p, session, kind::CHECKPOINT, now_ns(), &w.buf);
    }

    /// Signs every session whose unsigned events are older than the checkpoint interval
    /// (or all of them at shutdown).
    pub(super) fn checkpoint_all(&mut self, p: &mut Pending, everything: bool) {
        if self.failed_reason().is_some() {
            return;
        }
        let keys: Vec<SessionKey> = self
            .chains
            .iter()
            .filter(|(_, c)| {
                c.unsigned > 0
                    && (everything
                        || c.unsigned_since
                            .is_some_and(|t| t.elapsed() >= self.opts.checkpoint_every))
            })
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            if everything {
                if let Some(c) = self.chains.get_mut(&k) {
                    c.unsigned = self.opts.checkpoint_every_events;
                }
                self.maybe_checkpoint(p, k, false);
            } else {
                self.maybe_checkpoint(p, k, true);
            }
        }
    }
}
