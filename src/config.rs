//! The TOML configuration: listeners, agents, targets, grants. Unknown keys are errors (a typo
//! must not silently disable a control), and every error names the offending key or entry.
//!
//! This file holds the file model (`Config`), loading and look-ups; the sections are in
//! `config/sections.rs` (listeners, front ends, recorder, approvals, API, webhooks,
//! redaction, retention), who may reach what in `config/access.rs` (agents, targets,
//! grants), `[cluster]` in `config/cluster.rs`, the checks in `config/validate.rs`, and the
//! TOML value formats in `config/formats.rs`.

mod access;
pub mod cluster;
mod formats;
pub mod object_store;
mod sections;
mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use self::access::{Agent, Grant, Target, TargetTlsMode};
pub use self::formats::bytesize::parse as parse_size;
pub use self::sections::{
    ApiSettings, ApiToken, ApprovalSettings, Listen, PostgresFrontend, RecorderSettings,
    RedactionSettings, RetentionSettings, SshFrontend, WEBHOOK_EVENTS, Webhook,
};

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
    pub cluster: Option<cluster::ClusterConfig>,
    /// `[object_store]`: evidence shipped as write-once objects (absent: local store only).
    #[serde(default)]
    pub object_store: Option<object_store::ObjectStoreConfig>,
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
