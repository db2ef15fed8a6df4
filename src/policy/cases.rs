//! `proctor policy test POLICY_DIR CASES_FILE`: a table of actions and the verdict the policy
//! must give them, evaluated with the same code as live traffic (statements are split and
//! classified by the PostgreSQL front end's classifier, then judged by `Policy::judge`).
//!
//! ```toml
//! [defaults]                      # optional; every case may override
//! agent = "ops-agent"
//! target = "ledger-db"
//! privilege = "elevated"
//!
//! [[case]]
//! name = "comment inside a keyword does not hide ALTER SYSTEM"
//! statement = "ALTER/**/SYSTEM SET work_mem = '1GB'"
//! expect = "deny"
//! rule = "pg-deny-alter-system"   # optional
//! alerts = ["pg-alert-destructive"]  # optional: alerts that must be raised
//! ```
//!
//! An action is one of `statement`, `exec`, `line`, `sftp_change` (`"<op> <path>"`) or
//! `channel` (`"direct-tcpip host:port"`, `"shell"`, `"sftp"`). A simple-query string with
//! several statements is decided as the relay decides it: by its first statement that is not
//! allowed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use proctor_gate::{Action, ChannelKind, Privilege, Protocol, Statement};
use serde::Deserialize;

use super::{Context, Judgement, Policy, PolicyError, RuleAction, line_of};

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    agent: Option<String>,
    target: Option<String>,
    login: Option<String>,
    privilege: Option<String>,
    protocol: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSpec {
    #[serde(default)]
    name: Option<String>,
    agent: Option<String>,
    target: Option<String>,
    login: Option<String>,
    privilege: Option<String>,
    protocol: Option<String>,
    statement: Option<String>,
    /// Judge the statement as a Parse message (extended protocol) instead of a simple query.
    #[serde(default)]
    extended: bool,
    exec: Option<String>,
    line: Option<String>,
    /// For a `line`: the judged shell's working directory as the target gave it.
    cwd: Option<String>,
    #[serde(alias = "sftp-change")]
    sftp_change: Option<String>,
    channel: Option<String>,
    expect: String,
    rule: Option<String>,
    #[serde(default)]
    alerts: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(default)]
    defaults: Defaults,
    #[serde(default)]
    case: Vec<toml::Spanned<CaseSpec>>,
}

/// One failed case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `file:line`.
    pub at: String,
    pub name: String,
    pub message: String,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub cases: usize,
    pub failures: Vec<Failure>,
    /// Rules that decided or alerted in at least one case.
    pub exercised: Vec<String>,
    /// Rules of the policy no case exercised.
    pub unexercised: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.failures {
            let _ = writeln!(out, "FAIL {}: {}: {}", f.at, f.name, f.message);
        }
        if !self.unexercised.is_empty() {
            let _ = writeln!(
                out,
                "note: no case exercises {}",
                self.unexercised.join(", ")
            );
        }
        let _ = writeln!(
            out,
            "{}: {} cases, {} passed, {} failed",
            if self.ok() { "OK" } else { "FAILED" },
            self.cases,
            self.cases - self.failures.len(),
            self.failures.len()
        );
        out
    }
}

fn parse_expect(s: &str) -> Option<RuleAction> {
    match s {
        "allow" => Some(RuleAction::Allow),
        "deny" => Some(RuleAction::Deny),
        "hold" => Some(RuleAction::Hold),
        _ => None,
    }
}

/// The actions a case stands for: one per statement of a simple query, else one.
fn actions(c: &CaseSpec) -> Result<(Protocol, Vec<Action>), String> {
    let given = [
        c.statement.is_some(),
        c.exec.is_some(),
        c.line.is_some(),
        c.sftp_change.is_some(),
        c.channel.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if given != 1 {
        return Err("give exactly one of statement, exec, line, sftp_change, channel".into());
    }
    if let Some(sql) = &c.statement {
        let ctx = proctor_postgres::classify::LexContext::default();
        let judged = if c.extended {
            vec![proctor_postgres::classify::classify_prepared(sql, ctx)]
        } else {
            proctor_postgres::classify::classify_query(sql, ctx)
        };
        let actions = judged
            .into_iter()
            .enumerate()
            .map(|(i, j)| {
                Action::Statement(Statement {
                    id: i as u64 + 1,
                    text: j.text,
                    params: Vec::new(),
                    statement_name: String::new(),
                    portal: String::new(),
                    extended: c.extended,
                    class: j.info.class,
                    command: j.info.command.clone(),
                    tables: j.info.tables.clone(),
                    reasoning: j.reasoning,
                    runs: None,
                })
            })
            .collect();
        return Ok((Protocol::Postgres, actions));
    }
    let action = if let Some(command) = &c.exec {
        Action::Exec {
            channel: 0,
            command: command.clone(),
        }
    } else if let Some(line) = &c.line {
        Action::CommandLine {
            channel: 0,
            line: line.clone(),
        }
    } else if let Some(change) = &c.sftp_change {
        let (op, path) = change.split_once(' ').ok_or(
            "sftp_change: expected \"<op> <path>\" or \"<op> <path> -> <target>\", e.g. \"write /etc/shadow\"",
        )?;
        let (path, target_path) = path.split_once(" -> ").unwrap_or((path, ""));
        Action::SftpChange {
            channel: 0,
            op: op.to_string(),
            path: path.trim().to_string(),
            target_path: target_path.trim().to_string(),
        }
    } else {
        let spec = c.channel.as_deref().unwrap_or_default();
        let (kind, detail) = spec.split_once(' ').unwrap_or((spec, ""));
        let kind = match kind {
            "shell" => ChannelKind::Shell,
            "session" => ChannelKind::Session,
            "exec" => ChannelKind::Exec,
            "sftp" => ChannelKind::Sftp,
            "subsystem" => ChannelKind::Subsystem,
            "direct-tcpip" => ChannelKind::DirectTcpip,
            "forwarded-tcpip" => ChannelKind::ForwardedTcpip,
            other => {
                return Err(format!(
                    "channel: {other:?}: expected shell, sftp, subsystem, direct-tcpip..."
                ));
            }
        };
        Action::Channel {
            channel: 0,
            kind,
            detail: detail.to_string(),
        }
    };
    Ok((Protocol::Ssh, vec![action]))
}

fn pick<'a>(case: &'a Option<String>, default: &'a Option<String>, fallback: &'a str) -> &'a str {
    case.as_deref().or(default.as_deref()).unwrap_or(fallback)
}

/// Decides a case the way the relay decides a message: the first part that is not allowed.
fn decide(policy: &Policy, ctx: &Context<'_>, actions: &[Action]) -> (Judgement, Vec<String>) {
    let mut alerts = Vec::new();
    let mut first: Option<Judgement> = None;
    for a in actions {
        let j = policy.judge(ctx, a);
        alerts.extend(j.alerts.iter().map(|x| x.rule.clone()));
        if j.action == RuleAction::Deny || j.action == RuleAction::Hold {
            return (j, alerts);
        }
        first.get_or_insert(j);
    }
    let j = first.unwrap_or(Judgement {
        action: RuleAction::Allow,
        rule: "default".into(),
        reason: String::new(),
        alerts: Vec::new(),
        min_approvals: 1,
    });
    (j, alerts)
}

/// Runs every case of `cases_file` against `policy`.
pub fn run(policy: &Policy, cases_file: &Path) -> Result<Report, PolicyError> {
    let text = std::fs::read_to_string(cases_file).map_err(|source| PolicyError::Read {
        path: cases_file.to_path_buf(),
        source,
    })?;
    let file: CaseFile = toml::from_str(&text).map_err(|e| PolicyError::Invalid {
        path: cases_file.to_path_buf(),
        line: e.span().map_or(0, |s| line_of(&text, s.start)),
        message: e.message().to_string(),
    })?;
    let d = &file.defaults;
    let mut report = Report::default();
    for spanned in &file.case {
        let line = line_of(&text, spanned.span().start);
        let c = spanned.get_ref();
        let at = format!("{}:{line}", cases_file.display());
        let name = c.name.clone().unwrap_or_else(|| {
            c.statement
                .clone()
                .or(c.exec.clone())
                .or(c.line.clone())
                .or(c.sftp_change.clone())
                .or(c.channel.clone())
                .unwrap_or_default()
        });
        report.cases += 1;
        let mut fail = |message: String| {
            report.failures.push(Failure {
                at: at.clone(),
                name: name.clone(),
                message,
            })
        };
        let Some(expect) = parse_expect(&c.expect) else {
            fail(format!(
                "expect: {:?}: expected allow, deny or hold",
                c.expect
            ));
            continue;
        };
        let privilege_text = pick(&c.privilege, &d.privilege, "elevated");
        let Some(privilege) = Privilege::parse(privilege_text) else {
            fail(format!(
                "privilege: {privilege_text:?}: expected routine, elevated or break-glass"
            ));
            continue;
        };
        let (protocol, actions) = match actions(c) {
            Ok(x) => x,
            Err(e) => {
                fail(e);
                continue;
            }
        };
        if let Some(p) = c.protocol.as_deref().or(d.protocol.as_deref())
            && Protocol::parse(p) != Some(protocol)
            && c.protocol.is_some()
        {
            fail(format!(
                "protocol: {p:?} does not fit the action ({})",
                protocol.as_str()
            ));
            continue;
        }
        let ctx = Context {
            agent: pick(&c.agent, &d.agent, "case-agent"),
            target: pick(&c.target, &d.target, "case-target"),
            login: pick(&c.login, &d.login, "case-login"),
            privilege,
            protocol,
            shell_cwd: c.cwd.as_deref(),
        };
        let (j, alerts) = decide(policy, &ctx, &actions);
        for r in std::iter::once(&j.rule).chain(alerts.iter()) {
            if !report.exercised.contains(r) {
                report.exercised.push(r.clone());
            }
        }
        let mut problems = Vec::new();
        let got_action = if j.action == RuleAction::Alert {
            RuleAction::Allow
        } else {
            j.action
        };
        if got_action != expect {
            problems.push(format!(
                "expected {}, got {} (rule {}{})",
                expect.as_str(),
                got_action.as_str(),
                j.rule,
                match &actions[..] {
                    [Action::Statement(s)] => format!(
                        ", class {}, command {:?}, tables {:?}",
                        s.class.as_str(),
                        s.command,
                        s.tables
                    ),
                    _ => String::new(),
                }
            ));
        } else if let Some(rule) = &c.rule
            && *rule != j.rule
        {
            problems.push(format!("expected rule {rule}, got rule {}", j.rule));
        }
        for a in &c.alerts {
            if !alerts.contains(a) {
                problems.push(format!("expected alert {a}, got [{}]", alerts.join(", ")));
            }
        }
        if !problems.is_empty() {
            fail(problems.join("; "));
        }
    }
    report.unexercised = policy
        .rules
        .iter()
        .map(|r| r.name.clone())
        .filter(|n| !report.exercised.contains(n))
        .collect();
    Ok(report)
}

/// `proctor policy test`: loads the policy, runs the cases, prints failures and a summary.
pub fn run_cli(policy_paths: &[PathBuf], cases_file: &Path) -> Result<(String, bool), PolicyError> {
    let policy = Policy::load(policy_paths)?;
    let report = run(&policy, cases_file)?;
    Ok((report.render(), report.ok()))
}
