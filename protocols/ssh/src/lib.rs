//! `proctor-ssh`: the SSH front end of proctor.
//!
//! Agents connect with stock OpenSSH clients and authenticate by public key; the SSH user
//! name (`TARGET` or `LOGIN@TARGET`) selects the target. Proctor logs in to the target with
//! the session's just-in-time certificate, relays every channel, records every byte both
//! ways, rebuilds interactive command lines, decodes SFTP, and asks the core's
//! [`proctor_gate::Gate`] before anything that changes the target is forwarded.
//!
//! The entry point is [`serve`].

mod algorithms;
mod channel;
mod cwd_probe;
mod env;
mod forward;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod judged;
mod lines;
mod record;
mod server;
mod session;
mod sftp;
mod target;

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use proctor_gate::Authority;
use russh::keys::{Algorithm, PrivateKey};
use russh::{MethodKind, MethodSet, SshId};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use channel::DENIED_EXIT_STATUS;
pub use env::{DEFAULT_ACCEPT_ENV, EnvAllowList};

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("host key {path}: {reason}")]
    HostKey { path: String, reason: String },
    #[error("listener: {0}")]
    Listener(#[from] std::io::Error),
}

/// Settings of the SSH front end.
#[derive(Debug, Clone)]
pub struct SshFrontendConfig {
    /// Proctor's SSH host key (ed25519 or ECDSA).
    pub host_key: PrivateKey,
    /// From TCP accept to an accepted agent key; the connection is cut after it.
    pub auth_timeout: Duration,
    /// Connections from one address that have not authenticated yet.
    pub max_unauthenticated_per_ip: usize,
    /// Connections that have not authenticated yet, all addresses together.
    pub max_unauthenticated_total: usize,
    /// Delay before a failed authentication is answered (russh makes it constant).
    pub auth_rejection_time: Duration,
    /// Channel window, both towards the agent and towards targets.
    pub window_size: u32,
    /// Largest SSH data packet accepted from either peer.
    pub max_packet_size: u32,
    /// Messages buffered per channel inside russh before it stops reading the connection.
    pub channel_buffer_size: usize,
    pub max_channels_per_connection: usize,
    /// Keepalive towards agents and targets; three unanswered ones end the connection.
    pub keepalive_interval: Duration,
    /// Agent input buffered while a request waits for a verdict or an approval.
    pub held_input_bytes: usize,
    /// Largest batch of agent input recorded durably and forwarded at once.
    pub input_batch_bytes: usize,
    /// Largest batch of target output recorded as one event.
    pub output_batch_bytes: usize,
    /// Output events queued but not yet known to be durable, per channel.
    pub output_unacked_events: usize,
    pub output_unacked_bytes: usize,
    /// How long `serve` waits for sessions to end after shutdown.
    pub shutdown_grace: Duration,
    /// `SetEnv` names passed on to targets; the rest are refused and recorded as refused.
    pub accept_env: Arc<EnvAllowList>,
}

impl SshFrontendConfig {
    /// Defaults tuned for throughput (8 MiB windows, 64 KiB packets) with bounded memory.
    pub fn new(host_key: PrivateKey) -> Self {
        SshFrontendConfig {
            host_key,
            auth_timeout: Duration::from_secs(20),
            max_unauthenticated_per_ip: 10,
            max_unauthenticated_total: 512,
            auth_rejection_time: Duration::from_millis(300),
            window_size: 8 * 1024 * 1024,
            max_packet_size: 65535,
            channel_buffer_size: 64,
            max_channels_per_connection: 64,
            keepalive_interval: Duration::from_secs(30),
            held_input_bytes: 4 * 1024 * 1024,
            input_batch_bytes: 4 * 1024 * 1024,
            output_batch_bytes: 1024 * 1024,
            output_unacked_events: 256,
            output_unacked_bytes: 32 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(10),
            accept_env: Arc::new(EnvAllowList::default()),
        }
    }

    /// The `known_hosts` line agents need to trust proctor at `host:port`.
    pub fn known_hosts_line(&self, host: &str, port: u16) -> String {
        let key = self.host_key.public_key().to_openssh().unwrap_or_default();
        let key: Vec<&str> = key.split_whitespace().take(2).collect();
        if port == 22 {
            format!("{host} {}", key.join(" "))
        } else {
            format!("[{host}]:{port} {}", key.join(" "))
        }
    }

    pub(crate) fn limits(&self) -> session::Limits {
        session::Limits {
            held_input_bytes: self.held_input_bytes,
            input_hard_bytes: self
                .held_input_bytes
                .saturating_add(2 * self.window_size as usize),
            input_batch_bytes: self.input_batch_bytes.max(1),
            forward_bytes: self.input_batch_bytes.max(1).saturating_mul(2),
            output_batch_bytes: self.output_batch_bytes.max(1),
            output_tickets: self.output_unacked_events,
            output_ticket_bytes: self.output_unacked_bytes,
        }
    }

    fn russh(&self) -> russh::server::Config {
        russh::server::Config {
            server_id: SshId::Standard(Cow::Owned(format!(
                "SSH-2.0-proctor_{}",
                env!("CARGO_PKG_VERSION")
            ))),
            methods: MethodSet::from(&[MethodKind::PublicKey][..]),
            auth_rejection_time: self.auth_rejection_time,
            // OpenSSH probes with "none" first; answering it at once costs nothing.
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys: vec![self.host_key.clone()],
            window_size: self.window_size,
            maximum_packet_size: self.max_packet_size,
            channel_buffer_size: self.channel_buffer_size,
            event_buffer_size: 64,
            preferred: algorithms::server(),
            max_auth_attempts: 6,
            // Liveness comes from keepalives; an idle interactive session is legitimate.
            inactivity_timeout: None,
            keepalive_interval: Some(self.keepalive_interval),
            keepalive_max: 3,
            nodelay: true,
            ..Default::default()
        }
    }
}

/// Loads proctor's host key, creating an ed25519 one (mode 0600) if the file is missing.
pub fn load_or_create_host_key(path: &Path) -> Result<PrivateKey, SshError> {
    let err = |reason: String| SshError::HostKey {
        path: path.display().to_string(),
        reason,
    };
    if path.exists() {
        return PrivateKey::read_openssh_file(path).map_err(|e| err(e.to_string()));
    }
    let key =
        PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).map_err(|e| err(e.to_string()))?;
    key.write_openssh_file(path, russh::keys::ssh_key::LineEnding::LF)
        .map_err(|e| err(e.to_string()))?;
    Ok(key)
}

/// Accepts agent connections until `shutdown` turns true, then ends every session
/// (`Interrupted`, "proctor shutting down") and returns once they are ended or
/// `shutdown_grace` has passed.
pub async fn serve(
    listener: TcpListener,
    config: Arc<SshFrontendConfig>,
    authority: Arc<dyn Authority>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), SshError> {
    let fe = Arc::new(server::Frontend {
        russh: Arc::new(config.russh()),
        limiter: proctor_gate::preauth::PreAuthLimiter::new(
            config.max_unauthenticated_per_ip,
            config.max_unauthenticated_total,
        ),
        config: config.clone(),
        authority,
    });
    let mut connections = JoinSet::new();
    let for_connections = shutdown.clone();
    loop {
        tokio::select! {
            _ = session::wait_true(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    // Dropped before the key exchange costs anything: a source that failed
                    // too often lately, or one holding its share of unauthenticated slots.
                    if !fe.authority.admit_source(peer, proctor_gate::Protocol::Ssh) {
                        drop(socket);
                        continue;
                    }
                    // A source past its slots waits a little in a bounded line (a client
                    // opening many connections at once); the accept loop never waits.
                    let (fe, for_connection) = (fe.clone(), for_connections.clone());
                    // The free slot is taken here, in accept order; only a waiter runs apart.
                    let free = fe.limiter.try_acquire(peer.ip()).ok();
                    connections.spawn(async move {
                        let permit = match free {
                            Some(p) => Ok(p),
                            None => fe.limiter.acquire(peer.ip(), fe.config.auth_timeout / 2).await,
                        };
                        match permit {
                            Ok(permit) => {
                                server::run_connection(fe, socket, peer, permit, for_connection).await
                            }
                            Err(why) => {
                                let why = match why {
                                    proctor_gate::preauth::NoSlot::Source => "unauthenticated slots of the source in use",
                                    proctor_gate::preauth::NoSlot::Total => "every unauthenticated slot in use",
                                };
                                fe.authority.dropped_early(peer, proctor_gate::Protocol::Ssh, why);
                                drop(socket);
                            }
                        }
                    });
                }
                Err(e) => {
                    // Out of descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let all = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(config.shutdown_grace, all)
        .await
        .is_err()
    {
        tracing::warn!("sessions still running after the shutdown grace period; aborted");
        connections.abort_all();
    }
    Ok(())
}
