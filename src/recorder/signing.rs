//! The recorder's ed25519 key and the exact messages it signs (FORMAT.md, "Signatures").
//!
//! This key only signs evidence. It is never used to issue credentials to targets (that is the
//! SSH CA key, kept in a different file), so a stolen credential key cannot forge a recording.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::frame::SessionKey;

pub const CHECKPOINT_CONTEXT: &[u8] = b"proctor checkpoint v1\0";
pub const SEAL_CONTEXT: &[u8] = b"proctor seal v1\0";
pub const TREE_HEAD_CONTEXT: &[u8] = b"proctor tree head v1\0";

#[derive(Debug, Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: not a valid ed25519 {what} key in PEM form: {detail}")]
    Format {
        path: PathBuf,
        what: &'static str,
        detail: String,
    },
    #[error("{0} already exists; refusing to overwrite a recorder key")]
    Exists(PathBuf),
}

pub fn private_key_path(data: &Path) -> PathBuf {
    data.join("keys").join("recorder.key")
}

pub fn public_key_path(data: &Path) -> PathBuf {
    data.join("keys").join("recorder.pub")
}

/// SHA-256 of the raw 32-byte public key: how records name the key that signed them.
pub fn key_id(key: &VerifyingKey) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

pub fn checkpoint_message(
    context: &[u8],
    session: &SessionKey,
    seq: u64,
    hash: &[u8; 32],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(context.len() + 16 + 8 + 32);
    m.extend_from_slice(context);
    m.extend_from_slice(session);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m
}

pub fn tree_head_message(size: u64, root: &[u8; 32], ts_ns: i64) -> Vec<u8> {
    let mut m = Vec::with_capacity(TREE_HEAD_CONTEXT.len() + 8 + 32 + 8);
    m.extend_from_slice(TREE_HEAD_CONTEXT);
    m.extend_from_slice(&size.to_be_bytes());
    m.extend_from_slice(root);
    m.extend_from_slice(&ts_ns.to_be_bytes());
    m
}

pub struct RecorderKey {
    signing: SigningKey,
    pub key_id: [u8; 32],
}

impl RecorderKey {
    pub fn generate() -> Self {
        let signing = SigningKey::generate(&mut rand::rng());
        let key_id = key_id(&signing.verifying_key());
        RecorderKey { signing, key_id }
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// Creates the key pair under `DATA/keys/` (private key mode 0600). Refuses to overwrite.
    pub fn init(data: &Path) -> Result<Self, KeyError> {
        let private = private_key_path(data);
        if private.exists() {
            return Err(KeyError::Exists(private));
        }
        let key = Self::generate();
        let dir = data.join("keys");
        fs::create_dir_all(&dir).map_err(|source| KeyError::Io {
            path: dir.clone(),
            source,
        })?;
        let pem = key
            .signing
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| KeyError::Format {
                path: private.clone(),
                what: "private",
                detail: e.to_string(),
            })?;
        crate::fsutil::write_private(&private, pem.as_bytes()).map_err(|source| KeyError::Io {
            path: private.clone(),
            source,
        })?;
        let public = public_key_path(data);
        fs::write(&public, public_key_pem(&key.verifying_key())).map_err(|source| {
            KeyError::Io {
                path: public.clone(),
                source,
            }
        })?;
        Ok(key)
    }

    pub fn load(data: &Path) -> Result<Self, KeyError> {
        let path = private_key_path(data);
        let pem = fs::read_to_string(&path).map_err(|source| KeyError::Io {
            path: path.clone(),
            source,
        })?;
        let signing = SigningKey::from_pkcs8_pem(&pem).map_err(|e| KeyError::Format {
            path: path.clone(),
            what: "private",
            detail: e.to_string(),
        })?;
        let key_id = key_id(&signing.verifying_key());
        Ok(RecorderKey { signing, key_id })
    }

    pub fn load_or_init(data: &Path) -> Result<Self, KeyError> {
        if private_key_path(data).exists() {
            Self::load(data)
        } else {
            Self::init(data)
        }
    }
}

pub fn public_key_pem(key: &VerifyingKey) -> String {
    key.to_public_key_pem(LineEnding::LF)
        .unwrap_or_else(|_| String::new())
}

/// Reads a public key: PEM (SubjectPublicKeyInfo), or 64 hex digits of the raw key.
pub fn load_public_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let text = fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_public_key(&text).map_err(|detail| KeyError::Format {
        path: path.to_path_buf(),
        what: "public",
        detail,
    })
}

pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let trimmed = text.trim();
    if trimmed.starts_with("-----BEGIN") {
        return VerifyingKey::from_public_key_pem(trimmed).map_err(|e| e.to_string());
    }
    let raw = hex::decode(trimmed).map_err(|e| e.to_string())?;
    let raw: [u8; 32] = raw
        .try_into()
        .map_err(|_| "expected 32 bytes of hex".to_string())?;
    VerifyingKey::from_bytes(&raw).map_err(|e| e.to_string())
}

pub fn verify(key: &VerifyingKey, message: &[u8], signature: &[u8; 64]) -> bool {
    key.verify_strict(message, &Signature::from_bytes(signature))
        .is_ok()
}
