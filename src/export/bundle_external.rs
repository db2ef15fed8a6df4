//! A bundle's external bodies (FORMAT.md, "External bodies" and "Bundles"): the blobs its
//! kind-68 records name travel in the manifest, each once, so the bundle stays self-contained.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::recorder::blobs::{self, BlobFault, External};
use crate::recorder::codec::{self, Body, kind};
use crate::recorder::frame::SessionKey;
use crate::recorder::segment::{Scanned, Scanner};

/// One blob: its SHA-256 (hex, its name) and its bytes (standard base64, padded).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExternalBody {
    pub sha256: String,
    pub base64: String,
}

/// The blobs the session's kind-68 records name, read from the store, each once, in the order
/// first named. A blob the store lacks or holds damaged is left out: the bundle's verifier
/// then names the record, as `verify` does for the store.
pub fn collect(data: &Path, session: &SessionKey, frames: &[u8]) -> io::Result<Vec<ExternalBody>> {
    let mut seen = BTreeMap::new();
    let mut out = Vec::new();
    for item in Scanner::new(frames, 0) {
        let Scanned::Frame { record, .. } = item else {
            continue;
        };
        if record.header.kind != kind::EXTERNAL {
            continue;
        }
        let Ok(Body::External(ext)) = codec::decode_body(record.header.kind, record.body) else {
            continue;
        };
        if seen.insert(ext.sha256, ()).is_some() {
            continue;
        }
        if let Ok(bytes) = blobs::load(data, session, &ext) {
            out.push(ExternalBody {
                sha256: hex::encode(ext.sha256),
                base64: base64::engine::general_purpose::STANDARD.encode(bytes),
            });
        }
    }
    Ok(out)
}

/// The bytes of the blob `ext` names, from the manifest's list, checked against the record.
pub fn load(list: &[ExternalBody], ext: &External) -> Result<Vec<u8>, BlobFault> {
    let name = hex::encode(ext.sha256);
    let Some(entry) = list.iter().find(|e| e.sha256 == name) else {
        return Err(BlobFault::Missing);
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&entry.base64)
        .map_err(|e| BlobFault::Edited(format!("its base64 does not decode: {e}")))?;
    blobs::check(ext, &bytes)?;
    Ok(bytes)
}
