//! Rollbacks and forks of the ledger (FORMAT.md, "Known heads"): RFC 6962/9162 consistency
//! proofs between two tree heads, and the check of a store against a tree head an auditor saved
//! earlier (`proctor verify --known-head`).

use std::io;
use std::path::Path;

use ed25519_dalek::VerifyingKey;

use super::ledger::{self, Entry, Frontier, TreeHead, node_hash, root_of};
use super::signing;
use super::verify::{Problem, ProblemKind};

/// Largest power of two strictly less than `n` (n >= 2).
fn split_point(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

fn subproof(m: usize, leaves: &[[u8; 32]], complete: bool, out: &mut Vec<[u8; 32]>) {
    let n = leaves.len();
    if m == n {
        if !complete {
            out.push(root_of(leaves));
        }
        return;
    }
    let k = split_point(n);
    if m <= k {
        subproof(m, &leaves[..k], complete, out);
        out.push(root_of(&leaves[k..]));
    } else {
        subproof(m - k, &leaves[k..], false, out);
        out.push(root_of(&leaves[..k]));
    }
}

/// The consistency proof from the tree of the first `m` leaves to the tree of all of them
/// (RFC 6962 section 2.1.2). Empty when `m` is 0 or not smaller than the tree.
pub fn consistency_proof(leaves: &[[u8; 32]], m: usize) -> Vec<[u8; 32]> {
    let mut out = Vec::new();
    if m == 0 || m >= leaves.len() {
        return out;
    }
    subproof(m, leaves, true, &mut out);
    out
}

/// Verifies a consistency proof between a tree of `first` leaves with root `first_root` and a
/// tree of `second` leaves with root `second_root` (RFC 9162 section 2.1.4.2).
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &[u8; 32],
    second_root: &[u8; 32],
    proof: &[[u8; 32]],
) -> bool {
    if first == 0 || first > second {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    let mut path: Vec<[u8; 32]> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let Some((&start, rest)) = path.split_first() else {
        return false;
    };
    let mut fn_ = first - 1;
    let mut sn = second - 1;
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (start, start);
    for c in rest {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    fr == *first_root && sr == *second_root && sn == 0
}

/// The ledger's leaf hashes and its latest tree head, from the file alone.
pub fn read_ledger(data: &Path) -> io::Result<(Vec<[u8; 32]>, Option<TreeHead>)> {
    let scan = ledger::scan_ledger(&ledger::ledger_path(data))?;
    let mut leaves = Vec::new();
    let mut head = None;
    for (_, e) in scan.entries {
        match e {
            Entry::Leaf { data, .. } => leaves.push(ledger::leaf_hash(&data)),
            Entry::TreeHead(th) => head = Some(th),
        }
    }
    Ok((leaves, head))
}

fn rolled_back(detail: String) -> Problem {
    Problem {
        session: None,
        seq: None,
        kind: ProblemKind::RolledBack,
        detail,
    }
}

/// Checks that the store's ledger extends `known`, a tree head saved earlier (signed by `key`):
/// it has at least as many leaves, and its first `known.size` leaves have `known.root`.
pub fn check_known_head(
    data: &Path,
    key: &VerifyingKey,
    known: &TreeHead,
) -> io::Result<Option<Problem>> {
    if known.key_id != signing::key_id(key) || !known.verify(key) {
        return Ok(Some(Problem {
            session: None,
            seq: None,
            kind: ProblemKind::BadSignature,
            detail: format!(
                "the known tree head (size {}) is not signed by the recorder key",
                known.size
            ),
        }));
    }
    let (leaves, _) = read_ledger(data)?;
    let when = crate::clock::format_ns(known.ts_ns);
    let Ok(size) = usize::try_from(known.size) else {
        return Ok(Some(rolled_back(
            "the known tree head's size is impossible".into(),
        )));
    };
    if leaves.len() < size {
        return Ok(Some(rolled_back(format!(
            "the ledger has {} leaves; the tree head signed at {when} covered {size}: leaves were removed (the store was rolled back)",
            leaves.len()
        ))));
    }
    let mut frontier = Frontier::default();
    for h in &leaves[..size] {
        frontier.push(*h);
    }
    if frontier.root() != known.root {
        return Ok(Some(rolled_back(format!(
            "the ledger's first {size} leaves are not those the tree head signed at {when} covered (rewritten or forked)"
        ))));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<[u8; 32]> {
        (0..n)
            .map(|i| ledger::leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn consistency_proofs_verify_and_reject_a_different_history() {
        for n in 2..24usize {
            let all = leaves(n);
            let root_n = root_of(&all);
            for m in 1..n {
                let root_m = root_of(&all[..m]);
                let proof = consistency_proof(&all, m);
                assert!(
                    verify_consistency(m as u64, n as u64, &root_m, &root_n, &proof),
                    "m={m} n={n}"
                );
                let mut forked = all.clone();
                forked[m - 1] = ledger::leaf_hash(b"forged");
                let forked_root = root_of(&forked[..m]);
                assert!(
                    !verify_consistency(m as u64, n as u64, &forked_root, &root_n, &proof),
                    "fork accepted m={m} n={n}"
                );
            }
        }
    }
}
