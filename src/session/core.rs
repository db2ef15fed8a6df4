//! Everything a session needs from the rest of proctor, in one place.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use crate::approvals::Approvals;
use crate::bus::Bus;
use crate::config::Config;
use crate::credentials::pg_roles::PgRoles;
use crate::credentials::ssh_ca::SshCa;
use crate::policy::Policy;
use crate::recorder::{Recorder, Store};

use super::registry::Registry;

pub struct Core {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub recorder: Recorder,
    policy: RwLock<Arc<Policy>>,
    /// Compiled from `[redaction]` and the policy's `[[redact]]` rules; rebuilt with the policy.
    redactor: RwLock<Arc<crate::redact::Redactor>>,
    pub approvals: Approvals,
    pub sessions: Registry,
    pub ssh_ca: SshCa,
    pub pg_roles: PgRoles,
    pub bus: Bus,
    pub monitor: crate::monitor::Monitor,
    /// Open sessions per agent and grant, for `[limits]`.
    pub admissions: Arc<super::limits::Admissions>,
    /// OpenSSH public key (`algo base64`) -> agent name.
    pub ssh_keys: HashMap<String, String>,
    /// `[cluster]`: the control plane, set once at start (empty on a single node).
    pub cluster: std::sync::OnceLock<Arc<dyn ClusterAdmission>>,
    /// `[object_store]`: the spool's room, set once at start (empty without the table).
    pub evidence: std::sync::OnceLock<Arc<dyn EvidenceAdmission>>,
}

/// What a session start asks of the cluster (implemented there, so sessions do not depend on
/// it): that the control plane takes this node's writes, or why not.
#[async_trait::async_trait]
pub trait ClusterAdmission: Send + Sync {
    async fn admit(&self) -> Result<(), String>;
}

/// What a session start asks of the object-store shipper (implemented there): that its spool
/// has room, or why not.
pub trait EvidenceAdmission: Send + Sync {
    fn admit(&self) -> Result<(), String>;
}

/// `algo base64` of an OpenSSH public key line, without its comment.
pub fn key_fingerprint_text(line: &str) -> Option<String> {
    let key = russh::keys::PublicKey::from_openssh(line.trim()).ok()?;
    let text = key.to_openssh().ok()?;
    Some(
        text.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

impl Core {
    pub fn new(config: Arc<Config>, store: Arc<Store>, policy: Policy, ssh_ca: SshCa) -> Core {
        let mut ssh_keys = HashMap::new();
        for a in &config.agents {
            for k in &a.ssh_keys {
                if let Some(t) = key_fingerprint_text(k) {
                    ssh_keys.insert(t, a.name.clone());
                }
            }
        }
        let monitor_config = config.monitor.clone();
        let redactor = build_redactor(&config, &policy, None);
        for n in &redactor.notes {
            tracing::info!("{n}");
        }
        Core {
            redactor: RwLock::new(Arc::new(redactor)),
            recorder: store.recorder.clone(),
            approvals: Approvals::new(config.approvals.timeout),
            config,
            store,
            policy: RwLock::new(Arc::new(policy)),
            sessions: Registry::default(),
            ssh_ca,
            pg_roles: PgRoles::default(),
            bus: Bus::default(),
            monitor: crate::monitor::Monitor::new(monitor_config),
            admissions: Arc::default(),
            ssh_keys,
            cluster: std::sync::OnceLock::new(),
            evidence: std::sync::OnceLock::new(),
        }
    }

    pub fn policy(&self) -> Arc<Policy> {
        match self.policy.read() {
            Ok(p) => p.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn redactor(&self) -> Arc<crate::redact::Redactor> {
        match self.redactor.read() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn set_policy(&self, policy: Policy) {
        let redactor = build_redactor(&self.config, &policy, Some(self.redactor()));
        match self.redactor.write() {
            Ok(mut g) => *g = Arc::new(redactor),
            Err(p) => *p.into_inner() = Arc::new(redactor),
        }
        let mut g = match self.policy.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = Arc::new(policy);
    }

    /// The retention event recorded just before a session of `target` is sealed.
    pub fn retention_event(&self, target: &str) -> proctor_gate::Event {
        let (online, total, policy) = self.config.retention_for(target);
        let now = crate::clock::now_ns();
        proctor_gate::Event::Retention {
            online_until_ns: crate::clock::after(now, online),
            retain_until_ns: crate::clock::after(now, total),
            policy,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.store.data.clone()
    }
}

/// The redactor for `config` and `policy`. The configuration was validated at load, so this
/// fails only if the auditor key file changed since; then it keeps `previous` or, at start-up,
/// redacts everything it would have sealed. It never records in the clear because of an error.
fn build_redactor(
    config: &Config,
    policy: &Policy,
    previous: Option<Arc<crate::redact::Redactor>>,
) -> crate::redact::Redactor {
    match crate::redact::Redactor::build(&config.redaction, &policy.redact) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "redaction settings failed to load");
            if let Some(p) = previous {
                return (*p).clone();
            }
            let mut fallback = config.redaction.clone();
            fallback.auditor_key = None;
            fallback.enabled = true;
            crate::redact::Redactor::build(&fallback, &policy.redact).unwrap_or_default()
        }
    }
}
