//! Real-time detectors (AG-305 clause 4.7): alerts raised while the session runs, not after.
//!
//! - a burst of destructive statements or commands,
//! - first use by an agent of a table or program it has never used before (a per-agent baseline
//!   kept in the store's index),
//! - large data egress (rows returned, bytes of output),
//! - activity outside the grant's active hours.
//!
//! Each finding is an alert recorded in the session; a detector may also hold the session's next
//! action or kill it.
//!
//! This file holds the detectors' state and the burst, hours and egress checks; the first-use
//! baseline is in `monitor/first_use.rs`, the `[monitor]` settings in `monitor/settings.rs`.

mod first_use;
mod settings;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use proctor_gate::{Action, AlertRecord, Event, StatementClass};
use serde::{Deserialize, Serialize};

use crate::policy::shell;

pub use self::first_use::bounded_name;
pub use self::settings::MonitorConfig;

/// What a detector does besides alerting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Response {
    #[default]
    Alert,
    /// Hold the session's next action for approval.
    Hold,
    Kill,
}

/// A detector's finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub alert: AlertRecord,
    pub response: Response,
}

/// Per-session detector state.
#[derive(Debug, Default)]
pub struct Watch {
    destructive: VecDeque<i64>,
    burst_alerted_until: i64,
    rows: u64,
    bytes: u64,
    rows_alerted: bool,
    bytes_alerted: bool,
    hours_alerted: bool,
    /// The agent had a baseline before this session: first uses are worth an alert.
    pub established: bool,
    seen: HashSet<String>,
}

/// Active hours `HH:MM-HH:MM` (UTC); a range past midnight wraps.
pub fn parse_hours(s: &str) -> Result<(u32, u32), String> {
    let parse = |t: &str| -> Result<u32, String> {
        let (h, m) = t
            .trim()
            .split_once(':')
            .ok_or_else(|| format!("{t:?}: expected HH:MM"))?;
        let h: u32 = h.parse().map_err(|_| format!("{t:?}: bad hour"))?;
        let m: u32 = m.parse().map_err(|_| format!("{t:?}: bad minute"))?;
        if h > 23 || m > 59 {
            return Err(format!("{t:?}: out of range"));
        }
        Ok(h * 60 + m)
    };
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?}: expected HH:MM-HH:MM (UTC)"))?;
    Ok((parse(a)?, parse(b)?))
}

fn within(hours: (u32, u32), now_ns: i64) -> bool {
    let minute = ((now_ns / 60_000_000_000).rem_euclid(24 * 60)) as u32;
    let (a, b) = hours;
    if a <= b {
        (a..b).contains(&minute)
    } else {
        minute >= a || minute < b
    }
}

fn destructive_sql(class: StatementClass, command: &str) -> bool {
    let c = command.to_ascii_uppercase();
    matches!(class, StatementClass::Ddl | StatementClass::Dcl)
        || c.starts_with("DELETE")
        || c.starts_with("TRUNCATE")
        || c.starts_with("DROP")
        || c.starts_with("UPDATE")
}

const DESTRUCTIVE_PROGRAMS: &[&str] = &[
    "rm", "rmdir", "shred", "dd", "mkfs", "wipefs", "truncate", "kill", "pkill", "killall",
    "shutdown", "reboot", "halt", "poweroff", "iptables", "nft", "userdel", "deluser", "chmod",
    "chown", "mv",
];

pub struct Monitor {
    pub config: MonitorConfig,
    /// (agent, item) pairs known to the baseline, cached in memory.
    known: Mutex<HashSet<(String, String)>>,
    /// Baseline entries each agent added in this run (`first_use_per_agent`).
    added: Mutex<HashMap<String, u64>>,
}

impl Watch {
    pub fn new(established: bool) -> Self {
        Watch {
            established,
            ..Default::default()
        }
    }
}

impl Monitor {
    pub fn new(config: MonitorConfig) -> Self {
        Monitor {
            config,
            known: Mutex::new(HashSet::new()),
            added: Mutex::new(HashMap::new()),
        }
    }

    fn alert(rule: &str, severity: &str, message: String, response: Response) -> Finding {
        Finding {
            alert: AlertRecord {
                rule: format!("monitor:{rule}"),
                severity: severity.into(),
                message,
            },
            response,
        }
    }

    fn is_destructive(action: &Action) -> bool {
        match action {
            Action::Statement(s) => destructive_sql(s.class, &s.command),
            Action::Exec { command, .. } | Action::CommandLine { line: command, .. } => {
                shell::analyze(command)
                    .programs
                    .iter()
                    .any(|p| DESTRUCTIVE_PROGRAMS.contains(&p.as_str()))
            }
            Action::SftpChange { op, .. } => matches!(op.as_str(), "remove" | "rmdir" | "rename"),
            _ => false,
        }
    }

    /// Looks at an action before it is judged. `baseline` says whether an (agent, item) pair
    /// was new to the store (and records it).
    pub fn on_action(
        &self,
        agent: &str,
        active_hours: Option<(u32, u32)>,
        watch: &mut Watch,
        action: &Action,
        now_ns: i64,
        mut baseline: impl FnMut(&str) -> bool,
    ) -> Vec<Finding> {
        let mut out = Vec::new();
        if let Some(h) = active_hours
            && !watch.hours_alerted
            && !within(h, now_ns)
        {
            watch.hours_alerted = true;
            out.push(Self::alert(
                "outside-hours",
                "high",
                format!(
                    "{agent} acted outside the grant's active hours ({:02}:{:02}-{:02}:{:02} UTC): {}",
                    h.0 / 60,
                    h.0 % 60,
                    h.1 / 60,
                    h.1 % 60,
                    action.subject()
                ),
                self.config.outside_hours_action,
            ));
        }
        if Self::is_destructive(action) {
            let window = self.config.burst_window.as_nanos() as i64;
            watch.destructive.push_back(now_ns);
            while watch
                .destructive
                .front()
                .is_some_and(|&t| now_ns - t > window)
            {
                watch.destructive.pop_front();
            }
            if watch.destructive.len() as u32 >= self.config.burst_count.max(1)
                && now_ns >= watch.burst_alerted_until
            {
                watch.burst_alerted_until = now_ns + window;
                out.push(Self::alert(
                    "destructive-burst",
                    "high",
                    format!(
                        "{} destructive actions within {} (latest: {})",
                        watch.destructive.len(),
                        humantime::format_duration(self.config.burst_window),
                        action.subject()
                    ),
                    self.config.burst_action,
                ));
            }
        }
        if self.config.first_use {
            out.extend(self.first_use(agent, watch, action, &mut baseline));
        }
        out
    }

    /// Looks at recorded traffic for egress.
    pub fn on_event(&self, watch: &mut Watch, event: &Event) -> Vec<Finding> {
        let mut out = Vec::new();
        match event {
            Event::StatementResult(r) => watch.rows += r.rows,
            Event::Output { data, .. } => watch.bytes += data.len() as u64,
            Event::Sftp(op) => watch.bytes += op.bytes_read,
            Event::Copy {
                bytes,
                direction: proctor_gate::Direction::Download,
                ..
            } => watch.bytes += bytes,
            _ => return out,
        }
        if !watch.rows_alerted && watch.rows >= self.config.egress_rows {
            watch.rows_alerted = true;
            out.push(Self::alert(
                "egress-rows",
                "high",
                format!(
                    "{} rows returned in this session (threshold {})",
                    watch.rows, self.config.egress_rows
                ),
                self.config.egress_action,
            ));
        }
        if !watch.bytes_alerted && watch.bytes >= self.config.egress_bytes {
            watch.bytes_alerted = true;
            out.push(Self::alert(
                "egress-bytes",
                "high",
                format!(
                    "{} bytes sent to the agent in this session (threshold {})",
                    watch.bytes, self.config.egress_bytes
                ),
                self.config.egress_action,
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proctor_gate::Statement;

    fn stmt(cmd: &str, class: StatementClass, tables: &[&str]) -> Action {
        Action::Statement(Statement {
            id: 1,
            text: cmd.into(),
            params: vec![],
            statement_name: String::new(),
            portal: String::new(),
            extended: false,
            class,
            command: cmd.into(),
            tables: tables.iter().map(|s| s.to_string()).collect(),
            reasoning: None,
            runs: None,
        })
    }

    #[test]
    fn burst_fires_once_per_window() {
        let m = Monitor::new(MonitorConfig {
            burst_count: 3,
            ..Default::default()
        });
        let mut w = Watch::default();
        let a = stmt("DELETE", StatementClass::Write, &[]);
        let mut fired = 0;
        for i in 0..6 {
            fired += m
                .on_action("a", None, &mut w, &a, i * 1_000_000_000, |_| false)
                .len();
        }
        assert_eq!(fired, 1);
    }

    #[test]
    fn first_use_ignores_catalogs_and_look_only_programs() {
        let m = Monitor::new(MonitorConfig::default());
        let mut w = Watch {
            established: true,
            ..Default::default()
        };
        let catalogs = stmt(
            "SELECT",
            StatementClass::Read,
            &[
                "pg_catalog.pg_type",
                "PG_CLASS",
                "information_schema.columns",
            ],
        );
        assert!(
            m.on_action("b", None, &mut w, &catalogs, 0, |_| true)
                .is_empty()
        );
        let look = Action::Exec {
            channel: 0,
            command: "ls -la /srv | grep conf; cat /etc/hostname".into(),
        };
        assert!(
            m.on_action("b", None, &mut w, &look, 0, |_| true)
                .is_empty()
        );
        let mixed = Action::Exec {
            channel: 0,
            command: "ls /srv && pg_dump ledger | gzip > /tmp/l.gz".into(),
        };
        let f = m.on_action("b", None, &mut w, &mixed, 0, |_| true);
        let names: Vec<&str> = f.iter().map(|f| f.alert.message.as_str()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].contains("2 programs") && names[0].contains("pg_dump, gzip"));
        // A user table whose name merely contains the pattern text still counts.
        let user = stmt("SELECT", StatementClass::Read, &["public.pg_stuff"]);
        assert_eq!(m.on_action("b", None, &mut w, &user, 0, |_| true).len(), 1);
        // Setting a list replaces the default.
        let strict = Monitor::new(MonitorConfig {
            first_use_ignore_programs: Vec::new(),
            ..Default::default()
        });
        let mut w = Watch {
            established: true,
            ..Default::default()
        };
        let f = strict.on_action("b", None, &mut w, &look, 0, |_| true);
        assert_eq!(f.len(), 1);
        assert!(f[0].alert.message.contains("3 programs"), "{f:?}");
    }
    #[test]
    fn first_use_only_for_established_agents() {
        let m = Monitor::new(MonitorConfig::default());
        let mut w = Watch::default();
        let a = stmt("SELECT", StatementClass::Read, &["public.t"]);
        assert!(m.on_action("a", None, &mut w, &a, 0, |_| true).is_empty());
        let mut w = Watch {
            established: true,
            ..Default::default()
        };
        let b = stmt("SELECT", StatementClass::Read, &["public.u"]);
        let f = m.on_action("b", None, &mut w, &b, 0, |_| true);
        assert_eq!(f.len(), 1);
        assert!(f[0].alert.message.contains("public.u"));
        // Seen again: no second alert.
        assert!(m.on_action("b", None, &mut w, &b, 0, |_| true).is_empty());
    }

    #[test]
    fn many_first_uses_collapse_and_long_names_are_hashed() {
        let m = Monitor::new(MonitorConfig {
            first_use_per_action: 100,
            first_use_per_agent: 50,
            ..Default::default()
        });
        let mut w = Watch {
            established: true,
            ..Default::default()
        };
        let long = "x".repeat(4 << 20);
        let mut names: Vec<String> = (0..300).map(|i| format!("t{i}")).collect();
        names.insert(0, long.clone());
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let a = stmt("SELECT", StatementClass::Read, &refs);
        let mut stored = Vec::new();
        let f = m.on_action("c", None, &mut w, &a, 0, |item| {
            stored.push(item.len());
            true
        });
        // 50 stored (the agent's limit for this run), none longer than a hashed name.
        assert_eq!(stored.len(), 50);
        assert!(stored.iter().all(|&l| l < 200), "{stored:?}");
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(
            f[0].alert.message.contains("100 tables"),
            "{}",
            f[0].alert.message
        );
        assert!(f[0].alert.message.contains("(and 95 more)"));
        assert!(
            f[0].alert
                .message
                .contains(&format!("{} bytes, sha256", 4 << 20))
        );
        assert!(f[0].alert.message.len() < 1024);
        assert!(
            f[1].alert.message.contains("201 further"),
            "{}",
            f[1].alert.message
        );
    }

    #[test]
    fn hours_wrap_midnight() {
        let h = parse_hours("22:00-06:00").expect("parses");
        let at = |hh: i64| hh * 3_600_000_000_000;
        assert!(within(h, at(23)));
        assert!(within(h, at(5)));
        assert!(!within(h, at(12)));
        assert!(parse_hours("25:00-01:00").is_err());
    }

    #[test]
    fn egress_rows_threshold() {
        let m = Monitor::new(MonitorConfig {
            egress_rows: 10,
            ..Default::default()
        });
        let mut w = Watch::default();
        let r = Event::StatementResult(proctor_gate::StatementResult {
            statement_id: 1,
            tag: "SELECT 6".into(),
            rows: 6,
            error: None,
            duration_ns: 0,
            columns: vec![],
            sample_rows: vec![],
            digest: [0; 32],
            suspended: false,
        });
        assert!(m.on_event(&mut w, &r).is_empty());
        assert_eq!(m.on_event(&mut w, &r).len(), 1);
        assert!(m.on_event(&mut w, &r).is_empty());
    }
}
