//! The TOML configuration: listeners, agents, targets, grants. Unknown keys are errors (a typo
//! must not silently disable a control), and every error names the offending key or entry.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proctor_gate::{Privilege, Protocol};
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where recordings, keys and the index live. Relative paths are relative to the config file.
    pub data_dir: PathBuf,
    /// Policy files or directories of `*.toml` rule files.
    #[serde(default)]
    pub policies: Vec<PathBuf>,
    #[serde(default)]
    pub listen: Listen,
    #[serde(default)]
    pub postgres: PostgresFrontend,
    #[serde(default)]
    pub ssh: SshFrontend,
    #[serde(default)]
    pub recorder: RecorderSettings,
    #[serde(default)]
    pub approvals: ApprovalSettings,
    #[serde(default)]
    pub agents: Vec<Agent>,
    #[serde(default)]
    pub targets: Vec<Target>,
    #[serde(default)]
    pub grants: Vec<Grant>,
    #[serde(default)]
    pub api: ApiSettings,
    /// Real-time detectors (bursts, first use, egress, active hours).
    #[serde(default)]
    pub monitor: crate::monitor::MonitorConfig,
    /// How long recordings are kept (AG-305 4.4).
    #[serde(default)]
    pub retention: RetentionSettings,
    /// Outbound notifications (holds, alerts...) as signed JSON POSTs.
    #[serde(default)]
    pub webhooks: Vec<Webhook>,
    /// Secrets kept out of recordings, and fields sealed to the auditors (AG-305 4.8).
    #[serde(default)]
    pub redaction: RedactionSettings,
    /// What one agent may hold at once (sessions, pending holds, reasoning, statement size).
    #[serde(default)]
    pub limits: crate::session::limits::LimitSettings,
    /// `[ledger.timestamp]`: RFC 3161 timestamps of the ledger's tree heads.
    #[serde(default)]
    pub ledger: crate::recorder::timestamp::LedgerSettings,
    /// `[cluster]`: several nodes on a PostgreSQL control plane (absent: one node).
    #[serde(default)]
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

/// `[redaction]`: which optional detectors are on, which columns are sealed, and to whom.
/// Detector rules themselves (`[[redact]]`) live in the policy files.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactionSettings {
    /// `false` records secrets in the clear (for measurements only).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The auditors' public key file (`proctor keys auditor-init`); without it, values meant to
    /// be sealed are redacted.
    #[serde(default)]
    pub auditor_key: Option<PathBuf>,
    /// `schema.table.column` whose values are sealed in parameters, statement literals and
    /// result samples.
    #[serde(default)]
    pub sensitive_columns: Vec<String>,
    /// Optional detectors to turn on: `us-ssn`, `uk-nino`, `email` (the secret detectors are
    /// always on).
    #[serde(default)]
    pub detectors: Vec<String>,
}

impl Default for RedactionSettings {
    fn default() -> Self {
        RedactionSettings {
            enabled: true,
            auditor_key: None,
            sensitive_columns: Vec::new(),
            detectors: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// Kept in the hot store at least this long, then archivable.
    #[serde(default = "default_online", with = "humantime_serde_compat")]
    pub online: Duration,
    /// Kept in total (online and archived) at least this long, then purgeable.
    #[serde(default = "default_total", with = "humantime_serde_compat")]
    pub total: Duration,
}

fn default_online() -> Duration {
    Duration::from_secs(365 * 86_400)
}

fn default_total() -> Duration {
    Duration::from_secs(5 * 365 * 86_400 + 86_400)
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            online: default_online(),
            total: default_total(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    pub postgres: Option<SocketAddr>,
    pub ssh: Option<SocketAddr>,
    pub api: Option<SocketAddr>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresFrontend {
    /// PEM certificate chain and key for TLS towards agents.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Refuse agents that did not negotiate TLS. On by default (issue 12): an agent's SCRAM
    /// exchange and every statement would otherwise cross the network in clear.
    #[serde(default = "default_true")]
    pub require_tls: bool,
    #[serde(default = "default_sample_rows")]
    pub sample_rows: usize,
    #[serde(default = "default_max_message", with = "bytesize")]
    pub max_message_bytes: u64,
}

fn default_sample_rows() -> usize {
    5
}

fn default_max_message() -> u64 {
    64 * 1024 * 1024
}

impl Default for PostgresFrontend {
    fn default() -> Self {
        PostgresFrontend {
            tls_cert: None,
            tls_key: None,
            require_tls: true,
            sample_rows: default_sample_rows(),
            max_message_bytes: default_max_message(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshFrontend {
    /// Proctor's host key (OpenSSH private key). Created under the data directory if absent.
    pub host_key: Option<PathBuf>,
    /// `source-address` put in issued certificates: where targets will see proctor connect from.
    /// Unset: proctor's own address toward each target, as the kernel routes it.
    #[serde(default)]
    pub certificate_source_address: Option<String>,
    #[serde(default = "default_cert_validity", with = "humantime_serde_compat")]
    pub certificate_validity: Duration,
    /// `SetEnv` names passed on to targets (sshd `AcceptEnv` patterns); others are refused.
    #[serde(default = "default_accept_env")]
    pub accept_env: Vec<String>,
}

fn default_accept_env() -> Vec<String> {
    proctor_ssh::DEFAULT_ACCEPT_ENV
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn default_cert_validity() -> Duration {
    Duration::from_secs(300)
}

impl Default for SshFrontend {
    fn default() -> Self {
        SshFrontend {
            host_key: None,
            certificate_source_address: None,
            accept_env: default_accept_env(),
            certificate_validity: default_cert_validity(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecorderSettings {
    #[serde(default = "default_checkpoint_events")]
    pub checkpoint_every_events: u32,
    #[serde(default = "default_checkpoint_every", with = "humantime_serde_compat")]
    pub checkpoint_every: Duration,
    /// Longest time a record waits for a signature: the store checkpoint's interval.
    #[serde(
        default = "default_store_checkpoint_every",
        with = "humantime_serde_compat"
    )]
    pub store_checkpoint_every: Duration,
}

fn default_store_checkpoint_every() -> Duration {
    Duration::from_millis(100)
}

fn default_checkpoint_events() -> u32 {
    1024
}

fn default_checkpoint_every() -> Duration {
    Duration::from_secs(2)
}

impl Default for RecorderSettings {
    fn default() -> Self {
        RecorderSettings {
            checkpoint_every_events: default_checkpoint_events(),
            checkpoint_every: default_checkpoint_every(),
            store_checkpoint_every: default_store_checkpoint_every(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalSettings {
    /// How long a held action waits for a person before it is refused.
    #[serde(default = "default_approval_timeout", with = "humantime_serde_compat")]
    pub timeout: Duration,
}

fn default_approval_timeout() -> Duration {
    Duration::from_secs(300)
}

impl Default for ApprovalSettings {
    fn default() -> Self {
        ApprovalSettings {
            timeout: default_approval_timeout(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    /// Bearer tokens by role, stored as `sha256:<hex>` of the token.
    #[serde(default)]
    pub tokens: Vec<ApiToken>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    pub name: String,
    /// `operator`, `approver`, `auditor`, or `agent`.
    pub role: String,
    /// For `agent` tokens: the agent whose live sessions it may annotate.
    #[serde(default)]
    pub agent: Option<String>,
    pub sha256: String,
}

/// Event kinds a webhook may subscribe to.
pub const WEBHOOK_EVENTS: &[&str] = &[
    "hold",
    "alert",
    "session_start",
    "session_end",
    "verdict",
    "approval",
    "refused",
];

fn default_webhook_events() -> Vec<String> {
    vec!["hold".into(), "alert".into()]
}

fn default_webhook_queue() -> usize {
    1000
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub name: String,
    /// `http://` or `https://` receiver.
    pub url: String,
    /// File holding the HMAC-SHA256 key (trailing newline ignored); never inline in the config.
    pub secret_file: PathBuf,
    /// Which events to send; see `WEBHOOK_EVENTS`.
    #[serde(default = "default_webhook_events")]
    pub events: Vec<String>,
    /// Undelivered events kept per webhook; beyond it the oldest are dropped (and journaled).
    #[serde(default = "default_webhook_queue")]
    pub queue: usize,
    /// PEM CA bundle for an `https://` receiver with a private CA; system roots otherwise.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

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

/// `"5m"`, `"1h 30m"`... in TOML, `Duration` in Rust.
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// Sizes as integers of bytes or strings like `"64MiB"`.
mod bytesize {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*v)
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Int(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match Size::deserialize(d)? {
            Size::Int(n) => Ok(n),
            Size::Text(t) => parse(&t).map_err(serde::de::Error::custom),
        }
    }

    pub fn parse(t: &str) -> Result<u64, String> {
        let t = t.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| format!("{t}: not a size"))?;
        let mult = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1024,
            "m" | "mb" | "mib" => 1024 * 1024,
            "g" | "gb" | "gib" => 1024 * 1024 * 1024,
            other => return Err(format!("{t}: unknown unit {other:?}")),
        };
        Ok(n * mult)
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        config.validate(path)?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.data_dir);
        self.policies.iter_mut().for_each(fix);
        if let Some(p) = self.postgres.tls_cert.as_mut() {
            fix(p);
        }
        if let Some(p) = self.postgres.tls_key.as_mut() {
            fix(p);
        }
        if let Some(p) = self.ssh.host_key.as_mut() {
            fix(p);
        }
        if let Some(p) = self.redaction.auditor_key.as_mut() {
            fix(p);
        }
        for w in &mut self.webhooks {
            fix(&mut w.secret_file);
            if let Some(p) = w.ca_file.as_mut() {
                fix(p);
            }
        }
        for t in &mut self.targets {
            if let Some(p) = t.admin_dsn_file.as_mut() {
                fix(p);
            }
            if let Some(p) = t.tls_ca_file.as_mut() {
                fix(p);
            }
        }
    }

    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            message,
        };
        if let Some(c) = &self.cluster {
            crate::cluster::config::validate(c).map_err(|(k, m)| invalid(k, m))?;
        }
        let mut names = HashSet::new();
        for (i, a) in self.agents.iter().enumerate() {
            if !valid_name(&a.name) {
                return Err(invalid(
                    format!("agents[{i}].name"),
                    format!("{:?}: use letters, digits, '-', '_' (at most 48)", a.name),
                ));
            }
            if !names.insert(a.name.clone()) {
                return Err(invalid(
                    format!("agents[{i}].name"),
                    format!("duplicate agent {:?}", a.name),
                ));
            }
            if let Some(v) = &a.postgres_scram
                && !v.starts_with("SCRAM-SHA-256$")
            {
                return Err(invalid(
                    format!("agents[{i}].postgres_scram"),
                    "must be a SCRAM-SHA-256 verifier (`proctor agent-secret` makes one), never a plain secret".into(),
                ));
            }
            for (k, key) in a.ssh_keys.iter().enumerate() {
                if russh::keys::PublicKey::from_openssh(key.trim()).is_err() {
                    return Err(invalid(
                        format!("agents[{i}].ssh_keys[{k}]"),
                        "not an OpenSSH public key line".into(),
                    ));
                }
            }
        }
        let mut tnames = HashSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            if !valid_name(&t.name) || !tnames.insert(t.name.clone()) {
                return Err(invalid(
                    format!("targets[{i}].name"),
                    format!("{:?} is invalid or duplicate", t.name),
                ));
            }
            for (key, v) in [
                ("retention_online", &t.retention_online),
                ("retention_total", &t.retention_total),
            ] {
                if let Some(v) = v
                    && humantime::parse_duration(v).is_err()
                {
                    return Err(invalid(
                        format!("targets[{i}].{key}"),
                        format!("{v:?}: expected a duration like \"400days\""),
                    ));
                }
            }
            match t.protocol() {
                Some(Protocol::Postgres) => {
                    if t.admin_dsn.is_none() && t.admin_dsn_file.is_none() {
                        return Err(invalid(
                            format!("targets[{i}].admin_dsn"),
                            "a PostgreSQL target needs admin_dsn or admin_dsn_file (a role with CREATEROLE) to issue roles".into(),
                        ));
                    }
                    if t.tls == Some(TargetTlsMode::VerifyFull) && t.tls_ca_file.is_none() {
                        return Err(invalid(
                            format!("targets[{i}].tls_ca_file"),
                            "tls = \"verify-full\" needs tls_ca_file".into(),
                        ));
                    }
                }
                Some(Protocol::Ssh) => {
                    if t.host_keys.is_empty() && t.host_cas.is_empty() {
                        return Err(invalid(
                            format!("targets[{i}].host_keys"),
                            "an SSH target needs pinned host_keys or host_cas; proctor never trusts on first use".into(),
                        ));
                    }
                }
                None => {
                    return Err(invalid(
                        format!("targets[{i}].kind"),
                        format!("{:?}: expected \"postgres\" or \"ssh\"", t.kind),
                    ));
                }
            }
        }
        for (i, g) in self.grants.iter().enumerate() {
            if !names.contains(&g.agent) {
                return Err(invalid(
                    format!("grants[{i}].agent"),
                    format!("no agent named {:?}", g.agent),
                ));
            }
            let Some(t) = self.targets.iter().find(|t| t.name == g.target) else {
                return Err(invalid(
                    format!("grants[{i}].target"),
                    format!("no target named {:?}", g.target),
                ));
            };
            if Privilege::parse(&g.privilege).is_none() {
                return Err(invalid(
                    format!("grants[{i}].privilege"),
                    format!(
                        "{:?}: expected routine, elevated or break-glass",
                        g.privilege
                    ),
                ));
            }
            if let Some(v) = &g.shell
                && proctor_gate::ShellMode::parse(v).is_none()
            {
                return Err(invalid(
                    format!("grants[{i}].shell"),
                    format!("{v:?}: expected judged, record-only or deny"),
                ));
            }
            if let Some(h) = &g.active_hours
                && let Err(e) = crate::monitor::parse_hours(h)
            {
                return Err(invalid(format!("grants[{i}].active_hours"), e));
            }
            match t.protocol() {
                Some(Protocol::Postgres) if g.role.is_none() => {
                    return Err(invalid(
                        format!("grants[{i}].role"),
                        "a PostgreSQL grant names the target role its sessions join (e.g. app_write)".into(),
                    ));
                }
                Some(Protocol::Ssh) if g.logins.is_empty() => {
                    return Err(invalid(
                        format!("grants[{i}].logins"),
                        "an SSH grant lists the logins it allows".into(),
                    ));
                }
                _ => {}
            }
        }
        for (i, t) in self.api.tokens.iter().enumerate() {
            if !matches!(
                t.role.as_str(),
                "operator" | "approver" | "auditor" | "agent"
            ) {
                return Err(invalid(
                    format!("api.tokens[{i}].role"),
                    format!(
                        "{:?}: expected operator, approver, auditor or agent",
                        t.role
                    ),
                ));
            }
            if t.role == "agent" && t.agent.is_none() {
                return Err(invalid(
                    format!("api.tokens[{i}].agent"),
                    "agent tokens name their agent".into(),
                ));
            }
            if t.sha256.len() != 64 || hex::decode(&t.sha256).is_err() {
                return Err(invalid(
                    format!("api.tokens[{i}].sha256"),
                    "64 hex digits: the SHA-256 of the token, never the token".into(),
                ));
            }
        }
        if let Err(e) = crate::redact::Redactor::build(&self.redaction, &[]) {
            return Err(invalid("redaction".into(), e.to_string()));
        }
        let mut hooks = HashSet::new();
        for (i, w) in self.webhooks.iter().enumerate() {
            if !valid_name(&w.name) || !hooks.insert(w.name.clone()) {
                return Err(invalid(
                    format!("webhooks[{i}].name"),
                    format!("{:?} is invalid or duplicate", w.name),
                ));
            }
            let scheme_ok = w.url.starts_with("http://") || w.url.starts_with("https://");
            if !scheme_ok || !w.url.parse::<http::Uri>().is_ok_and(|u| u.host().is_some()) {
                return Err(invalid(
                    format!("webhooks[{i}].url"),
                    format!(
                        "{:?}: expected an http:// or https:// URL with a host",
                        w.url
                    ),
                ));
            }
            if w.events.is_empty() {
                return Err(invalid(
                    format!("webhooks[{i}].events"),
                    "subscribe to at least one event".into(),
                ));
            }
            for (k, e) in w.events.iter().enumerate() {
                if !WEBHOOK_EVENTS.contains(&e.as_str()) {
                    return Err(invalid(
                        format!("webhooks[{i}].events[{k}]"),
                        format!("{e:?}: expected one of {}", WEBHOOK_EVENTS.join(", ")),
                    ));
                }
            }
            if w.queue == 0 {
                return Err(invalid(
                    format!("webhooks[{i}].queue"),
                    "must be at least 1".into(),
                ));
            }
        }
        Ok(())
    }

    /// (online, total) retention for a target's sessions, and a description for the record.
    pub fn retention_for(&self, target: &str) -> (Duration, Duration, String) {
        let t = self.target(target);
        let parse = |v: Option<&String>| v.and_then(|s| humantime::parse_duration(s).ok());
        let online =
            parse(t.and_then(|t| t.retention_online.as_ref())).unwrap_or(self.retention.online);
        let total = parse(t.and_then(|t| t.retention_total.as_ref()))
            .unwrap_or(self.retention.total)
            .max(online);
        let source =
            if t.is_some_and(|t| t.retention_online.is_some() || t.retention_total.is_some()) {
                format!("target {target}")
            } else {
                "default".to_string()
            };
        (
            online,
            total,
            format!(
                "{source}: {} online, {} in total",
                humantime::format_duration(online),
                humantime::format_duration(total)
            ),
        )
    }

    pub fn agent(&self, name: &str) -> Option<&Agent> {
        self.agents.iter().find(|a| a.name == name)
    }

    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// The grant admitting `agent` to `target` (with `login`, for SSH), if any.
    pub fn grant_for(&self, agent: &str, target: &str, login: Option<&str>) -> Option<&Grant> {
        self.grants.iter().find(|g| {
            g.agent == agent
                && g.target == target
                && login.is_none_or(|l| g.logins.is_empty() || g.logins.iter().any(|x| x == l))
        })
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 48
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

pub use bytesize::parse as parse_size;
