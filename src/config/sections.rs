//! The configuration's sections other than access: listeners, the PostgreSQL and SSH front
//! ends, the recorder, approvals, the HTTP API's tokens, webhooks, redaction and retention,
//! each with its defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::formats::{bytesize, default_true, humantime_serde_compat};

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
