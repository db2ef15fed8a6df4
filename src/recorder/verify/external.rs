//! External bodies (FORMAT.md, "External bodies"): the chain commits to a kind-68 record's
//! size and SHA-256; the blob it names must be there, whole and unchanged, and decode as the
//! kind the record names.

use std::path::Path;

use super::ProblemKind;
use crate::recorder::blobs::{self, BlobFault, External};
use crate::recorder::codec::{self, Body, kind};
use crate::recorder::frame::SessionKey;

/// The finding for a record whose external body is not as recorded; `load` gives the blob's
/// bytes (from the store's `blobs/`, or from a bundle).
pub fn check(
    kind_code: u8,
    body: &[u8],
    load: impl FnOnce(&External) -> Result<Vec<u8>, BlobFault>,
) -> Option<(ProblemKind, String)> {
    if kind_code != kind::EXTERNAL {
        return None;
    }
    // A malformed kind-68 body is the chain check's finding (it decodes every body).
    let Ok(Body::External(ext)) = codec::decode_body(kind_code, body) else {
        return None;
    };
    let what = format!(
        "the external body of this {} record ({} bytes, SHA-256 {})",
        codec::kind_name(ext.kind),
        ext.size,
        hex::encode(ext.sha256)
    );
    match load(&ext) {
        Ok(bytes) => match codec::decode_body(ext.kind, &bytes) {
            Ok(_) => None,
            Err(e) => Some((ProblemKind::Edited, format!("{what} is malformed: {e}"))),
        },
        Err(fault) => {
            let kind = match fault {
                BlobFault::Missing => ProblemKind::Missing,
                BlobFault::Truncated { .. } => ProblemKind::Truncated,
                BlobFault::Edited(_) => ProblemKind::Edited,
                BlobFault::Unreadable(_) => ProblemKind::Missing,
            };
            Some((kind, format!("{what} {fault}")))
        }
    }
}

/// [`check`] against the store's own blob of the session.
pub fn check_in_store(
    data: &Path,
    session: &SessionKey,
    kind_code: u8,
    body: &[u8],
) -> Option<(ProblemKind, String)> {
    check(kind_code, body, |ext| {
        not_a_plain_file(data, session, &ext.sha256)?;
        blobs::load(data, session, ext)
    })
}

/// The blob must be a regular file in real directories of the store (FORMAT.md, "External
/// bodies"): a symbolic link is not followed (it leads outside the evidence, so what a copy of
/// the store proves would change), and a FIFO or device is never opened (opening a FIFO blocks
/// the verifier forever). Either is a file that cannot be read: *missing*.
fn not_a_plain_file(
    data: &Path,
    session: &SessionKey,
    sha256: &[u8; 32],
) -> Result<(), blobs::BlobFault> {
    let file = blobs::blob_path(data, session, sha256);
    let dir = blobs::session_dir(data, session);
    let top = data.join("blobs");
    for (path, want_dir) in [(&top, true), (&dir, true), (&file, false)] {
        let t = match std::fs::symlink_metadata(path) {
            Ok(m) => m.file_type(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(blobs::BlobFault::Missing);
            }
            Err(e) => return Err(blobs::BlobFault::Unreadable(e.to_string())),
        };
        let plain = if want_dir { t.is_dir() } else { t.is_file() };
        if !plain {
            return Err(blobs::BlobFault::Unreadable(format!(
                "{} is a {} (a blob is a regular file in real directories; links are not followed)",
                path.strip_prefix(data).unwrap_or(path).display(),
                if t.is_symlink() {
                    "symbolic link"
                } else if t.is_dir() {
                    "directory"
                } else if want_dir {
                    "file, not a directory"
                } else {
                    "special file"
                }
            )));
        }
    }
    Ok(())
}
