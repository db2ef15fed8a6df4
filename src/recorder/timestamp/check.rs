//! Checking attestations (FORMAT.md, "Attestations"): each RFC 3161 token's signature, chain
//! and imprint, and that the tree head it covers is a prefix of the verified ledger (the Merkle
//! root of the store's first `size` leaves, or an RFC 6962 consistency proof in a bundle). Tree
//! heads after the newest valid token are a named gap, not a failure. Also the lag
//! `proctor ledger head` shows.

use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

use super::{Attestation, TYPE_RFC3161, imprint, token};
use crate::recorder::consistency::{self, verify_consistency};
use crate::recorder::ledger::{self, Entry, Frontier, TreeHead};
use crate::recorder::signing;
use crate::recorder::verify::{Problem, ProblemKind};

/// One token that checked out.
#[derive(Debug, Clone, Serialize)]
pub struct GoodToken {
    pub issuer: String,
    pub tree_size: u64,
    pub tree_head_ts_ns: i64,
    pub gen_time: String,
    pub gen_time_ns: i64,
    pub signer: String,
    pub policy: String,
}

/// Tree heads that no valid token covers: everything after `since_size` leaves.
#[derive(Debug, Clone, Serialize)]
pub struct Gap {
    pub since_size: u64,
    pub newest_size: u64,
    /// The first tree head without a token, and the newest.
    pub first_ts_ns: i64,
    pub newest_ts_ns: i64,
}

impl std::fmt::Display for Gap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "since tree size {}: the tree heads up to size {} ({} to {}) have no valid timestamp token",
            self.since_size,
            self.newest_size,
            crate::clock::format_ns(self.first_ts_ns),
            crate::clock::format_ns(self.newest_ts_ns)
        )
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TimestampReport {
    pub tokens: Vec<GoodToken>,
    pub problems: Vec<Problem>,
    pub not_timestamped: Option<Gap>,
    pub notes: Vec<String>,
}

/// A bundle's attestation: the tree head it covers is proved a prefix of the bundle's head.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleAttestation {
    #[serde(flatten)]
    pub attestation: Attestation,
    /// RFC 6962 consistency proof from the attested head to the bundle's `tree_head` (hex).
    pub consistency_proof: Vec<String>,
}

fn problem(detail: String) -> Problem {
    Problem {
        session: None,
        seq: None,
        kind: ProblemKind::Timestamp,
        detail,
    }
}

/// Reads PEM certificates (`--tsa-cert`, repeatable; a file may hold several).
pub fn load_certs(paths: &[std::path::PathBuf]) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls_pki_types::pem::PemObject as _;
    let mut out = Vec::new();
    for p in paths {
        let certs = CertificateDer::pem_file_iter(p)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{}: {e}", p.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no PEM certificate", p.display()));
        }
        out.extend(certs);
    }
    Ok(out)
}

/// Checks one attestation whose head `prefix_ok` says is consistent with the verified ledger.
fn check_one(
    a: &Attestation,
    name: &str,
    key: &VerifyingKey,
    trusted: &[CertificateDer<'static>],
    prefix_ok: impl FnOnce(&TreeHead) -> Result<(), String>,
    report: &mut TimestampReport,
) -> Option<GoodToken> {
    if a.kind != TYPE_RFC3161 {
        report.notes.push(format!(
            "{name}: attestation type {:?} is not checked by this verifier",
            a.kind
        ));
        return None;
    }
    let Some(head) = a.tree_head.to_head() else {
        report.problems.push(problem(format!(
            "{name}: the attested tree head is malformed"
        )));
        return None;
    };
    if head.key_id != signing::key_id(key) || !head.verify(key) {
        report.problems.push(problem(format!(
            "{name}: the attested tree head (size {}) is not signed by the recorder key",
            head.size
        )));
        return None;
    }
    if let Err(why) = prefix_ok(&head) {
        report.problems.push(problem(format!(
            "{name}: the attested tree head (size {}) is not part of this ledger: {why}",
            head.size
        )));
        return None;
    }
    let Some(der) = a.token_der() else {
        report
            .problems
            .push(problem(format!("{name}: the token is not base64")));
        return None;
    };
    match token::check(&der, &imprint(&head), None, trusted) {
        Ok(c) => Some(GoodToken {
            issuer: a.issuer.clone(),
            tree_size: head.size,
            tree_head_ts_ns: head.ts_ns,
            gen_time: c.gen_time,
            gen_time_ns: c.gen_time_ns,
            signer: c.signer,
            policy: c.policy,
        }),
        Err(e) => {
            report.problems.push(problem(format!(
                "{name}: token from {} over the tree head of size {}: {e}",
                a.issuer, head.size
            )));
            None
        }
    }
}

/// The store's tree heads (in order) and leaf hashes.
fn heads_and_leaves(data: &Path) -> std::io::Result<(Vec<TreeHead>, Vec<[u8; 32]>)> {
    let scan = ledger::scan_ledger(&ledger::ledger_path(data))?;
    let mut heads = Vec::new();
    let mut leaves = Vec::new();
    for (_, e) in scan.entries {
        match e {
            Entry::Leaf { data, .. } => leaves.push(ledger::leaf_hash(&data)),
            Entry::TreeHead(th) => heads.push(th),
        }
    }
    Ok((heads, leaves))
}

fn gap(heads: &[TreeHead], covered: u64) -> Option<Gap> {
    let newest = heads.last()?;
    if newest.size <= covered {
        return None;
    }
    let first = heads.iter().find(|h| h.size > covered)?;
    Some(Gap {
        since_size: covered,
        newest_size: newest.size,
        first_ts_ns: first.ts_ns,
        newest_ts_ns: newest.ts_ns,
    })
}

/// Checks every attestation in the store against the pinned key and trusted TSA certificates.
pub fn check_store(
    data: &Path,
    key: &VerifyingKey,
    trusted: &[CertificateDer<'static>],
) -> std::io::Result<TimestampReport> {
    let (heads, leaves) = heads_and_leaves(data)?;
    let mut report = TimestampReport::default();
    let mut covered = 0u64;
    let files = super::list(data)?;
    // The roots of the ledger's prefixes that attestations name, in one pass over the leaves
    // (a token a minute for years must not make verify quadratic).
    let mut wanted: Vec<u64> = files
        .iter()
        .filter_map(|(_, a)| a.as_ref().ok().map(|a| a.tree_head.size))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut roots = std::collections::HashMap::new();
    let mut frontier = Frontier::default();
    let mut next = wanted.iter().peekable();
    while next.peek() == Some(&&0) {
        next.next();
    }
    for h in &leaves {
        frontier.push(*h);
        if next.peek() == Some(&&frontier.size()) {
            roots.insert(frontier.size(), frontier.root());
            next.next();
        }
    }
    for (path, parsed) in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let a = match parsed {
            Ok(a) => a,
            Err(e) => {
                report
                    .problems
                    .push(problem(format!("{name}: unreadable attestation: {e}")));
                continue;
            }
        };
        let prefix = |head: &TreeHead| match roots.get(&head.size) {
            None => Err(format!(
                "the ledger has {} leaves, not {}",
                leaves.len(),
                head.size
            )),
            Some(root) if *root != head.root => Err(format!(
                "the ledger's first {} leaves have another root (a token over a different head)",
                head.size
            )),
            Some(_) => Ok(()),
        };
        if let Some(t) = check_one(&a, &name, key, trusted, prefix, &mut report) {
            covered = covered.max(t.tree_size);
            report.tokens.push(t);
        }
    }
    report.not_timestamped = gap(&heads, covered);
    Ok(report)
}

/// The attestations a bundle carries: for each issuer, its newest one over a head no larger
/// than `head`, with the consistency proof to `head`.
pub fn for_bundle(data: &Path, head: &TreeHead) -> std::io::Result<Vec<BundleAttestation>> {
    let (_, leaves) = heads_and_leaves(data)?;
    let n = usize::try_from(head.size)
        .unwrap_or(usize::MAX)
        .min(leaves.len());
    // Names sort by size, so the last one kept per type and issuer is its newest; only those
    // are read.
    let mut newest: std::collections::BTreeMap<(String, String), PathBuf> = Default::default();
    for named in super::names(data)? {
        if named.size > 0 && named.size <= head.size {
            newest.insert((named.kind, named.issuer_id), named.path);
        }
    }
    Ok(newest
        .into_values()
        .filter_map(|p| {
            std::fs::read(p)
                .ok()
                .and_then(|b| serde_json::from_slice::<Attestation>(&b).ok())
                .filter(|a| a.tree_head.size > 0 && a.tree_head.size <= head.size)
        })
        .map(|a| {
            let m = usize::try_from(a.tree_head.size).unwrap_or(usize::MAX);
            let proof = if m <= n {
                consistency::consistency_proof(&leaves[..n], m)
            } else {
                Vec::new()
            };
            BundleAttestation {
                attestation: a,
                consistency_proof: proof.iter().map(hex::encode).collect(),
            }
        })
        .collect())
}

/// Checks a bundle's attestations against its (already verified) tree head `head`.
pub fn check_bundle(
    attestations: &[BundleAttestation],
    head: &TreeHead,
    key: &VerifyingKey,
    trusted: &[CertificateDer<'static>],
) -> TimestampReport {
    let mut report = TimestampReport::default();
    let mut covered = 0u64;
    for (i, b) in attestations.iter().enumerate() {
        let name = format!("bundle attestation {i}");
        let proof: Option<Vec<[u8; 32]>> = b
            .consistency_proof
            .iter()
            .map(|p| hex::decode(p).ok()?.try_into().ok())
            .collect();
        let prefix = |h: &TreeHead| match proof {
            Some(p) if verify_consistency(h.size, head.size, &h.root, &head.root, &p) => Ok(()),
            Some(_) => Err(format!(
                "no consistency with the bundle's tree head (size {})",
                head.size
            )),
            None => Err("the consistency proof is malformed".into()),
        };
        if let Some(t) = check_one(&b.attestation, &name, key, trusted, prefix, &mut report) {
            covered = covered.max(t.tree_size);
            report.tokens.push(t);
        }
    }
    report.not_timestamped = gap(std::slice::from_ref(head), covered);
    report
}

/// How far one TSA is behind: the newest head it timestamped, and the first one after it.
#[derive(Debug, Clone, Serialize)]
pub struct Lag {
    pub url: String,
    /// Tree size of the newest head with a stored token (0: none yet).
    pub timestamped_size: u64,
    /// The first tree head without a token from this TSA, if any.
    pub untimestamped_since_ns: Option<i64>,
    /// Seconds since that head was signed (0 when every head is timestamped).
    pub lag_seconds: f64,
    pub last_error: Option<String>,
    pub failures: u32,
}

/// The lag of every TSA the store or `configured` knows, at `now_ns`. Stored tokens are
/// trusted here as far as their file says (this is a status, not a verification).
pub fn lag(data: &Path, configured: &[String], now_ns: i64) -> std::io::Result<Vec<Lag>> {
    let (heads, _) = heads_and_leaves(data)?;
    let status = super::read_status(data);
    let mut urls: Vec<String> = configured.to_vec();
    for s in &status {
        if !urls.contains(&s.url) {
            urls.push(s.url.clone());
        }
    }
    // Newest size per issuer id, from file names; an issuer nobody names is read once (its
    // newest file) to learn its URL.
    let mut newest: std::collections::HashMap<String, (u64, PathBuf)> = Default::default();
    for n in super::names(data)? {
        if n.kind == TYPE_RFC3161 {
            newest.insert(n.issuer_id, (n.size, n.path));
        }
    }
    let mut sizes: std::collections::HashMap<String, u64> = Default::default();
    for (id, (size, path)) in newest {
        let url = match urls.iter().find(|u| super::issuer_id(u) == id) {
            Some(u) => u.clone(),
            None => match std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Attestation>(&b).ok())
            {
                Some(a) => {
                    urls.push(a.issuer.clone());
                    a.issuer
                }
                None => continue,
            },
        };
        sizes.insert(url, size);
    }
    Ok(urls
        .into_iter()
        .map(|url| {
            let size = sizes.get(&url).copied().unwrap_or(0);
            let since = heads.iter().find(|h| h.size > size).map(|h| h.ts_ns);
            let st = status.iter().find(|s| s.url == url);
            Lag {
                timestamped_size: size,
                untimestamped_since_ns: since,
                lag_seconds: since.map_or(0.0, |t| (now_ns - t).max(0) as f64 / 1e9),
                last_error: st.and_then(|s| s.last_error.clone()),
                failures: st.map_or(0, |s| s.failures),
                url,
            }
        })
        .collect())
}
