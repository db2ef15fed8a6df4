//! The ledger, and the ledger against the chains (FORMAT.md, "What a verifier checks", rules
//! 3 and 4): every leaf covered by a valid tree head, every session accounted for from its
//! first record, and every field of a leaf equal to what the signed records say.

use std::collections::{HashMap, HashSet};

use super::{ChainCheck, Problem, ProblemKind, Report, SessionProblems, VerifyOptions, general};
use crate::recorder::frame::{JOURNAL_SESSION, SessionKey};
use crate::recorder::index::session_id_string;
use crate::recorder::ledger::{
    self, Entry, FORMAT_OPENED_LEAVES, Frontier, LEAF_FORMAT, LEAF_JOURNAL, LEAF_SESSION_ARCHIVED,
    LEAF_SESSION_OPENED, LEAF_SESSION_PURGED, LEAF_SESSION_SEALED, Leaf,
};

/// How long a live store may take to append the leaf that follows a durable record.
const LIVE_GRACE_NS: i64 = 10_000_000_000;

/// What the ledger says about the sessions, leaf by leaf.
#[derive(Default)]
struct Listing<'a> {
    opened: HashMap<SessionKey, &'a Leaf>,
    sealed: HashMap<SessionKey, &'a Leaf>,
    gone: HashMap<SessionKey, &'a Leaf>,
    /// The store journal's checkpoints, in ledger order.
    journal: Vec<&'a Leaf>,
    /// Sessions sealed in the ledger before it required opened leaves (format 1 sessions).
    sealed_before_format: HashSet<SessionKey>,
    /// Whether the ledger has the format leaf that requires an opened leaf for every session.
    opened_required: bool,
}

fn list_leaves<'a>(leaves: &'a [Leaf], general_problems: &mut Vec<Problem>) -> Listing<'a> {
    let mut l = Listing::default();
    for leaf in leaves {
        let id = session_id_string(&leaf.session);
        match leaf.kind {
            LEAF_SESSION_SEALED => {
                if l.sealed.insert(leaf.session, leaf).is_some() {
                    general_problems.push(general(
                        ProblemKind::Ledger,
                        format!("session {id} has a second sealed leaf (a session is sealed once)"),
                    ));
                }
                if !l.opened_required {
                    l.sealed_before_format.insert(leaf.session);
                }
            }
            LEAF_SESSION_OPENED => {
                if l.opened.insert(leaf.session, leaf).is_some() {
                    general_problems.push(general(
                        ProblemKind::Ledger,
                        format!("session {id} has a second opened leaf (a session opens once)"),
                    ));
                }
            }
            LEAF_SESSION_ARCHIVED | LEAF_SESSION_PURGED => {
                l.gone.insert(leaf.session, leaf);
            }
            LEAF_JOURNAL if leaf.session == JOURNAL_SESSION => l.journal.push(leaf),
            LEAF_FORMAT => {
                if leaf.final_seq >= FORMAT_OPENED_LEAVES {
                    l.opened_required = true;
                }
            }
            other => general_problems.push(general(
                ProblemKind::Ledger,
                format!("leaf for session {id} has unknown kind {other}"),
            )),
        }
    }
    l
}

pub(super) fn verify_ledger(
    scan: ledger::LedgerScan,
    opts: &VerifyOptions,
    key_id: &[u8; 32],
    checks: &HashMap<SessionKey, ChainCheck>,
    problems: &mut SessionProblems,
    general_problems: &mut Vec<Problem>,
    report: &mut Report,
) {
    let leaves = read_leaves(scan, opts, key_id, general_problems, report);
    let listing = list_leaves(&leaves, general_problems);
    let wanted = |s: &SessionKey| opts.session.is_none_or(|w| w == *s);
    let gone_note = |s: &SessionKey, report: &mut Report| -> bool {
        let Some(g) = listing.gone.get(s) else {
            return false;
        };
        let what = if g.kind == LEAF_SESSION_ARCHIVED {
            "archived"
        } else {
            "purged"
        };
        report.notes.push(format!(
            "session {} was {what}: {}",
            session_id_string(s),
            g.note
        ));
        true
    };
    for (s, leaf) in &listing.sealed {
        if !wanted(s) {
            continue;
        }
        match checks.get(s) {
            None => {
                if !gone_note(s, report) {
                    problems.add(
                        *s,
                        Some(0),
                        ProblemKind::SessionMissing,
                        format!(
                            "the ledger records this session (agent {}, target {}, sealed at seq {}) but the store has none of its records",
                            leaf.agent, leaf.target, leaf.final_seq
                        ),
                    );
                }
            }
            Some(c) => check_sealed(*s, leaf, c, problems),
        }
    }
    for (s, leaf) in &listing.opened {
        if !wanted(s) {
            continue;
        }
        match checks.get(s) {
            None => {
                if listing.sealed.contains_key(s) || gone_note(s, report) {
                    continue;
                }
                problems.add(
                    *s,
                    Some(0),
                    ProblemKind::SessionMissing,
                    format!(
                        "the ledger records that this session opened (agent {}, target {}) but the store has none of its records",
                        leaf.agent, leaf.target
                    ),
                );
            }
            Some(c) => check_opened(*s, leaf, c, problems),
        }
    }
    if opts.session.is_none() {
        check_journal(&listing.journal, checks.get(&JOURNAL_SESSION), problems);
    }
    for (s, c) in checks {
        if *s == JOURNAL_SESSION || !wanted(s) {
            continue;
        }
        let recent = |ts: i64| opts.live && crate::clock::now_ns() - ts < LIVE_GRACE_NS;
        if let Some((seq, _, sealed_ns)) = c.sealed
            && !listing.sealed.contains_key(s)
        {
            if recent(sealed_ns) {
                report.notes.push(format!(
                    "session {} was sealed moments ago; its ledger entry is being written",
                    session_id_string(s)
                ));
            } else {
                problems.add(
                    *s,
                    Some(seq),
                    ProblemKind::NotInLedger,
                    "the session is sealed but the ledger does not list it (proctor adds it at restart after a crash; otherwise it was inserted)".into(),
                );
            }
        }
        if listing.opened_required
            && !listing.opened.contains_key(s)
            && !listing.sealed_before_format.contains(s)
        {
            if c.started_ns.is_some_and(recent) {
                continue;
            }
            problems.add(
                *s,
                Some(0),
                ProblemKind::NotInLedger,
                "the ledger has no opened leaf for this session (every session is listed from its first record; it was inserted)".into(),
            );
        }
    }
    if let Some(s) = opts.session
        && !checks.contains_key(&s)
        && !listing.sealed.contains_key(&s)
        && !listing.opened.contains_key(&s)
    {
        general_problems.push(Problem {
            session: Some(session_id_string(&s)),
            seq: None,
            kind: ProblemKind::SessionMissing,
            detail: "no such session in the store or the ledger".into(),
        });
    }
}

/// Reads every leaf and tree head: numbering, roots, keys, signatures, dates.
fn read_leaves(
    scan: ledger::LedgerScan,
    opts: &VerifyOptions,
    key_id: &[u8; 32],
    general_problems: &mut Vec<Problem>,
    report: &mut Report,
) -> Vec<Leaf> {
    let ledger_problem = |detail: String| general(ProblemKind::Ledger, detail);
    if let Some((off, what)) = &scan.problem {
        general_problems.push(ledger_problem(format!("offset {off}: {what}")));
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
    let mut mismatched = 0u64;
    let mut first_mismatch = 0usize;
    let mut misnumbered = 0u64;
    let mut first_misnumbered = 0usize;
    for (off, entry) in scan.entries {
        match entry {
            Entry::Leaf { index, data } => {
                if index != frontier.size() {
                    if misnumbered == 0 {
                        general_problems.push(ledger_problem(format!(
                            "offset {off}: leaf numbered {index} where leaf {} was expected (a leaf removed or inserted before it)",
                            frontier.size()
                        )));
                        first_misnumbered = general_problems.len() - 1;
                    }
                    misnumbered += 1;
                }
                frontier.push(ledger::leaf_hash(&data));
                match Leaf::decode(&data) {
                    Ok(leaf) => {
                        if leaf.logged_ns < last_logged {
                            general_problems.push(ledger_problem(format!(
                                "leaf {index} (session {}) is dated before the leaf preceding it",
                                session_id_string(&leaf.session)
                            )));
                        }
                        last_logged = leaf.logged_ns;
                        leaves.push(leaf);
                    }
                    Err(e) => general_problems
                        .push(ledger_problem(format!("leaf {index} is malformed: {e}"))),
                }
            }
            Entry::TreeHead(th) => {
                report.tree_heads += 1;
                if th.size != frontier.size() || th.root != frontier.root() {
                    // The first one says where; every later head fails for the same reason.
                    if mismatched == 0 {
                        general_problems.push(ledger_problem(format!(
                            "tree head for size {} does not match the leaves before it (leaves edited, removed or inserted)",
                            th.size
                        )));
                        first_mismatch = general_problems.len() - 1;
                    }
                    mismatched += 1;
                } else if &th.key_id != key_id {
                    general_problems.push(ledger_problem(format!(
                        "tree head for size {} signed by key {} which is not the recorder key",
                        th.size,
                        &hex::encode(th.key_id)[..16]
                    )));
                } else if !th.verify(&opts.key) {
                    general_problems.push(ledger_problem(format!(
                        "tree head for size {} has an invalid signature",
                        th.size
                    )));
                } else {
                    covered = th.size;
                }
                if th.ts_ns < last_head_ts {
                    general_problems.push(ledger_problem(format!(
                        "tree head for size {} is dated before an earlier tree head",
                        th.size
                    )));
                }
                last_head_ts = th.ts_ns;
            }
        }
    }
    report.ledger_leaves = frontier.size();
    if mismatched > 1
        && let Some(p) = general_problems.get_mut(first_mismatch)
    {
        p.detail.push_str(&format!(
            "; the {} tree heads after it do not match either",
            mismatched - 1
        ));
    }
    if misnumbered > 1
        && let Some(p) = general_problems.get_mut(first_misnumbered)
    {
        p.detail.push_str(&format!(
            "; the {} leaves after it are misnumbered too",
            misnumbered - 1
        ));
    }
    if covered < frontier.size() && mismatched == 0 {
        let uncovered = frontier.size() - covered;
        // On a running bastion the append of leaves and their head is one write, which a
        // reader can see half done (the leaves, not yet the head): an unfinished append, like
        // a torn tail, when every uncovered leaf was logged moments ago.
        let tail = usize::try_from(uncovered)
            .ok()
            .and_then(|n| leaves.len().checked_sub(n))
            .map(|from| &leaves[from..]);
        let now = crate::clock::now_ns();
        let being_written =
            opts.live && tail.is_some_and(|t| t.iter().all(|l| now - l.logged_ns < LIVE_GRACE_NS));
        if being_written {
            report.notes.push(format!(
                "{uncovered} ledger leaves were logged moments ago; their tree head is being written"
            ));
        } else {
            general_problems.push(ledger_problem(format!(
                "{uncovered} ledger leaves are not covered by a valid signed tree head"
            )));
        }
    }
    leaves
}

/// A start that differs from the ledger's is back-dated, whatever else differs: every later
/// link changes with it, so it is the finding that explains the others.
fn check_start(s: SessionKey, leaf: &Leaf, c: &ChainCheck, problems: &mut SessionProblems) -> bool {
    match c.started_ns {
        Some(ts) if ts != leaf.started_ns => {
            problems.replace(
                s,
                Some(0),
                ProblemKind::BackDated,
                format!(
                    "the session start is dated {ts} ns; the ledger recorded {} ns",
                    leaf.started_ns
                ),
            );
            true
        }
        _ => false,
    }
}

/// The leaf's agent and target are those of the signed session_start record.
fn check_names(s: SessionKey, leaf: &Leaf, c: &ChainCheck, problems: &mut SessionProblems) {
    if c.start.is_some() && (leaf.agent != c.agent() || leaf.target != c.target()) {
        problems.add(
            s,
            Some(0),
            ProblemKind::Metadata,
            format!(
                "the ledger names agent {:?} target {:?}; the session_start record says agent {:?} target {:?}",
                leaf.agent,
                leaf.target,
                c.agent(),
                c.target()
            ),
        );
    }
}

fn check_sealed(s: SessionKey, leaf: &Leaf, c: &ChainCheck, problems: &mut SessionProblems) {
    if check_start(s, leaf, c, problems) || c.is_bad() {
        return;
    }
    match c.sealed {
        None => problems.add(
            s,
            Some(c.records),
            ProblemKind::Truncated,
            format!(
                "the ledger records a seal at seq {}; the store's chain ends at seq {}",
                leaf.final_seq,
                c.records.saturating_sub(1)
            ),
        ),
        Some((seq, hash, sealed_ns)) => {
            if seq != leaf.final_seq || hash != leaf.final_hash {
                problems.add(
                    s,
                    Some(seq.min(leaf.final_seq)),
                    ProblemKind::Replaced,
                    format!(
                        "the ledger records the seal at seq {} with hash {}; the store has seq {seq} with hash {}",
                        leaf.final_seq,
                        &hex::encode(leaf.final_hash)[..16],
                        &hex::encode(hash)[..16]
                    ),
                );
                return;
            }
            check_names(s, leaf, c, problems);
            let outcome = c.end.as_ref().map_or("", |e| e.outcome.as_str());
            if leaf.outcome != outcome || leaf.ended_ns != sealed_ns {
                problems.add(
                    s,
                    Some(seq),
                    ProblemKind::Metadata,
                    format!(
                        "the ledger records outcome {:?} ended at {} ns; the signed records say {outcome:?} at {sealed_ns} ns",
                        leaf.outcome, leaf.ended_ns
                    ),
                );
            }
        }
    }
}

fn check_opened(s: SessionKey, leaf: &Leaf, c: &ChainCheck, problems: &mut SessionProblems) {
    if check_start(s, leaf, c, problems) || c.is_bad() {
        return;
    }
    match c.start_hash {
        Some(h) if h == leaf.final_hash && leaf.final_seq == 0 => check_names(s, leaf, c, problems),
        Some(_) => problems.add(
            s,
            Some(0),
            ProblemKind::Replaced,
            "the session_start record differs from the one the ledger recorded when the session opened".into(),
        ),
        // A chain without a verified session_start is reported by the chain check.
        None => {}
    }
}

/// The journal reaches every checkpoint the ledger anchored, each with the anchored hash.
fn check_journal(leaves: &[&Leaf], c: Option<&ChainCheck>, problems: &mut SessionProblems) {
    let Some(last) = leaves.iter().max_by_key(|l| l.final_seq) else {
        return;
    };
    let Some(c) = c else {
        problems.add(
            JOURNAL_SESSION,
            Some(0),
            ProblemKind::SessionMissing,
            format!(
                "the ledger anchors the store journal up to seq {}, but the store has none of it",
                last.final_seq
            ),
        );
        return;
    };
    if c.is_bad() {
        return;
    }
    for leaf in leaves {
        let found = c
            .journal_checkpoints
            .iter()
            .find(|(seq, _)| *seq == leaf.final_seq);
        match found {
            Some((_, h)) if *h == leaf.final_hash => {}
            Some(_) => problems.add(
                JOURNAL_SESSION,
                Some(leaf.final_seq),
                ProblemKind::Replaced,
                format!(
                    "the journal's checkpoint at seq {} differs from the one the ledger anchored",
                    leaf.final_seq
                ),
            ),
            None if leaf.final_seq >= c.records => problems.add(
                JOURNAL_SESSION,
                Some(c.records),
                ProblemKind::Truncated,
                format!(
                    "the ledger anchors the journal at seq {}; the journal ends at seq {}",
                    leaf.final_seq,
                    c.records.saturating_sub(1)
                ),
            ),
            None => problems.add(
                JOURNAL_SESSION,
                Some(leaf.final_seq),
                ProblemKind::Replaced,
                format!(
                    "the ledger anchors a journal checkpoint at seq {} where the journal has none",
                    leaf.final_seq
                ),
            ),
        }
    }
}
