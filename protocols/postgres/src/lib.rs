//! `proctor-postgres`: the PostgreSQL front end of proctor.
//!
//! Agents connect with any PostgreSQL client. Proctor terminates the connection (TLS, SCRAM),
//! asks the core to admit the session, logs in to the real target with the just-in-time role
//! the core issued, and relays the protocol message by message: every statement is classified,
//! judged by the gate and recorded durably before it is forwarded, or (when its effects cannot
//! outlive the target connection, [`durability`]) forwarded at once with its answer held back
//! until its record is durable; its outcome is recorded as it streams back.
//!
//! Module map: [`wire`] framing and proctor's own messages; [`startup`] SSL/GSS negotiation and
//! the startup packet; [`scram_server`] agent authentication and [`channel_binding`] its binding
//! to proctor's certificate; [`target`] the target login;
//! [`sqllex`] and [`classify`] statement splitting and classification; [`durability`] when a
//! statement's record must be durable; [`frontend`] decoding of
//! client messages; [`relay`] the message loop; [`results`] result digests and samples;
//! [`cancel`] cancel keys; [`session`] one connection from accept to end.
//!
//! Codecs: pgwire is used as a codec only (SSL/GSS request detection, Authentication and
//! NegotiateProtocolVersion encoding); postgres-protocol for the target login (SCRAM client,
//! frontend messages). The relay keeps its own length-prefixed framing and forwards the
//! original bytes of every message: pgwire decodes text lossily, re-orders startup parameters,
//! allocates per message, and rejects FunctionCall, none of which a faithful relay can afford.
//! Only the fields proctor needs are read, borrowing from the frame.

/// The ALPN protocol name PostgreSQL clients offer over TLS (required for direct TLS). A
/// `rustls::ServerConfig` given to the front end should list it in `alpn_protocols`.
pub const ALPN_PROTOCOL: &[u8] = b"postgresql";

pub mod cancel;
pub mod channel_binding;
pub mod classify;
pub mod durability;
pub mod frontend;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod params;
mod pg_settings;
pub mod relay;
pub mod results;
pub mod scram_server;
pub mod session;
pub mod sqllex;
pub mod startup;
pub mod stream;
pub mod target;
pub mod uescape;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proctor_gate::Authority;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Listener configuration.
#[derive(Clone)]
pub struct PgFrontendConfig {
    /// Server certificate for SSLRequest; `None` answers `N` (no TLS).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Refuse sessions that did not negotiate TLS (SQLSTATE 28000). The library default is
    /// off so that embedders and tests choose; proctor's own config defaults it to on.
    pub require_tls: bool,
    /// `tls-server-end-point` binding data of the certificate in `tls`
    /// ([`channel_binding::tls_server_end_point`]); when set, SCRAM-SHA-256-PLUS is offered to
    /// TLS clients.
    pub tls_server_end_point: Option<Arc<[u8]>>,
    /// Largest message accepted from the client or the target after startup (default 64 MiB).
    /// Startup-phase messages are limited to 10,000 bytes regardless.
    pub max_message_bytes: usize,
    /// Result rows kept as samples per statement (default 5).
    pub sample_rows: usize,
    /// Time allowed from accept to a completed client authentication (default 10 s).
    pub handshake_timeout: Duration,
    /// Connections from one address still in startup or authentication; more are closed at
    /// accept (default 16: a pool warming up opens several at once).
    pub max_unauthenticated_per_ip: usize,
    /// Connections still in startup or authentication, all addresses together (default 512).
    pub max_unauthenticated_total: usize,
    /// Text of the notice sent when a statement is held. `{id}`, `{rule}` and `{reason}` are
    /// replaced.
    pub hold_notice: String,
    /// `COPY ... FROM STDIN` data recorded per statement; past it the record keeps the first
    /// part, the digest and size of all of it, and a note that it was cut. Each session uses
    /// its grant's limit ([`proctor_gate::PostgresTarget::copy_record_limit`]) in place of this
    /// one.
    pub copy_record_limit: u64,
}

impl Default for PgFrontendConfig {
    fn default() -> Self {
        PgFrontendConfig {
            tls: None,
            require_tls: false,
            tls_server_end_point: None,
            max_message_bytes: 64 << 20,
            sample_rows: 5,
            handshake_timeout: Duration::from_secs(10),
            max_unauthenticated_per_ip: 16,
            max_unauthenticated_total: 512,
            hold_notice: "proctor: statement held for approval {id} (rule {rule}: {reason})"
                .to_string(),
            copy_record_limit: proctor_gate::DEFAULT_COPY_RECORD_LIMIT,
        }
    }
}

impl std::fmt::Debug for PgFrontendConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgFrontendConfig")
            .field("tls", &self.tls.is_some())
            .field("require_tls", &self.require_tls)
            .field("channel_binding", &self.tls_server_end_point.is_some())
            .field("max_message_bytes", &self.max_message_bytes)
            .field("sample_rows", &self.sample_rows)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

/// How long sessions get to say goodbye once shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Accepts connections until `shutdown` turns true; one task per connection, so a slow or
/// silent client never holds up the accept loop. On shutdown every session is ended with
/// `Interrupted` ("proctor shutting down", FATAL 57P01 to its client) before this returns.
pub async fn serve(
    listener: TcpListener,
    config: Arc<PgFrontendConfig>,
    authority: Arc<dyn Authority>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut tasks = JoinSet::new();
    let limiter = proctor_gate::preauth::PreAuthLimiter::new(
        config.max_unauthenticated_per_ip,
        config.max_unauthenticated_total,
    );
    loop {
        if *shutdown.borrow() {
            break;
        }
        tokio::select! {
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() {
                    break;
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Closed before any TLS work: a source that failed too often lately, or
                    // one holding its share of connections still logging in.
                    if !authority.admit_source(peer, proctor_gate::Protocol::Postgres) {
                        drop(stream);
                        continue;
                    }
                    // A source past its slots waits a little in a bounded line (a pool
                    // opening many connections at once); the accept loop never waits.
                    let (config, authority, rx, limiter) =
                        (config.clone(), authority.clone(), shutdown.clone(), limiter.clone());
                    // The free slot is taken here, in accept order; only a waiter runs apart.
                    let free = limiter.try_acquire(peer.ip()).ok();
                    tasks.spawn(async move {
                        let permit = match free {
                            Some(p) => Ok(p),
                            None => limiter.acquire(peer.ip(), config.handshake_timeout / 2).await,
                        };
                        let permit = match permit {
                            Ok(p) => p,
                            Err(why) => {
                                let why = match why {
                                    proctor_gate::preauth::NoSlot::Source => "startup slots of the source in use",
                                    proctor_gate::preauth::NoSlot::Total => "every startup slot in use",
                                };
                                authority.dropped_early(peer, proctor_gate::Protocol::Postgres, why);
                                session::turn_away(stream, why).await;
                                return;
                            }
                        };
                        session::run(stream, peer, config, authority, Some(rx), Some(permit)).await;
                    });
                }
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "postgres listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::warn!("postgres listener: sessions still running after the grace period");
        tasks.shutdown().await;
    }
    Ok(())
}

/// Serves one accepted connection to its end (for tests and embedding). Never panics on
/// client or target input; every admitted session is ended through `Gate::end`.
pub async fn handle_connection(
    stream: TcpStream,
    peer: SocketAddr,
    config: Arc<PgFrontendConfig>,
    authority: Arc<dyn Authority>,
) {
    session::run(stream, peer, config, authority, None, None).await;
}
