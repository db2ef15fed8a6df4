//! The checks `Config::load` runs after parsing: names, references between entries, and
//! values serde alone cannot refuse. Every error names the offending key.

use std::collections::HashSet;
use std::path::Path;

use proctor_gate::{Privilege, Protocol};

use super::{Config, ConfigError, TargetTlsMode, WEBHOOK_EVENTS};

impl Config {
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            message,
        };
        if let Some(c) = &self.cluster {
            super::cluster::validate(c).map_err(|(k, m)| invalid(k, m))?;
        }
        if let Some(c) = &self.object_store {
            super::object_store::validate(c).map_err(|(k, m)| invalid(k, m))?;
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
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 48
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}
