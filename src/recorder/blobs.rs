//! Large record bodies stored out of line (FORMAT.md, "External bodies").
//!
//! The writer acknowledges a batch with one fdatasync of the active segment, and fdatasync
//! flushes every dirty page of the file: a record of megabytes in the segment made every other
//! session's small records wait for its write and flush (a 12 MB statement: 50-150 ms on the
//! benchmark machine, several times over with several such records queued; issue 18). Measured
//! on the same disk, small commits beside 12 MB writes to the same file: p99 368 ms; beside the
//! same writes to other files: p99 22 ms, against 14 ms with no writes at all.
//!
//! So a body of `EXTERNAL_MIN_BYTES` or more is written by the session's own blocking task to
//! a file of its own, `blobs/SESSION/SHA256`, made durable there (fdatasync, rename, directory
//! fsync), and only then queued for the chain as a small kind-68 record naming the body's
//! kind, size and SHA-256. The chain commits to those; the segment never holds the megabytes.
//! Durable before visible still holds for the session that sent it (its record commits after
//! its blob is durable, and it is answered after its record commits); the others never wait
//! on it.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::codec::{self, Body};
use super::frame::{JOURNAL_SESSION, SessionKey};
use super::index::wants_body;
use super::wire::{DecodeError, Reader, Writer};

/// Bodies of this many bytes and more are stored out of line.
pub const EXTERNAL_MIN_BYTES: usize = super::lanes::LARGE_RECORD_BYTES;

/// The directory under the data directory that holds every session's blobs.
pub const BLOBS_DIR: &str = "blobs";

/// What a kind-68 record says: the kind of the record it stands for, and its body's size and
/// SHA-256 (the blob's name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct External {
    pub kind: u8,
    pub size: u64,
    pub sha256: [u8; 32],
}

impl External {
    pub fn encode(&self, w: &mut Writer) {
        w.u8(self.kind);
        w.u64(self.size);
        w.h32(&self.sha256);
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<External, DecodeError> {
        let kind = r.u8()?;
        if !may_be_external(kind) {
            return Err(DecodeError::BadValue {
                field: "external kind",
                value: kind.to_string(),
            });
        }
        Ok(External {
            kind,
            size: r.u64()?,
            sha256: r.h32()?,
        })
    }
}

/// Kinds whose body may be stored out of line: the events of a session whose body the index
/// does not read (so metadata is derived without blobs, and a bundle's manifest is checked
/// without them), never a signature, seal, store checkpoint or journal record.
pub fn may_be_external(kind: u8) -> bool {
    (codec::kind::SESSION_START..=codec::kind::RETENTION).contains(&kind)
        && kind != codec::kind::SESSION_START
        && !wants_body(kind)
}

/// Whether a record of `kind` with a body of `len` bytes is stored out of line.
pub fn goes_external(session: &SessionKey, kind: u8, len: usize) -> bool {
    len >= EXTERNAL_MIN_BYTES && *session != JOURNAL_SESSION && may_be_external(kind)
}

/// The directory of one session's blobs.
pub fn session_dir(data: &Path, session: &SessionKey) -> PathBuf {
    data.join(BLOBS_DIR)
        .join(uuid::Uuid::from_bytes(*session).hyphenated().to_string())
}

/// Where the blob of `sha256` of a session is.
pub fn blob_path(data: &Path, session: &SessionKey, sha256: &[u8; 32]) -> PathBuf {
    session_dir(data, session).join(hex::encode(sha256))
}

/// Writes `body` as a blob of `session`, durably, and returns the kind-68 body that stands for
/// it. Blocking: call it from a blocking task.
pub fn store(data: &Path, session: &SessionKey, kind: u8, body: &[u8]) -> io::Result<Vec<u8>> {
    let sha256: [u8; 32] = Sha256::digest(body).into();
    let dir = session_dir(data, session);
    if !dir.is_dir() {
        let root = data.join(BLOBS_DIR);
        let new_root = !root.is_dir();
        fs::create_dir_all(&dir)?;
        // The new directory entries must survive a crash as the blob does.
        if new_root {
            super::segment::sync_dir(data)?;
        }
        super::segment::sync_dir(&root)?;
    }
    let name = hex::encode(sha256);
    // A name of its own per writer: two records of one session may carry the same body.
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::now_v7().simple()));
    let written = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(body)?;
        f.sync_data()?;
        fs::rename(&tmp, dir.join(&name))?;
        super::segment::sync_dir(&dir)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    let mut w = Writer::with_capacity(48);
    External {
        kind,
        size: body.len() as u64,
        sha256,
    }
    .encode(&mut w);
    Ok(w.buf)
}

/// What is wrong with a blob, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobFault {
    /// No file of that name.
    Missing,
    /// Shorter than the record says.
    Truncated {
        size: u64,
    },
    /// Longer, or of another SHA-256.
    Edited(String),
    Unreadable(String),
}

impl std::fmt::Display for BlobFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlobFault::Missing => write!(f, "is missing"),
            BlobFault::Truncated { size } => write!(f, "is cut short ({size} bytes)"),
            BlobFault::Edited(why) => write!(f, "was changed ({why})"),
            BlobFault::Unreadable(e) => write!(f, "cannot be read: {e}"),
        }
    }
}

/// Reads the blob `ext` names and checks its size and SHA-256.
pub fn load(data: &Path, session: &SessionKey, ext: &External) -> Result<Vec<u8>, BlobFault> {
    let path = blob_path(data, session, &ext.sha256);
    let mut f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(BlobFault::Missing),
        Err(e) => return Err(BlobFault::Unreadable(e.to_string())),
    };
    let mut buf = Vec::new();
    // One byte more than the record says is enough to tell a longer file.
    (&mut f)
        .take(ext.size.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| BlobFault::Unreadable(e.to_string()))?;
    check(ext, &buf)?;
    Ok(buf)
}

/// Checks bytes against what the kind-68 record says of them.
pub fn check(ext: &External, bytes: &[u8]) -> Result<(), BlobFault> {
    let len = bytes.len() as u64;
    if len < ext.size {
        return Err(BlobFault::Truncated { size: len });
    }
    if len > ext.size {
        return Err(BlobFault::Edited(format!(
            "longer than the {} bytes recorded",
            ext.size
        )));
    }
    let sha256: [u8; 32] = Sha256::digest(bytes).into();
    if sha256 != ext.sha256 {
        return Err(BlobFault::Edited(
            "its SHA-256 differs from the recorded one".into(),
        ));
    }
    Ok(())
}

/// A decoded body with any external body replaced by the record it stands for, read from the
/// session's blob (an error when the blob is absent or does not match).
pub fn resolve(
    data: &Path,
    session: &SessionKey,
    body: Result<Body, DecodeError>,
) -> Result<Body, DecodeError> {
    match body {
        Ok(Body::External(ext)) => {
            let bytes = load(data, session, &ext).map_err(|fault| DecodeError::BadValue {
                field: "external body",
                value: format!("blob {} {fault}", hex::encode(ext.sha256)),
            })?;
            codec::decode_body(ext.kind, &bytes)
        }
        other => other,
    }
}

/// The kind a record counts as: the one a kind-68 record stands for, else its own.
pub fn effective_kind(kind: u8, body: &[u8]) -> u8 {
    if kind == codec::kind::EXTERNAL
        && let Some(&inner) = body.first()
        && may_be_external(inner)
    {
        return inner;
    }
    kind
}

/// Removes a session's blobs (retention, after its records left the segments).
pub fn remove_session(data: &Path, session: &SessionKey) -> io::Result<()> {
    match fs::remove_dir_all(session_dir(data, session)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
