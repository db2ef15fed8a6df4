//! Policy: rule files loaded at start-up and on SIGHUP, evaluated for every action an agent
//! takes. The first matching `allow`, `deny` or `hold` rule decides; every matching `alert`
//! rule raises an alert on the way. When nothing decides, the action is allowed and the
//! verdict names the `default` rule.

pub mod cases;
pub mod guard;
pub mod rule;
pub mod shell;
pub mod sql;

use std::path::{Path, PathBuf};

use proctor_gate::{Action, AlertRecord, ChannelKind, Privilege, Protocol, Statement};
use serde::Deserialize;
use thiserror::Error;

pub use self::rule::{Rule, RuleAction, RuleSpec};
use self::shell::ShellFacts;

#[derive(Debug, Error)]
pub enum PolicyError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    rule: Vec<toml::Spanned<RuleSpec>>,
    /// Redaction rules (`crate::redact::rules`), loaded with the policy so they reload with it.
    #[serde(default)]
    redact: Vec<toml::Spanned<crate::redact::rules::RedactSpec>>,
}

/// Who is acting, for matching.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub agent: &'a str,
    pub target: &'a str,
    pub login: &'a str,
    pub privilege: Privilege,
    pub protocol: Protocol,
    /// For a line of a judged shell: its working directory as the target's kernel last gave
    /// it. It can only add to what a relative write is judged as (a guess beside the path
    /// matched under any directory), never take away: it may be stale (a command typed ahead)
    /// or a program may fake the prompt after which it is read.
    pub shell_cwd: Option<&'a str>,
}

/// The outcome of evaluating an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    pub action: RuleAction,
    pub rule: String,
    pub reason: String,
    pub alerts: Vec<AlertRecord>,
    pub min_approvals: u32,
}

#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub rules: Vec<Rule>,
    pub files: Vec<PathBuf>,
    /// `[[redact]]` tables of the same files, in order.
    pub redact: Vec<crate::redact::rules::RedactRule>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl Policy {
    /// Loads files and directories (a directory contributes its `*.toml` files, sorted by name).
    pub fn load(paths: &[PathBuf]) -> Result<Policy, PolicyError> {
        let mut files = Vec::new();
        for p in paths {
            if p.is_dir() {
                let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                    .map_err(|source| PolicyError::Read {
                        path: p.clone(),
                        source,
                    })?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|f| f.extension().is_some_and(|x| x == "toml") && f.is_file())
                    .collect();
                entries.sort();
                files.extend(entries);
            } else {
                files.push(p.clone());
            }
        }
        let mut policy = Policy::default();
        for f in &files {
            let (rules, redact) = Self::load_file_all(f)?;
            policy.rules.extend(rules);
            policy.redact.extend(redact);
        }
        policy.files = files;
        Ok(policy)
    }

    pub fn load_file(path: &Path) -> Result<Vec<Rule>, PolicyError> {
        Ok(Self::load_file_all(path)?.0)
    }

    /// A file's `[[rule]]` and `[[redact]]` tables.
    pub fn load_file_all(
        path: &Path,
    ) -> Result<(Vec<Rule>, Vec<crate::redact::rules::RedactRule>), PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let parsed: PolicyFile = toml::from_str(&text).map_err(|e| PolicyError::Invalid {
            path: path.to_path_buf(),
            line: e.span().map_or(0, |s| line_of(&text, s.start)),
            message: e.message().to_string(),
        })?;
        let mut rules = Vec::new();
        for spanned in parsed.rule {
            let line = line_of(&text, spanned.span().start);
            let spec = spanned.into_inner();
            let source = format!("{}:{line}", path.display());
            let rule = Rule::compile(spec, source).map_err(|message| PolicyError::Invalid {
                path: path.to_path_buf(),
                line,
                message,
            })?;
            rules.push(rule);
        }
        let mut redact = Vec::new();
        for spanned in parsed.redact {
            let line = line_of(&text, spanned.span().start);
            let source = format!("{}:{line}", path.display());
            let r = crate::redact::rules::RedactRule::compile(spanned.into_inner(), source)
                .map_err(|message| PolicyError::Invalid {
                    path: path.to_path_buf(),
                    line,
                    message: format!("[[redact]] {message}"),
                })?;
            redact.push(r);
        }
        Ok((rules, redact))
    }

    pub fn judge(&self, ctx: &Context<'_>, action: &Action) -> Judgement {
        let mut subject = Subject::new(action);
        subject.shell_cwd = ctx.shell_cwd;
        let mut alerts = Vec::new();
        for rule in &self.rules {
            if !matches_rule(rule, ctx, &mut subject) {
                continue;
            }
            if rule.action == RuleAction::Alert {
                alerts.push(AlertRecord {
                    rule: rule.name.clone(),
                    severity: rule.severity.clone(),
                    message: if rule.reason.is_empty() {
                        format!("{} matched", action.subject())
                    } else {
                        format!("{}: {}", rule.reason, action.subject())
                    },
                });
                continue;
            }
            // A hold for hidden text says what could not be read, so the approver knows.
            let sftp = match subject.action {
                Action::SftpChange {
                    op,
                    path,
                    target_path,
                    ..
                } if rule.hidden == Some(true) => sftp_hidden(op, path, target_path),
                _ => None,
            };
            let reason = match (rule.hidden, subject.shell(), sftp) {
                (Some(true), Some(facts), _) if !facts.hidden.is_empty() => {
                    format!("{}: {}", rule.reason, facts.hidden.join("; "))
                }
                (_, _, Some(why)) => format!("{}: {why}", rule.reason),
                _ => rule.reason.clone(),
            };
            return Judgement {
                action: rule.action,
                rule: rule.name.clone(),
                reason,
                alerts,
                min_approvals: rule.min_approvals,
            };
        }
        Judgement {
            action: RuleAction::Allow,
            rule: "default".into(),
            reason: "no rule matched".into(),
            alerts,
            min_approvals: 1,
        }
    }
}

/// The action being judged, with facts derived on first use.
struct Subject<'a> {
    action: &'a Action,
    normalized_sql: Option<std::sync::Arc<str>>,
    unqualified: Option<bool>,
    shell: Option<ShellFacts>,
    shell_cwd: Option<&'a str>,
}

impl<'a> Subject<'a> {
    fn new(action: &'a Action) -> Self {
        Subject {
            action,
            normalized_sql: None,
            unqualified: None,
            shell: None,
            shell_cwd: None,
        }
    }

    fn statement(&self) -> Option<&'a Statement> {
        match self.action {
            Action::Statement(s) => Some(s),
            _ => None,
        }
    }

    fn normalized_sql(&mut self) -> &str {
        if self.normalized_sql.is_none() {
            let text = self.statement().map_or("", |s| s.text.as_str());
            let runs = self.statement().and_then(|s| s.runs.as_deref());
            self.normalized_sql = Some(match runs {
                // `EXECUTE name`: patterns see the prepared statement first (anchored
                // patterns match it), then the EXECUTE with its arguments.
                Some(body) => format!(
                    "{}\n{}",
                    sql::normalize_cached(body),
                    sql::normalize_cached(text)
                )
                .into(),
                None => sql::normalize_cached(text),
            });
        }
        self.normalized_sql.as_deref().unwrap_or("")
    }

    fn unqualified_dml(&mut self) -> bool {
        if let Some(v) = self.unqualified {
            return v;
        }
        // Parsing again is only worth it for text that can hold such DML at all. An EXECUTE
        // is judged by the statement it runs.
        let v = self.statement().is_some_and(|s| {
            let text = s.runs.as_deref().unwrap_or(&s.text);
            sql::dml_candidate(text) && sql::has_unqualified_dml_given(text, || params_of(s))
        });
        self.unqualified = Some(v);
        v
    }

    /// The command text of an SSH action.
    fn command_text(&self) -> Option<&'a str> {
        match self.action {
            Action::Exec { command, .. } => Some(command),
            Action::CommandLine { line, .. } => Some(line),
            _ => None,
        }
    }

    fn shell(&mut self) -> Option<&ShellFacts> {
        let text = self.command_text()?;
        if self.shell.is_none() {
            self.shell = Some(match self.action {
                Action::CommandLine { .. } => shell::analyze_in(text, self.shell_cwd),
                _ => shell::analyze(text),
            });
        }
        self.shell.as_ref()
    }

    fn channel_name(&self) -> &'static str {
        match self.action {
            Action::Statement(_) => "",
            Action::Exec { .. } => "exec",
            Action::CommandLine { .. } => "line",
            Action::SftpChange { .. } => "sftp-change",
            Action::Channel { kind, .. } => match kind {
                ChannelKind::Shell | ChannelKind::Session => "shell",
                ChannelKind::Sftp => "sftp",
                ChannelKind::Subsystem | ChannelKind::Exec => "subsystem",
                ChannelKind::DirectTcpip | ChannelKind::ForwardedTcpip => "direct-tcpip",
            },
        }
    }
}

/// The paths an SFTP change writes, each with whether everything below it counts: a removed
/// or renamed directory takes everything below it along; a symbolic link makes everything below
/// its target writable through it.
fn sftp_ends<'p>(
    op: &str,
    path: &'p str,
    target_path: &'p str,
) -> [(std::borrow::Cow<'p, str>, bool); 2] {
    let whole_tree = matches!(op, "remove" | "rmdir" | "rename");
    // A link's relative target is resolved from the link's own directory. Only a plain one
    // (no `..`, which the kernel resolves through the directory's real parent) is resolved
    // here; any other relative target is judged as if it could be under any directory.
    let target: std::borrow::Cow<'p, str> = match path.rsplit_once('/') {
        Some((dir, _))
            if op == "symlink"
                && path.starts_with('/')
                && !target_path.is_empty()
                && !target_path.starts_with('/')
                && !target_path.split('/').any(|c| c == "..") =>
        {
            format!("{dir}/{target_path}").into()
        }
        _ => target_path.into(),
    };
    [
        (path.into(), whole_tree),
        (target, whole_tree || op == "symlink"),
    ]
}

/// Why an SFTP change is hidden: it writes a file that runs commands later (`~/.bashrc`,
/// `/etc/cron.d/x`), as the same write by a shell line is.
fn sftp_hidden(op: &str, path: &str, target_path: &str) -> Option<String> {
    sftp_ends(op, path, target_path)
        .iter()
        .filter(|(p, _)| !p.is_empty())
        .find_map(|(p, tree)| {
            let (p, tree) = (shell::normalize_path(p), *tree);
            if tree {
                shell::startup::tree_runs_later(&p)
            } else {
                shell::startup::runs_later(&p)
            }
        })
}

/// The values a statement's parameters take, as the every-row check reads them: a SQL
/// `EXECUTE name(args)` binds its literal arguments; a protocol Bind its values, as text
/// (a binary value is the same bytes for a text parameter, which is what a pattern is).
fn params_of(s: &Statement) -> Vec<Option<String>> {
    if s.runs.is_some() {
        return sql::execute_args(&s.text);
    }
    s.params
        .iter()
        .map(|p| {
            p.value
                .as_ref()
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_string)
        })
        .collect()
}

fn any_glob(globs: &[globset::GlobMatcher], value: &str) -> bool {
    globs.is_empty() || globs.iter().any(|g| g.is_match(value))
}

fn matches_rule(rule: &Rule, ctx: &Context<'_>, subject: &mut Subject<'_>) -> bool {
    if rule.protocol.is_some_and(|p| p != ctx.protocol) {
        return false;
    }
    if !rule.privilege.is_empty() && !rule.privilege.contains(&ctx.privilege) {
        return false;
    }
    if !any_glob(&rule.agents, ctx.agent) || !any_glob(&rule.targets, ctx.target) {
        return false;
    }
    if !rule.logins.is_empty() && !any_glob(&rule.logins, ctx.login) {
        return false;
    }
    let sql_fields = !rule.class.is_empty()
        || !rule.tables.is_empty()
        || rule.sql.is_some()
        || rule.unqualified_dml;
    let ssh_fields = !rule.channel.is_empty()
        || rule.command.is_some()
        || rule.line.is_some()
        || rule.writes.is_some()
        || rule.pipe_to_shell.is_some()
        || rule.hidden.is_some();
    if let Some(stmt) = subject.statement() {
        if ssh_fields {
            return false;
        }
        if !rule.class.is_empty() && !rule.class.contains(&stmt.class) {
            return false;
        }
        if !rule.commands.is_empty() {
            let c = stmt.command.to_ascii_uppercase();
            if !rule
                .commands
                .iter()
                .any(|w| c == *w || c.starts_with(&format!("{w} ")))
            {
                return false;
            }
        }
        if !rule.tables.is_empty()
            && !stmt
                .tables
                .iter()
                .any(|t| rule.tables.iter().any(|g| g.is_match(t)))
        {
            return false;
        }
        if rule.unqualified_dml && !subject.unqualified_dml() {
            return false;
        }
        if let Some(re) = &rule.sql
            && !re.is_match(subject.normalized_sql())
        {
            return false;
        }
        return true;
    }
    if sql_fields {
        return false;
    }
    let channel = subject.channel_name();
    if !rule.channel.is_empty() && !rule.channel.iter().any(|c| c == channel) {
        return false;
    }
    if let Action::SftpChange {
        path,
        op,
        target_path,
        ..
    } = subject.action
    {
        if !rule.commands.is_empty()
            || rule.command.is_some()
            || rule.line.is_some()
            || rule.pipe_to_shell.is_some()
        {
            return false;
        }
        // A removed or renamed directory takes everything below it along; a symbolic link
        // makes everything below its target writable through it.
        let ends = sftp_ends(op, path, target_path);
        let ends = ends.iter().filter(|(p, _)| !p.is_empty());
        if let Some(want) = rule.hidden
            && sftp_hidden(op, path, target_path).is_some() != want
        {
            return false;
        }
        if let Some(re) = &rule.writes {
            // Both ends of a rename or link are written: the file moved away and the one
            // replaced (or created). A removal changes the file as surely as a write.
            return ends.clone().any(|(p, tree)| {
                let (p, tree) = (shell::normalize_path(p), *tree);
                if tree {
                    re.may_match_tree(&p)
                } else {
                    re.may_match(&p)
                }
            });
        }
        return true;
    }
    let needs_text = !rule.commands.is_empty()
        || rule.command.is_some()
        || rule.line.is_some()
        || rule.writes.is_some()
        || rule.pipe_to_shell.is_some()
        || rule.hidden.is_some();
    if !needs_text {
        return true;
    }
    let Some(text) = subject.command_text() else {
        return false;
    };
    if let Some(re) = &rule.line
        && !re.is_match(text)
    {
        return false;
    }
    let Some(facts) = subject.shell() else {
        return false;
    };
    if !rule.commands.is_empty()
        && !facts
            .programs
            .iter()
            .any(|p| rule.commands.iter().any(|c| c.eq_ignore_ascii_case(p)))
    {
        return false;
    }
    if let Some(re) = &rule.command
        && !facts.commands.iter().any(|c| re.is_match(c))
    {
        return false;
    }
    if let Some(re) = &rule.writes
        && !facts.write_paths.iter().any(|p| re.may_match(p))
        && !facts.write_trees.iter().any(|d| re.may_match_tree(d))
    {
        return false;
    }
    if let Some(want) = rule.pipe_to_shell
        && facts.pipe_to_shell != want
    {
        return false;
    }
    if let Some(want) = rule.hidden
        && facts.hidden.is_empty() == want
    {
        return false;
    }
    true
}
