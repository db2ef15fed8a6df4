//! Proctor's SSH user certificate authority. Its key is its own (never the recorder's), so a
//! leaked CA key cannot forge evidence and a leaked recorder key cannot reach a target.

use std::path::{Path, PathBuf};
use std::time::Duration;

use proctor_gate::CredentialRecord;
use russh::keys::ssh_key::certificate::{Builder, CertType};
use russh::keys::ssh_key::{Algorithm, LineEnding, PrivateKey};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::clock::now_ns;

#[derive(Debug, Error)]
pub enum CaError {
    #[error("{path}: {detail}")]
    Key { path: PathBuf, detail: String },
    #[error("cannot sign a certificate: {0}")]
    Sign(String),
}

pub fn ca_key_path(data: &Path) -> PathBuf {
    data.join("keys").join("ssh_user_ca")
}

pub struct SshCa {
    key: PrivateKey,
}

/// What a grant allows the certificate to do.
#[derive(Debug, Clone)]
pub struct CertRequest<'a> {
    pub login: &'a str,
    pub session_id: &'a str,
    pub agent: &'a str,
    pub validity: Duration,
    pub source_address: &'a str,
    pub permit_pty: bool,
    pub permit_port_forwarding: bool,
}

/// An issued certificate: the secret half goes to the protocol, the record to the recorder.
pub struct Issued {
    pub private_key_openssh: Zeroizing<String>,
    pub certificate_openssh: String,
    pub record: CredentialRecord,
}

impl SshCa {
    pub fn load_or_init(data: &Path) -> Result<SshCa, CaError> {
        let path = ca_key_path(data);
        let err = |detail: String| CaError::Key {
            path: path.clone(),
            detail,
        };
        if path.exists() {
            let key = PrivateKey::read_openssh_file(&path).map_err(|e| err(e.to_string()))?;
            return Ok(SshCa { key });
        }
        let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
            .map_err(|e| err(e.to_string()))?;
        let pem = key
            .to_openssh(LineEnding::LF)
            .map_err(|e| err(e.to_string()))?;
        crate::fsutil::write_private(&path, pem.as_bytes()).map_err(|e| err(e.to_string()))?;
        Ok(SshCa { key })
    }

    /// The `TrustedUserCAKeys` line targets need.
    pub fn public_line(&self) -> String {
        self.key
            .public_key()
            .to_openssh()
            .map(|s| format!("{s} proctor-user-ca"))
            .unwrap_or_default()
    }

    pub fn issue(&self, req: &CertRequest<'_>) -> Result<Issued, CaError> {
        let mut rng = rand::rng();
        let ephemeral = PrivateKey::random(&mut rng, Algorithm::Ed25519)
            .map_err(|e| CaError::Sign(e.to_string()))?;
        let now = (now_ns() / 1_000_000_000).max(0) as u64;
        // A minute of skew for targets whose clocks lag; the certificate is only needed to log in.
        let valid_after = now.saturating_sub(60);
        let valid_before = now + req.validity.as_secs().max(30);
        let serial: u64 = rand::random();
        let key_id = format!("proctor session={} agent={}", req.session_id, req.agent);
        let sign = |e: russh::keys::ssh_key::Error| CaError::Sign(e.to_string());
        let mut b = Builder::new_with_random_nonce(
            &mut rng,
            ephemeral.public_key(),
            valid_after,
            valid_before,
        )
        .map_err(sign)?;
        b.serial(serial).map_err(sign)?;
        b.key_id(key_id.clone()).map_err(sign)?;
        b.cert_type(CertType::User).map_err(sign)?;
        b.valid_principal(req.login).map_err(sign)?;
        if !req.source_address.is_empty() {
            b.critical_option("source-address", req.source_address)
                .map_err(sign)?;
        }
        let mut extensions = Vec::new();
        if req.permit_pty {
            b.extension("permit-pty", "").map_err(sign)?;
            extensions.push("permit-pty");
        }
        if req.permit_port_forwarding {
            b.extension("permit-port-forwarding", "").map_err(sign)?;
            extensions.push("permit-port-forwarding");
        }
        let cert = b.sign(&self.key).map_err(sign)?;
        let certificate_openssh = cert.to_openssh().map_err(sign)?;
        let private_key_openssh = ephemeral.to_openssh(LineEnding::LF).map_err(sign)?;
        Ok(Issued {
            private_key_openssh,
            certificate_openssh,
            record: CredentialRecord {
                kind: "ssh-certificate".into(),
                name: key_id,
                serial,
                principals: vec![req.login.to_string()],
                valid_after_ns: valid_after as i64 * 1_000_000_000,
                valid_before_ns: valid_before as i64 * 1_000_000_000,
                detail: format!(
                    "source-address={}; extensions={}; ca={}",
                    req.source_address,
                    if extensions.is_empty() {
                        "none".to_string()
                    } else {
                        extensions.join(",")
                    },
                    self.key.public_key().fingerprint(Default::default())
                ),
            },
        })
    }
}
