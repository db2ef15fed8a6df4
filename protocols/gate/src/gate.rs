//! The two interfaces a protocol front end holds: `Authority` (one per listener: who is this
//! agent, may it open a session?) and `Gate` (one per admitted session: record, decide, end).

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::action::{Action, Decision};
use crate::event::{Event, Outcome, Privilege, Protocol};

/// Errors a protocol sees from the core. Every one of them means: stop forwarding.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum GateError {
    /// The recorder could not make the event durable; the action must fail (fail closed).
    #[error("recording failed, action refused: {0}")]
    Recorder(String),
    /// The session was already ended (killed, or `end` was called).
    #[error("session is closed: {0}")]
    Closed(String),
}

/// Resolves once an enqueued event is durable on disk.
pub struct Durable(pub Pin<Box<dyn Future<Output = Result<(), GateError>> + Send>>);

impl Durable {
    pub async fn wait(self) -> Result<(), GateError> {
        self.0.await
    }
}

impl fmt::Debug for Durable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Durable")
    }
}

/// One admitted agent session, as the protocol sees the core.
#[async_trait]
pub trait Gate: Send + Sync {
    fn session_id(&self) -> &str;

    /// Records an event; returns once it is durable. Use for anything that must be on disk
    /// before the protocol forwards it (agent input, requests).
    async fn record(&self, event: Event) -> Result<(), GateError>;

    /// Queues an event and returns at once with a handle that resolves when it is durable.
    /// The queue is bounded in bytes: when it is full this waits (the session pauses) rather
    /// than dropping anything. Use for output and results, then await the handles in order
    /// to keep the amount of unrecorded forwarded data bounded.
    async fn enqueue(&self, event: Event) -> Result<Durable, GateError>;

    /// Judges an action. The action's own event and the verdict are durable before this
    /// returns. A `Held` decision must be awaited without blocking the connection's other
    /// channels.
    async fn decide(&self, action: Action) -> Result<Decision, GateError>;

    /// Judges several actions in order, as a protocol forwards them (the statements of one
    /// message, a pipeline): one decision per action up to and including the first that is
    /// not `Allow`; the rest are neither judged nor recorded, and the protocol forwards none of
    /// them. Everything judged is durable before this returns. The default decides one by one;
    /// a core can record the whole batch under one durable write.
    async fn decide_all(&self, actions: Vec<Action>) -> Result<Vec<Decision>, GateError> {
        let mut out = Vec::with_capacity(actions.len());
        for action in actions {
            let d = self.decide(action).await?;
            let stop = !matches!(d, Decision::Allow);
            out.push(d);
            if stop {
                break;
            }
        }
        Ok(out)
    }

    /// Judges like [`Gate::decide_all`], for actions whose effects cannot outlive the target
    /// connection (the protocol's rule decides which): when every action is allowed outright
    /// (no hold, denial or alert), returns at once with the decisions and a ticket that
    /// resolves when they and everything recorded before them are durable. The protocol may
    /// then forward the actions, but shows nothing that follows them to the agent before the
    /// ticket resolves, and ends the session if it fails. Otherwise everything is durable
    /// before this returns, as with `decide_all`, and the ticket is `None`. The default never
    /// overlaps.
    async fn decide_all_overlapped(
        &self,
        actions: Vec<Action>,
    ) -> Result<(Vec<Decision>, Option<Durable>), GateError> {
        Ok((self.decide_all(actions).await?, None))
    }

    /// The working directory of a judged shell on `channel`, as the target's kernel gave it
    /// after the shell's last prompt (`None`: it could not be read; `why` says why). The core
    /// records it and shows it on the approval cards of the channel's next lines. The default,
    /// a core without cards, ignores it.
    async fn shell_context(
        &self,
        channel: u32,
        cwd: Option<String>,
        why: &str,
    ) -> Result<(), GateError> {
        let _ = (channel, cwd, why);
        Ok(())
    }

    /// The parameter type OIDs of statement `statement` (about to be decided, one per bound
    /// parameter, 0 where neither the client nor the server named one), sent when some of its
    /// values are in binary format: the core shows those values decoded on the approval card
    /// and records them beside the statement. The default, a core without cards, ignores them.
    fn param_types(&self, statement: u64, types: std::sync::Arc<[u32]>) {
        let _ = (statement, types);
    }

    /// Asks the target shell's own grammar (bash's parser, run by the core without executing
    /// anything) whether `text` is a complete command, before a judged shell sends it. The
    /// default is a core without the check: it answers `Unchecked`, and the line is held.
    async fn shell_syntax(&self, text: &str) -> ShellSyntax {
        let _ = text;
        ShellSyntax::Unchecked("this proctor has no shell syntax check".into())
    }

    /// Judges an action whose reading proctor could not confirm (`why`: bash's check of the
    /// command failed). It is recorded with its verdict like [`Gate::decide`], but never
    /// allowed outright: what policy would allow is held for a person. The default, for a
    /// core that cannot hold, refuses it (unrecorded: nothing was forwarded).
    async fn decide_unread(&self, action: Action, why: &str) -> Result<Decision, GateError> {
        let _ = action;
        Ok(Decision::Deny {
            rule: RULE_SHELL_SYNTAX_UNCHECKED.into(),
            reason: why.to_string(),
        })
    }

    /// Fires with the reason when an operator kills the session. The protocol then tells the
    /// agent, closes both sides and calls `end`.
    fn kill_signal(&self) -> watch::Receiver<Option<String>>;

    /// Ends the session: revokes its credentials, records the end and the seal.
    /// `Killed` is recorded instead of `outcome` when a kill was requested.
    async fn end(&self, outcome: Outcome, reason: &str) -> Result<(), GateError>;
}

/// What the target shell's parser says of a command text (see [`Gate::shell_syntax`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellSyntax {
    /// Bash would run it as it stands (a syntax error included: bash refuses it whole).
    Complete,
    /// Bash would read on (an open compound, quote, here-document, trailing `&&`...).
    Unfinished,
    /// The check could not be made (no bash, a timeout...): why.
    Unchecked(String),
}

/// The rule of a hold (or refusal) for a command bash's parser could not check.
pub const RULE_SHELL_SYNTAX_UNCHECKED: &str = "shell-syntax-unchecked";

/// What an agent asks for when it connects.
#[derive(Debug, Clone)]
pub struct SessionRequest {
    pub protocol: Protocol,
    pub agent: String,
    pub target: String,
    /// SSH login or requested database role; `None` means "the grant's default".
    pub login: Option<String>,
    pub client_addr: SocketAddr,
    /// Startup parameters or environment the client sent before the session opened.
    pub params: Vec<(String, String)>,
}

/// Where and how a protocol reaches a target.
#[derive(Debug, Clone)]
pub enum TargetEndpoint {
    Postgres(PostgresTarget),
    Ssh(SshTarget),
}

#[derive(Debug, Clone)]
pub struct PostgresTarget {
    pub host: String,
    pub port: u16,
    /// Database name on the target (the agent names the target, not the database).
    pub dbname: String,
    pub tls: TargetTls,
    pub connect_timeout: Duration,
    /// `COPY ... FROM STDIN` data recorded per statement under this grant; past it the record
    /// keeps the first part, the digest and size of all of it, and a note that it was cut.
    pub copy_record_limit: u64,
}

/// The default of [`PostgresTarget::copy_record_limit`]: 64 MiB per statement.
pub const DEFAULT_COPY_RECORD_LIMIT: u64 = 64 << 20;

/// TLS towards a PostgreSQL target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetTls {
    Disable,
    /// Encrypt, and verify the certificate against this PEM bundle and the host name.
    VerifyFull {
        ca_pem: String,
    },
}

#[derive(Debug, Clone)]
pub struct SshTarget {
    pub host: String,
    pub port: u16,
    /// Pinned host keys, OpenSSH public key lines (`ssh-ed25519 AAAA...`).
    pub host_keys: Vec<String>,
    /// Host certificate authorities, OpenSSH public key lines.
    pub host_cas: Vec<String>,
    pub connect_timeout: Duration,
    /// The grant allows `direct-tcpip` port forwarding.
    pub allow_port_forwarding: bool,
    pub allow_pty: bool,
    /// What kind of interactive shell the grant allows.
    pub shell: ShellMode,
}

/// How a grant lets an agent use an interactive shell (`shell` on the grant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShellMode {
    /// Proctor is the line discipline: it edits the line, judges it whole and only then sends
    /// it to a target shell without line editing, history expansion, aliases or rc files.
    #[default]
    Judged,
    /// The target's own shell and line editor; lines are rebuilt from keystrokes and judged,
    /// but a hold cannot be enforced against a shell that edits its own lines.
    RecordOnly,
    /// No pty, no shell, no interactive interpreter.
    Deny,
}

impl ShellMode {
    pub fn parse(s: &str) -> Option<ShellMode> {
        match s {
            "judged" => Some(ShellMode::Judged),
            "record-only" => Some(ShellMode::RecordOnly),
            "deny" => Some(ShellMode::Deny),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ShellMode::Judged => "judged",
            ShellMode::RecordOnly => "record-only",
            ShellMode::Deny => "deny",
        }
    }
}

/// A just-in-time secret for the target side. Only the protocol sees it; it is never recorded.
pub enum Credential {
    PostgresRole {
        user: String,
        password: Zeroizing<String>,
        /// The target's database defines functions, operators or casts outside `pg_catalog`
        /// that a built-in's name may resolve to: every query and DML may run code.
        builtins_overloaded: bool,
    },
    SshCertificate {
        login: String,
        /// The ephemeral private key, OpenSSH format.
        private_key_openssh: Zeroizing<String>,
        /// The certificate, OpenSSH one-line format.
        certificate_openssh: String,
    },
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::PostgresRole { user, .. } => f
                .debug_struct("PostgresRole")
                .field("user", user)
                .finish_non_exhaustive(),
            Credential::SshCertificate { login, .. } => f
                .debug_struct("SshCertificate")
                .field("login", login)
                .finish_non_exhaustive(),
        }
    }
}

/// An admitted session.
pub struct OpenSession {
    pub gate: Arc<dyn Gate>,
    pub session_id: String,
    pub privilege: Privilege,
    pub target: TargetEndpoint,
    pub credential: Credential,
}

impl fmt::Debug for OpenSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenSession")
            .field("session_id", &self.session_id)
            .field("privilege", &self.privilege)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// Why a session was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    UnknownAgent,
    BadCredential,
    UnknownTarget,
    NotGranted,
    /// Credentials for the target could not be issued.
    CredentialFailed,
    /// The recorder is not writable: nothing may happen that cannot be recorded.
    RecorderFailed,
    /// The client broke the protocol before a session existed.
    ProtocolViolation,
    Overloaded,
}

impl RefusalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalKind::UnknownAgent => "unknown_agent",
            RefusalKind::BadCredential => "bad_credential",
            RefusalKind::UnknownTarget => "unknown_target",
            RefusalKind::NotGranted => "not_granted",
            RefusalKind::CredentialFailed => "credential_failed",
            RefusalKind::RecorderFailed => "recorder_failed",
            RefusalKind::ProtocolViolation => "protocol_violation",
            RefusalKind::Overloaded => "overloaded",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub kind: RefusalKind,
    /// Safe to show to the agent.
    pub message: String,
}

impl Refusal {
    pub fn new(kind: RefusalKind, message: impl Into<String>) -> Self {
        Refusal {
            kind,
            message: message.into(),
        }
    }
}

/// The core as a listener sees it.
#[async_trait]
pub trait Authority: Send + Sync {
    /// The agent's SCRAM-SHA-256 verifier (`SCRAM-SHA-256$iter:salt$stored:server`), if the agent
    /// exists and may use PostgreSQL.
    fn agent_scram_verifier(&self, agent: &str) -> Option<String>;

    /// The agent owning this public key (OpenSSH `algo base64` form, comment ignored).
    fn agent_for_ssh_key(&self, public_key_openssh: &str) -> Option<String>;

    /// Admits a session: checks the grant, starts the recording, issues target credentials.
    /// A refusal is recorded by the core as a denied session.
    async fn open(&self, request: SessionRequest) -> Result<OpenSession, Refusal>;

    /// Notes a connection refused before `open` could be called (failed authentication,
    /// protocol violation). The core counts these per source and records them in summaries,
    /// not as sessions: a stranger's attempts must cost nothing lasting.
    async fn refuse(&self, request: SessionRequest, refusal: Refusal);

    /// Asked at accept, before any TLS or key-exchange work: `false` when this source has
    /// failed too often lately, and the connection is to be closed at once (the core counts
    /// it). `protocol` says which listener asks.
    fn admit_source(&self, _peer: SocketAddr, _protocol: Protocol) -> bool {
        true
    }

    /// Counts a connection the listener closed before authentication for its own reasons
    /// (no unauthenticated slot left for the source, authentication not completed in time);
    /// nothing else is recorded about it.
    fn dropped_early(&self, _peer: SocketAddr, _protocol: Protocol, _why: &'static str) {}
}
