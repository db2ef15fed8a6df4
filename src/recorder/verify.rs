//! Verification of the store from the files alone: chains, checkpoints, seals, the ledger and
//! its signed tree heads. It never trusts the index, and it reports the first bad record of each
//! session (session id, sequence number, what is wrong), not just "failed".

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::time::Instant;

use ed25519_dalek::VerifyingKey;
use serde::Serialize;

use super::codec::{self, Body, Signed, kind};
use super::frame::{self, FRAME_HEADER_LEN, GENESIS_HASH, JOURNAL_SESSION, SessionKey};
use super::index::session_id_string;
use super::ledger::{
    self, Entry, Frontier, LEAF_SESSION_ARCHIVED, LEAF_SESSION_PURGED, LEAF_SESSION_SEALED, Leaf,
};
use super::segment::{self, Scanned, Scanner};
use super::signing;
use proctor_gate::Event;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A record's content does not match its hash or checksum.
    Edited,
    /// Records are absent from the middle of a chain.
    Missing,
    /// Records are present but out of order or duplicated.
    Reordered,
    /// The chain ends before the seal the ledger records.
    Truncated,
    BadSignature,
    /// A whole session listed in the ledger is absent from the store.
    SessionMissing,
    /// A sealed session is not in the ledger.
    NotInLedger,
    /// The session in the store differs from the one the ledger recorded.
    Replaced,
    BackDated,
    /// The ledger itself is damaged or inconsistent.
    Ledger,
    /// Bytes in a segment that are not records at all.
    Damaged,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Edited => "edited",
            ProblemKind::Missing => "missing",
            ProblemKind::Reordered => "reordered",
            ProblemKind::Truncated => "truncated",
            ProblemKind::BadSignature => "bad signature",
            ProblemKind::SessionMissing => "session missing",
            ProblemKind::NotInLedger => "session missing from the ledger",
            ProblemKind::Replaced => "replaced",
            ProblemKind::BackDated => "back-dated",
            ProblemKind::Ledger => "ledger",
            ProblemKind::Damaged => "damaged",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub session: Option<String>,
    pub seq: Option<u64>,
    pub kind: ProblemKind,
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.session, self.seq) {
            (Some(s), Some(q)) => write!(
                f,
                "session {s} seq {q}: {}: {}",
                self.kind.as_str(),
                self.detail
            ),
            (Some(s), None) => write!(f, "session {s}: {}: {}", self.kind.as_str(), self.detail),
            _ => write!(f, "{}: {}", self.kind.as_str(), self.detail),
        }
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    pub sessions: u64,
    pub sealed: u64,
    pub open: u64,
    pub records: u64,
    pub bytes: u64,
    pub segments: u64,
    pub ledger_leaves: u64,
    pub tree_heads: u64,
    pub seconds: f64,
    pub problems: Vec<Problem>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

pub struct VerifyOptions {
    pub key: VerifyingKey,
    /// Verify one session (plus the ledger), or all.
    pub session: Option<SessionKey>,
    /// The store is being written: an incomplete frame at the very end is an append in flight.
    pub live: bool,
}

/// Chain-checking state of one session.
pub struct ChainCheck {
    expected: u64,
    prev: [u8; 32],
    bad: bool,
    /// First sequence number seen ahead of `expected` (a gap not yet explained).
    ahead: Option<u64>,
    last_checkpoint: Option<u64>,
    pub started_ns: Option<i64>,
    pub agent: String,
    pub target: String,
    pub sealed: Option<(u64, [u8; 32], i64)>,
    pub records: u64,
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
            agent: String::new(),
            target: String::new(),
            sealed: None,
            records: 0,
        }
    }
}

impl ChainCheck {
    pub fn new() -> Self {
        Self::default()
    }
}

/// Checks one record against its session's chain. Returns a problem if the chain breaks here
/// (only the first problem per session is reported; the session is then skipped).
pub fn check_record(
    c: &mut ChainCheck,
    record: &frame::RawRecord<'_>,
    key: &VerifyingKey,
    key_id: &[u8; 32],
) -> Option<(u64, ProblemKind, String)> {
    let h = &record.header;
    if c.bad {
        return None;
    }
    let seq = h.seq;
    if let Some((sealed_at, _, _)) = c.sealed {
        c.bad = true;
        return Some((
            seq,
            ProblemKind::Edited,
            format!("record found after the seal at seq {sealed_at}"),
        ));
    }
    if seq != c.expected {
        if seq > c.expected {
            c.ahead.get_or_insert(seq);
            return None;
        }
        c.bad = true;
        return Some((
            seq,
            ProblemKind::Reordered,
            format!(
                "seq {seq} appears again after seq {}",
                c.expected.saturating_sub(1)
            ),
        ));
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
    match &body {
        Body::Checkpoint(s) | Body::Seal(s) => {
            let context = if h.kind == kind::SEAL {
                signing::SEAL_CONTEXT
            } else {
                signing::CHECKPOINT_CONTEXT
            };
            if let Some(p) = check_signed(c, s, seq, context, &h.session, key, key_id) {
                c.bad = true;
                return Some(p);
            }
            c.last_checkpoint = Some(seq);
        }
        Body::Event(Event::SessionStart(info)) => {
            c.started_ns = Some(h.ts_ns);
            c.agent = info.agent.clone();
            c.target = info.target.clone();
        }
        _ => {}
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
) -> Option<(u64, ProblemKind, String)> {
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

/// If a damaged frame still has a readable header, say which record it was.
fn guess_header(buf: &[u8], offset: u64) -> Option<(SessionKey, u64)> {
    let rest = buf.get(offset as usize..)?;
    let (len, _) = frame::frame_header(rest)?;
    let record = rest.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len)?;
    let raw = frame::parse_record(record).ok()?;
    Some((raw.header.session, raw.header.seq))
}

pub fn verify_store(data: &Path, opts: &VerifyOptions) -> std::io::Result<Report> {
    let started = Instant::now();
    let key_id = signing::key_id(&opts.key);
    let mut report = Report::default();
    let mut checks: HashMap<SessionKey, ChainCheck> = HashMap::new();
    let mut problems: BTreeMap<SessionKey, Problem> = BTreeMap::new();
    let mut general = Vec::new();
    // The ledger first: proctor appends a leaf only after the seal it names is durable in a
    // segment, so segments read afterwards hold everything this ledger covers, even while
    // proctor writes (read the other way round, a session sealed in between looks truncated).
    let ledger_scan = ledger::scan_ledger(&ledger::ledger_path(data))?;
    let segments = segment::list_segments(data)?;
    let last_segment = segments.last().copied();
    report.segments = segments.len() as u64;
    let wanted = |s: &SessionKey| opts.session.is_none_or(|w| w == *s);
    for &number in &segments {
        let path = segment::segment_path(data, number);
        let buf = std::fs::read(&path)?;
        report.bytes += buf.len() as u64;
        match segment::check_header(&buf) {
            Ok(n) if n == number => {}
            Ok(n) => {
                general.push(Problem {
                    session: None,
                    seq: None,
                    kind: ProblemKind::Damaged,
                    detail: format!(
                        "segment file {number} claims to be segment {n} (files renamed or replaced)"
                    ),
                });
            }
            Err(what) => {
                general.push(Problem {
                    session: None,
                    seq: None,
                    kind: ProblemKind::Damaged,
                    detail: format!("segment {number}: {what}"),
                });
                continue;
            }
        }
        for item in Scanner::new(&buf, segment::SEGMENT_HEADER_LEN as usize) {
            match item {
                Scanned::Frame { record, .. } => {
                    let s = record.header.session;
                    if !wanted(&s) {
                        continue;
                    }
                    report.records += 1;
                    let c = checks.entry(s).or_default();
                    if let Some((seq, kind, detail)) = check_record(c, &record, &opts.key, &key_id)
                    {
                        problems.entry(s).or_insert(Problem {
                            session: Some(session_id_string(&s)),
                            seq: Some(seq),
                            kind,
                            detail,
                        });
                    }
                }
                Scanned::Damage { offset, what, .. } => match guess_header(&buf, offset) {
                    Some((s, seq)) => {
                        if !wanted(&s) {
                            continue;
                        }
                        let c = checks.entry(s).or_default();
                        if !c.bad {
                            c.bad = true;
                            problems.entry(s).or_insert(Problem {
                                session: Some(session_id_string(&s)),
                                seq: Some(seq),
                                kind: ProblemKind::Edited,
                                detail: format!("{what} (segment {number}, offset {offset})"),
                            });
                        }
                    }
                    None => general.push(Problem {
                        session: None,
                        seq: None,
                        kind: ProblemKind::Damaged,
                        detail: format!("segment {number} offset {offset}: {what}"),
                    }),
                },
                Scanned::TornTail { offset, bytes } => {
                    if Some(number) == last_segment {
                        if !opts.live {
                            report.notes.push(format!(
                                "segment {number} ends with {bytes} bytes of an unfinished write at offset {offset} (a crash; never acknowledged); proctor quarantines it at its next start"
                            ));
                        }
                    } else {
                        general.push(Problem {
                            session: None,
                            seq: None,
                            kind: ProblemKind::Damaged,
                            detail: format!("segment {number} is cut: {bytes} unreadable bytes at offset {offset}"),
                        });
                    }
                }
            }
        }
    }
    for (s, c) in &checks {
        if let Some(ahead) = c.ahead
            && !c.bad
        {
            problems.entry(*s).or_insert(Problem {
                session: Some(session_id_string(s)),
                seq: Some(c.expected),
                kind: ProblemKind::Missing,
                detail: format!(
                    "seq {} is missing (the log jumps to seq {ahead})",
                    c.expected
                ),
            });
        }
    }
    verify_ledger(
        ledger_scan,
        opts,
        &key_id,
        &checks,
        &mut problems,
        &mut general,
        &mut report,
    )?;
    for (s, c) in &checks {
        if *s == JOURNAL_SESSION {
            continue;
        }
        report.sessions += 1;
        if c.sealed.is_some() {
            report.sealed += 1;
        } else {
            report.open += 1;
        }
    }
    report.problems = general;
    report.problems.extend(problems.into_values());
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn verify_ledger(
    scan: ledger::LedgerScan,
    opts: &VerifyOptions,
    key_id: &[u8; 32],
    checks: &HashMap<SessionKey, ChainCheck>,
    problems: &mut BTreeMap<SessionKey, Problem>,
    general: &mut Vec<Problem>,
    report: &mut Report,
) -> std::io::Result<()> {
    let ledger_problem = |detail: String| Problem {
        session: None,
        seq: None,
        kind: ProblemKind::Ledger,
        detail,
    };
    if let Some((off, what)) = &scan.problem {
        general.push(ledger_problem(format!("offset {off}: {what}")));
    }
    if let Some((off, bytes)) = scan.torn_tail {
        report.notes.push(format!(
            "ledger ends with {bytes} bytes of an unfinished append at offset {off}"
        ));
    }
    let mut frontier = Frontier::default();
    let mut leaves: Vec<Leaf> = Vec::new();
    let mut covered = 0u64;
    let mut last_head_ts = i64::MIN;
    let mut last_logged = i64::MIN;
    for (off, entry) in scan.entries {
        match entry {
            Entry::Leaf { index, data } => {
                if index != frontier.size() {
                    general.push(ledger_problem(format!(
                        "offset {off}: leaf numbered {index} where leaf {} was expected",
                        frontier.size()
                    )));
                }
                frontier.push(ledger::leaf_hash(&data));
                match Leaf::decode(&data) {
                    Ok(leaf) => {
                        if leaf.logged_ns < last_logged {
                            general.push(ledger_problem(format!(
                                "leaf {index} (session {}) is dated before the leaf preceding it",
                                session_id_string(&leaf.session)
                            )));
                        }
                        last_logged = leaf.logged_ns;
                        leaves.push(leaf);
                    }
                    Err(e) => {
                        general.push(ledger_problem(format!("leaf {index} is malformed: {e}")))
                    }
                }
            }
            Entry::TreeHead(th) => {
                report.tree_heads += 1;
                if th.size != frontier.size() || th.root != frontier.root() {
                    general.push(ledger_problem(format!(
                        "tree head for size {} does not match the leaves before it (leaves edited, removed or inserted)",
                        th.size
                    )));
                } else if &th.key_id != key_id {
                    general.push(ledger_problem(format!(
                        "tree head for size {} signed by key {} which is not the recorder key",
                        th.size,
                        &hex::encode(th.key_id)[..16]
                    )));
                } else if !th.verify(&opts.key) {
                    general.push(ledger_problem(format!(
                        "tree head for size {} has an invalid signature",
                        th.size
                    )));
                } else {
                    covered = th.size;
                }
                if th.ts_ns < last_head_ts {
                    general.push(ledger_problem(format!(
                        "tree head for size {} is dated before an earlier tree head",
                        th.size
                    )));
                }
                last_head_ts = th.ts_ns;
            }
        }
    }
    report.ledger_leaves = frontier.size();
    if covered < frontier.size() {
        general.push(ledger_problem(format!(
            "{} ledger leaves are not covered by a valid signed tree head",
            frontier.size() - covered
        )));
    }
    let mut listed: HashMap<SessionKey, &Leaf> = HashMap::new();
    let mut gone: HashMap<SessionKey, &Leaf> = HashMap::new();
    for leaf in &leaves {
        match leaf.kind {
            LEAF_SESSION_SEALED => {
                listed.insert(leaf.session, leaf);
            }
            LEAF_SESSION_ARCHIVED | LEAF_SESSION_PURGED => {
                gone.insert(leaf.session, leaf);
            }
            _ => {}
        }
    }
    let wanted = |s: &SessionKey| opts.session.is_none_or(|w| w == *s);
    for (s, leaf) in &listed {
        if !wanted(s) {
            continue;
        }
        let id = session_id_string(s);
        let Some(c) = checks.get(s) else {
            if let Some(g) = gone.get(s) {
                let what = if g.kind == LEAF_SESSION_ARCHIVED {
                    "archived"
                } else {
                    "purged"
                };
                report
                    .notes
                    .push(format!("session {id} was {what}: {}", g.note));
            } else {
                problems.entry(*s).or_insert(Problem {
                    session: Some(id),
                    seq: Some(leaf.final_seq),
                    kind: ProblemKind::SessionMissing,
                    detail: format!(
                        "the ledger records this session (agent {}, target {}, sealed at seq {}) but the store has none of its records",
                        leaf.agent, leaf.target, leaf.final_seq
                    ),
                });
            }
            continue;
        };
        if c.bad {
            continue;
        }
        let problem = match c.sealed {
            None => Some((
                c.expected,
                ProblemKind::Truncated,
                format!(
                    "the ledger records a seal at seq {}; the store's chain ends at seq {}",
                    leaf.final_seq,
                    c.expected.saturating_sub(1)
                ),
            )),
            Some((seq, hash, _)) if seq != leaf.final_seq || hash != leaf.final_hash => Some((
                seq,
                ProblemKind::Replaced,
                format!(
                    "the ledger records the seal at seq {} with hash {}; the store has seq {seq} with hash {}",
                    leaf.final_seq,
                    &hex::encode(leaf.final_hash)[..16],
                    &hex::encode(hash)[..16]
                ),
            )),
            Some(_) if c.started_ns != Some(leaf.started_ns) => Some((
                0,
                ProblemKind::BackDated,
                format!(
                    "the ledger records the start at {} ns; the store says {} ns",
                    leaf.started_ns,
                    c.started_ns.unwrap_or_default()
                ),
            )),
            Some(_) => None,
        };
        if let Some((seq, kind, detail)) = problem {
            problems.entry(*s).or_insert(Problem {
                session: Some(id),
                seq: Some(seq),
                kind,
                detail,
            });
        }
    }
    for (s, c) in checks {
        if *s == JOURNAL_SESSION || c.bad || !wanted(s) {
            continue;
        }
        if let Some((seq, _, sealed_ns)) = c.sealed
            && !listed.contains_key(s)
        {
            // A live store appends the ledger leaf just after the seal is durable.
            if opts.live && crate::clock::now_ns() - sealed_ns < 10_000_000_000 {
                report.notes.push(format!(
                    "session {} was sealed moments ago; its ledger entry is being written",
                    session_id_string(s)
                ));
                continue;
            }
            problems.entry(*s).or_insert(Problem {
                session: Some(session_id_string(s)),
                seq: Some(seq),
                kind: ProblemKind::NotInLedger,
                detail: "the session is sealed but the ledger does not list it (proctor adds it at restart after a crash; otherwise it was inserted)".into(),
            });
        }
    }
    if let Some(s) = opts.session
        && !checks.contains_key(&s)
        && !listed.contains_key(&s)
    {
        general.push(Problem {
            session: Some(session_id_string(&s)),
            seq: None,
            kind: ProblemKind::SessionMissing,
            detail: "no such session in the store or the ledger".into(),
        });
    }
    Ok(())
}
