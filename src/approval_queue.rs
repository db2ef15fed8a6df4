//! The approval queue as a person reads it: holds grouped by agent and by normalised text
//! (literals replaced, case and whitespace folded), the dangerous groups first. Grouping only
//! orders and labels what is shown: every hold keeps its own card, and an approval still
//! applies to exactly one hold.

use std::collections::HashMap;

use proctor_gate::{Action, StatementClass};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::approvals::PendingView;

/// How much harm the held action can do, worst last (so `Ord` sorts it).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Reads, transaction and session control.
    #[default]
    Low,
    /// Channels and other actions whose effect depends on what follows.
    Medium,
    /// Writes with a condition, shell commands, SFTP changes.
    High,
    /// DDL, DCL, admin, every-row DML, and whatever proctor cannot read (`unknown`, or text
    /// that redaction would hide).
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// The group a hold belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Short digest of agent, kind and normalised text: equal for look-alike holds.
    pub id: String,
    /// The normalised text the group shares.
    pub normalised: String,
    /// Holds pending in this group when the queue was listed.
    pub count: usize,
}

/// The severity of a held action, from its class and the rule that held it.
pub fn severity(action: &Action, rule: &str) -> Severity {
    if rule == "redaction-hides-text" {
        return Severity::Critical;
    }
    match action {
        Action::Statement(s) => match s.class {
            StatementClass::Ddl
            | StatementClass::Dcl
            | StatementClass::Admin
            | StatementClass::Unknown => Severity::Critical,
            StatementClass::Write => {
                let text = s.runs.as_deref().unwrap_or(&s.text);
                if crate::policy::sql::dml_candidate(text)
                    && crate::policy::sql::has_unqualified_dml(text)
                    || s.command.eq_ignore_ascii_case("truncate")
                {
                    Severity::Critical
                } else {
                    Severity::High
                }
            }
            StatementClass::Read | StatementClass::Tcl | StatementClass::Empty => Severity::Low,
            _ => Severity::Medium,
        },
        Action::Exec { .. } | Action::CommandLine { .. } | Action::SftpChange { .. } => {
            Severity::High
        }
        Action::Channel { .. } => Severity::Medium,
    }
}

/// The text look-alike holds share: SQL keyed by the front end's own lexer (comments
/// dropped, every literal a placeholder), anything else with digit runs replaced; both
/// lower-cased with whitespace collapsed. Only ASCII is folded: a Unicode space is a letter to
/// PostgreSQL and the shell, and the Kelvin sign lower-cases to `k`, so folding them would
/// show the group's header as something other than what runs.
pub fn normalise(action: &Action) -> String {
    let text = match action {
        Action::Statement(s) => match proctor_postgres::sqllex::split(&s.text) {
            Ok(pieces) => pieces
                .into_iter()
                .map(|p| p.key)
                .collect::<Vec<_>>()
                .join("; "),
            Err(_) => s.text.clone(),
        },
        Action::Exec { command, .. } => digits_folded(command),
        Action::CommandLine { line, .. } => digits_folded(line),
        Action::Channel { kind, detail, .. } => format!("{} {}", kind.as_str(), detail),
        Action::SftpChange { op, path, .. } => format!("{op} {}", digits_folded(path)),
    };
    text.split_ascii_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
}

fn digits_folded(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_digits = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('0');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

/// The group of one held action of `agent`.
pub fn group(agent: &str, kind: &str, action: &Action) -> Group {
    let normalised = normalise(action);
    let mut h = Sha256::new();
    for part in [agent, kind, &normalised] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    Group {
        id: hex::encode(&h.finalize()[..6]),
        normalised,
        count: 0,
    }
}

/// Orders the queue for a person: groups by their worst severity (worst first), then by their
/// oldest hold; inside a group oldest first. Fills in each group's count.
pub fn order(list: &mut [PendingView]) {
    // (count, worst severity, oldest hold) per group.
    let mut groups: HashMap<String, (usize, Severity, i64)> = HashMap::new();
    for p in list.iter() {
        let g = groups
            .entry(p.group.id.clone())
            .or_insert((0, p.severity, p.created_ns));
        g.0 += 1;
        g.1 = g.1.max(p.severity);
        g.2 = g.2.min(p.created_ns);
    }
    for p in list.iter_mut() {
        p.group.count = groups.get(&p.group.id).map_or(1, |g| g.0);
    }
    list.sort_by(|a, b| {
        let (ga, gb) = (&groups[&a.group.id], &groups[&b.group.id]);
        gb.1.cmp(&ga.1)
            .then(ga.2.cmp(&gb.2))
            .then(a.group.id.cmp(&b.group.id))
            .then(a.created_ns.cmp(&b.created_ns))
            .then(a.id.cmp(&b.id))
    });
}

/// Sealed markers in what an approver is shown of a hold.
pub fn sealed_count(p: &PendingView) -> usize {
    let prefix = crate::redact::seal::MARKER_PREFIX;
    std::iter::once(&p.detail)
        .chain(p.reasoning.iter())
        .map(|t| t.matches(prefix).count())
        .sum()
}

/// The audit journal note written before a hold's sealed values are opened.
pub fn reveal_note(who: &str, p: &PendingView, key: &str) -> String {
    format!(
        "reveal: {who} opens {} sealed values of held action {} (session {}, agent {:?}) with \
         auditor key {key}",
        sealed_count(p),
        p.id,
        p.session_id,
        p.agent
    )
}

/// Opens the sealed markers of a hold's text and reasoning with the auditor's private key;
/// returns how many opened and how many did not.
pub fn open_sealed(p: &mut PendingView, opener: &crate::redact::seal::Opener) -> (usize, usize) {
    let (mut ok, mut bad) = (0, 0);
    for t in std::iter::once(&mut p.detail).chain(p.reasoning.iter_mut()) {
        let (clear, o, b) = opener.reveal_text(&p.session_id, t);
        *t = clear;
        ok += o;
        bad += b;
    }
    (ok, bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approvals::{Approvals, PendingView};
    use proctor_gate::Statement;
    use std::time::Duration;

    fn statement(text: &str, class: StatementClass, command: &str) -> Action {
        Action::Statement(Statement {
            id: 1,
            text: text.into(),
            params: vec![],
            statement_name: String::new(),
            portal: String::new(),
            extended: false,
            class,
            command: command.into(),
            tables: vec![],
            reasoning: None,
            runs: None,
        })
    }

    fn view(id: usize, agent: &str, action: &Action, rule: &str) -> PendingView {
        PendingView {
            id: format!("h{id:03}"),
            session_id: format!("s{id}"),
            agent: agent.into(),
            target: "db".into(),
            protocol: "postgres".into(),
            privilege: "elevated".into(),
            kind: "statement".into(),
            detail: String::new(),
            class: String::new(),
            tables: vec![],
            rule: rule.into(),
            reason: String::new(),
            reasoning: vec![],
            created_ns: id as i64,
            expires_ns: 0,
            min_approvals: 1,
            approvals: vec![],
            settings: vec![],
            severity: severity(action, rule),
            group: group(agent, "statement", action),
        }
    }

    #[test]
    fn look_alikes_share_a_group_and_literals_do_not_split_it() {
        let a = statement(
            "UPDATE t SET note = 'x' WHERE id = 41",
            StatementClass::Write,
            "UPDATE",
        );
        let b = statement(
            "update   t set note = 'yy'\n where id = 7 /* other */",
            StatementClass::Write,
            "UPDATE",
        );
        assert_eq!(group("a", "statement", &a), group("a", "statement", &b));
        assert_ne!(group("a", "statement", &a), group("b", "statement", &a));
        assert_eq!(severity(&a, "r"), Severity::High);
        let del = statement("DELETE FROM accounts", StatementClass::Write, "DELETE");
        assert_eq!(severity(&del, "r"), Severity::Critical);
        let sel = statement("SELECT 1", StatementClass::Read, "SELECT");
        assert_eq!(severity(&sel, "r"), Severity::Low);
        assert_eq!(severity(&sel, "redaction-hides-text"), Severity::Critical);
    }

    /// Round 3: an en space is a letter to PostgreSQL (`x\u{2002}WHERE...` is one alias) and
    /// the Kelvin sign is not `k`: the group's header keeps both, so the inert display shows
    /// them, and they do not join the group of what they look like.
    #[test]
    fn the_group_header_keeps_what_only_looks_like_space_or_ascii() {
        let alias = statement(
            "DELETE FROM t x\u{2002}WHERE\u{2002}id\u{2002}IS\u{2002}NULL",
            StatementClass::Write,
            "DELETE",
        );
        assert_eq!(
            normalise(&alias),
            "delete from t x\u{2002}where\u{2002}id\u{2002}is\u{2002}null"
        );
        let kelvin = Action::Exec {
            channel: 0,
            command: "rm -rf /srv/\u{212a}eys".into(),
        };
        assert_eq!(normalise(&kelvin), "rm -rf /srv/\u{212a}eys");
        let plain = Action::Exec {
            channel: 0,
            command: "rm -rf /srv/keys".into(),
        };
        assert_ne!(group("a", "exec", &kelvin), group("a", "exec", &plain));
    }

    /// Issue 18: one `DELETE FROM accounts` among 120 look-alike holds comes first, its group
    /// of one, while the 120 share one group with their count; approving one releases one.
    #[test]
    fn the_dangerous_hold_comes_first_among_120_look_alikes() {
        let q = Approvals::new(Duration::from_secs(60));
        let mut rxs = Vec::new();
        for i in 0..121 {
            let (action, agent) = if i == 60 {
                (
                    statement("DELETE FROM accounts", StatementClass::Write, "DELETE"),
                    "agent-b",
                )
            } else {
                (
                    statement(
                        &format!("UPDATE accounts SET note = 'n{i}' WHERE id = {i}"),
                        StatementClass::Write,
                        "UPDATE",
                    ),
                    "agent-a",
                )
            };
            rxs.push(q.hold(view(i, agent, &action, "hold-writes")));
        }
        let list = q.list();
        assert_eq!(list.len(), 121);
        assert_eq!(list[0].id, "h060");
        assert_eq!(list[0].severity, Severity::Critical);
        assert_eq!(list[0].group.count, 1);
        assert_eq!(list[0].group.normalised, "delete from accounts");
        assert!(list[1..].iter().all(|p| p.group.count == 120));
        assert!(list[1..].iter().all(|p| p.group == list[1].group));
        assert_eq!(
            list[1].group.normalised,
            "update accounts set note = '' where id = 0"
        );
        // Oldest first inside the group.
        assert_eq!(list[1].id, "h000");
        assert_eq!(list[120].id, "h120");
        let bob = crate::approvals::Approver::token("bob");
        assert_eq!(q.approve("h005", &bob, ""), Ok(true));
        let list = q.list();
        assert_eq!(list.len(), 120);
        assert!(list[1..].iter().all(|p| p.group.count == 119));
        assert!(rxs[5].try_recv().is_ok());
        assert!(rxs[6].try_recv().is_err());
    }
}
