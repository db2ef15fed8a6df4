//! The agent side: russh server callbacks (public-key authentication, channel opens, quick
//! replies to setup requests) and the per-connection supervisor that bounds pre-auth time,
//! admits the session, watches kill / target loss / shutdown and ends the session once.

use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use proctor_gate::preauth::{PreAuthLimiter, PreAuthPermit};
use proctor_gate::{
    Authority, Event, Outcome, Party, Protocol, Refusal, RefusalKind, SessionRequest,
    TargetEndpoint,
};
use russh::keys::HashAlg;
use russh::server::{self, Auth, Msg, PublicKeyOffer, VerifiedPublicKey};
use russh::{ChannelId, ChannelOpenFailure, MethodKind, MethodSet};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::SshFrontendConfig;
use crate::channel::{ChanCtx, run_session};
use crate::forward::{ForwardRequest, direct_tcpip};
use crate::session::{Pressure, Session, Stop, wait_some, wait_true, wait_until};
use crate::target::{self, TargetTuning};

/// What every connection of one listener shares.
pub(crate) struct Frontend {
    pub config: Arc<SshFrontendConfig>,
    pub russh: Arc<server::Config>,
    pub authority: Arc<dyn Authority>,
    pub limiter: Arc<PreAuthLimiter>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthState {
    Waiting,
    /// The key belongs to an agent: pre-auth limits no longer apply.
    KeyAccepted,
    /// Admitted or refused.
    Decided,
}

enum Phase {
    PreAuth,
    Refused(String),
    Established(Arc<Session>),
    Closing,
}

struct Conn {
    peer: SocketAddr,
    phase: Mutex<Phase>,
    auth: watch::Sender<AuthState>,
    actors: Mutex<JoinSet<()>>,
    /// `(ssh user, key fingerprint)` of an offered key no agent owns.
    unknown_key: Mutex<Option<(String, String)>>,
    client_version: Mutex<String>,
    stop: watch::Sender<Option<Stop>>,
    pressure: Arc<Pressure>,
}

impl Conn {
    fn spawn(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        if let Ok(mut set) = self.actors.lock() {
            while set.try_join_next().is_some() {}
            set.spawn(fut);
        }
    }

    fn live_actors(&self) -> usize {
        self.actors
            .lock()
            .map(|mut set| {
                while set.try_join_next().is_some() {}
                set.len()
            })
            .unwrap_or(usize::MAX)
    }

    fn session(&self) -> Option<Arc<Session>> {
        match &*self.phase.lock().ok()? {
            Phase::Established(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// Waits (bounded) for every channel actor to finish; the rest are aborted.
    async fn drain_actors(&self, within: Duration) {
        let mut set = match self.actors.lock() {
            Ok(mut s) => std::mem::take(&mut *s),
            Err(_) => return,
        };
        let all = async { while set.join_next().await.is_some() {} };
        if tokio::time::timeout(within, all).await.is_err() {
            set.abort_all();
        }
    }
}

/// The SSH user name selects the target: `TARGET` or `LOGIN@TARGET`.
pub(crate) fn parse_user(user: &str) -> Result<(Option<String>, String), String> {
    let (login, target) = match user.rsplit_once('@') {
        Some((l, t)) => (Some(l.to_string()), t.to_string()),
        None => (None, user.to_string()),
    };
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 128
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    if !name_ok(&target) {
        return Err(format!(
            "proctor: `{}` does not name a target; log in as TARGET or LOGIN@TARGET",
            user.chars().take(128).collect::<String>()
        ));
    }
    if let Some(l) = &login
        && (!name_ok(l) || l.starts_with('-'))
    {
        return Err(format!("proctor: `{l}` is not a valid login"));
    }
    Ok((login, target))
}

fn key_line(key: &russh::keys::PublicKey) -> String {
    let mut k = key.clone();
    k.set_comment("");
    k.to_openssh()
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

struct AgentHandler {
    fe: Arc<Frontend>,
    conn: Arc<Conn>,
    permit: Option<PreAuthPermit>,
}

impl AgentHandler {
    fn request(&self, agent: &str, user: &str) -> SessionRequest {
        let (login, target) = match parse_user(user) {
            Ok(x) => x,
            Err(_) => (None, user.chars().take(128).collect()),
        };
        SessionRequest {
            protocol: Protocol::Ssh,
            agent: agent.to_string(),
            target,
            login,
            client_addr: self.conn.peer,
            params: vec![("ssh_user".into(), user.chars().take(256).collect())],
        }
    }

    /// Admits the session and connects to the target. Runs inside the authentication
    /// callback: nothing else can happen on this connection before it is decided anyway.
    async fn establish(&self, user: &str, agent: &str) -> Phase {
        let request = self.request(agent, user);
        if let Err(msg) = parse_user(user) {
            self.fe
                .authority
                .refuse(
                    request,
                    Refusal::new(RefusalKind::UnknownTarget, msg.clone()),
                )
                .await;
            return Phase::Refused(msg);
        }
        let open = match self.fe.authority.open(request).await {
            Ok(o) => o,
            Err(r) => return Phase::Refused(format!("proctor: session refused: {}", r.message)),
        };
        let gate = open.gate.clone();
        let TargetEndpoint::Ssh(target) = open.target.clone() else {
            let msg = "proctor: the target is not an SSH target".to_string();
            let _ = gate
                .record(Event::ProtocolError {
                    party: Party::Proctor,
                    message: msg.clone(),
                })
                .await;
            let _ = gate.end(Outcome::Denied, &msg).await;
            return Phase::Refused(msg);
        };
        let cfg = &self.fe.config;
        let tuning = TargetTuning {
            window_size: cfg.window_size,
            max_packet_size: cfg.max_packet_size,
            channel_buffer_size: cfg.channel_buffer_size,
            keepalive_interval: cfg.keepalive_interval,
        };
        match target::connect(&target, &open.credential, &tuning).await {
            Ok(conn) => {
                let limits = cfg.limits();
                Phase::Established(Arc::new(Session {
                    gate,
                    pressure: self.conn.pressure.clone(),
                    target,
                    conn,
                    stop: self.conn.stop.subscribe(),
                    limits,
                    accept_env: cfg.accept_env.clone(),
                }))
            }
            Err(e) => {
                let msg = format!("proctor: {e}; session refused");
                let _ = gate
                    .record(Event::ProtocolError {
                        party: Party::Target,
                        message: e.to_string(),
                    })
                    .await;
                let outcome = if e.is_host_key() {
                    Outcome::Denied
                } else {
                    Outcome::TargetLost
                };
                let _ = gate.end(outcome, &e.to_string()).await;
                Phase::Refused(msg)
            }
        }
    }

    fn set_phase(&self, p: Phase) {
        if let Ok(mut g) = self.conn.phase.lock() {
            *g = p;
        }
    }
}

impl AgentHandler {
    /// A connection-level request proctor refuses (remote forwards): the attempt goes on
    /// record as a refused request on channel 0, which no channel uses.
    fn record_refused_global(&self, request: &str, detail: String) {
        let Some(sess) = self.conn.session() else {
            return;
        };
        let request = request.to_string();
        self.conn.spawn(async move {
            let _ = sess
                .gate
                .record(Event::ChannelRequest {
                    channel: 0,
                    request,
                    detail: format!("{detail} refused: remote forwarding is not supported"),
                    accepted: false,
                })
                .await;
        });
    }
}

impl server::Handler for AgentHandler {
    type Error = russh::Error;

    fn adjust_window(&mut self, channel: ChannelId, _current: u32) -> u32 {
        self.conn
            .pressure
            .grant(channel.number(), self.fe.config.window_size)
    }

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
            partial_success: false,
        })
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        if self
            .fe
            .authority
            .agent_for_ssh_key(&key_line(offer.public_key))
            .is_some()
        {
            return Ok(Auth::Accept);
        }
        if let Ok(mut u) = self.conn.unknown_key.lock() {
            *u = Some((
                user.chars().take(256).collect(),
                offer.public_key.fingerprint(HashAlg::Sha256).to_string(),
            ));
        }
        Ok(Auth::reject())
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let Some(agent) = self
            .fe
            .authority
            .agent_for_ssh_key(&key_line(key.public_key))
        else {
            return Ok(Auth::reject());
        };
        // From here on the connection is an agent's, not an anonymous one.
        self.permit.take();
        if let Ok(mut u) = self.conn.unknown_key.lock() {
            *u = None;
        }
        let _ = self.conn.auth.send(AuthState::KeyAccepted);
        let phase = self.establish(user, &agent).await;
        self.set_phase(phase);
        let _ = self.conn.auth.send(AuthState::Decided);
        Ok(Auth::Accept)
    }

    async fn auth_succeeded(&mut self, session: &mut server::Session) -> Result<(), Self::Error> {
        if let Ok(mut v) = self.conn.client_version.lock() {
            *v = String::from_utf8_lossy(session.remote_sshid()).into_owned();
        }
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: russh::Channel<Msg>,
        reply: server::ChannelOpenHandle,
        session: &mut server::Session,
    ) -> Result<(), Self::Error> {
        let refused = match &*self
            .conn
            .phase
            .lock()
            .map_err(|_| russh::Error::Inconsistent)?
        {
            Phase::Refused(m) => Some(m.clone()),
            _ => None,
        };
        if let Some(msg) = refused {
            reply.accept().await;
            let handle = session.handle();
            let id = channel.id();
            self.conn.spawn(async move {
                refusal_channel(handle, id, msg).await;
                drop(channel);
            });
            return Ok(());
        }
        let Some(sess) = self.conn.session() else {
            return Ok(());
        };
        if self.conn.live_actors() >= self.fe.config.max_channels_per_connection {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        reply.accept().await;
        let ctx = ChanCtx::new(sess, session.handle(), channel.id());
        self.conn.spawn(run_session(ctx, channel));
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: russh::Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        originator_address: &str,
        originator_port: u32,
        reply: server::ChannelOpenHandle,
        session: &mut server::Session,
    ) -> Result<(), Self::Error> {
        let Some(sess) = self.conn.session() else {
            return Ok(());
        };
        if self.conn.live_actors() >= self.fe.config.max_channels_per_connection {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        let ctx = ChanCtx::new(sess, session.handle(), channel.id());
        let req = ForwardRequest {
            host: host_to_connect.chars().take(256).collect(),
            port: port_to_connect,
            originator_address: originator_address.chars().take(64).collect(),
            originator_port,
        };
        self.conn.spawn(direct_tcpip(ctx, channel, reply, req));
        Ok(())
    }

    // Setup requests are answered here at once: russh keeps a single "wants reply" flag per
    // channel, so a reply deferred past the next request could be lost. The channel actor
    // receives the same requests in order and forwards them.
    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut server::Session,
    ) -> Result<(), Self::Error> {
        let allowed = self.conn.session().is_some_and(|s| s.target.allow_pty);
        if allowed {
            session.channel_success(channel)?;
        } else {
            session.channel_failure(channel)?;
        }
        Ok(())
    }

    // The answer only: the channel actor records the request (accepted or refused) and keeps
    // a refused variable from the target.
    async fn env_request(
        &mut self,
        channel: ChannelId,
        variable_name: &str,
        variable_value: &str,
        session: &mut server::Session,
    ) -> Result<(), Self::Error> {
        if self
            .fe
            .config
            .accept_env
            .allows(variable_name, variable_value)
        {
            session.channel_success(channel)?;
        } else {
            session.channel_failure(channel)?;
        }
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        session: &mut server::Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        Ok(())
    }

    // `ssh -R`: proctor never listens on the target for the agent. russh refuses these by
    // default; the attempt is recorded like a refused port forward.
    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut server::Session,
    ) -> Result<bool, Self::Error> {
        let address: String = address.chars().take(256).collect();
        self.record_refused_global("tcpip-forward", format!("{address}:{port}"));
        Ok(false)
    }

    async fn streamlocal_forward(
        &mut self,
        socket_path: &str,
        _session: &mut server::Session,
    ) -> Result<bool, Self::Error> {
        self.record_refused_global(
            "streamlocal-forward@openssh.com",
            socket_path.chars().take(256).collect(),
        );
        Ok(false)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut server::Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }
}

/// A channel of a refused session: it only carries the reason.
async fn refusal_channel(handle: server::Handle, id: ChannelId, msg: String) {
    let _ = handle
        .extended_data(id, 1, Bytes::from(format!("{msg}\n").into_bytes()))
        .await;
    let _ = handle.exit_status_request(id, 255).await;
    let _ = handle.eof(id).await;
    let _ = handle.close(id).await;
}

mod connection;
pub(crate) use connection::run_connection;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_select_targets() {
        assert_eq!(parse_user("web1"), Ok((None, "web1".into())));
        assert_eq!(
            parse_user("root@web1"),
            Ok((Some("root".into()), "web1".into()))
        );
        assert!(parse_user("root@").is_err());
        assert!(parse_user("a b").is_err());
        assert!(parse_user("-oProxy@web1").is_err());
    }
}
