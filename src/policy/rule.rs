//! One policy rule: what it matches and what it does. Rules are TOML (`[[rule]]` tables);
//! `policies/README.md` documents every field.

use globset::{Glob, GlobMatcher};
use proctor_gate::{Privilege, Protocol, StatementClass};
use regex::{Regex, RegexBuilder};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    Allow,
    Deny,
    Hold,
    /// Raises an alert and keeps evaluating; never decides by itself.
    Alert,
}

impl RuleAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleAction::Allow => "allow",
            RuleAction::Deny => "deny",
            RuleAction::Hold => "hold",
            RuleAction::Alert => "alert",
        }
    }
}

/// A rule as written in a policy file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    pub action: RuleAction,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub description: String,
    /// Alert severity (`low`, `medium`, `high`, `critical`).
    #[serde(default)]
    pub severity: Option<String>,
    /// `postgres` or `ssh`; both when absent.
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub agents: Vec<String>,
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub privilege: Vec<String>,
    #[serde(default)]
    pub logins: Vec<String>,
    /// PostgreSQL statement classes.
    #[serde(default)]
    pub class: Vec<String>,
    /// PostgreSQL: statement commands (`DELETE`, `CREATE TABLE`...). SSH: program names.
    #[serde(default)]
    pub commands: Vec<String>,
    /// PostgreSQL tables (`schema.table`, globs allowed).
    #[serde(default)]
    pub tables: Vec<String>,
    /// Regex over the normalized SQL (comments removed, whitespace collapsed), case-insensitive.
    #[serde(default)]
    pub sql: Option<String>,
    /// PostgreSQL structural features: `unqualified_dml` (DELETE/UPDATE without WHERE).
    #[serde(default)]
    pub features: Vec<String>,
    /// SSH: what the action is: `exec`, `line` (shell line), `shell`, `sftp`, `subsystem`,
    /// `direct-tcpip`, `sftp-change`.
    #[serde(default)]
    pub channel: Vec<String>,
    /// SSH: regex over each simple command (program basename and its arguments).
    #[serde(default)]
    pub command: Option<String>,
    /// SSH: regex over the raw command line.
    #[serde(default)]
    pub line: Option<String>,
    /// SSH: regex over paths written (redirections, `tee`, SFTP changes).
    #[serde(default)]
    pub writes: Option<String>,
    /// SSH: data piped into an interpreter (`... | sh`).
    #[serde(default)]
    pub pipe_to_shell: Option<bool>,
    /// SSH: the shell reader cannot tell what the line runs (an interpreter reading the
    /// session, a script file, a word known only at run time...).
    #[serde(default)]
    pub hidden: Option<bool>,
    /// For `hold`: distinct approvers needed to release the action (default 1).
    #[serde(default)]
    pub min_approvals: Option<u32>,
}

/// A rule ready to match.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub action: RuleAction,
    pub reason: String,
    pub severity: String,
    pub source: String,
    pub protocol: Option<Protocol>,
    pub agents: Vec<GlobMatcher>,
    pub targets: Vec<GlobMatcher>,
    pub privilege: Vec<Privilege>,
    pub logins: Vec<GlobMatcher>,
    pub class: Vec<StatementClass>,
    pub commands: Vec<String>,
    pub tables: Vec<GlobMatcher>,
    pub sql: Option<Regex>,
    pub unqualified_dml: bool,
    pub channel: Vec<String>,
    pub command: Option<Regex>,
    pub line: Option<Regex>,
    pub writes: Option<super::guard::PathGuard>,
    pub pipe_to_shell: Option<bool>,
    pub hidden: Option<bool>,
    pub min_approvals: u32,
}

fn globs(field: &str, items: &[String]) -> Result<Vec<GlobMatcher>, String> {
    items
        .iter()
        .map(|p| {
            Glob::new(p)
                .map(|g| g.compile_matcher())
                .map_err(|e| format!("{field}: {p:?}: {e}"))
        })
        .collect()
}

fn regex(
    field: &str,
    pattern: &Option<String>,
    case_insensitive: bool,
) -> Result<Option<Regex>, String> {
    pattern
        .as_ref()
        .map(|p| {
            RegexBuilder::new(p)
                .case_insensitive(case_insensitive)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| format!("{field}: {e}"))
        })
        .transpose()
}

impl Rule {
    pub fn compile(spec: RuleSpec, source: String) -> Result<Rule, String> {
        let protocol = match spec.protocol.as_deref() {
            None => None,
            Some(p) => Some(
                Protocol::parse(p)
                    .ok_or_else(|| format!("protocol: {p:?}: expected postgres or ssh"))?,
            ),
        };
        let privilege = spec
            .privilege
            .iter()
            .map(|p| {
                Privilege::parse(p).ok_or_else(|| {
                    format!("privilege: {p:?}: expected routine, elevated or break-glass")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let class = spec
            .class
            .iter()
            .map(|c| StatementClass::parse(c).ok_or_else(|| format!("class: {c:?}: expected one of empty, tcl, session, read, write, admin, ddl, dcl, unknown")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut unqualified_dml = false;
        for f in &spec.features {
            match f.as_str() {
                "unqualified_dml" => unqualified_dml = true,
                other => return Err(format!("features: {other:?}: expected unqualified_dml")),
            }
        }
        for c in &spec.channel {
            if !matches!(
                c.as_str(),
                "exec" | "line" | "shell" | "sftp" | "subsystem" | "direct-tcpip" | "sftp-change"
            ) {
                return Err(format!(
                    "channel: {c:?}: expected exec, line, shell, sftp, subsystem, direct-tcpip or sftp-change"
                ));
            }
        }
        if spec.name.trim().is_empty() {
            return Err("name: a rule needs a name (it is recorded with every decision)".into());
        }
        Ok(Rule {
            severity: spec.severity.clone().unwrap_or_else(|| "medium".into()),
            reason: if spec.reason.is_empty() {
                spec.description.clone()
            } else {
                spec.reason.clone()
            },
            protocol,
            agents: globs("agents", &spec.agents)?,
            targets: globs("targets", &spec.targets)?,
            privilege,
            logins: globs("logins", &spec.logins)?,
            class,
            commands: spec
                .commands
                .iter()
                .map(|c| c.to_ascii_uppercase())
                .collect(),
            tables: globs("tables", &spec.tables)?,
            sql: regex("sql", &spec.sql, true)?,
            unqualified_dml,
            channel: spec.channel.clone(),
            command: regex("command", &spec.command, false)?,
            line: regex("line", &spec.line, false)?,
            writes: regex("writes", &spec.writes, false)?.map(super::guard::PathGuard::new),
            pipe_to_shell: spec.pipe_to_shell,
            hidden: spec.hidden,
            min_approvals: spec.min_approvals.unwrap_or(1).max(1),
            name: spec.name,
            action: spec.action,
            source,
        })
    }
}
