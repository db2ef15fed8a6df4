//! `proctor verify-bucket`: verifies the evidence in a bucket with only the recorder's public
//! key. Downloads every object (optionally keeping the copies), then checks: each tree head's
//! signature; leaves numbered 0..n with none missing; each head's root over its leaves; a
//! bundle for every sealed leaf, each verifying under the key and carrying that very leaf.

use std::collections::BTreeMap;
use std::path::Path;

use ed25519_dalek::VerifyingKey;
use serde::Serialize;

use super::client::{S3, describe};
use crate::recorder::ledger::{self, Frontier, Leaf, TreeHead};

#[derive(Debug, Default, Serialize)]
pub struct BucketReport {
    pub objects: usize,
    pub leaves: u64,
    pub heads: usize,
    pub sessions: usize,
    pub attestations: usize,
    /// The newest head's size (0 without one).
    pub tree_size: u64,
    pub problems: Vec<String>,
}

/// Every object's key and bytes.
pub async fn download(s3: &S3, keep: Option<&Path>) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let mut out = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let page = s3
            .client
            .list_objects_v2()
            .bucket(&s3.bucket)
            .set_continuation_token(token.clone())
            .send()
            .await
            .map_err(|e| format!("listing {}: {}", s3.bucket, describe(&e).1))?;
        for o in page.contents() {
            let Some(key) = o.key() else { continue };
            let got = s3
                .client
                .get_object()
                .bucket(&s3.bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| format!("GET {key}: {}", describe(&e).1))?;
            let bytes = got
                .body
                .collect()
                .await
                .map_err(|e| format!("GET {key}: {e}"))?
                .into_bytes()
                .to_vec();
            if let Some(dir) = keep {
                // Keys are proctor's own names (FORMAT.md); anything else is not written out.
                if key
                    .split('/')
                    .all(|p| !p.is_empty() && p != "." && p != "..")
                {
                    let path = dir.join(key);
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                    }
                    std::fs::write(&path, &bytes)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                }
            }
            out.insert(key.to_string(), bytes);
        }
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
            _ => break,
        }
    }
    Ok(out)
}

/// Checks downloaded objects against the pinned key.
pub fn check(objects: &BTreeMap<String, Vec<u8>>, key: &VerifyingKey) -> BucketReport {
    let mut r = BucketReport {
        objects: objects.len(),
        ..Default::default()
    };
    let mut leaves: BTreeMap<u64, &[u8]> = BTreeMap::new();
    let mut heads: Vec<TreeHead> = Vec::new();
    for (k, v) in objects {
        if let Some(n) = k.strip_prefix("ledger/leaves/") {
            match n.parse::<u64>() {
                Ok(i) if n.len() == 16 => {
                    leaves.insert(i, v);
                }
                _ => r.problems.push(format!("{k}: not a leaf name")),
            }
        } else if let Some(n) = k.strip_prefix("ledger/heads/") {
            match TreeHead::decode(v) {
                Ok(h) if format!("{:016}-{:020}", h.size, h.ts_ns) != n => r
                    .problems
                    .push(format!("{k}: name does not match the head inside")),
                Ok(h) if !h.verify(key) => r
                    .problems
                    .push(format!("{k}: tree head signature is not the pinned key's")),
                Ok(h) => heads.push(h),
                Err(e) => r.problems.push(format!("{k}: {e}")),
            }
        } else if k.starts_with("ledger/attestations/") {
            r.attestations += 1;
        } else if !k.starts_with("sessions/") {
            r.problems
                .push(format!("{k}: not an object proctor writes"));
        }
    }
    r.heads = heads.len();
    heads.sort_by_key(|h| (h.size, h.ts_ns));
    let newest = heads.last().map_or(0, |h| h.size);
    r.tree_size = newest;
    // Leaves 0..newest must all be there; the head that covers them says so.
    let mut frontier = Frontier::default();
    let mut hi = heads.iter().peekable();
    while let Some(h) = hi.peek()
        && h.size == 0
    {
        if h.root != ledger::empty_root() {
            r.problems.push("head of size 0 has a wrong root".into());
        }
        hi.next();
    }
    let count = leaves.keys().next_back().map_or(0, |m| m + 1).max(newest);
    for i in 0..count {
        let Some(data) = leaves.get(&i) else {
            r.problems.push(format!(
                "ledger/leaves/{i:016}: missing (the heads cover it)"
            ));
            // Roots past a hole cannot be checked.
            break;
        };
        frontier.push(ledger::leaf_hash(data));
        r.leaves += 1;
        while let Some(h) = hi.peek()
            && h.size == i + 1
        {
            if h.root != frontier.root() {
                r.problems.push(format!(
                    "tree head of size {}: root does not match the leaves",
                    h.size
                ));
            }
            hi.next();
        }
        if let Ok(leaf) = Leaf::decode(data)
            && leaf.kind == 1
        {
            r.sessions += 1;
            session(objects, i, data, &leaf, key, &mut r.problems);
        }
    }
    if newest == 0 && leaves.is_empty() {
        r.problems.push("no ledger in the bucket".into());
    }
    r
}

/// The bundle of the session sealed by leaf `i`.
fn session(
    objects: &BTreeMap<String, Vec<u8>>,
    i: u64,
    data: &[u8],
    leaf: &Leaf,
    key: &VerifyingKey,
    problems: &mut Vec<String>,
) {
    let id = crate::recorder::index::session_id_string(&leaf.session);
    let name = super::collect::bundle_key(&id);
    let Some(bytes) = objects.get(&name) else {
        problems.push(format!("{name}: missing (sealed by ledger leaf {i})"));
        return;
    };
    match crate::export::bundle::verify_bundle(bytes, Some(key)) {
        Ok(rep) => {
            for p in rep.problems {
                problems.push(format!("{name}: {p}"));
            }
        }
        Err(e) => problems.push(format!("{name}: {e}")),
    }
    match crate::export::bundle::read_manifest(bytes) {
        Ok((m, _)) if m.leaf_index != i || m.leaf_data != hex::encode(data) => problems.push(
            format!("{name}: its leaf is not ledger leaf {i} in the bucket"),
        ),
        Ok(_) => {}
        Err(e) => problems.push(format!("{name}: {e}")),
    }
}
