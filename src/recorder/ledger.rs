//! The store-wide ledger: an append-only Merkle log (RFC 6962 hashing) of sealed sessions, with
//! signed tree heads (FORMAT.md, "Ledger"). Editing a session changes its final hash; deleting,
//! replacing or back-dating a whole session contradicts a signed leaf.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::frame::SessionKey;
use super::signing::{self, RecorderKey};
use super::wire::{DecodeError, Reader, Writer};

pub const LEDGER_MAGIC: &[u8; 8] = b"PRCTLDG1";
pub const LEDGER_HEADER_LEN: usize = 16;
pub const ENTRY_LEAF: u8 = 1;
pub const ENTRY_TREE_HEAD: u8 = 2;
/// Bounds a ledger entry; leaves are small and tree heads fixed-size.
pub const MAX_ENTRY_LEN: usize = 1024 * 1024;

pub const LEAF_SESSION_SEALED: u8 = 1;
pub const LEAF_SESSION_ARCHIVED: u8 = 2;
pub const LEAF_SESSION_PURGED: u8 = 3;
/// A session's first record is durable (format 2): `final_seq` 0, `final_hash` its hash.
pub const LEAF_SESSION_OPENED: u8 = 4;
/// The evidence format from this leaf on (`final_seq` holds the version, session all zero).
pub const LEAF_FORMAT: u8 = 5;
/// A checkpoint of the store journal (format 2): `final_seq`/`final_hash` name the checkpoint
/// record, so cutting or deleting the journal is detected.
pub const LEAF_JOURNAL: u8 = 6;
/// The format version from which every session has an opened leaf.
pub const FORMAT_OPENED_LEAVES: u64 = 2;

pub fn ledger_path(data: &Path) -> PathBuf {
    data.join("ledger").join("ledger.log")
}

/// What a leaf says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    pub kind: u8,
    pub session: SessionKey,
    /// Sequence number and chain hash of the session's seal record.
    pub final_seq: u64,
    pub final_hash: [u8; 32],
    pub started_ns: i64,
    pub ended_ns: i64,
    pub agent: String,
    pub target: String,
    pub outcome: String,
    /// When the leaf was appended.
    pub logged_ns: i64,
    /// Free text (archive location, purge reason).
    pub note: String,
}

impl Leaf {
    /// The leaf that starts format 2 in a ledger: from here on every session is listed when it
    /// opens.
    pub fn format(now_ns: i64) -> Leaf {
        Leaf {
            kind: LEAF_FORMAT,
            session: [0u8; 16],
            final_seq: FORMAT_OPENED_LEAVES,
            final_hash: [0u8; 32],
            started_ns: 0,
            ended_ns: 0,
            agent: String::new(),
            target: String::new(),
            outcome: String::new(),
            logged_ns: now_ns,
            note: "format 2: every session is listed when it opens".into(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(160);
        w.u8(self.kind);
        w.buf.extend_from_slice(&self.session);
        w.u64(self.final_seq);
        w.h32(&self.final_hash);
        w.i64(self.started_ns);
        w.i64(self.ended_ns);
        w.str(&self.agent);
        w.str(&self.target);
        w.str(&self.outcome);
        w.i64(self.logged_ns);
        w.str(&self.note);
        w.buf
    }

    pub fn decode(data: &[u8]) -> Result<Leaf, DecodeError> {
        let mut r = Reader::new(data);
        let kind = r.u8()?;
        let mut session = [0u8; 16];
        for b in session.iter_mut() {
            *b = r.u8()?;
        }
        let leaf = Leaf {
            kind,
            session,
            final_seq: r.u64()?,
            final_hash: r.h32()?,
            started_ns: r.i64()?,
            ended_ns: r.i64()?,
            agent: r.str()?,
            target: r.str()?,
            outcome: r.str()?,
            logged_ns: r.i64()?,
            note: r.str()?,
        };
        r.finish()?;
        Ok(leaf)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeHead {
    pub size: u64,
    pub root: [u8; 32],
    pub ts_ns: i64,
    pub key_id: [u8; 32],
    pub signature: [u8; 64],
}

impl TreeHead {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(150);
        w.u64(self.size);
        w.h32(&self.root);
        w.i64(self.ts_ns);
        w.h32(&self.key_id);
        w.bytes(&self.signature);
        w.buf
    }

    pub fn decode(data: &[u8]) -> Result<TreeHead, DecodeError> {
        let mut r = Reader::new(data);
        let size = r.u64()?;
        let root = r.h32()?;
        let ts_ns = r.i64()?;
        let key_id = r.h32()?;
        let sig = r.bytes()?;
        let signature: [u8; 64] = sig.try_into().map_err(|_| DecodeError::BadValue {
            field: "tree head signature length",
            value: sig.len().to_string(),
        })?;
        r.finish()?;
        Ok(TreeHead {
            size,
            root,
            ts_ns,
            key_id,
            signature,
        })
    }

    pub fn verify(&self, key: &ed25519_dalek::VerifyingKey) -> bool {
        signing::verify(
            key,
            &signing::tree_head_message(self.size, &self.root, self.ts_ns),
            &self.signature,
        )
    }
}

pub fn leaf_hash(leaf_data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(leaf_data);
    h.finalize().into()
}

pub fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

pub fn empty_root() -> [u8; 32] {
    Sha256::digest([]).into()
}

/// Largest power of two strictly less than `n` (n >= 2).
fn split_point(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// Merkle tree hash over leaf hashes, RFC 6962 section 2.1.
pub fn root_of(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split_point(n);
            node_hash(&root_of(&leaves[..k]), &root_of(&leaves[k..]))
        }
    }
}

/// Audit path for leaf `m` in the tree of `leaves`, RFC 6962 section 2.1.1.
pub fn inclusion_proof(leaves: &[[u8; 32]], m: usize) -> Vec<[u8; 32]> {
    let n = leaves.len();
    if n <= 1 || m >= n {
        return Vec::new();
    }
    let k = split_point(n);
    if m < k {
        let mut p = inclusion_proof(&leaves[..k], m);
        p.push(root_of(&leaves[k..]));
        p
    } else {
        let mut p = inclusion_proof(&leaves[k..], m - k);
        p.push(root_of(&leaves[..k]));
        p
    }
}

/// Recomputes the root from a leaf hash and its audit path (RFC 9162 section 2.1.3.2).
pub fn root_from_proof(
    leaf: [u8; 32],
    index: u64,
    size: u64,
    proof: &[[u8; 32]],
) -> Option<[u8; 32]> {
    if index >= size {
        return None;
    }
    let mut fn_ = index;
    let mut sn = size - 1;
    let mut r = leaf;
    for p in proof {
        if sn == 0 {
            return None;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn == 0 { Some(r) } else { None }
}

/// Roots of the perfect subtrees along the right edge: appending is O(log n).
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    size: u64,
    /// (height, root) from left to right, strictly decreasing heights.
    stack: Vec<(u32, [u8; 32])>,
}

impl Frontier {
    pub fn push(&mut self, leaf: [u8; 32]) {
        let mut node = (0u32, leaf);
        while let Some(&(h, left)) = self.stack.last() {
            if h != node.0 {
                break;
            }
            self.stack.pop();
            node = (h + 1, node_hash(&left, &node.1));
        }
        self.stack.push(node);
        self.size += 1;
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn root(&self) -> [u8; 32] {
        let mut iter = self.stack.iter().rev();
        let Some(&(_, mut acc)) = iter.next() else {
            return empty_root();
        };
        for &(_, left) in iter {
            acc = node_hash(&left, &acc);
        }
        acc
    }
}

/// One entry read back from the ledger file.
#[derive(Debug, Clone)]
pub enum Entry {
    Leaf { index: u64, data: Vec<u8> },
    TreeHead(TreeHead),
}

/// Result of reading the ledger file: the entries that are intact, then what is wrong, if anything.
#[derive(Debug, Default)]
pub struct LedgerScan {
    pub entries: Vec<(u64, Entry)>,
    pub problem: Option<(u64, String)>,
    pub torn_tail: Option<(u64, u64)>,
    pub file_len: u64,
}

pub fn scan_ledger(path: &Path) -> io::Result<LedgerScan> {
    let buf = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(LedgerScan::default()),
        Err(e) => return Err(e),
    };
    let mut scan = LedgerScan {
        file_len: buf.len() as u64,
        ..Default::default()
    };
    if buf.len() < LEDGER_HEADER_LEN || &buf[..8] != LEDGER_MAGIC {
        scan.problem = Some((0, "ledger header magic is wrong".into()));
        return Ok(scan);
    }
    let mut at = LEDGER_HEADER_LEN;
    while at < buf.len() {
        let rest = &buf[at..];
        if rest.len() < 8 {
            scan.torn_tail = Some((at as u64, rest.len() as u64));
            break;
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len == 0 || len > MAX_ENTRY_LEN {
            scan.problem = Some((at as u64, format!("impossible ledger entry length {len}")));
            break;
        }
        if rest.len() < 8 + len {
            scan.torn_tail = Some((at as u64, rest.len() as u64));
            break;
        }
        let entry = &rest[8..8 + len];
        if crc32fast::hash(entry) != crc {
            scan.problem = Some((at as u64, "ledger entry checksum mismatch".into()));
            break;
        }
        let parsed = match entry[0] {
            ENTRY_LEAF if entry.len() >= 9 => {
                let mut idx = [0u8; 8];
                idx.copy_from_slice(&entry[1..9]);
                Ok(Entry::Leaf {
                    index: u64::from_be_bytes(idx),
                    data: entry[9..].to_vec(),
                })
            }
            ENTRY_TREE_HEAD => TreeHead::decode(&entry[1..])
                .map(Entry::TreeHead)
                .map_err(|e| e.to_string()),
            other => Err(format!("unknown ledger entry type {other}")),
        };
        match parsed {
            Ok(e) => scan.entries.push((at as u64, e)),
            Err(what) => {
                scan.problem = Some((at as u64, what));
                break;
            }
        }
        at += 8 + len;
    }
    Ok(scan)
}

fn frame_entry(out: &mut Vec<u8>, entry: &[u8]) {
    out.extend_from_slice(&(entry.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(entry).to_be_bytes());
    out.extend_from_slice(entry);
}

/// The writable ledger, owned by the recorder's writer thread.
pub struct Ledger {
    file: File,
    frontier: Frontier,
    /// All leaf hashes, for inclusion proofs (32 bytes per sealed session).
    leaves: Vec<[u8; 32]>,
    last_head: Option<TreeHead>,
    /// The ledger has its format-2 leaf (sessions get opened leaves).
    format2: bool,
}

impl Ledger {
    /// Opens (or creates) the ledger and rebuilds its state. A torn tail (a crash in the middle
    /// of an append) is cut off after being copied to `quarantine/`; any other damage is an error.
    pub fn open(data: &Path) -> io::Result<(Ledger, Option<String>)> {
        let path = ledger_path(data);
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        fs::create_dir_all(&dir)?;
        let mut note = None;
        if !path.exists() {
            let mut f = OpenOptions::new()
                .create_new(true)
                .write(true)
                .open(&path)?;
            let mut header = [0u8; LEDGER_HEADER_LEN];
            header[..8].copy_from_slice(LEDGER_MAGIC);
            f.write_all(&header)?;
            f.sync_all()?;
            super::segment::sync_dir(&dir)?;
        }
        let scan = scan_ledger(&path)?;
        if let Some((off, what)) = &scan.problem {
            return Err(io::Error::other(format!(
                "ledger {} is damaged at offset {off}: {what}; run `proctor verify` and restore it from a copy",
                path.display()
            )));
        }
        if let Some((off, bytes)) = scan.torn_tail {
            let q = super::recover::quarantine(data, "ledger", &path, off, bytes)?;
            note = Some(format!(
                "ledger had a torn tail of {bytes} bytes at offset {off} (an append interrupted by a crash); moved to {}",
                q.display()
            ));
        }
        let mut frontier = Frontier::default();
        let mut leaves = Vec::new();
        let mut last_head = None;
        let mut format2 = false;
        for (_, e) in scan.entries {
            match e {
                Entry::Leaf { data, .. } => {
                    if let Ok(l) = Leaf::decode(&data) {
                        format2 |= l.kind == LEAF_FORMAT && l.final_seq >= FORMAT_OPENED_LEAVES;
                    }
                    let h = leaf_hash(&data);
                    frontier.push(h);
                    leaves.push(h);
                }
                Entry::TreeHead(th) => last_head = Some(th),
            }
        }
        let file = OpenOptions::new().append(true).open(&path)?;
        Ok((
            Ledger {
                file,
                frontier,
                leaves,
                last_head,
                format2,
            },
            note,
        ))
    }

    /// Appends leaves and one signed tree head over them, then fdatasyncs.
    pub fn append(
        &mut self,
        leaves: &[Leaf],
        key: &RecorderKey,
        now_ns: i64,
    ) -> io::Result<Vec<u64>> {
        let mut buf = Vec::new();
        let mut indexes = Vec::with_capacity(leaves.len());
        for leaf in leaves {
            let data = leaf.encode();
            let index = self.frontier.size();
            let mut entry = Vec::with_capacity(9 + data.len());
            entry.push(ENTRY_LEAF);
            entry.extend_from_slice(&index.to_be_bytes());
            entry.extend_from_slice(&data);
            frame_entry(&mut buf, &entry);
            let h = leaf_hash(&data);
            self.frontier.push(h);
            self.leaves.push(h);
            indexes.push(index);
            self.format2 |= leaf.kind == LEAF_FORMAT && leaf.final_seq >= FORMAT_OPENED_LEAVES;
        }
        let root = self.frontier.root();
        let size = self.frontier.size();
        let head = TreeHead {
            size,
            root,
            ts_ns: now_ns,
            key_id: key.key_id,
            signature: key.sign(&signing::tree_head_message(size, &root, now_ns)),
        };
        let mut entry = vec![ENTRY_TREE_HEAD];
        entry.extend_from_slice(&head.encode());
        frame_entry(&mut buf, &entry);
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        self.last_head = Some(head);
        Ok(indexes)
    }

    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// Whether the ledger is format 2 (it has the leaf that requires opened leaves).
    pub fn is_format2(&self) -> bool {
        self.format2
    }

    pub fn last_head(&self) -> Option<&TreeHead> {
        self.last_head.as_ref()
    }

    /// Inclusion proof of leaf `index` against the latest tree head.
    pub fn proof(&self, index: u64) -> Option<(Vec<[u8; 32]>, TreeHead)> {
        let head = self.last_head.clone()?;
        let n = usize::try_from(head.size).ok()?.min(self.leaves.len());
        let m = usize::try_from(index).ok()?;
        if m >= n {
            return None;
        }
        Some((inclusion_proof(&self.leaves[..n], m), head))
    }
}

/// A leaf's data, its audit path, and the tree head it leads to.
pub type LeafProof = (Vec<u8>, Vec<[u8; 32]>, TreeHead);

/// Inclusion proof and latest tree head for leaf `index`, read from the ledger file alone.
pub fn proof_from_file(data: &Path, index: u64) -> io::Result<Option<LeafProof>> {
    let scan = scan_ledger(&ledger_path(data))?;
    let mut leaves = Vec::new();
    let mut leaf_data = None;
    let mut head = None;
    for (_, e) in scan.entries {
        match e {
            Entry::Leaf { index: i, data } => {
                if i == index {
                    leaf_data = Some(data.clone());
                }
                leaves.push(leaf_hash(&data));
            }
            Entry::TreeHead(th) => head = Some(th),
        }
    }
    let (Some(leaf_data), Some(head)) = (leaf_data, head) else {
        return Ok(None);
    };
    let n = usize::try_from(head.size)
        .unwrap_or(usize::MAX)
        .min(leaves.len());
    let m = usize::try_from(index).unwrap_or(usize::MAX);
    if m >= n {
        return Ok(None);
    }
    Ok(Some((leaf_data, inclusion_proof(&leaves[..n], m), head)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<[u8; 32]> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn frontier_matches_recursive_root() {
        let all = leaves(37);
        let mut f = Frontier::default();
        for (i, l) in all.iter().enumerate() {
            f.push(*l);
            assert_eq!(f.root(), root_of(&all[..=i]), "size {}", i + 1);
        }
    }

    #[test]
    fn inclusion_proofs_verify_and_reject_wrong_leaf() {
        for n in 1..20usize {
            let all = leaves(n);
            let root = root_of(&all);
            for m in 0..n {
                let proof = inclusion_proof(&all, m);
                assert_eq!(
                    root_from_proof(all[m], m as u64, n as u64, &proof),
                    Some(root),
                    "n={n} m={m}"
                );
                let wrong = leaf_hash(b"other");
                assert_ne!(
                    root_from_proof(wrong, m as u64, n as u64, &proof),
                    Some(root)
                );
            }
        }
    }
}
