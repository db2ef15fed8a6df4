//! Verification of the store from the files alone: chains, checkpoints, seals, the ledger and
//! its signed tree heads. It never trusts the index, and it reports the first bad record of each
//! session (session id, sequence number, what is wrong), not just "failed".

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::time::Instant;

use ed25519_dalek::VerifyingKey;
use serde::Serialize;

use super::frame::{self, FRAME_HEADER_LEN, JOURNAL_SESSION, SessionKey};
use super::index::session_id_string;
use super::ledger;
use super::segment::{self, Scanned, Scanner};
use super::signing;
use super::store_checkpoint::ChainPosition;

mod anchoring;
mod archived;
mod bundle_anchoring;
mod chain;
mod crosscheck;
pub mod external;

pub use anchoring::{AnchorSource, Anchoring, Tracker};
pub use archived::archive_completeness;
pub use bundle_anchoring::{BundleAnchoring, KnownHeadUse, SealedLeaf, known_head_for_bundle};
pub use chain::{ChainCheck, ChainProblem, EndInfo, UnsignedTail, check_record};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A record's content does not match its hash or checksum.
    Edited,
    /// Records are absent from the middle of a chain.
    Missing,
    /// Records are present but out of order.
    Reordered,
    /// A sequence number appears twice.
    Duplicate,
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
    /// A segment number is absent from the contiguous run 1, 2, 3... of segment files.
    SegmentMissing,
    /// Metadata (an index entry, a bundle manifest, a ledger leaf) disagrees with the signed
    /// session_start/session_end records it is derived from.
    Metadata,
    /// The ledger is not an extension of a tree head saved earlier (`--known-head`).
    RolledBack,
    /// An attestation of a tree head (an RFC 3161 timestamp token) does not check out.
    Timestamp,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Edited => "edited",
            ProblemKind::Missing => "missing",
            ProblemKind::Reordered => "reordered",
            ProblemKind::Duplicate => "duplicate",
            ProblemKind::Truncated => "truncated",
            ProblemKind::BadSignature => "bad signature",
            ProblemKind::SessionMissing => "session missing",
            ProblemKind::NotInLedger => "session missing from the ledger",
            ProblemKind::Replaced => "replaced",
            ProblemKind::BackDated => "back-dated",
            ProblemKind::Ledger => "ledger",
            ProblemKind::Damaged => "damaged",
            ProblemKind::SegmentMissing => "segment missing",
            ProblemKind::Metadata => "metadata",
            ProblemKind::RolledBack => "rolled back",
            ProblemKind::Timestamp => "timestamp",
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
    /// Sessions sealed, open and tampered: every session is counted in exactly one of them (a
    /// session with a problem is tampered, whatever its seal).
    pub sealed: u64,
    pub open: u64,
    pub tampered: u64,
    pub records: u64,
    pub bytes: u64,
    pub segments: u64,
    pub ledger_leaves: u64,
    pub tree_heads: u64,
    pub seconds: f64,
    pub problems: Vec<Problem>,
    /// Records no signature made before a crash covers (FORMAT.md, "Recovery"): not a
    /// failure, not plain OK either.
    pub unsigned_tails: Vec<UnsignedTail>,
    pub notes: Vec<String>,
    /// What the ledger and the journal's anchors pin, for the anchoring summary (not part of
    /// the report's JSON: `verify` prints `anchoring` beside it).
    #[serde(skip)]
    pub anchors: Tracker,
}

/// The three outcomes of a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Everything is signed and consistent.
    Ok,
    /// No problem, but some records are covered by no signature made before a crash.
    UnsignedTail,
    Failed,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn verdict(&self) -> Verdict {
        if !self.problems.is_empty() {
            Verdict::Failed
        } else if !self.unsigned_tails.is_empty() {
            Verdict::UnsignedTail
        } else {
            Verdict::Ok
        }
    }
}

pub struct VerifyOptions {
    pub key: VerifyingKey,
    /// Verify one session (plus the ledger), or all.
    pub session: Option<SessionKey>,
    /// The store is being written: an incomplete frame at the very end is an append in flight.
    pub live: bool,
}

/// If a damaged frame still has a readable header, say which record it was.
fn guess_header(buf: &[u8], offset: u64) -> Option<(SessionKey, u64)> {
    let rest = buf.get(offset as usize..)?;
    let (len, _) = frame::frame_header(rest)?;
    let record = rest.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len)?;
    let raw = frame::parse_record(record).ok()?;
    Some((raw.header.session, raw.header.seq))
}

/// Problems of one kind per session, keeping the one at the lowest seq (the first record that
/// is wrong), so that later consequences of one change do not hide where it starts.
#[derive(Default)]
pub struct SessionProblems(BTreeMap<SessionKey, Problem>);

impl SessionProblems {
    /// Records a problem unless one at an earlier (or the same) seq is already known.
    pub fn add(&mut self, s: SessionKey, seq: Option<u64>, kind: ProblemKind, detail: String) {
        let p = Problem {
            session: Some(session_id_string(&s)),
            seq,
            kind,
            detail,
        };
        match self.0.get(&s) {
            Some(old) if old.seq.unwrap_or(0) <= seq.unwrap_or(0) => {}
            _ => {
                self.0.insert(s, p);
            }
        }
    }

    /// Replaces whatever was found: for a finding that explains the others (a back-dated start
    /// makes every later link differ).
    pub fn replace(&mut self, s: SessionKey, seq: Option<u64>, kind: ProblemKind, detail: String) {
        self.0.insert(
            s,
            Problem {
                session: Some(session_id_string(&s)),
                seq,
                kind,
                detail,
            },
        );
    }

    pub fn contains(&self, s: &SessionKey) -> bool {
        self.0.contains_key(s)
    }
}

fn general(kind: ProblemKind, detail: String) -> Problem {
    Problem {
        session: None,
        seq: None,
        kind,
        detail,
    }
}

/// Segment files must be numbered 1, 2, 3... without a gap: proctor never deletes one
/// (compaction rewrites a segment in place), so a gap is a segment removed or renamed.
fn check_numbering(segments: &[u64], out: &mut Vec<Problem>) {
    let mut expected = 1u64;
    for &n in segments {
        if n > expected {
            let what = if n - expected == 1 {
                format!("segment {expected} is absent")
            } else {
                format!("segments {expected} to {} are absent", n - 1)
            };
            out.push(general(
                ProblemKind::SegmentMissing,
                format!(
                    "{what} (segment files run 1, 2, 3... with no gap; the next present is {n})"
                ),
            ));
        }
        expected = n + 1;
    }
}

/// Applies a verified store checkpoint to the chains it signs. A session absent from the
/// store is the ledger's finding (its opened leaf), or retention's doing (archived, purged).
fn store_signed(
    checks: &mut HashMap<SessionKey, ChainCheck>,
    signed: &[ChainPosition],
    problems: &mut SessionProblems,
) {
    for p in signed {
        if let Some(c) = checks.get_mut(&p.session)
            && let Some((seq, kind, detail)) = c.signed_by_store(p.seq, &p.hash)
        {
            problems.add(p.session, Some(seq), kind, detail);
        }
    }
}

/// Deleting the ledger, or cutting it back to its header, must not make a store read as a
/// version-1 store with nothing to cross-check: proctor creates the ledger (with its format
/// leaf) before it writes any record, and records of kinds 66 and 67 exist only in version 2 and
/// later. Reported only when no other ledger finding already explains it.
fn ledger_presence(
    data: &Path,
    absent: bool,
    anchors: &Tracker,
    general_problems: &mut Vec<Problem>,
) {
    if general_problems
        .iter()
        .any(|p| p.kind == ProblemKind::Ledger)
    {
        return;
    }
    if absent {
        general_problems.push(general(
            ProblemKind::Ledger,
            format!(
                "{} is missing (proctor creates it before any record)",
                ledger::ledger_path(data).display()
            ),
        ));
    } else if let (false, Some((s, seq, kind))) = (anchors.format_leaf, anchors.later_record) {
        general_problems.push(general(
            ProblemKind::Ledger,
            format!(
                "the ledger has no format leaf, yet session {} seq {seq} is a record of kind {kind}, which only version 2 and later write: leaves were removed",
                session_id_string(&s)
            ),
        ));
    }
}

pub fn verify_store(data: &Path, opts: &VerifyOptions) -> std::io::Result<Report> {
    let started = Instant::now();
    let key_id = signing::key_id(&opts.key);
    let mut report = Report::default();
    let mut checks: HashMap<SessionKey, ChainCheck> = HashMap::new();
    let mut problems = SessionProblems::default();
    let mut general_problems = Vec::new();
    // The ledger first: proctor appends a leaf only after the records it names are durable in
    // a segment, so segments read afterwards hold everything this ledger covers, even while
    // proctor writes (read the other way round, a session sealed in between looks truncated).
    let ledger_scan = ledger::scan_ledger(&ledger::ledger_path(data))?;
    let mut anchors = Tracker::from_ledger(&ledger_scan);
    // scan_ledger reads a missing file as an empty ledger; an empty file fails its magic.
    let ledger_absent = ledger_scan.file_len == 0 && ledger_scan.problem.is_none();
    let segments = segment::list_segments(data)?;
    let last_segment = segments.last().copied();
    report.segments = segments.len() as u64;
    check_numbering(&segments, &mut general_problems);
    let wanted = |s: &SessionKey| opts.session.is_none_or(|w| w == *s);
    for &number in &segments {
        let path = segment::segment_path(data, number);
        let buf = std::fs::read(&path)?;
        report.bytes += buf.len() as u64;
        match segment::check_header(&buf) {
            Ok(n) if n == number => {}
            Ok(n) => {
                general_problems.push(general(
                    ProblemKind::SegmentMissing,
                    format!(
                        "segment file {number} claims to be segment {n} (files renamed or replaced)"
                    ),
                ));
            }
            Err(what) => {
                general_problems.push(general(
                    ProblemKind::Damaged,
                    format!("segment {number}: {what}"),
                ));
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
                    anchors.kind_seen(s, record.header.seq, record.header.kind);
                    // One session alone is read without the journal, so without the store
                    // checkpoints that may sign its newest records (FORMAT.md, "Store
                    // checkpoints"): its tail is judged from its own signatures.
                    let c = checks.entry(s).or_insert_with(|| {
                        if opts.session.is_some() {
                            ChainCheck::without_store_checkpoints()
                        } else {
                            ChainCheck::new()
                        }
                    });
                    if let Some((seq, kind, detail)) = check_record(c, &record, &opts.key, &key_id)
                    {
                        problems.add(s, Some(seq), kind, detail);
                    } else if let Some((kind, detail)) =
                        external::check_in_store(data, &s, record.header.kind, record.body)
                    {
                        problems.add(s, Some(record.header.seq), kind, detail);
                    }
                    if !c.is_bad() {
                        anchors.record(s, record.header.seq, record.header.ts_ns);
                    }
                    if let Some(signed) = c.store_signed.take() {
                        store_signed(&mut checks, &signed, &mut problems);
                        anchors.store_checkpoint(record.header.seq, &signed);
                    }
                }
                Scanned::Damage { offset, what, .. } => match guess_header(&buf, offset) {
                    Some((s, seq)) => {
                        if !wanted(&s) {
                            continue;
                        }
                        let c = checks.entry(s).or_default();
                        if !c.is_bad() {
                            c.mark_bad();
                            problems.add(
                                s,
                                Some(seq),
                                ProblemKind::Edited,
                                format!("{what} (segment {number}, offset {offset})"),
                            );
                        }
                    }
                    None => general_problems.push(general(
                        ProblemKind::Damaged,
                        format!("segment {number} offset {offset}: {what}"),
                    )),
                },
                Scanned::TornTail { offset, bytes } => {
                    if Some(number) == last_segment {
                        if !opts.live {
                            report.notes.push(format!(
                                "segment {number} ends with {bytes} bytes of an unfinished write at offset {offset} (a crash; never acknowledged); proctor quarantines it at its next start"
                            ));
                        }
                    } else {
                        general_problems.push(general(
                            ProblemKind::Damaged,
                            format!(
                                "segment {number} is cut: {bytes} unreadable bytes at offset {offset}"
                            ),
                        ));
                    }
                }
            }
        }
    }
    for (s, c) in checks.iter_mut() {
        if let Some((seq, kind, detail)) = c.finish() {
            problems.add(*s, Some(seq), kind, detail);
        }
        if let Some((seq, kind, detail)) = c.store_gap_finding() {
            problems.replace(*s, Some(seq), kind, detail);
        }
    }
    crosscheck::verify_ledger(
        ledger_scan,
        opts,
        &key_id,
        &checks,
        &mut problems,
        &mut general_problems,
        &mut report,
    );
    ledger_presence(data, ledger_absent, &anchors, &mut general_problems);
    for s in checks.keys().filter(|s| problems.contains(s)) {
        anchors.drop_chain(s);
    }
    for (s, c) in &checks {
        let id = session_id_string(s);
        let tails = c.unsigned_tails(&id);
        if *s == JOURNAL_SESSION {
            // A broken journal is reported as such; what follows its break is not a tail.
            if problems.contains(s) {
                continue;
            }
            report.unsigned_tails.extend(
                tails
                    .into_iter()
                    .filter(|t| t.sealed_by_recovery || !opts.live),
            );
            continue;
        }
        report.sessions += 1;
        if problems.contains(s) {
            report.tampered += 1;
            continue;
        }
        if c.sealed.is_some() {
            report.sealed += 1;
        } else {
            report.open += 1;
        }
        for t in tails {
            if opts.live && !t.sealed_by_recovery {
                // A session being recorded is signed at least every checkpoint interval.
                continue;
            }
            report.unsigned_tails.push(t);
        }
    }
    report
        .unsigned_tails
        .sort_by(|a, b| (&a.session, a.from_seq).cmp(&(&b.session, b.from_seq)));
    report.problems = general_problems;
    report.problems.extend(problems.0.into_values());
    report.anchors = anchors;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
