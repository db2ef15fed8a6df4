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
    #[error("cannot tell proctor's address toward {target}: {detail}")]
    SourceAddress { target: String, detail: String },
}

pub fn ca_key_path(data: &Path) -> PathBuf {
    data.join("keys").join("ssh_user_ca")
}

pub struct SshCa {
    key: PrivateKey,
}

/// Proctor's own address(es) toward `host:port`, as a `source-address` list (`ip/32`,
/// `ip/128`): the certificate is then useless from anywhere else, even to the agent that saw
/// nothing of it. A UDP `connect` asks the kernel for the route without sending a packet.
pub async fn source_address_toward(host: &str, port: u16) -> Result<String, CaError> {
    let err = |detail: String| CaError::SourceAddress {
        target: format!("{host}:{port}"),
        detail,
    };
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| err(e.to_string()))?
        .collect();
    let mut out: Vec<String> = Vec::new();
    for a in addrs {
        let any: std::net::SocketAddr = if a.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let local =
            std::net::UdpSocket::bind(any).and_then(|s| s.connect(a).and_then(|()| s.local_addr()));
        // An address family without a route is one proctor will not connect from either.
        let Ok(local) = local else { continue };
        let ip = local.ip().to_canonical();
        let cidr = if ip.is_ipv4() {
            format!("{ip}/32")
        } else {
            format!("{ip}/128")
        };
        if !out.contains(&cidr) {
            out.push(cidr);
        }
    }
    if out.is_empty() {
        return Err(err("no route to any of its addresses".into()));
    }
    Ok(out.join(","))
}

/// What a grant allows the certificate to do. Agent and X11 forwarding are never permitted:
/// proctor refuses them on its side, so the target must not offer them either.
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
        // Never a certificate usable from anywhere: no address, no certificate.
        if req.source_address.trim().is_empty() {
            return Err(CaError::Sign(
                "no source-address to bind the certificate to".into(),
            ));
        }
        b.critical_option("source-address", req.source_address)
            .map_err(sign)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::ssh_key::Certificate;

    fn issue(permit_pty: bool, permit_port_forwarding: bool) -> Certificate {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = SshCa::load_or_init(dir.path()).expect("ca");
        let issued = ca
            .issue(&CertRequest {
                login: "deploy",
                session_id: "s1",
                agent: "a",
                validity: Duration::from_secs(60),
                source_address: "10.0.0.5/32",
                permit_pty,
                permit_port_forwarding,
            })
            .expect("issue");
        Certificate::from_openssh(&issued.certificate_openssh).expect("parse")
    }

    fn extensions(c: &Certificate) -> Vec<&str> {
        c.extensions().keys().map(String::as_str).collect()
    }

    #[test]
    fn extensions_follow_the_grant_and_never_forward_agents_or_x11() {
        assert_eq!(extensions(&issue(true, false)), vec!["permit-pty"]);
        assert!(extensions(&issue(false, false)).is_empty());
        assert_eq!(
            extensions(&issue(false, true)),
            vec!["permit-port-forwarding"]
        );
        let c = issue(true, true);
        assert_eq!(
            c.critical_options()
                .get("source-address")
                .map(String::as_str),
            Some("10.0.0.5/32")
        );
        assert_eq!(c.critical_options().len(), 1);
    }

    #[test]
    fn no_address_no_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = SshCa::load_or_init(dir.path()).expect("ca");
        let r = ca.issue(&CertRequest {
            login: "deploy",
            session_id: "s1",
            agent: "a",
            validity: Duration::from_secs(60),
            source_address: " ",
            permit_pty: true,
            permit_port_forwarding: false,
        });
        assert!(r.is_err());
    }

    #[tokio::test]
    async fn the_address_toward_a_target_is_the_routed_one() {
        assert_eq!(
            source_address_toward("127.0.0.1", 22).await.expect("route"),
            "127.0.0.1/32"
        );
        assert!(
            source_address_toward("no-such-host.invalid", 22)
                .await
                .is_err()
        );
    }
}
