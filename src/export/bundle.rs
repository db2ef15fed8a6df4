//! Evidence bundles: one file holding a sealed session's frames exactly as stored, its ledger
//! leaf, the inclusion proof and the signed tree head. `verify_bundle` needs nothing but the
//! file and the recorder's public key (FORMAT.md, "Bundles").

use std::io::{self, Write};
use std::ops::ControlFlow;
use std::path::Path;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::recorder::index::{self, Indexed, SessionMeta, parse_session_id};
use crate::recorder::ledger::{self, LEAF_SESSION_SEALED, Leaf, TreeHead};
use crate::recorder::reader;
use crate::recorder::segment::{Scanned, Scanner};
use crate::recorder::signing;
use crate::recorder::verify::{ChainCheck, Problem, ProblemKind, UnsignedTail};

/// Manifest `meta` fields that describe the store the bundle came from, not the session:
/// they are not derived from the records, so they are not authenticated (FORMAT.md,
/// "Bundles"). `ledger_index` is checked against `leaf_index` instead.
pub const UNAUTHENTICATED_META: &[&str] =
    &["spans", "ledger_index", "legal_hold", "archived", "purged"];

/// A session's metadata as its records say it, by the same derivation the index uses.
pub fn derive_meta(id: &str, frames: &[u8]) -> SessionMeta {
    let mut meta = SessionMeta {
        id: id.to_string(),
        ..Default::default()
    };
    for item in Scanner::new(frames, 0) {
        if let Scanned::Frame { record, frame, .. } = item {
            let h = record.header;
            if meta.events == 0 {
                meta.started_ns = h.ts_ns;
            }
            index::derive(
                &mut meta,
                &Indexed {
                    session: h.session,
                    kind: h.kind,
                    seq: h.seq,
                    ts_ns: h.ts_ns,
                    hash: record.hash,
                    segment: 0,
                    offset: 0,
                    frame_len: frame.len() as u64,
                    body: record.body,
                },
            );
        }
    }
    meta
}

/// Fields of `meta` that differ from what the records say, as "field: manifest X, records Y".
fn meta_differences(meta: &SessionMeta, derived: &SessionMeta) -> Vec<String> {
    let (Ok(serde_json::Value::Object(m)), Ok(serde_json::Value::Object(d))) =
        (serde_json::to_value(meta), serde_json::to_value(derived))
    else {
        return vec!["the manifest's meta cannot be compared".into()];
    };
    d.iter()
        .filter(|(k, _)| !UNAUTHENTICATED_META.contains(&k.as_str()))
        .filter(|(k, v)| m.get(*k) != Some(*v))
        .map(|(k, v)| {
            let shown = m.get(k).map_or("absent".to_string(), |x| x.to_string());
            format!("{k}: manifest {shown}, records {v}")
        })
        .collect()
}

pub const MAGIC_LINE: &str = "PROCTOR-BUNDLE 1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TreeHeadJson {
    pub size: u64,
    pub root: String,
    pub ts_ns: i64,
    pub key_id: String,
    pub signature: String,
}

impl TreeHeadJson {
    pub fn from_head(head: &TreeHead) -> TreeHeadJson {
        TreeHeadJson {
            size: head.size,
            root: hex::encode(head.root),
            ts_ns: head.ts_ns,
            key_id: hex::encode(head.key_id),
            signature: hex::encode(head.signature),
        }
    }

    /// The tree head, when every field is well-formed hex of the right length.
    pub fn to_head(&self) -> Option<TreeHead> {
        Some(TreeHead {
            size: self.size,
            root: h32(&self.root)?,
            ts_ns: self.ts_ns,
            key_id: h32(&self.key_id)?,
            signature: hex::decode(&self.signature).ok()?.try_into().ok()?,
        })
    }
}

/// A tree head saved by an auditor: the JSON `proctor ledger head` prints, or any bundle
/// (which carries the head its inclusion proof leads to).
pub fn parse_known_head(bytes: &[u8]) -> Result<TreeHead, String> {
    let json: &[u8] = if bytes.starts_with(MAGIC_LINE.as_bytes()) {
        bytes
            .split(|&b| b == b'\n')
            .nth(1)
            .ok_or("bundle manifest is cut")?
    } else {
        bytes
    };
    super::strict_json::no_duplicate_keys(json)
        .map_err(|e| format!("not a tree head or bundle: {e}"))?;
    let v: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| format!("not a tree head or bundle: {e}"))?;
    let head = v.get("tree_head").unwrap_or(&v);
    let parsed: TreeHeadJson = serde_json::from_value(head.clone())
        .map_err(|e| format!("not a tree head or bundle: {e}"))?;
    parsed
        .to_head()
        .ok_or_else(|| "the tree head's hex fields are malformed".to_string())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub session: String,
    pub meta: SessionMeta,
    pub public_key_pem: String,
    pub leaf_index: u64,
    pub leaf_data: String,
    pub inclusion_proof: Vec<String>,
    pub tree_head: TreeHeadJson,
    pub frames: u64,
    pub frames_sha256: String,
    /// Attestations (RFC 3161 timestamp tokens) of tree heads that `tree_head` extends; absent
    /// from bundles of stores without them (FORMAT.md, "Attestations").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timestamps: Vec<crate::recorder::timestamp::check::BundleAttestation>,
    /// The newest store checkpoint record that lists the session, as its frame in hex; absent
    /// from older bundles and when none lists it (FORMAT.md, "Bundles").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub store_checkpoints: Vec<String>,
    /// The bodies the frames store out of line, each once; absent when none is (FORMAT.md,
    /// "External bodies").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_bodies: Vec<super::bundle_external::ExternalBody>,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("session {0} is not sealed yet; only finished sessions can be bundled")]
    NotSealed(String),
    #[error("session {0} is not in the ledger yet")]
    NotLedgered(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Writes a bundle for a sealed session, from the store's files alone.
pub fn write(data: &Path, meta: &SessionMeta, out: &mut dyn Write) -> Result<(), BundleError> {
    if !meta.sealed {
        return Err(BundleError::NotSealed(meta.id.clone()));
    }
    let leaf_index = meta
        .ledger_index
        .ok_or_else(|| BundleError::NotLedgered(meta.id.clone()))?;
    let (leaf_data, proof, head) = ledger::proof_from_file(data, leaf_index)?
        .ok_or_else(|| BundleError::NotLedgered(meta.id.clone()))?;
    let public_key_pem = std::fs::read_to_string(signing::public_key_path(data))?;
    let mut frames = Vec::new();
    reader::for_each_record(data, meta, |r| {
        frames.extend_from_slice(r.frame);
        ControlFlow::Continue(())
    })?;
    let count = Scanner::new(&frames, 0).count() as u64;
    // The manifest carries what the records say, not what the index says (the index is not
    // evidence); only the store-local fields come from the index.
    let mut derived = derive_meta(&meta.id, &frames);
    derived.spans = meta.spans.clone();
    derived.ledger_index = meta.ledger_index;
    derived.legal_hold = meta.legal_hold.clone();
    derived.archived = meta.archived.clone();
    derived.purged = meta.purged;
    let manifest = Manifest {
        format: 1,
        session: meta.id.clone(),
        meta: derived,
        public_key_pem,
        leaf_index,
        leaf_data: hex::encode(&leaf_data),
        inclusion_proof: proof.iter().map(hex::encode).collect(),
        tree_head: TreeHeadJson::from_head(&head),
        frames: count,
        frames_sha256: hex::encode(Sha256::digest(&frames)),
        timestamps: crate::recorder::timestamp::check::for_bundle(data, &head)?,
        store_checkpoints: match parse_session_id(&meta.id) {
            Some(k) => super::store_signatures::collect(data, meta, k)?,
            None => Vec::new(),
        },
        external_bodies: match parse_session_id(&meta.id) {
            Some(k) => super::bundle_external::collect(data, &k, &frames)?,
            None => Vec::new(),
        },
    };
    out.write_all(MAGIC_LINE.as_bytes())?;
    out.write_all(b"\n")?;
    serde_json::to_writer(&mut *out, &manifest).map_err(io::Error::from)?;
    out.write_all(b"\n")?;
    out.write_all(&frames)?;
    Ok(())
}

/// What checking a bundle found.
#[derive(Debug, Serialize)]
pub struct BundleReport {
    pub session: String,
    pub records: u64,
    pub sealed: bool,
    pub key_source: String,
    pub tree_size: u64,
    pub problems: Vec<Problem>,
    /// Records a restart sealed without a signature from before the crash (FORMAT.md,
    /// "Recovery").
    pub unsigned_tails: Vec<UnsignedTail>,
}

pub(super) fn problem(
    session: &str,
    seq: Option<u64>,
    kind: ProblemKind,
    detail: impl Into<String>,
) -> Problem {
    Problem {
        session: Some(session.to_string()),
        seq,
        kind,
        detail: detail.into(),
    }
}

fn h32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok().map(|()| out)
}

/// Verifies a bundle. With `pinned` the bundle's embedded key must be that key; without it the
/// embedded key is used and the report says so.
pub fn verify_bundle(bytes: &[u8], pinned: Option<&VerifyingKey>) -> Result<BundleReport, String> {
    let (manifest, frames) = read_manifest(bytes)?;
    verify_manifest(manifest, frames, pinned)
}

/// A bundle's manifest and its frame bytes.
pub fn read_manifest(bytes: &[u8]) -> Result<(Manifest, &[u8]), String> {
    let nl = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("not a proctor bundle")?;
    if &bytes[..nl] != MAGIC_LINE.as_bytes() {
        return Err("not a proctor bundle (first line)".into());
    }
    let rest = &bytes[nl + 1..];
    let nl2 = rest
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("bundle manifest is cut")?;
    super::strict_json::no_duplicate_keys(&rest[..nl2])
        .map_err(|e| format!("bundle manifest is unreadable: {e}"))?;
    let manifest: Manifest = serde_json::from_slice(&rest[..nl2])
        .map_err(|e| format!("bundle manifest is unreadable: {e}"))?;
    Ok((manifest, &rest[nl2 + 1..]))
}

fn verify_manifest(
    manifest: Manifest,
    frames: &[u8],
    pinned: Option<&VerifyingKey>,
) -> Result<BundleReport, String> {
    let id = manifest.session.clone();
    let mut report = BundleReport {
        session: id.clone(),
        records: 0,
        sealed: false,
        key_source: String::new(),
        tree_size: manifest.tree_head.size,
        problems: Vec::new(),
        unsigned_tails: Vec::new(),
    };
    let embedded = signing::parse_public_key(&manifest.public_key_pem)
        .map_err(|e| format!("bundle public key: {e}"))?;
    let key = match pinned {
        Some(k) => {
            report.key_source = "pinned (--pubkey)".into();
            if k.as_bytes() != embedded.as_bytes() {
                report.problems.push(problem(
                    &id,
                    None,
                    ProblemKind::BadSignature,
                    "the bundle names a different recorder key than the pinned one",
                ));
            }
            *k
        }
        None => {
            report.key_source =
                "embedded in the bundle (pin it with --pubkey to prove origin)".into();
            embedded
        }
    };
    let key_id = signing::key_id(&key);
    let Some(session_key) = parse_session_id(&id) else {
        return Err(format!("bundle session id {id:?} is not a UUID"));
    };
    // One spelling only (FORMAT.md, Bundles): a braced, upper-case or urn: form would make the
    // report name the session as the manifest spells it, not as the records do.
    if index::session_id_string(&session_key) != id {
        return Err(format!(
            "bundle session id {id:?} is not in the hyphenated lower-case form"
        ));
    }
    let leaf_data = hex::decode(&manifest.leaf_data).map_err(|e| format!("leaf_data: {e}"))?;
    let leaf = Leaf::decode(&leaf_data);
    let (store_signed, store_problems) =
        super::store_signatures::check(&manifest.store_checkpoints, session_key, &key, &key_id);
    for (seq, kind, detail) in store_problems {
        report.problems.push(problem(&id, seq, kind, detail));
    }
    let (chain, mut chain_problem) = super::bundle_frames::check_frames(
        frames,
        &id,
        (session_key, &store_signed, &manifest.external_bodies),
        &key,
        &key_id,
        &mut report,
    );
    if chain_problem.is_none() && chain.sealed.is_none() {
        let ledger_says = leaf.as_ref().map_or(String::new(), |l| {
            format!("; the ledger records the seal at seq {}", l.final_seq)
        });
        chain_problem = Some(problem(
            &id,
            Some(chain.records),
            ProblemKind::Truncated,
            format!(
                "the chain ends at seq {} without a seal{ledger_says}",
                chain.records.saturating_sub(1)
            ),
        ));
    }
    let digest_differs = hex::encode(Sha256::digest(frames)) != manifest.frames_sha256;
    match chain_problem {
        Some(mut p) => {
            if digest_differs {
                p.detail
                    .push_str(" (the frames' SHA-256 differs from the manifest's)");
            }
            report.problems.push(p);
        }
        None if digest_differs => report.problems.push(problem(
            &id,
            None,
            ProblemKind::Edited,
            "the frames' SHA-256 differs from the manifest's, though every record checks",
        )),
        None => {}
    }
    match leaf {
        Err(e) => report.problems.push(problem(
            &id,
            None,
            ProblemKind::Ledger,
            format!("ledger leaf unreadable: {e}"),
        )),
        Ok(leaf) => {
            if check_leaf(&leaf, &chain, session_key, &id, &mut report) {
                check_manifest_meta(&manifest, frames, &chain, &id, &mut report);
            }
        }
    }
    check_inclusion(&manifest, &leaf_data, &key, &key_id, &id, &mut report);
    if !chain.is_bad() {
        report.unsigned_tails = chain.unsigned_tails(&id);
    }
    Ok(report)
}

/// The leaf is this session's seal, and says what the signed records say. Returns false when
/// the session is back-dated (the one finding then reported for the chain).
fn check_leaf(
    leaf: &Leaf,
    chain: &ChainCheck,
    session_key: [u8; 16],
    id: &str,
    report: &mut BundleReport,
) -> bool {
    if leaf.kind != LEAF_SESSION_SEALED || leaf.session != session_key {
        report.problems.push(problem(
            id,
            None,
            ProblemKind::Ledger,
            "the ledger leaf is not this session's seal",
        ));
        return true;
    }
    if chain.started_ns.is_some_and(|s| s != leaf.started_ns) {
        // Back-dating explains every later difference: it is the one finding reported.
        report
            .problems
            .retain(|p| p.session.is_none() || p.seq.is_none());
        report.problems.push(problem(
            id,
            Some(0),
            ProblemKind::BackDated,
            format!(
                "the session start is dated {} ns; the ledger recorded {} ns",
                chain.started_ns.unwrap_or_default(),
                leaf.started_ns
            ),
        ));
        return false;
    }
    if chain.is_bad() {
        return true;
    }
    match chain.sealed {
        // Reported with the chain.
        None => {}
        Some((seq, hash, sealed_ns)) => {
            report.sealed = true;
            if seq != leaf.final_seq || hash != leaf.final_hash {
                report.problems.push(problem(
                    id,
                    Some(seq.min(leaf.final_seq)),
                    ProblemKind::Replaced,
                    format!(
                        "the seal (seq {seq}) differs from the ledger's (seq {})",
                        leaf.final_seq
                    ),
                ));
                return true;
            }
            let outcome = chain.end.as_ref().map_or("", |e| e.outcome.as_str());
            if leaf.agent != chain.agent()
                || leaf.target != chain.target()
                || leaf.outcome != outcome
                || leaf.ended_ns != sealed_ns
            {
                report.problems.push(problem(
                    id,
                    Some(0),
                    ProblemKind::Metadata,
                    format!(
                        "the ledger leaf names agent {:?} target {:?} outcome {:?}; the signed records say {:?} {:?} {outcome:?}",
                        leaf.agent,
                        leaf.target,
                        leaf.outcome,
                        chain.agent(),
                        chain.target()
                    ),
                ));
            }
        }
    }
    true
}

/// The manifest's `meta` is exactly what the records say (its store-local fields aside).
fn check_manifest_meta(
    manifest: &Manifest,
    frames: &[u8],
    chain: &ChainCheck,
    id: &str,
    report: &mut BundleReport,
) {
    if chain.is_bad() || chain.sealed.is_none() {
        // What the records say is not established; the chain problem is the finding.
        return;
    }
    let mut differences = Vec::new();
    if manifest.format != 1 {
        differences.push(format!("format: {} (expected 1)", manifest.format));
    }
    if manifest.meta.id != manifest.session {
        differences.push(format!(
            "meta.id: {:?} is not the bundle's session",
            manifest.meta.id
        ));
    }
    if manifest.meta.ledger_index != Some(manifest.leaf_index) {
        differences.push(format!(
            "ledger_index: manifest {:?}, leaf_index {}",
            manifest.meta.ledger_index, manifest.leaf_index
        ));
    }
    differences.extend(meta_differences(&manifest.meta, &derive_meta(id, frames)));
    if !differences.is_empty() {
        report.problems.push(problem(
            id,
            Some(0),
            ProblemKind::Metadata,
            format!(
                "the manifest's metadata disagrees with the signed records: {}",
                differences.join("; ")
            ),
        ));
    }
}

/// The audit path leads from the leaf to the tree head's root, and the tree head is signed.
fn check_inclusion(
    manifest: &Manifest,
    leaf_data: &[u8],
    key: &VerifyingKey,
    key_id: &[u8; 32],
    id: &str,
    report: &mut BundleReport,
) {
    let proof: Option<Vec<[u8; 32]>> = manifest.inclusion_proof.iter().map(|p| h32(p)).collect();
    let head = manifest.tree_head.to_head();
    match (proof, head) {
        (Some(proof), Some(head)) => {
            let computed = ledger::root_from_proof(
                ledger::leaf_hash(leaf_data),
                manifest.leaf_index,
                head.size,
                &proof,
            );
            if computed != Some(head.root) {
                report.problems.push(problem(
                    id,
                    None,
                    ProblemKind::Ledger,
                    "the inclusion proof does not lead to the tree head's root",
                ));
            }
            if &head.key_id != key_id || !head.verify(key) {
                report.problems.push(problem(
                    id,
                    None,
                    ProblemKind::BadSignature,
                    "the tree head's signature does not verify with the recorder key",
                ));
            }
        }
        _ => report.problems.push(problem(
            id,
            None,
            ProblemKind::Ledger,
            "the inclusion proof or tree head is malformed",
        )),
    }
}
