//! `CoreAuthority`: admits agent sessions. Every admission and every refusal is recorded as a
//! session of its own, so a failed login is evidence too.
//!
//! The target's side (its endpoint, the just-in-time credential and what revokes it) is in
//! `authority/credential.rs`.

mod credential;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use proctor_gate::{
    AlertRecord, Authority, Event, OpenSession, Outcome, Privilege, Protocol, Refusal, RefusalKind,
    SessionInfo, SessionRequest, VerdictKind, VerdictRecord,
};
use tokio::sync::watch;

use super::core::{Core, key_fingerprint_text};
use super::gate::SessionGate;
use super::registry::LiveSession;
use crate::bus::LiveEvent;
use crate::clock::now_ns;
use crate::config::{Grant, Target};
use crate::recorder::Urgency;
use crate::recorder::frame::SessionKey;

/// Startup parameters / environment variables whose value is the agent's stated reason.
const REASON_PARAMS: &[&str] = &["PROCTOR_REASON", "proctor_reason", "proctor.reason"];

pub struct CoreAuthority {
    pub core: Arc<Core>,
    /// Refusals before authentication: counted and summarised, never sessions of their own.
    pub unauth: Arc<super::unauth::Unauthenticated>,
}

fn new_session() -> (String, SessionKey) {
    let id = uuid::Uuid::now_v7();
    (id.to_string(), *id.as_bytes())
}

pub use self::credential::admin_target;
use self::credential::endpoint;

impl CoreAuthority {
    pub fn new(core: Arc<Core>) -> Self {
        CoreAuthority {
            core,
            unauth: Arc::new(super::unauth::Unauthenticated::new(Default::default())),
        }
    }

    async fn record_all(&self, key: SessionKey, events: &[Event]) -> Result<(), Refusal> {
        let mut last = None;
        // Start-up parameters and the stated reason bypass the session gate: redact them here.
        let redactor = self.core.redactor();
        let mut redaction =
            crate::redact::SessionRedaction::new(&crate::recorder::index::session_id_string(&key));
        for e in events {
            let redacted = redactor.event(&mut redaction, e);
            let e = redacted.as_ref().unwrap_or(e);
            last = Some(
                self.core
                    .recorder
                    .append(key, now_ns(), e, Urgency::Lazy)
                    .await
                    .map_err(|e| {
                        Refusal::new(
                            RefusalKind::RecorderFailed,
                            format!("proctor cannot record right now ({e}); no session may open"),
                        )
                    })?,
            );
        }
        if let Some(t) = last {
            t.wait().await.map_err(|e| {
                Refusal::new(
                    RefusalKind::RecorderFailed,
                    format!("proctor cannot record right now ({e}); no session may open"),
                )
            })?;
        }
        Ok(())
    }

    /// Records a whole refused session: start, the refusal as a verdict, a sealed `denied` end.
    async fn record_refusal(
        &self,
        req: &SessionRequest,
        refusal: &Refusal,
        privilege: Privilege,
        grant: &str,
    ) {
        let (id, key) = new_session();
        let mut events = vec![Event::SessionStart(SessionInfo {
            agent: req.agent.clone(),
            target: req.target.clone(),
            protocol: req.protocol,
            login: req.login.clone().unwrap_or_default(),
            privilege,
            client_addr: req.client_addr.to_string(),
            grant: grant.to_string(),
            proctor_version: env!("CARGO_PKG_VERSION").into(),
        })];
        if !req.params.is_empty() {
            events.push(Event::ClientParams {
                params: req.params.clone(),
            });
        }
        events.push(Event::Verdict(VerdictRecord {
            subject: "session".into(),
            verdict: VerdictKind::Deny,
            rule: refusal.kind.as_str().into(),
            reason: refusal.message.clone(),
            approval_id: String::new(),
        }));
        events.push(self.core.retention_event(&req.target));
        if self.record_all(key, &events).await.is_ok()
            && let Err(e) = self
                .core
                .recorder
                .seal(key, now_ns(), Outcome::Denied, &refusal.message)
                .await
        {
            tracing::error!(error = %e, "could not seal a refused session");
        }
        tracing::info!(session = %id, agent = %proctor_gate::inert::Line(&req.agent), target = %proctor_gate::inert::Line(&req.target), kind = refusal.kind.as_str(), "session refused: {}", proctor_gate::inert::Line(&refusal.message));
        self.core.bus.publish(LiveEvent::Refused {
            agent: req.agent.clone(),
            target: req.target.clone(),
            protocol: req.protocol.as_str().into(),
            reason: refusal.message.clone(),
            ts_ns: now_ns(),
        });
    }

    fn check(&self, req: &SessionRequest) -> Result<(Target, Grant), Refusal> {
        let config = &self.core.config;
        if let Some(reason) = self.core.recorder.failure() {
            return Err(Refusal::new(
                RefusalKind::RecorderFailed,
                format!("proctor cannot record right now ({reason}); no session may open"),
            ));
        }
        if config.agent(&req.agent).is_none() {
            return Err(Refusal::new(
                RefusalKind::UnknownAgent,
                format!("unknown agent {:?}", req.agent),
            ));
        }
        let target = match config.target(&req.target) {
            Some(t) if t.protocol() == Some(req.protocol) => t.clone(),
            _ => {
                return Err(Refusal::new(
                    RefusalKind::UnknownTarget,
                    format!("no {} target named {:?}", req.protocol.as_str(), req.target),
                ));
            }
        };
        let grant = config
            .grant_for(&req.agent, &req.target, req.login.as_deref())
            .cloned()
            .ok_or_else(|| {
                Refusal::new(
                    RefusalKind::NotGranted,
                    match &req.login {
                        Some(l) => format!(
                            "agent {:?} has no grant for {:?} as {l:?}",
                            req.agent, req.target
                        ),
                        None => format!(
                            "agent {:?} has no grant for target {:?}",
                            req.agent, req.target
                        ),
                    },
                )
            })?;
        Ok((target, grant))
    }
}

fn reason_from(params: &[(String, String)]) -> Option<String> {
    if let Some((_, v)) = params
        .iter()
        .find(|(k, v)| REASON_PARAMS.contains(&k.as_str()) && !v.trim().is_empty())
    {
        return Some(v.clone());
    }
    // PostgreSQL clients pass custom settings in `options`: `-c proctor.reason=...`, with
    // spaces in the value escaped by a backslash (libpq's convention).
    let options = params
        .iter()
        .find(|(k, _)| k == "options")
        .map(|(_, v)| v.as_str())?;
    let at = options.find("proctor.reason=")? + "proctor.reason=".len();
    let mut reason = String::new();
    let mut chars = options[at..].chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    reason.push(n);
                }
            }
            c if c.is_whitespace() => break,
            c => reason.push(c),
        }
    }
    (!reason.trim().is_empty()).then_some(reason)
}

#[async_trait]
impl Authority for CoreAuthority {
    fn agent_scram_verifier(&self, agent: &str) -> Option<String> {
        self.core.config.agent(agent)?.postgres_scram.clone()
    }

    fn agent_for_ssh_key(&self, public_key_openssh: &str) -> Option<String> {
        let text = key_fingerprint_text(public_key_openssh)?;
        self.core.ssh_keys.get(&text).cloned()
    }

    async fn open(&self, req: SessionRequest) -> Result<OpenSession, Refusal> {
        let (target, grant) = match self.check(&req) {
            Ok(x) => x,
            Err(refusal) => {
                if refusal.kind != RefusalKind::RecorderFailed {
                    self.record_refusal(&req, &refusal, Privilege::Routine, "")
                        .await;
                }
                return Err(refusal);
            }
        };
        let privilege = grant.privilege_level();
        let reason = reason_from(&req.params);
        // SSH clients send their environment (PROCTOR_REASON) only after authentication, so
        // for SSH the reason is required before the first action instead (SessionGate::decide).
        if privilege == Privilege::BreakGlass
            && reason.is_none()
            && req.protocol == Protocol::Postgres
        {
            let refusal = Refusal::new(
                RefusalKind::NotGranted,
                "break-glass access needs a stated reason: set PROCTOR_REASON (SSH: -o SetEnv=PROCTOR_REASON=...; PostgreSQL: options=-cproctor.reason=...)",
            );
            self.record_refusal(&req, &refusal, privilege, &grant.name)
                .await;
            return Err(refusal);
        }
        // The place is taken before the credential is issued: issuing is what the limit
        // protects (target connections, roles), and a failure below drops it again.
        let limits = &self.core.config.limits;
        let admission = match self.core.admissions.admit(
            &req.agent,
            &grant.name,
            limits.sessions_per_agent,
            grant.max_sessions.unwrap_or(limits.sessions_per_grant),
        ) {
            Ok(a) => a,
            Err(msg) => {
                let refusal = Refusal::new(RefusalKind::Overloaded, msg);
                self.record_refusal(&req, &refusal, privilege, &grant.name)
                    .await;
                return Err(refusal);
            }
        };
        let login = match target.protocol() {
            Some(Protocol::Ssh) => req
                .login
                .clone()
                .or_else(|| grant.logins.first().cloned())
                .unwrap_or_default(),
            _ => grant.role.clone().unwrap_or_default(),
        };
        let (id, key) = new_session();
        // Cluster mode: a session other nodes cannot see cannot be killed from them; refuse it.
        if let Some(c) = self.core.cluster.get()
            && let Err(e) = c.admit().await
        {
            let refusal = Refusal::new(
                RefusalKind::Overloaded,
                format!(
                    "proctor refuses new sessions while its cluster control plane is unreachable (a session that cannot be killed from other nodes does not start): {e}"
                ),
            );
            self.record_refusal(&req, &refusal, privilege, &grant.name)
                .await;
            return Err(refusal);
        }
        // `[object_store]`: evidence that cannot be shipped piles up in the spool; past its bound
        // no new session adds to it (live ones go on and are recorded).
        if let Some(e) = self.core.evidence.get()
            && let Err(msg) = e.admit()
        {
            let refusal = Refusal::new(RefusalKind::Overloaded, msg);
            self.record_refusal(&req, &refusal, privilege, &grant.name)
                .await;
            return Err(refusal);
        }
        let mut events = vec![Event::SessionStart(SessionInfo {
            agent: req.agent.clone(),
            target: req.target.clone(),
            protocol: req.protocol,
            login: login.clone(),
            privilege,
            client_addr: req.client_addr.to_string(),
            grant: grant.name.clone(),
            proctor_version: env!("CARGO_PKG_VERSION").into(),
        })];
        if !req.params.is_empty() {
            events.push(Event::ClientParams {
                params: req.params.clone(),
            });
        }
        if let Some(r) = &reason {
            events.push(Event::Annotation {
                source: "agent".into(),
                text: r.clone(),
            });
        }
        let mut alerts = Vec::new();
        if privilege == Privilege::BreakGlass {
            alerts.push(AlertRecord {
                rule: "break-glass".into(),
                severity: "critical".into(),
                message: format!(
                    "break-glass session by {} on {}: {}",
                    req.agent,
                    req.target,
                    reason.clone().unwrap_or_default()
                ),
            });
        }
        events.extend(alerts.iter().cloned().map(Event::Alert));
        self.record_all(key, &events).await?;
        let endpoint = match endpoint(&target, &grant) {
            Ok(e) => e,
            Err(msg) => {
                return Err(self
                    .fail_open(key, &id, &req.target, RefusalKind::CredentialFailed, msg)
                    .await);
            }
        };
        let (credential, revocation, record) = match self
            .issue_credential(&target, &grant, &req, &id, &login)
            .await
        {
            Ok(c) => c,
            Err(msg) => {
                return Err(self
                    .fail_open(key, &id, &req.target, RefusalKind::CredentialFailed, msg)
                    .await);
            }
        };
        let (kill, _) = watch::channel(None);
        let live = Arc::new(LiveSession {
            id: id.clone(),
            key,
            agent: req.agent.clone(),
            target: req.target.clone(),
            protocol: req.protocol,
            privilege,
            login,
            client_addr: req.client_addr.to_string(),
            grant: grant.name.clone(),
            started_ns: now_ns(),
            kill,
            reasoning: Mutex::new(Vec::new()),
            reasoning_limits: (
                limits.reasoning_bytes as usize,
                limits.reasoning_total_bytes as usize,
            ),
            holds: Mutex::new(Vec::new()),
            watch: Mutex::new(crate::monitor::Watch::new(
                self.core
                    .store
                    .index()
                    .baseline_has_agent(&req.agent)
                    .unwrap_or(false),
            )),
            hold_next: Mutex::new(None),
            active_hours: grant
                .active_hours
                .as_deref()
                .and_then(|h| crate::monitor::parse_hours(h).ok()),
        });
        if let Some(r) = &reason {
            live.add_reasoning(r);
        }
        let gate = Arc::new(SessionGate::new(
            self.core.clone(),
            live.clone(),
            revocation,
            Some(admission),
            // The client's startup packet may set search_path (passed on to the target):
            // the approval card must show it, not the target's default.
            match req.protocol {
                Protocol::Postgres => {
                    proctor_postgres::target::startup_setting(&req.params, "search_path")
                }
                _ => None,
            },
        ));
        // Registered before the credential record is durable so that a failure below still
        // goes through `end`, which revokes.
        self.core.sessions.insert(live.clone());
        if let Err(e) = self
            .core
            .recorder
            .record(key, now_ns(), &Event::CredentialIssued(record))
            .await
        {
            let _ = proctor_gate::Gate::end(gate.as_ref(), Outcome::Interrupted, "recorder failed")
                .await;
            return Err(Refusal::new(
                RefusalKind::RecorderFailed,
                format!("proctor cannot record right now ({e})"),
            ));
        }
        self.core.bus.publish(LiveEvent::SessionStart {
            session_id: id.clone(),
            agent: req.agent.clone(),
            target: req.target.clone(),
            protocol: req.protocol.as_str().into(),
            privilege: privilege.as_str().into(),
            ts_ns: now_ns(),
        });
        for a in alerts {
            self.core.bus.publish(LiveEvent::Alert {
                session_id: id.clone(),
                agent: req.agent.clone(),
                rule: a.rule,
                severity: a.severity,
                message: a.message,
                ts_ns: now_ns(),
            });
        }
        spawn_max_session_timer(self.core.clone(), id.clone(), grant.max_session);
        tracing::info!(session = %id, agent = %proctor_gate::inert::Line(&req.agent), target = %proctor_gate::inert::Line(&req.target), privilege = privilege.as_str(), "session opened");
        Ok(OpenSession {
            gate,
            session_id: id,
            privilege,
            target: endpoint,
            credential,
        })
    }

    /// Before authentication nobody is known: the refusal is counted for the source's summary
    /// (see `unauth`), logged and published only as the source's first in the window.
    async fn refuse(&self, req: SessionRequest, refusal: Refusal) {
        if !self.unauth.refused(&req, &refusal).first_in_window {
            return;
        }
        tracing::info!(source = %req.client_addr.ip(), protocol = req.protocol.as_str(), agent = %proctor_gate::inert::Line(&req.agent), kind = refusal.kind.as_str(), "unauthenticated connection refused (further ones from this source are only counted until the next summary): {}", proctor_gate::inert::Line(&refusal.message));
        self.core.bus.publish(LiveEvent::Refused {
            agent: req.agent.clone(),
            target: req.target.clone(),
            protocol: req.protocol.as_str().into(),
            reason: refusal.message.clone(),
            ts_ns: now_ns(),
        });
    }

    fn admit_source(&self, peer: std::net::SocketAddr, protocol: Protocol) -> bool {
        if self.unauth.admits(peer.ip()) {
            return true;
        }
        if self
            .unauth
            .dropped(peer, protocol, "too many refusals from the source")
            .first_in_window
        {
            tracing::warn!(source = %peer.ip(), protocol = protocol.as_str(), "source closed at accept: too many refusals lately");
        }
        false
    }

    fn dropped_early(&self, peer: std::net::SocketAddr, protocol: Protocol, why: &'static str) {
        if self.unauth.dropped(peer, protocol, why).first_in_window {
            tracing::warn!(source = %peer.ip(), protocol = protocol.as_str(), "connection closed at accept: {why}");
        }
    }
}

impl CoreAuthority {
    /// Seals a session whose start was recorded but whose credentials could not be issued.
    async fn fail_open(
        &self,
        key: SessionKey,
        id: &str,
        target: &str,
        kind: RefusalKind,
        msg: String,
    ) -> Refusal {
        let message = format!("cannot issue credentials for the target: {msg}");
        let _ = self
            .record_all(
                key,
                &[
                    Event::ProtocolError {
                        party: proctor_gate::Party::Proctor,
                        message: message.clone(),
                    },
                    self.core.retention_event(target),
                ],
            )
            .await;
        if let Err(e) = self
            .core
            .recorder
            .seal(key, now_ns(), Outcome::Denied, &message)
            .await
        {
            tracing::error!(session = %id, error = %e, "could not seal a failed session");
        }
        tracing::warn!(session = %id, "{}", proctor_gate::inert::Line(&message));
        Refusal::new(
            kind,
            "proctor could not issue credentials for the target; see the proctor log",
        )
    }
}

fn spawn_max_session_timer(core: Arc<Core>, id: String, max: std::time::Duration) {
    tokio::spawn(async move {
        tokio::time::sleep(max).await;
        if core.sessions.kill(
            &id,
            &format!(
                "maximum session length ({}) reached",
                humantime::format_duration(max)
            ),
        ) {
            tracing::info!(session = %id, "maximum session length reached");
        }
    });
}
