//! The connection from proctor to the target `sshd`: TCP with a deadline, host key pinned
//! against the grant's keys or host CAs, login with the just-in-time user certificate.

use std::net::Shutdown;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proctor_gate::{Credential, SshTarget};
use russh::client;
use russh::keys::ssh_key::certificate::CertType;
use russh::keys::{Certificate, HashAlg, PrivateKey, PublicKey, PublicKeyOrCertificate};
use tokio::sync::watch;

use crate::algorithms;

#[derive(Debug, thiserror::Error)]
pub(crate) enum TargetError {
    #[error("cannot reach target {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("{0}")]
    HostKey(String),
    #[error("target {addr} refused proctor's certificate login as {login}")]
    AuthRefused { addr: String, login: String },
    #[error("the session credential is unusable: {0}")]
    Credential(String),
}

impl TargetError {
    /// Whether the target is at fault for being unknown (rather than unreachable).
    pub(crate) fn is_host_key(&self) -> bool {
        matches!(self, TargetError::HostKey(_))
    }
}

/// Pinned host keys and host CAs of one target.
#[derive(Debug, Clone, Default)]
pub(crate) struct HostPins {
    host: String,
    keys: Vec<PublicKey>,
    cas: Vec<PublicKey>,
}

/// Parses an OpenSSH public key line, tolerating a leading known_hosts host field or marker.
fn parse_key_line(line: &str) -> Option<PublicKey> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    for i in 0..fields.len().saturating_sub(1) {
        let candidate = format!("{} {}", fields[i], fields[i + 1]);
        if let Ok(k) = PublicKey::from_openssh(&candidate) {
            return Some(k);
        }
    }
    None
}

impl HostPins {
    pub(crate) fn new(target: &SshTarget) -> Self {
        let mut pins = HostPins {
            host: target.host.clone(),
            ..Default::default()
        };
        for line in &target.host_keys {
            match parse_key_line(line) {
                Some(k) => pins.keys.push(k),
                None => tracing::warn!(line = %line, "ignoring an unparsable pinned host key"),
            }
        }
        for line in &target.host_cas {
            match parse_key_line(line) {
                Some(k) => pins.cas.push(k),
                None => tracing::warn!(line = %line, "ignoring an unparsable host CA key"),
            }
        }
        pins
    }

    pub(crate) fn has_cas(&self) -> bool {
        !self.cas.is_empty()
    }

    /// `Ok` when the presented key or certificate is trusted, else why not.
    pub(crate) fn check(&self, presented: &PublicKeyOrCertificate) -> Result<(), String> {
        match presented {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                if self.keys.iter().any(|k| k.key_data() == key.key_data()) {
                    return Ok(());
                }
                let fp = key.fingerprint(HashAlg::Sha256);
                if self.keys.is_empty() {
                    Err(format!(
                        "the target presented host key {} {fp}, and no host key is pinned for it",
                        key.algorithm()
                    ))
                } else {
                    Err(format!(
                        "the target's host key {} {fp} does not match the pinned key (possible man-in-the-middle, or the host was reinstalled)",
                        key.algorithm()
                    ))
                }
            }
            PublicKeyOrCertificate::Certificate(cert) => self.check_cert(cert),
        }
    }

    fn check_cert(&self, cert: &Certificate) -> Result<(), String> {
        // A pinned plain key also vouches for a certificate over that same key.
        if self.keys.iter().any(|k| k.key_data() == cert.public_key()) {
            return Ok(());
        }
        if cert.cert_type() != CertType::Host {
            return Err("the target presented a user certificate as its host key".into());
        }
        let fps: Vec<_> = self
            .cas
            .iter()
            .map(|k| k.fingerprint(HashAlg::Sha256))
            .collect();
        if fps.is_empty() {
            return Err(
                "the target presented a host certificate, and no host CA is trusted for it".into(),
            );
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        cert.validate_at(now, fps.iter())
            .map_err(|e| format!("the target's host certificate is not valid: {e}"))?;
        let principals = cert.valid_principals();
        if !principals.is_empty() && !principals.iter().any(|p| p == &self.host) {
            return Err(format!(
                "the target's host certificate is not valid for {} (principals: {})",
                self.host,
                principals.join(",")
            ));
        }
        Ok(())
    }
}

/// russh client callbacks for the target connection.
pub(crate) struct TargetHandler {
    pins: HostPins,
    rejection: Arc<Mutex<Option<String>>>,
    /// Flipped when the connection task ends, however it ends.
    lost: watch::Sender<bool>,
}

impl Drop for TargetHandler {
    fn drop(&mut self) {
        let _ = self.lost.send(true);
    }
}

impl client::Handler for TargetHandler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        match self.pins.check(server_public_key) {
            Ok(()) => Ok(true),
            Err(why) => {
                if let Ok(mut r) = self.rejection.lock() {
                    *r = Some(why);
                }
                Ok(false)
            }
        }
    }

    // The target never gets to open channels towards the agent: no remote forwards, no agent
    // or X11 forwarding. Dropping the reply handle refuses.
    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        _channel: russh::Channel<client::Msg>,
        _connected_address: &str,
        _connected_port: u32,
        _originator_address: &str,
        _originator_port: u32,
        _reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    async fn server_channel_open_forwarded_streamlocal(
        &mut self,
        _channel: russh::Channel<client::Msg>,
        _socket_path: &str,
        _reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    async fn server_channel_open_agent_forward(
        &mut self,
        _channel: russh::Channel<client::Msg>,
        _reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    async fn server_channel_open_session(
        &mut self,
        _channel: russh::Channel<client::Msg>,
        _reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    async fn server_channel_open_direct_tcpip(
        &mut self,
        _channel: russh::Channel<client::Msg>,
        _host_to_connect: &str,
        _port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        _reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    async fn server_channel_open_direct_streamlocal(
        &mut self,
        _channel: russh::Channel<client::Msg>,
        _socket_path: &str,
        _reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    async fn server_channel_open_x11(
        &mut self,
        _channel: russh::Channel<client::Msg>,
        _originator_address: &str,
        _originator_port: u32,
        _reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Tuning of the target-side connection.
#[derive(Debug, Clone)]
pub(crate) struct TargetTuning {
    pub window_size: u32,
    pub max_packet_size: u32,
    pub channel_buffer_size: usize,
    pub keepalive_interval: Duration,
}

/// An authenticated connection to the target.
pub(crate) struct TargetConn {
    pub handle: client::Handle<TargetHandler>,
    /// `true` once the connection is gone.
    pub lost: watch::Receiver<bool>,
    socket: std::net::TcpStream,
}

impl TargetConn {
    /// Ends the connection: a polite disconnect, then the socket itself, so a target that
    /// stopped reading cannot keep it open.
    pub(crate) async fn close(&self, why: &str) {
        let _ = tokio::time::timeout(
            Duration::from_millis(500),
            self.handle
                .disconnect(russh::Disconnect::ByApplication, why, "en"),
        )
        .await;
        let _ = self.socket.shutdown(Shutdown::Both);
    }
}

/// Connects, checks the host key and logs in with the certificate.
pub(crate) async fn connect(
    target: &SshTarget,
    credential: &Credential,
    tuning: &TargetTuning,
) -> Result<TargetConn, TargetError> {
    let Credential::SshCertificate {
        login,
        private_key_openssh,
        certificate_openssh,
    } = credential
    else {
        return Err(TargetError::Credential("not an SSH certificate".into()));
    };
    let key = PrivateKey::from_openssh(private_key_openssh.as_bytes())
        .map_err(|e| TargetError::Credential(format!("private key: {e}")))?;
    let cert = Certificate::from_openssh(certificate_openssh.trim())
        .map_err(|e| TargetError::Credential(format!("certificate: {e}")))?;
    let addr = format!("{}:{}", target.host, target.port);
    let unreachable = |reason: String| TargetError::Unreachable {
        addr: addr.clone(),
        reason,
    };
    let deadline = tokio::time::Instant::now() + target.connect_timeout;

    let stream = tokio::time::timeout_at(
        deadline,
        tokio::net::TcpStream::connect((target.host.as_str(), target.port)),
    )
    .await
    .map_err(|_| unreachable("connection timed out".into()))?
    .map_err(|e| unreachable(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    // A duplicate of the socket lets proctor cut the connection even when russh is stuck.
    let std_stream = stream.into_std().map_err(|e| unreachable(e.to_string()))?;
    let killer = std_stream
        .try_clone()
        .map_err(|e| unreachable(e.to_string()))?;
    let stream =
        tokio::net::TcpStream::from_std(std_stream).map_err(|e| unreachable(e.to_string()))?;

    let pins = HostPins::new(target);
    let config = client::Config {
        window_size: tuning.window_size,
        maximum_packet_size: tuning.max_packet_size,
        channel_buffer_size: tuning.channel_buffer_size,
        preferred: algorithms::client(pins.has_cas()),
        inactivity_timeout: None,
        keepalive_interval: Some(tuning.keepalive_interval),
        keepalive_max: 3,
        nodelay: true,
        ..Default::default()
    };
    let rejection = Arc::new(Mutex::new(None));
    let (lost_tx, lost_rx) = watch::channel(false);
    let handler = TargetHandler {
        pins,
        rejection: rejection.clone(),
        lost: lost_tx,
    };
    let connected = tokio::time::timeout_at(
        deadline,
        client::connect_stream(Arc::new(config), stream, handler),
    )
    .await;
    let mut handle = match connected {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            let _ = killer.shutdown(Shutdown::Both);
            if let Some(why) = rejection.lock().ok().and_then(|mut r| r.take()) {
                return Err(TargetError::HostKey(why));
            }
            return Err(unreachable(format!("SSH handshake failed: {e}")));
        }
        Err(_) => {
            let _ = killer.shutdown(Shutdown::Both);
            return Err(unreachable("SSH handshake timed out".into()));
        }
    };
    let auth = tokio::time::timeout_at(
        deadline,
        handle.authenticate_openssh_cert(login.clone(), Arc::new(key), cert),
    )
    .await;
    let ok = match auth {
        Ok(Ok(r)) => r.success(),
        Ok(Err(e)) => {
            let _ = killer.shutdown(Shutdown::Both);
            return Err(unreachable(format!("login failed: {e}")));
        }
        Err(_) => false,
    };
    if !ok {
        let _ = killer.shutdown(Shutdown::Both);
        return Err(TargetError::AuthRefused {
            addr,
            login: login.clone(),
        });
    }
    Ok(TargetConn {
        handle,
        lost: lost_rx,
        socket: killer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lines_parse_with_or_without_host_field() {
        let k = PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519).expect("key");
        let line = k.public_key().to_openssh().expect("openssh");
        assert!(parse_key_line(&line).is_some());
        assert!(parse_key_line(&format!("[127.0.0.1]:22 {line}")).is_some());
        assert!(parse_key_line("garbage").is_none());
    }

    #[test]
    fn pins_match_only_the_pinned_key() {
        let a = PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519).expect("key");
        let b = PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519).expect("key");
        let target = SshTarget {
            host: "h".into(),
            port: 22,
            host_keys: vec![a.public_key().to_openssh().expect("openssh")],
            host_cas: vec![],
            connect_timeout: Duration::from_secs(1),
            allow_port_forwarding: false,
            allow_pty: true,
            shell: proctor_gate::ShellMode::RecordOnly,
        };
        let pins = HostPins::new(&target);
        assert!(pins.check(&a.public_key().clone().into()).is_ok());
        let err = pins
            .check(&b.public_key().clone().into())
            .expect_err("mismatch");
        assert!(err.contains("does not match"), "{err}");
    }

    fn host_cert(
        ca: &PrivateKey,
        host: &PrivateKey,
        principal: &str,
        kind: CertType,
    ) -> Certificate {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("time")
            .as_secs();
        let mut b = russh::keys::ssh_key::certificate::Builder::new_with_random_nonce(
            &mut rand::rng(),
            host.public_key().key_data().clone(),
            now - 60,
            now + 600,
        )
        .expect("builder");
        b.cert_type(kind).expect("type");
        b.valid_principal(principal).expect("principal");
        b.sign(ca).expect("sign")
    }

    #[test]
    fn host_certificates_need_a_trusted_ca_and_the_right_name() {
        let key =
            || PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519).expect("key");
        let (ca, other_ca, host) = (key(), key(), key());
        let target = SshTarget {
            host: "web1.example".into(),
            port: 22,
            host_keys: vec![],
            host_cas: vec![format!(
                "@cert-authority * {}",
                ca.public_key().to_openssh().expect("openssh")
            )],
            connect_timeout: Duration::from_secs(1),
            allow_port_forwarding: false,
            allow_pty: true,
            shell: proctor_gate::ShellMode::RecordOnly,
        };
        let pins = HostPins::new(&target);
        let good = host_cert(&ca, &host, "web1.example", CertType::Host);
        assert!(pins.check(&good.into()).is_ok());
        let wrong_name = host_cert(&ca, &host, "db1.example", CertType::Host);
        assert!(pins.check(&wrong_name.into()).is_err());
        let user_cert = host_cert(&ca, &host, "web1.example", CertType::User);
        assert!(pins.check(&user_cert.into()).is_err());
        let untrusted = host_cert(&other_ca, &host, "web1.example", CertType::Host);
        assert!(pins.check(&untrusted.into()).is_err());
    }
}
