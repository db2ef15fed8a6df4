//! Who may reach what: agents (their credentials), targets (where and how to connect) and
//! grants (which agent may reach which target, as what, for how long).

use std::path::PathBuf;
use std::time::Duration;

use proctor_gate::{Privilege, Protocol};
use serde::{Deserialize, Serialize};

use super::formats::{default_true, humantime_serde_compat};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    pub name: String,
    /// SCRAM-SHA-256 verifier for PostgreSQL logins (never the secret itself).
    #[serde(default)]
    pub postgres_scram: Option<String>,
    /// OpenSSH public keys (`ssh-ed25519 AAAA... comment`) the agent may log in with.
    #[serde(default)]
    pub ssh_keys: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TargetTlsMode {
    Disable,
    VerifyFull,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub name: String,
    /// `postgres` or `ssh`.
    pub kind: String,
    pub host: String,
    pub port: u16,
    /// PostgreSQL: database on the target.
    #[serde(default)]
    pub dbname: Option<String>,
    /// PostgreSQL: admin connection (a role with CREATEROLE) used to issue and drop roles.
    #[serde(default)]
    pub admin_dsn: Option<String>,
    /// PostgreSQL: file holding the admin DSN, so the secret stays out of the config.
    #[serde(default)]
    pub admin_dsn_file: Option<PathBuf>,
    #[serde(default)]
    pub tls: Option<TargetTlsMode>,
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// SSH: pinned host keys (`ssh-ed25519 AAAA...`).
    #[serde(default)]
    pub host_keys: Vec<String>,
    /// SSH: trusted host certificate authorities.
    #[serde(default)]
    pub host_cas: Vec<String>,
    #[serde(default = "default_connect_timeout", with = "humantime_serde_compat")]
    pub connect_timeout: Duration,
    /// Overrides `retention.online` for this target's sessions (e.g. "400days").
    #[serde(default)]
    pub retention_online: Option<String>,
    /// Overrides `retention.total` for this target's sessions (e.g. "7years").
    #[serde(default)]
    pub retention_total: Option<String>,
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Target {
    pub fn protocol(&self) -> Option<Protocol> {
        Protocol::parse(&self.kind)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub name: String,
    pub agent: String,
    pub target: String,
    /// `routine`, `elevated` or `break-glass`.
    pub privilege: String,
    /// PostgreSQL: the target role the issued role becomes a member of.
    #[serde(default)]
    pub role: Option<String>,
    /// SSH: logins the agent may use; the first is the default.
    #[serde(default)]
    pub logins: Vec<String>,
    #[serde(default = "default_max_session", with = "humantime_serde_compat")]
    pub max_session: Duration,
    #[serde(default = "default_connection_limit")]
    pub connection_limit: u32,
    /// Sessions open at once under this grant (default: `[limits] sessions_per_grant`).
    #[serde(default)]
    pub max_sessions: Option<u32>,
    #[serde(default = "default_true")]
    pub pty: bool,
    #[serde(default)]
    pub port_forwarding: bool,
    /// PostgreSQL: bytes of `COPY ... FROM STDIN` data recorded per statement (default 64 MiB);
    /// past it the first part, a digest of all of it and a note that it was cut.
    #[serde(default)]
    pub copy_record_limit: Option<u64>,
    /// SSH: `judged`, `record-only` or `deny` (default: `judged` for elevated and break-glass,
    /// `record-only` for routine; see README "Shells").
    #[serde(default)]
    pub shell: Option<String>,
    /// `HH:MM-HH:MM` (UTC): activity outside raises an alert.
    #[serde(default)]
    pub active_hours: Option<String>,
}

fn default_max_session() -> Duration {
    Duration::from_secs(3600)
}

fn default_connection_limit() -> u32 {
    3
}

impl Grant {
    pub fn privilege_level(&self) -> Privilege {
        Privilege::parse(&self.privilege).unwrap_or(Privilege::Elevated)
    }

    /// The kind of interactive shell the grant allows. Routine grants default to
    /// `record-only`: the shipped policies hold nothing there, so there is no hold to enforce
    /// and full-screen programs keep working; an unknown value (refused by `validate`) denies.
    pub fn shell_mode(&self) -> proctor_gate::ShellMode {
        use proctor_gate::ShellMode;
        match &self.shell {
            Some(s) => ShellMode::parse(s).unwrap_or(ShellMode::Deny),
            None if self.privilege_level() == Privilege::Routine => ShellMode::RecordOnly,
            None => ShellMode::Judged,
        }
    }
}
