//! One chain, record by record (FORMAT.md, "What a verifier checks", rule 2): sequence,
//! chain hash, signatures, and what the signed records say about the session (its start, its
//! end, which records no signature covers).

use ed25519_dalek::VerifyingKey;
use serde::Serialize;

use super::ProblemKind;
use crate::recorder::codec::{self, Body, Signed, kind};
use crate::recorder::frame::{self, GENESIS_HASH, JOURNAL_SESSION, SessionKey};
use crate::recorder::signing;
use crate::recorder::store_checkpoint::{ChainPosition, StoreCheckpoint};
use proctor_gate::{Event, SessionInfo};

/// A run of records no recorder signature covers: after the last checkpoint of a session a
/// crash left open, which only proctor's restart (the `recovered` record and the seal after
/// it) or nothing at all vouches for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnsignedTail {
    pub session: String,
    pub from_seq: u64,
    pub to_seq: u64,
    pub records: u64,
    pub first_ts_ns: i64,
    pub last_ts_ns: i64,
    /// Sealed at restart after a crash (the seal signs these records, but only as "found at
    /// restart"); false for a chain still open.
    pub sealed_by_recovery: bool,
}

/// The session_end record, as signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndInfo {
    pub outcome: String,
    pub reason: String,
    pub ts_ns: i64,
}

/// Records after the last signature, counted as they arrive.
#[derive(Debug, Clone, Copy)]
struct Pending {
    from_seq: u64,
    records: u64,
    first_ts: i64,
    last_ts: i64,
}

/// Chain-checking state of one session.
pub struct ChainCheck {
    expected: u64,
    prev: [u8; 32],
    bad: bool,
    /// First sequence number seen ahead of `expected` (a gap not yet explained).
    ahead: Option<u64>,
    last_checkpoint: Option<u64>,
    /// Timestamp of the seq-0 record as stored (set even when its hash does not match, so a
    /// back-dated start is named as such).
    pub started_ns: Option<i64>,
    /// The session_start record and its chain hash (seq 0), once verified.
    pub start: Option<SessionInfo>,
    pub start_hash: Option<[u8; 32]>,
    pub end: Option<EndInfo>,
    pub sealed: Option<(u64, [u8; 32], i64)>,
    pub records: u64,
    unsigned: Option<Pending>,
    /// Runs of records a restart sealed without a signature from before the crash.
    pub recovered_tails: Vec<(u64, u64, u64, i64, i64)>,
    /// The journal's checkpoint records (seq, hash), which its ledger leaves name.
    pub journal_checkpoints: Vec<(u64, [u8; 32])>,
    /// The journal: chain hash of its last store checkpoint, and the chain positions the one
    /// just checked signs (taken by the caller, who checks them against those chains).
    last_store_checkpoint: Option<[u8; 32]>,
    pub store_signed: Option<Vec<ChainPosition>>,
    /// False for a chain read without its store's journal (a bundle): the store checkpoints
    /// that may have signed it are not at hand.
    sees_store_checkpoints: bool,
    /// The first seq a store checkpoint signed that the chain had not reached, and whether
    /// that seq, or a later one, turned up after it in the log (then it was moved or removed,
    /// not cut: see `store_gap_finding`).
    store_gap: Option<StoreGap>,
}

#[derive(Debug, Clone, Copy)]
struct StoreGap {
    seq: u64,
    seen_it: bool,
    seen_later: bool,
}

impl Default for ChainCheck {
    fn default() -> Self {
        ChainCheck {
            expected: 0,
            prev: GENESIS_HASH,
            bad: false,
            ahead: None,
            last_checkpoint: None,
            started_ns: None,
            start: None,
            start_hash: None,
            end: None,
            sealed: None,
            records: 0,
            unsigned: None,
            recovered_tails: Vec::new(),
            journal_checkpoints: Vec::new(),
            last_store_checkpoint: None,
            store_signed: None,
            sees_store_checkpoints: true,
            store_gap: None,
        }
    }
}

/// A chain problem: the first seq it concerns, its kind, what was found.
pub type ChainProblem = (u64, ProblemKind, String);

impl ChainCheck {
    pub fn new() -> Self {
        Self::default()
    }

    /// A chain read without its store's journal (a bundle).
    pub fn without_store_checkpoints() -> Self {
        ChainCheck {
            sees_store_checkpoints: false,
            ..Self::default()
        }
    }

    /// Whether a problem was found (the rest of the chain is then not checked).
    pub fn is_bad(&self) -> bool {
        self.bad
    }

    /// Marks the chain broken by damage found outside `check_record` (an unreadable frame).
    pub fn mark_bad(&mut self) {
        self.bad = true;
    }

    /// The first seq no verified signature covers (0 when the chain has no checkpoint yet).
    pub fn unsigned_from(&self) -> u64 {
        self.last_checkpoint.map_or(0, |q| q + 1)
    }

    /// A store checkpoint signs this chain at (seq, hash); it follows that record in the log,
    /// so the chain must stand exactly there. Records it signs are signed like those before a
    /// checkpoint.
    pub fn signed_by_store(&mut self, seq: u64, hash: &[u8; 32]) -> Option<ChainProblem> {
        if self.bad || self.sealed.is_some_and(|(s, h, _)| s == seq && h == *hash) {
            return None;
        }
        if self.expected == seq + 1 && self.prev == *hash {
            self.last_checkpoint = Some(seq);
            self.unsigned = None;
            return None;
        }
        self.bad = true;
        if self.expected <= seq && self.ahead.is_none() {
            self.store_gap = Some(StoreGap {
                seq: self.expected,
                seen_it: false,
                seen_later: false,
            });
        }
        Some(if self.expected <= seq {
            (
                self.expected,
                if self.ahead.is_some() {
                    ProblemKind::Missing
                } else {
                    ProblemKind::Truncated
                },
                format!(
                    "a store checkpoint signs this session up to seq {seq}, but its chain stops at seq {}",
                    self.expected as i128 - 1
                ),
            )
        } else if self.expected > seq + 1 {
            (
                seq + 1,
                ProblemKind::Edited,
                format!(
                    "a store checkpoint signs this session up to seq {seq}, but seq {} to {} stand before it in the log (inserted)",
                    seq + 1,
                    self.expected - 1
                ),
            )
        } else {
            (
                seq,
                ProblemKind::Edited,
                format!("seq {seq} is not the record a store checkpoint signed"),
            )
        })
    }

    /// After the last record: when a store checkpoint signed this chain past a seq it had not
    /// reached (reported then as *truncated*), and that seq turned up later in the log, it was
    /// *reordered*; when only later seqs did, it is *missing*. None: truncated it stays.
    pub fn store_gap_finding(&self) -> Option<ChainProblem> {
        let g = self.store_gap?;
        if g.seen_it {
            Some((
                g.seq,
                ProblemKind::Reordered,
                format!(
                    "seq {} is stored after a store checkpoint that signed the chain past it: records were reordered",
                    g.seq
                ),
            ))
        } else if g.seen_later {
            Some((
                g.seq,
                ProblemKind::Missing,
                format!(
                    "seq {} is missing (a store checkpoint signed the chain past it, and later records follow)",
                    g.seq
                ),
            ))
        } else {
            None
        }
    }

    /// The agent and target the session_start record names (empty before it is read).
    pub fn agent(&self) -> &str {
        self.start.as_ref().map_or("", |s| s.agent.as_str())
    }

    pub fn target(&self) -> &str {
        self.start.as_ref().map_or("", |s| s.target.as_str())
    }

    /// Called after the last record: a gap that was never filled is `missing`.
    pub fn finish(&mut self) -> Option<ChainProblem> {
        if self.bad {
            return None;
        }
        let ahead = self.ahead?;
        self.bad = true;
        Some((
            self.expected,
            ProblemKind::Missing,
            format!(
                "seq {} is missing (the chain jumps to seq {ahead})",
                self.expected
            ),
        ))
    }

    /// Unsigned runs of this chain: those a restart sealed, then (for a chain still open) the
    /// records after its last signature.
    pub fn unsigned_tails(&self, session: &str) -> Vec<UnsignedTail> {
        let mut out: Vec<UnsignedTail> = self
            .recovered_tails
            .iter()
            .map(|&(from, to, n, first, last)| UnsignedTail {
                session: session.to_string(),
                from_seq: from,
                to_seq: to,
                records: n,
                first_ts_ns: first,
                last_ts_ns: last,
                sealed_by_recovery: true,
            })
            .collect();
        if self.sealed.is_none()
            && let Some(p) = self.unsigned
        {
            out.push(UnsignedTail {
                session: session.to_string(),
                from_seq: p.from_seq,
                to_seq: p.from_seq + p.records - 1,
                records: p.records,
                first_ts_ns: p.first_ts,
                last_ts_ns: p.last_ts,
                sealed_by_recovery: false,
            });
        }
        out
    }
}

/// Checks one record against its session's chain. Returns a problem if the chain breaks here
/// (only the first problem per session is reported; the session is then skipped).
pub fn check_record(
    c: &mut ChainCheck,
    record: &frame::RawRecord<'_>,
    key: &VerifyingKey,
    key_id: &[u8; 32],
) -> Option<ChainProblem> {
    let h = &record.header;
    if let Some(g) = &mut c.store_gap {
        g.seen_it |= h.seq == g.seq;
        g.seen_later |= h.seq > g.seq;
    }
    if c.bad {
        return None;
    }
    let seq = h.seq;
    if seq == 0 && c.started_ns.is_none() {
        c.started_ns = Some(h.ts_ns);
    }
    if seq < c.expected {
        c.bad = true;
        let what = if seq + 1 == c.expected && record.hash == c.prev {
            "an exact copy of the record before it".to_string()
        } else {
            format!("after seq {}", c.expected - 1)
        };
        return Some((
            seq,
            ProblemKind::Duplicate,
            format!("seq {seq} is stored a second time ({what})"),
        ));
    }
    if let Some((sealed_at, _, _)) = c.sealed {
        c.bad = true;
        return Some((
            seq,
            ProblemKind::Edited,
            format!("record found after the seal at seq {sealed_at}"),
        ));
    }
    if seq != c.expected {
        c.ahead.get_or_insert(seq);
        return None;
    }
    if let Some(ahead) = c.ahead {
        c.bad = true;
        return Some((
            seq,
            ProblemKind::Reordered,
            format!("seq {seq} is stored after seq {ahead}: records were reordered"),
        ));
    }
    let computed = frame::chain_hash(&c.prev, record.hashed);
    if computed != record.hash {
        c.bad = true;
        return Some((
            seq,
            ProblemKind::Edited,
            format!(
                "{} record does not match its chain hash (content or an earlier link was changed)",
                codec::kind_name(h.kind)
            ),
        ));
    }
    let is_journal = h.session == JOURNAL_SESSION;
    if seq == 0 && !is_journal && h.kind != kind::SESSION_START {
        c.bad = true;
        return Some((
            seq,
            ProblemKind::Edited,
            "first record is not a session start".into(),
        ));
    }
    let body = match codec::decode_body(h.kind, record.body) {
        Ok(b) => b,
        Err(e) => {
            c.bad = true;
            return Some((
                seq,
                ProblemKind::Edited,
                format!("{} record body is malformed: {e}", codec::kind_name(h.kind)),
            ));
        }
    };
    match body {
        Body::Checkpoint(s) | Body::Seal(s) => {
            let context = if h.kind == kind::SEAL {
                signing::SEAL_CONTEXT
            } else {
                signing::CHECKPOINT_CONTEXT
            };
            if let Some(p) = check_signed(c, &s, seq, context, &h.session, key, key_id) {
                c.bad = true;
                return Some(p);
            }
            c.last_checkpoint = Some(seq);
            c.unsigned = None;
            if h.session == JOURNAL_SESSION {
                c.journal_checkpoints.push((seq, record.hash));
            }
        }
        Body::StoreCheckpoint(sc) => {
            if let Some(p) = check_store_checkpoint(c, &sc, seq, &h.session, key, key_id) {
                c.bad = true;
                return Some(p);
            }
            c.last_checkpoint = Some(seq);
            c.unsigned = None;
            c.last_store_checkpoint = Some(record.hash);
            c.store_signed = Some(sc.chains);
        }
        Body::Recovered { unsigned_from, .. } => {
            let own = c.unsigned_from();
            // Without the journal, a later claim may be a store checkpoint's doing (it cannot
            // go past this record); the tail is still reported from the chain's own signatures.
            let plausible = if c.sees_store_checkpoints {
                unsigned_from == own
            } else {
                (own..=seq).contains(&unsigned_from)
            };
            if !plausible {
                c.bad = true;
                return Some((
                    seq,
                    ProblemKind::Edited,
                    format!(
                        "the recovery record says records from seq {unsigned_from} were unsigned; the last signature covers up to seq {}",
                        own.saturating_sub(1)
                    ),
                ));
            }
            if let Some(p) = c.unsigned.take() {
                c.recovered_tails.push((
                    p.from_seq,
                    p.from_seq + p.records - 1,
                    p.records,
                    p.first_ts,
                    p.last_ts,
                ));
            }
        }
        Body::Event(Event::SessionStart(info)) if seq == 0 => {
            c.start = Some(info);
            c.start_hash = Some(record.hash);
        }
        Body::Event(Event::SessionEnd { outcome, reason }) => {
            c.end = Some(EndInfo {
                outcome: outcome.as_str().to_string(),
                reason,
                ts_ns: h.ts_ns,
            });
        }
        _ => {}
    }
    if !matches!(
        h.kind,
        kind::CHECKPOINT | kind::SEAL | kind::RECOVERED | kind::STORE_CHECKPOINT
    ) {
        let p = c.unsigned.get_or_insert(Pending {
            from_seq: seq,
            records: 0,
            first_ts: h.ts_ns,
            last_ts: h.ts_ns,
        });
        p.records += 1;
        p.last_ts = h.ts_ns;
    }
    c.prev = record.hash;
    c.expected = seq + 1;
    c.records += 1;
    if h.kind == kind::SEAL {
        c.sealed = Some((seq, record.hash, h.ts_ns));
    }
    None
}

fn check_signed(
    c: &ChainCheck,
    s: &Signed,
    seq: u64,
    context: &[u8],
    session: &SessionKey,
    key: &VerifyingKey,
    key_id: &[u8; 32],
) -> Option<ChainProblem> {
    let what = if context == signing::SEAL_CONTEXT {
        "seal"
    } else {
        "checkpoint"
    };
    if seq == 0 || s.covered_seq != seq - 1 || s.covered_hash != c.prev {
        return Some((
            seq,
            ProblemKind::Edited,
            format!(
                "{what} covers seq {} but follows seq {}",
                s.covered_seq,
                seq.saturating_sub(1)
            ),
        ));
    }
    let since = c
        .last_checkpoint
        .map_or("the start".to_string(), |q| format!("seq {q}"));
    if &s.key_id != key_id {
        return Some((
            seq,
            ProblemKind::BadSignature,
            format!(
                "{what} signed by key {} which is not the recorder key {} (records since {since} are not trusted)",
                &hex::encode(s.key_id)[..16],
                &hex::encode(key_id)[..16]
            ),
        ));
    }
    let msg = signing::checkpoint_message(context, session, s.covered_seq, &s.covered_hash);
    if !signing::verify(key, &msg, &s.signature) {
        return Some((
            seq,
            ProblemKind::BadSignature,
            format!("{what} signature is invalid: records since {since} were changed"),
        ));
    }
    None
}

/// A store checkpoint: in the journal, covering the journal record before it, naming the
/// previous store checkpoint, signed by the pinned key.
fn check_store_checkpoint(
    c: &ChainCheck,
    sc: &StoreCheckpoint,
    seq: u64,
    session: &SessionKey,
    key: &VerifyingKey,
    key_id: &[u8; 32],
) -> Option<ChainProblem> {
    let edited = |detail: String| Some((seq, ProblemKind::Edited, detail));
    if *session != JOURNAL_SESSION {
        return edited("a store checkpoint outside the store journal".into());
    }
    let s = &sc.signed;
    if seq == 0 || s.covered_seq != seq - 1 || s.covered_hash != c.prev {
        return edited(format!(
            "store checkpoint covers seq {} but follows seq {}",
            s.covered_seq,
            seq.saturating_sub(1)
        ));
    }
    let previous = c.last_store_checkpoint.unwrap_or([0u8; 32]);
    if sc.previous != previous {
        return edited(
            "store checkpoint does not name the previous store checkpoint (one was removed or replaced)"
                .into(),
        );
    }
    if &s.key_id != key_id {
        return Some((
            seq,
            ProblemKind::BadSignature,
            format!(
                "store checkpoint signed by key {} which is not the recorder key {}",
                &hex::encode(s.key_id)[..16],
                &hex::encode(key_id)[..16]
            ),
        ));
    }
    if !signing::verify(key, &sc.message(), &s.signature) {
        return Some((
            seq,
            ProblemKind::BadSignature,
            "store checkpoint signature is invalid".into(),
        ));
    }
    None
}
