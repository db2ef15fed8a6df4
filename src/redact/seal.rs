//! Field-level encryption: values auditors may need but nobody else may read are sealed to the
//! auditors' X25519 public key with HPKE (RFC 9180, base mode, DHKEM(X25519, HKDF-SHA256),
//! HKDF-SHA256, ChaCha20-Poly1305) and recorded as `[SEALED:v1:<field>:<base64url(enc || ct)>]`.
//!
//! The HPKE `info` binds a ciphertext to its session and field (`proctor seal v1`, 0, session
//! id, 0, field), so a sealed value moved to another session or column does not open. The
//! recorder's hash chain covers the marker, so verifying a recording never needs this key.

use std::fmt;
use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use thiserror::Error;
use zeroize::Zeroizing;

type Kem = X25519HkdfSha256;

const SECRET_TAG: &str = "proctor-auditor-secret-v1";
const PUBLIC_TAG: &str = "proctor-auditor-public-v1";
pub const MARKER_PREFIX: &str = "[SEALED:v1:";

#[derive(Debug, Error)]
pub enum SealError {
    #[error("{path}: {message}")]
    KeyFile { path: String, message: String },
    #[error("sealing failed: {0}")]
    Seal(String),
    #[error("not a sealed marker")]
    NotAMarker,
    #[error("the value does not open with this key (another auditor key, session or field)")]
    Open,
}

fn key_err(path: &Path, message: impl Into<String>) -> SealError {
    SealError::KeyFile {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Reads the hex key following `tag` in a key file (comments and blank lines allowed).
fn read_tagged(path: &Path, tag: &str) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let text =
        Zeroizing::new(std::fs::read_to_string(path).map_err(|e| key_err(path, e.to_string()))?);
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix(tag) {
            let bytes = Zeroizing::new(
                hex::decode(rest.trim()).map_err(|_| key_err(path, format!("{tag}: not hex")))?,
            );
            if bytes.len() != 32 {
                return Err(key_err(path, format!("{tag}: expected 32 bytes")));
            }
            return Ok(bytes);
        }
    }
    Err(key_err(
        path,
        format!("no `{tag}` line (make one with `proctor keys auditor-init`)"),
    ))
}

/// The auditors' public key: what proctor seals to.
#[derive(Clone)]
pub struct Sealer {
    pk: <Kem as hpke::Kem>::PublicKey,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealer({})", hex::encode(self.pk.to_bytes()))
    }
}

fn info(session: &str, field: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(18 + session.len() + field.len());
    v.extend_from_slice(b"proctor seal v1\0");
    v.extend_from_slice(session.as_bytes());
    v.push(0);
    v.extend_from_slice(field.as_bytes());
    v
}

/// Field labels go inside markers: keep them to a safe alphabet.
pub fn field_label(field: &str) -> String {
    field
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Sealer {
    pub fn load(path: &Path) -> Result<Sealer, SealError> {
        // A public key file, or the private key file (its public half is derived).
        if let Ok(bytes) = read_tagged(path, PUBLIC_TAG) {
            let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(&bytes)
                .map_err(|e| key_err(path, e.to_string()))?;
            return Ok(Sealer { pk });
        }
        Ok(Opener::load(path)?.sealer())
    }

    /// The marker holding `plaintext` sealed for `field` of `session`.
    pub fn seal(&self, session: &str, field: &str, plaintext: &[u8]) -> Result<String, SealError> {
        let field = field_label(field);
        let (enc, ct) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, Kem>(
            &OpModeS::Base,
            &self.pk,
            &info(session, &field),
            plaintext,
            b"",
        )
        .map_err(|e| SealError::Seal(e.to_string()))?;
        let mut blob = enc.to_bytes().to_vec();
        blob.extend_from_slice(&ct);
        Ok(format!(
            "{MARKER_PREFIX}{field}:{}]",
            URL_SAFE_NO_PAD.encode(blob)
        ))
    }

    pub fn public_hex(&self) -> String {
        hex::encode(self.pk.to_bytes())
    }
}

/// The auditors' private key: opens sealed markers (`proctor export --reveal`).
pub struct Opener {
    sk: <Kem as hpke::Kem>::PrivateKey,
    pk: <Kem as hpke::Kem>::PublicKey,
}

impl Opener {
    pub fn load(path: &Path) -> Result<Opener, SealError> {
        let bytes = read_tagged(path, SECRET_TAG)?;
        let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(&bytes)
            .map_err(|e| key_err(path, e.to_string()))?;
        let pk = Kem::sk_to_pk(&sk);
        Ok(Opener { sk, pk })
    }

    pub fn sealer(&self) -> Sealer {
        Sealer {
            pk: self.pk.clone(),
        }
    }

    /// Opens one marker (the whole `[SEALED:v1:...]` text).
    pub fn open(&self, session: &str, marker: &str) -> Result<Vec<u8>, SealError> {
        let body = marker
            .strip_prefix(MARKER_PREFIX)
            .and_then(|m| m.strip_suffix(']'))
            .ok_or(SealError::NotAMarker)?;
        let (field, b64) = body.rsplit_once(':').ok_or(SealError::NotAMarker)?;
        let blob = URL_SAFE_NO_PAD
            .decode(b64)
            .map_err(|_| SealError::NotAMarker)?;
        if blob.len() < 32 + 16 {
            return Err(SealError::NotAMarker);
        }
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&blob[..32])
            .map_err(|_| SealError::NotAMarker)?;
        hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, Kem>(
            &OpModeR::Base,
            &self.sk,
            &enc,
            &info(session, field),
            &blob[32..],
            b"",
        )
        .map_err(|_| SealError::Open)
    }

    /// Replaces every marker in `text` that opens with its clear value; returns how many
    /// opened and how many did not.
    pub fn reveal_text(&self, session: &str, text: &str) -> (String, usize, usize) {
        let (mut out, mut opened, mut failed) = (String::with_capacity(text.len()), 0, 0);
        let mut rest = text;
        while let Some(p) = rest.find(MARKER_PREFIX) {
            out.push_str(&rest[..p]);
            let tail = &rest[p..];
            let Some(end) = tail.find(']') else {
                out.push_str(tail);
                rest = "";
                break;
            };
            let marker = &tail[..=end];
            match self.open(session, marker) {
                Ok(clear) => {
                    opened += 1;
                    match String::from_utf8(clear) {
                        Ok(s) => out.push_str(&s),
                        Err(e) => {
                            out.push_str("[REVEALED-HEX:");
                            out.push_str(&hex::encode(e.as_bytes()));
                            out.push(']');
                        }
                    }
                }
                Err(_) => {
                    failed += 1;
                    out.push_str(marker);
                }
            }
            rest = &tail[end + 1..];
        }
        out.push_str(rest);
        (out, opened, failed)
    }
}

/// Makes a new auditor key pair: the private key file (mode 0600, never overwritten) and
/// `<file>.pub`. Returns the public key file's path.
pub fn generate_key_files(out: &Path) -> Result<std::path::PathBuf, SealError> {
    let (sk, pk) = Kem::gen_keypair();
    let pub_path = {
        let mut p = out.as_os_str().to_owned();
        p.push(".pub");
        std::path::PathBuf::from(p)
    };
    let secret = Zeroizing::new(format!(
        "# proctor auditor private key: opens sealed fields (`proctor export --reveal --key`). Keep it offline.\n\
         # HPKE RFC 9180 base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305.\n\
         {SECRET_TAG} {}\n{PUBLIC_TAG} {}\n",
        hex::encode(sk.to_bytes()),
        hex::encode(pk.to_bytes())
    ));
    let public = format!(
        "# proctor auditor public key: proctor seals sensitive fields to it ([redaction] auditor_key).\n{PUBLIC_TAG} {}\n",
        hex::encode(pk.to_bytes())
    );
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(out).map_err(|e| key_err(out, e.to_string()))?;
    f.write_all(secret.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| key_err(out, e.to_string()))?;
    std::fs::write(&pub_path, public).map_err(|e| key_err(&pub_path, e.to_string()))?;
    Ok(pub_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_binding() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("auditor.key");
        let pub_path = generate_key_files(&key).unwrap();
        assert!(generate_key_files(&key).is_err(), "never overwrites a key");
        let sealer = Sealer::load(&pub_path).unwrap();
        let opener = Opener::load(&key).unwrap();
        assert_eq!(sealer.public_hex(), opener.sealer().public_hex());
        let m = sealer
            .seal("s1", "public.customers.ssn", b"123-45-6789")
            .unwrap();
        assert!(m.starts_with("[SEALED:v1:public.customers.ssn:"));
        assert!(!m.contains("123-45-6789"));
        assert_eq!(opener.open("s1", &m).unwrap(), b"123-45-6789");
        assert!(opener.open("s2", &m).is_err(), "bound to the session");
        let moved = m.replace("public.customers.ssn", "public.customers.name");
        assert!(opener.open("s1", &moved).is_err(), "bound to the field");
        let (text, ok, bad) = opener.reveal_text("s1", &format!("a {m} b [SEALED:v1:x:AAAA] c"));
        assert_eq!(
            (text.as_str(), ok, bad),
            ("a 123-45-6789 b [SEALED:v1:x:AAAA] c", 1, 1)
        );
        let other = tempfile::tempdir().unwrap();
        let k2 = other.path().join("k");
        generate_key_files(&k2).unwrap();
        assert!(Opener::load(&k2).unwrap().open("s1", &m).is_err());
    }
}
