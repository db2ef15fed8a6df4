//! What of a bundle's session is anchored outside the host (FORMAT.md, "Anchoring", "In a
//! bundle"). A bundle holds one sealed session, its sealed leaf with the audit path to the
//! bundle's tree head, and timestamp tokens over heads that tree head extends. The tree head
//! itself is signed by the host's key, so it anchors nothing on its own: the session is pinned
//! outside the host when an outside head (a token that checks out, or a `--known-head` linked
//! to the bundle's head) covers the sealed leaf, i.e. its size is above `leaf_index`. Then the
//! whole session is anchored (the leaf names its seal); otherwise nothing is (a bundle carries
//! no opened leaf and no journal anchor for its store checkpoint).

use serde::Serialize;

use super::anchoring::{AnchorGap, AnchorSource};
use super::{Problem, ProblemKind};
use crate::recorder::consistency::verify_consistency;
use crate::recorder::ledger::TreeHead;

/// `anchoring` in `verify --bundle --json`.
#[derive(Debug, Clone, Serialize)]
pub struct BundleAnchoring {
    /// The outside anchors that checked out.
    pub sources: Vec<AnchorSource>,
    /// The sealed leaf's number, and the size of the bundle's own tree head.
    pub leaf_index: u64,
    pub tree_size: u64,
    /// The session's anchored prefix (the whole session, or nothing); null when the bundle has
    /// a problem other than *timestamp* (it has failed already).
    pub session: Option<AnchorGap>,
    /// Whether an outside head covers the sealed leaf (and so the whole session).
    pub anchored_whole: bool,
    /// A `--known-head` that could not be linked to the bundle's head, said why.
    pub notes: Vec<String>,
}

/// The seal as the bundle's (verified) sealed leaf names it.
pub struct SealedLeaf {
    pub session: String,
    pub leaf_index: u64,
    pub final_seq: u64,
    pub ended_ns: i64,
}

impl BundleAnchoring {
    /// `failed`: the bundle has a problem other than *timestamp*.
    pub fn new(
        sources: Vec<AnchorSource>,
        leaf: &SealedLeaf,
        tree_size: u64,
        failed: bool,
    ) -> Self {
        let whole = sources.iter().any(|s| s.tree_size > leaf.leaf_index);
        let session = (!failed).then(|| AnchorGap {
            session: leaf.session.clone(),
            anchored_to_seq: whole.then_some(leaf.final_seq),
            anchored_ts_ns: whole.then_some(leaf.ended_ns),
            last_seq: leaf.final_seq,
            last_ts_ns: leaf.ended_ns,
            unanchored_records: if whole { 0 } else { leaf.final_seq + 1 },
        });
        BundleAnchoring {
            sources,
            leaf_index: leaf.leaf_index,
            tree_size,
            anchored_whole: whole && !failed,
            session,
            notes: Vec::new(),
        }
    }

    pub fn text(&self, t: &mut String) {
        use std::fmt::Write as _;
        let fmt = crate::clock::format_ns;
        for n in &self.notes {
            let _ = writeln!(t, "note: {n}");
        }
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
        let Some(g) = &self.session else {
            return;
        };
        if self.anchored_whole {
            let _ = writeln!(
                t,
                "ANCHORED session {}: the whole session, to its seal at seq {} ({}): its sealed leaf {} is under an outside head",
                g.session,
                g.last_seq,
                fmt(g.last_ts_ns),
                self.leaf_index
            );
        } else if self.sources.is_empty() {
            let _ = writeln!(
                t,
                "NOT ANCHORED outside the host: no timestamp token checked (--tsa-cert) and no --known-head; the {} record(s) of session {}, to seq {} ({}), and the bundle's tree head are signed only with the host's key",
                g.unanchored_records,
                g.session,
                g.last_seq,
                fmt(g.last_ts_ns)
            );
        } else {
            let _ = writeln!(
                t,
                "NOT ANCHORED session {}: nothing anchored (no outside head covers its sealed leaf {}); the {} record(s), to seq {} ({}), are signed only with the host's key",
                g.session,
                self.leaf_index,
                g.unanchored_records,
                g.last_seq,
                fmt(g.last_ts_ns)
            );
        }
    }
}

/// What a `--known-head` says about a bundle whose tree head is `bundle_head`.
pub enum KnownHeadUse {
    /// Linked to the bundle's head: an anchor of its size.
    Anchor(AnchorSource),
    /// Not signed by the key, or not consistent with the bundle's head (a fork).
    Problem(Problem),
    /// Cannot be linked with what the bundle and the file carry: a note, no anchor.
    Unlinked(String),
}

/// A `--known-head` against a bundle (FORMAT.md, "Anchoring"): the same head as the bundle's,
/// or a later one carrying `consistency_from` = the bundle head's size and a consistency proof
/// from it (`proctor ledger head --from N`).
pub fn known_head_for_bundle(
    known: &TreeHead,
    proof: Option<(u64, Vec<[u8; 32]>)>,
    bundle_head: &TreeHead,
    key: &ed25519_dalek::VerifyingKey,
    session: &str,
) -> KnownHeadUse {
    let problem = |kind, detail: String| {
        KnownHeadUse::Problem(Problem {
            session: Some(session.to_string()),
            seq: None,
            kind,
            detail,
        })
    };
    if known.key_id != crate::recorder::signing::key_id(key) || !known.verify(key) {
        return problem(
            ProblemKind::BadSignature,
            format!(
                "the known tree head (size {}) is not signed by the recorder key",
                known.size
            ),
        );
    }
    let anchor = KnownHeadUse::Anchor(AnchorSource {
        kind: "known_head".into(),
        tree_size: known.size,
        tree_head_ts_ns: known.ts_ns,
        gen_time_ns: None,
    });
    if known.size == bundle_head.size {
        if known.root == bundle_head.root {
            return anchor;
        }
        return problem(
            ProblemKind::RolledBack,
            format!(
                "the known tree head of size {} has another root than the bundle's (forked)",
                known.size
            ),
        );
    }
    if known.size < bundle_head.size {
        return KnownHeadUse::Unlinked(format!(
            "the known tree head (size {}) is older than the bundle's (size {}), which carries no consistency proof from it: not used as an anchor",
            known.size, bundle_head.size
        ));
    }
    match proof {
        Some((from, p)) if from == bundle_head.size => {
            if verify_consistency(
                bundle_head.size,
                known.size,
                &bundle_head.root,
                &known.root,
                &p,
            ) {
                anchor
            } else {
                problem(
                    ProblemKind::RolledBack,
                    format!(
                        "the known tree head (size {}) does not extend the bundle's (size {}): its consistency proof fails (forked)",
                        known.size, bundle_head.size
                    ),
                )
            }
        }
        _ => KnownHeadUse::Unlinked(format!(
            "the known tree head (size {}) carries no consistency proof from the bundle's head (size {}; make it with `proctor ledger head --from {}`): not used as an anchor",
            known.size, bundle_head.size, bundle_head.size
        )),
    }
}
