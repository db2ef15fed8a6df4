//! First use: the per-agent baseline of tables and programs (kept in the store's index), and
//! the alert when an established agent uses one it never used before.

use std::collections::BTreeMap;
use std::sync::Mutex;

use proctor_gate::Action;
use sha2::{Digest, Sha256};

use super::{Finding, Monitor, Watch};
use crate::policy::shell;

/// Whether `name` matches `pattern`, where `*` matches any run of characters; ASCII case is
/// ignored (unquoted SQL names are case-insensitive; program names rarely differ by case).
fn matches_pattern(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was, and the name position it is currently stretched to.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi].eq_ignore_ascii_case(&n[ni]) {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// (agent, item) pairs cached in memory at most: the cache is emptied when full (the
/// baseline in the store stays the truth).
const KNOWN_CACHE_MAX: usize = 100_000;
/// Items one session remembers having seen; emptied when full.
const SEEN_MAX: usize = 4096;

/// `name` if it fits in `max` bytes, else its start, `...` and the SHA-256 of all of it.
pub fn bounded_name(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let mut end = max.min(64);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let digest = hex::encode(Sha256::digest(name.as_bytes()));
    format!("{}...[{} bytes, sha256 {digest}]", &name[..end], name.len())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Monitor {
    /// Items an action uses, for the baseline: tables (SQL) or programs (SSH), less the ones
    /// whose first use is configured as not worth an alert.
    pub(super) fn items(&self, action: &Action) -> Vec<String> {
        let ignored =
            |patterns: &[String], name: &str| patterns.iter().any(|p| matches_pattern(p, name));
        let max = self.config.first_use_name_bytes;
        match action {
            Action::Statement(s) => s
                .tables
                .iter()
                .filter(|t| !ignored(&self.config.first_use_ignore_tables, t))
                .map(|t| format!("table:{}", bounded_name(t, max)))
                .collect(),
            Action::Exec { command, .. } | Action::CommandLine { line: command, .. } => {
                shell::analyze(command)
                    .programs
                    .into_iter()
                    .filter(|p| !ignored(&self.config.first_use_ignore_programs, p))
                    .map(|p| format!("program:{}", bounded_name(&p, max)))
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    /// First uses in one action, as at most one alert per kind (table, program) with a count
    /// and a few names: one statement naming thousands of new tables is one alert, and the
    /// baseline work it causes is bounded (`first_use_per_action`, `first_use_per_agent`).
    pub(super) fn first_use(
        &self,
        agent: &str,
        watch: &mut Watch,
        action: &Action,
        baseline: &mut impl FnMut(&str) -> bool,
    ) -> Vec<Finding> {
        let items = self.items(action);
        let per_action = self.config.first_use_per_action;
        let unchecked = items.len().saturating_sub(per_action);
        // kind -> names used for the first time, in order.
        let mut new_by_kind: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for item in items.into_iter().take(per_action) {
            if watch.seen.len() >= SEEN_MAX {
                watch.seen.clear();
            }
            if !watch.seen.insert(item.clone()) {
                continue;
            }
            let key = (agent.to_string(), item.clone());
            if lock(&self.known).contains(&key) {
                continue;
            }
            let stored = lock(&self.added).get(agent).copied().unwrap_or(0);
            let new = if stored < self.config.first_use_per_agent {
                let new = baseline(&item);
                if new {
                    *lock(&self.added).entry(agent.to_string()).or_default() += 1;
                }
                let mut k = lock(&self.known);
                if k.len() >= KNOWN_CACHE_MAX {
                    k.clear();
                }
                k.insert(key);
                new
            } else {
                // The agent's baseline is full for this run: still new, not stored.
                true
            };
            if new && watch.established {
                let (kind, name) = item.split_once(':').unwrap_or(("item", &item));
                new_by_kind
                    .entry(kind.to_string())
                    .or_default()
                    .push(name.to_string());
            }
        }
        let mut out = Vec::new();
        for (kind, names) in new_by_kind {
            let message = if names.len() == 1 {
                format!("{agent} used {kind} {} for the first time", names[0])
            } else {
                let shown = self.config.first_use_examples.max(1).min(names.len());
                let more = names.len() - shown;
                format!(
                    "{agent} used {} {kind}s for the first time in one action: {}{}",
                    names.len(),
                    names[..shown].join(", "),
                    if more > 0 {
                        format!(" (and {more} more)")
                    } else {
                        String::new()
                    }
                )
            };
            out.push(Self::alert(
                "first-use",
                "medium",
                message,
                self.config.first_use_action,
            ));
        }
        if unchecked > 0 && watch.established {
            out.push(Self::alert(
                "first-use",
                "medium",
                format!(
                    "{agent} named {unchecked} further tables or programs in one action that were \
                     not checked against the baseline (limit {per_action}, [monitor] \
                     first_use_per_action)"
                ),
                self.config.first_use_action,
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_with_stars_and_ignore_case() {
        assert!(matches_pattern("pg_catalog.*", "PG_CATALOG.pg_type"));
        assert!(matches_pattern("*", ""));
        assert!(matches_pattern("a*b*c", "axxbyyc"));
        assert!(matches_pattern("a*b*c", "abcbc"));
        assert!(!matches_pattern("a*b*c", "axxbyy"));
        assert!(!matches_pattern("pg_*", "public.pg_x"));
        assert!(!matches_pattern("ls", "lsof"));
        assert!(matches_pattern("", ""));
        assert!(!matches_pattern("", "x"));
    }
}
