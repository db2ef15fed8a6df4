//! What of a store is anchored outside the host (FORMAT.md, "Anchoring"): the records whose
//! chain hash a tree head that an outsider holds (an RFC 3161 token over it, or a head the
//! auditor pinned with `--known-head`) commits to, through the ledger's leaves. Everything after
//! that point was signed only by the host's key, so whoever holds that key could have cut or
//! rewritten it without any finding: this names, per session and for the journal, where that
//! begins, instead of leaving it to the reader to work out.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::super::codec::kind::{RECOVERED, STORE_CHECKPOINT};
use super::super::frame::{JOURNAL_SESSION, SessionKey};
use super::super::index::session_id_string;
use super::super::ledger::{Entry, Leaf, LedgerScan};
use super::super::store_checkpoint::ChainPosition;

const LEAF_SEALED: u8 = 1;
const LEAF_OPENED: u8 = 4;
const LEAF_FORMAT: u8 = 5;
const LEAF_JOURNAL: u8 = 6;

/// What the verification pass collects for the anchoring summary: the ledger's leaves that pin
/// records, and for each chain, where the store checkpoints the journal's anchors cover list it.
#[derive(Debug, Default, Clone)]
pub struct Tracker {
    /// Kind-6 leaves in file order: (leaf position, journal seq, checkpoint timestamp).
    journal_anchors: Vec<(u64, u64, i64)>,
    /// Per session: the sealed leaf (position, final seq, seal timestamp) and the opened leaf
    /// (position, seq-0 timestamp).
    sealed: BTreeMap<SessionKey, (u64, u64, i64)>,
    opened: BTreeMap<SessionKey, (u64, i64)>,
    /// Per session: the last record read in a chain without a finding so far (seq, ts).
    /// (A hash map: it is updated for every record read, the hot path of `verify`.)
    last: HashMap<SessionKey, (u64, i64)>,
    /// Per session, for each journal anchor (index into `journal_anchors`) the highest
    /// (seq, ts) a verified store checkpoint at or before that anchor lists, increasing.
    listed: BTreeMap<SessionKey, Vec<(usize, u64, i64)>>,
    leaves: u64,
    /// Whether the ledger has a format leaf of version 2 or later, and the first record of a
    /// kind only version 2 and later write (recovered, store checkpoint): with such records and
    /// no format leaf, leaves were removed so that the store reads as version 1.
    pub format_leaf: bool,
    pub later_record: Option<(SessionKey, u64, u8)>,
}

impl Tracker {
    /// The ledger's leaves, as scanned (before the segments are read).
    pub fn from_ledger(scan: &LedgerScan) -> Self {
        let mut t = Tracker::default();
        for (_, e) in &scan.entries {
            let Entry::Leaf { data, .. } = e else {
                continue;
            };
            let pos = t.leaves;
            t.leaves += 1;
            let Ok(leaf) = Leaf::decode(data) else {
                continue;
            };
            match leaf.kind {
                LEAF_SEALED => {
                    t.sealed
                        .entry(leaf.session)
                        .or_insert((pos, leaf.final_seq, leaf.ended_ns));
                }
                LEAF_OPENED => {
                    t.opened
                        .entry(leaf.session)
                        .or_insert((pos, leaf.started_ns));
                }
                LEAF_JOURNAL => t.journal_anchors.push((pos, leaf.final_seq, leaf.ended_ns)),
                LEAF_FORMAT => t.format_leaf |= leaf.final_seq >= 2,
                _ => {}
            }
        }
        t
    }

    /// Notes a record of a kind version 2 added or later (see `later_record`).
    pub fn kind_seen(&mut self, s: SessionKey, seq: u64, kind: u8) {
        if self.later_record.is_none() && (kind == RECOVERED || kind == STORE_CHECKPOINT) {
            self.later_record = Some((s, seq, kind));
        }
    }

    /// A record read in a chain that has no finding (so far).
    pub fn record(&mut self, s: SessionKey, seq: u64, ts: i64) {
        self.last.insert(s, (seq, ts));
    }

    /// A chain with a finding is left out: what it says is already a failure.
    pub fn drop_chain(&mut self, s: &SessionKey) {
        self.last.remove(s);
        self.listed.remove(s);
    }

    /// A verified store checkpoint at journal seq `journal_seq` lists these chain positions.
    /// It is anchored by the first journal anchor at or after it (whose chain hash covers it).
    pub fn store_checkpoint(&mut self, journal_seq: u64, signed: &[ChainPosition]) {
        let k = self
            .journal_anchors
            .partition_point(|&(_, q, _)| q < journal_seq);
        if k == self.journal_anchors.len() {
            return;
        }
        for p in signed {
            let ts = match self.last.get(&p.session) {
                Some(&(seq, ts)) if seq == p.seq => ts,
                // The chain does not stand there: the chain check reports it.
                _ => continue,
            };
            let v = self.listed.entry(p.session).or_default();
            match v.last_mut() {
                Some(last) if last.0 == k => *last = (k, p.seq, ts),
                _ => v.push((k, p.seq, ts)),
            }
        }
    }

    /// The summary for an outside anchor covering the first `size` leaves.
    pub fn summarize(&self, size: u64, sources: Vec<AnchorSource>) -> Anchoring {
        let mut out = Anchoring {
            anchored_leaves: size.min(self.leaves),
            ledger_leaves: self.leaves,
            sources,
            ..Anchoring::default()
        };
        let journal_to = self
            .journal_anchors
            .iter()
            .take_while(|&&(pos, _, _)| pos < size)
            .last()
            .map(|&(_, q, ts)| (q, ts));
        let last_anchor = self
            .journal_anchors
            .iter()
            .take_while(|&&(pos, _, _)| pos < size)
            .count();
        if let Some(&(last_seq, last_ts)) = self.last.get(&JOURNAL_SESSION) {
            out.journal = Some(gap(
                session_id_string(&JOURNAL_SESSION),
                journal_to,
                last_seq,
                last_ts,
            ));
        }
        let mut chains: Vec<(&SessionKey, &(u64, i64))> = self.last.iter().collect();
        chains.sort_unstable_by_key(|(s, _)| **s);
        for (s, &(last_seq, last_ts)) in chains {
            if *s == JOURNAL_SESSION {
                continue;
            }
            let mut to: Option<(u64, i64)> = None;
            let mut better = |c: (u64, i64)| {
                if to.is_none_or(|t| c.0 > t.0) {
                    to = Some(c);
                }
            };
            if let Some(&(pos, ts)) = self.opened.get(s)
                && pos < size
            {
                better((0, ts));
            }
            if let Some(v) = self.listed.get(s)
                && let Some(&(_, seq, ts)) = v.iter().take_while(|e| e.0 < last_anchor).last()
            {
                better((seq, ts));
            }
            if let Some(&(pos, seq, ts)) = self.sealed.get(s)
                && pos < size
            {
                better((seq, ts));
            }
            if to.is_some_and(|(q, _)| q >= last_seq) {
                out.sessions_anchored_whole += 1;
                continue;
            }
            out.sessions
                .push(gap(session_id_string(s), to, last_seq, last_ts));
        }
        if out.anchored_leaves == 0 {
            // No leaf is anchored, so no record of any chain is: one entry says so for the
            // whole store instead of one per chain that would all say the same.
            out.nothing_anchored = Some(NothingAnchored {
                sessions: out.sessions.len() as u64,
                journal: out.journal.is_some(),
                records: out
                    .journal
                    .iter()
                    .chain(&out.sessions)
                    .map(|g| g.unanchored_records)
                    .sum(),
            });
            out.journal = None;
            out.sessions.clear();
        }
        out
    }
}

fn gap(session: String, to: Option<(u64, i64)>, last_seq: u64, last_ts: i64) -> AnchorGap {
    AnchorGap {
        session,
        anchored_to_seq: to.map(|t| t.0),
        anchored_ts_ns: to.map(|t| t.1),
        last_seq,
        last_ts_ns: last_ts,
        unanchored_records: match to {
            Some((q, _)) => last_seq.saturating_sub(q),
            None => last_seq + 1,
        },
    }
}

/// An outside anchor: a tree head the verifier did not take from the host.
#[derive(Debug, Clone, Serialize)]
pub struct AnchorSource {
    /// `rfc3161` (a token that checked out) or `known_head` (`--known-head`, not rolled back).
    pub kind: String,
    pub tree_size: u64,
    pub tree_head_ts_ns: i64,
    /// For a token: the TSA's genTime (the head existed by then).
    pub gen_time_ns: Option<i64>,
}

/// One chain's anchored prefix and what follows it (FORMAT.md, "Anchoring").
#[derive(Debug, Clone, Serialize)]
pub struct AnchorGap {
    pub session: String,
    /// The last seq whose chain hash an outside anchor commits to; null when none does.
    pub anchored_to_seq: Option<u64>,
    /// That record's timestamp.
    pub anchored_ts_ns: Option<i64>,
    /// The chain's last record read.
    pub last_seq: u64,
    pub last_ts_ns: i64,
    /// Records after the anchored one (all of them when none is anchored).
    pub unanchored_records: u64,
}

/// `anchoring` in `verify --json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Anchoring {
    /// The outside anchors that checked out; the largest decides.
    pub sources: Vec<AnchorSource>,
    /// Leaves of the ledger an outside anchor covers, and how many it has.
    pub anchored_leaves: u64,
    pub ledger_leaves: u64,
    /// The journal (all-zero session).
    pub journal: Option<AnchorGap>,
    /// Sessions with records past their anchored prefix (or none anchored).
    pub sessions: Vec<AnchorGap>,
    /// Sessions whose every record is anchored.
    pub sessions_anchored_whole: u64,
    /// Set when no ledger leaf is anchored (`anchored_leaves` 0): then `journal` is null and
    /// `sessions` empty, and this counts the chains (without a finding) and their records, none
    /// of which is anchored.
    pub nothing_anchored: Option<NothingAnchored>,
}

/// The compact form of "nothing is anchored" (FORMAT.md, "Anchoring").
#[derive(Debug, Clone, Default, Serialize)]
pub struct NothingAnchored {
    /// Sessions with a record and no finding.
    pub sessions: u64,
    /// Whether the store has a journal without a finding.
    pub journal: bool,
    /// Records of those chains (the journal's included).
    pub records: u64,
}

impl Anchoring {
    /// The text form: what an attacker with the host's key could still have cut or rewritten.
    pub fn text(&self, t: &mut String) {
        use std::fmt::Write as _;
        let fmt = crate::clock::format_ns;
        if let (true, Some(n)) = (self.sources.is_empty(), &self.nothing_anchored) {
            // Every chain would say the same: one line, as the JSON has one entry.
            let _ = writeln!(
                t,
                "NOT ANCHORED outside the host: no timestamp token checked (--tsa-cert) and no --known-head; whoever holds the recorder key could have cut or rewritten any of the {} sessions{} ({} records)",
                n.sessions,
                if n.journal { " and the journal" } else { "" },
                n.records
            );
            return;
        } else {
            for s in &self.sources {
                let _ = writeln!(
                    t,
                    "ANCHOR {} tree size {} (head {}){}",
                    s.kind,
                    s.tree_size,
                    fmt(s.tree_head_ts_ns),
                    s.gen_time_ns
                        .map_or(String::new(), |g| format!(", timestamped {}", fmt(g)))
                );
            }
        }
        let _ = writeln!(
            t,
            "ANCHORED the first {} of {} ledger leaves; {} sessions anchored whole",
            self.anchored_leaves, self.ledger_leaves, self.sessions_anchored_whole
        );
        if let Some(n) = &self.nothing_anchored {
            let _ = writeln!(
                t,
                "NOT ANCHORED any record: the outside heads cover no ledger leaf; the {} sessions{} ({} records) are signed only with the host's key",
                n.sessions,
                if n.journal { " and the journal" } else { "" },
                n.records
            );
        }
        for g in self.journal.iter().chain(&self.sessions) {
            let who = if g.session == session_id_string(&JOURNAL_SESSION) {
                "the journal".to_string()
            } else {
                format!("session {}", g.session)
            };
            let from = match (g.anchored_to_seq, g.anchored_ts_ns) {
                (Some(q), Some(ts)) => format!("anchored to seq {q} ({})", fmt(ts)),
                _ => "nothing anchored".to_string(),
            };
            if g.unanchored_records == 0 {
                let _ = writeln!(t, "ANCHORED {who}: {from}, its last record");
                continue;
            }
            let _ = writeln!(
                t,
                "NOT ANCHORED {who}: {from}; the {} record(s) after it, to seq {} ({}), are signed only with the host's key: whoever holds it could have cut or rewritten them",
                g.unanchored_records,
                g.last_seq,
                fmt(g.last_ts_ns)
            );
        }
    }
}
