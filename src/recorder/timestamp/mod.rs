//! Tree heads attested outside the host (FORMAT.md, "Attestations"): RFC 3161 timestamp tokens
//! from one or more TSAs over the ledger's signed tree heads, stored as typed attestation files
//! beside the ledger, so that witness cosignatures (C2SP) can join them as another type.

pub mod check;
pub mod client;
pub mod ess;
pub mod token;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ledger::TreeHead;
use crate::export::bundle::TreeHeadJson;

/// The attestation type of an RFC 3161 timestamp token.
pub const TYPE_RFC3161: &str = "rfc3161";
/// The layout version of an attestation file.
pub const ATTESTATION_FORMAT: u32 = 1;

/// `[ledger.timestamp]`: which TSAs timestamp the tree heads, and how often.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampSettings {
    /// The TSAs; none means tree heads are not timestamped.
    #[serde(default)]
    pub tsa: Vec<TsaSettings>,
    /// At most one token per TSA this often (unless `every_leaves` leaves came first).
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// A token as soon as this many leaves were added since the last one.
    #[serde(default = "default_every_leaves")]
    pub every_leaves: u64,
    /// Longest wait between retries of a failing TSA (the wait doubles from 1 s up to it).
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// How long one request may take.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// One TSA.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsaSettings {
    /// Where `application/timestamp-query` is POSTed (`http://` or `https://`).
    pub url: String,
    /// PEM CA bundle for an `https://` TSA (the system roots otherwise).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM certificate(s) the TSA's tokens must chain to; checked before a token is stored.
    #[serde(default)]
    pub tsa_cert: Option<PathBuf>,
    /// The TSA policy OID to ask for (`reqPolicy`).
    #[serde(default)]
    pub policy: Option<String>,
}

/// `[ledger]` in the config.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerSettings {
    #[serde(default)]
    pub timestamp: TimestampSettings,
}

fn default_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_every_leaves() -> u64 {
    1000
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(600)
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

impl Default for TimestampSettings {
    fn default() -> Self {
        TimestampSettings {
            tsa: Vec::new(),
            interval: default_interval(),
            every_leaves: default_every_leaves(),
            max_backoff: default_max_backoff(),
            timeout: default_timeout(),
        }
    }
}

/// `"60s"`, `"5m"` in TOML.
mod humantime_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// The message a TSA timestamps for a tree head: SHA-256 over the tree head entry's fields as
/// the ledger stores them (`u64 size, h32 root, i64 ts_ns, h32 key_id, bytes signature`), so
/// the token binds the signed head, signature included.
pub fn imprint(head: &TreeHead) -> [u8; 32] {
    Sha256::digest(head.encode()).into()
}

/// A short, stable name for an issuer (TSA URL, later a witness name) in file names.
pub fn issuer_id(issuer: &str) -> String {
    hex::encode(&Sha256::digest(issuer.as_bytes())[..8])
}

pub fn attestations_dir(data: &Path) -> PathBuf {
    data.join("ledger").join("attestations")
}

/// One attestation of one tree head, as stored in `ledger/attestations/` and carried in bundles.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attestation {
    /// Layout version of this object (1).
    pub format: u32,
    /// `rfc3161` (a timestamp token); verifiers report other types as not checked.
    #[serde(rename = "type")]
    pub kind: String,
    /// Who attests: the TSA's URL.
    pub issuer: String,
    /// The signed tree head attested, as `proctor ledger head` prints it.
    pub tree_head: TreeHeadJson,
    /// The attestation itself: for `rfc3161`, the DER `TimeStampToken` (a CMS ContentInfo), base64.
    pub token: String,
    /// When proctor stored it (informational, not authenticated).
    pub received_ns: i64,
}

impl Attestation {
    pub fn file_name(&self) -> String {
        format!(
            "{:016}-{}-{}.json",
            self.tree_head.size,
            self.kind,
            issuer_id(&self.issuer)
        )
    }

    pub fn token_der(&self) -> Option<Vec<u8>> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(&self.token)
            .ok()
    }
}

/// Writes `a` durably under a new name (write, fsync, rename, fsync the directory): a reader
/// never sees half a file.
pub fn store(data: &Path, a: &Attestation) -> io::Result<PathBuf> {
    let dir = attestations_dir(data);
    fs::create_dir_all(&dir)?;
    let path = dir.join(a.file_name());
    let tmp = dir.join(format!(".{}.tmp", a.file_name()));
    let body = serde_json::to_vec_pretty(a).map_err(io::Error::other)?;
    {
        use std::io::Write as _;
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    super::segment::sync_dir(&dir)?;
    Ok(path)
}

/// An attestation file as its name describes it (`SIZE-TYPE-ISSUER.json`); the name is only a
/// hint, the verifier reads the contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub path: PathBuf,
    pub size: u64,
    pub kind: String,
    pub issuer_id: String,
}

fn parse_name(path: PathBuf) -> Option<Named> {
    let stem = path.file_name()?.to_str()?.strip_suffix(".json")?;
    let (size, rest) = stem.split_once('-')?;
    let (kind, issuer_id) = rest.rsplit_once('-')?;
    if size.len() != 16 || !size.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(Named {
        size: size.parse().ok()?,
        kind: kind.to_string(),
        issuer_id: issuer_id.to_string(),
        path,
    })
}

/// The attestation files in the store, in name order (tree size, type, issuer), from their
/// names alone (cheap: `ledger head` and the task's start need no more).
pub fn names(data: &Path) -> io::Result<Vec<Named>> {
    let mut names = match fs::read_dir(attestations_dir(data)) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().and_then(|e| parse_name(e.path())))
            .collect::<Vec<_>>(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    names.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(names)
}

/// Every attestation file in the store, read, in name order. Files that do not parse are
/// returned as errors with their names, for the verifier to report.
pub fn list(data: &Path) -> io::Result<Vec<(PathBuf, Result<Attestation, String>)>> {
    Ok(names(data)?
        .into_iter()
        .map(|n| {
            let parsed = fs::read(&n.path).map_err(|e| e.to_string()).and_then(|b| {
                crate::export::strict_json::no_duplicate_keys(&b)?;
                serde_json::from_slice::<Attestation>(&b).map_err(|e| e.to_string())
            });
            (n.path, parsed)
        })
        .collect())
}

/// Where the timestamping task says how each TSA is doing (not evidence: `ledger head` reads it
/// to show a TSA that never answered).
pub fn status_path(data: &Path) -> PathBuf {
    attestations_dir(data).join("status.json")
}

/// One TSA's state as the timestamping task last saw it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TsaStatus {
    pub url: String,
    /// Tree size of the newest head with a stored token from this TSA (0: none).
    pub timestamped_size: u64,
    pub last_success_ns: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_ns: Option<i64>,
    /// Failed attempts since the last success.
    pub failures: u32,
}

pub fn read_status(data: &Path) -> Vec<TsaStatus> {
    fs::read(status_path(data))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

pub fn write_status(data: &Path, status: &[TsaStatus]) -> io::Result<()> {
    let dir = attestations_dir(data);
    fs::create_dir_all(&dir)?;
    let tmp = dir.join(".status.tmp");
    fs::write(
        &tmp,
        serde_json::to_vec_pretty(status).map_err(io::Error::other)?,
    )?;
    fs::rename(&tmp, status_path(data))
}
