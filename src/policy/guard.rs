//! A `writes` rule's pattern, judged against where a write can land.
//!
//! An absolute path is matched as written. A relative one (`shadow`, `../../etc/shadow`,
//! `~/x`) lands under a directory proctor does not know: the login's home for an exec, wherever
//! an earlier line's `cd` left an interactive shell. Rather than guess that directory, the
//! guard asks whether the pattern matches the path under *any* directory: whether some string
//! `D` makes `D/rest` match, where `rest` is the path with its leading `..`, `.` and `~`
//! parts removed (they only move the start to some other directory). The question is answered
//! exactly on the pattern's DFA: from the states reachable from the start, does reading
//! `/rest` reach a match? So `echo x > shadow` is judged as the write to `/etc/shadow` it can
//! be, and `echo x > notes.txt` is not held for it. Anything the DFA cannot answer (too large,
//! a quit byte) counts as a match: what proctor cannot follow, it holds.

use std::collections::HashSet;

use regex::Regex;
use regex_automata::dfa::{Automaton, dense};
use regex_automata::util::start;
use regex_automata::{Anchored, util::primitives::StateID};

/// States explored before the guard gives up and answers "it can match".
const MAX_STATES: usize = 20_000;

/// The compiled pattern of a `writes` rule.
#[derive(Debug, Clone)]
pub struct PathGuard {
    re: Regex,
    /// `None` when the DFA could not be built within its limits: relative paths then match.
    dfa: Option<dense::DFA<Vec<u32>>>,
    /// The states reachable from the start, which every relative path and tree begins from:
    /// the pattern's alone, so found once here, not per action. `None`: the DFA cannot say.
    from_start: Option<Reach>,
}

impl PathGuard {
    pub fn new(re: Regex) -> PathGuard {
        let dfa = dense::Builder::new()
            .configure(
                dense::Config::new()
                    .dfa_size_limit(Some(4 << 20))
                    .determinize_size_limit(Some(4 << 20)),
            )
            .build(re.as_str())
            .ok();
        let from_start = dfa
            .as_ref()
            .and_then(|d| start_state(d).and_then(|s| reachable(d, s)));
        PathGuard {
            re,
            dfa,
            from_start,
        }
    }

    /// Whether a write to `path` may land on a path the pattern matches.
    pub fn may_match(&self, path: &str) -> bool {
        if path.starts_with('/') {
            return self.re.is_match(path);
        }
        self.matches_under_some_directory(&relative_rest(path))
    }

    /// Whether a file landing anywhere inside `dir` (named by a protocol proctor does not
    /// read here: `scp -t DIR`, `rsync --server … DIR`), or `dir` itself, may match.
    pub fn may_match_tree(&self, dir: &str) -> bool {
        let Some(dfa) = &self.dfa else {
            return true;
        };
        let dir = dir.trim_end_matches('/');
        let (entries, prefix) = if dir.starts_with('/') || dir.is_empty() {
            match start_state(dfa) {
                Some(s) => (vec![s], dir.as_bytes().to_vec()),
                None => return true,
            }
        } else {
            // `.` or `~` alone is the unknown directory itself: nothing to read after it.
            let rest = relative_rest(dir);
            let rest = rest.trim_end_matches('/');
            let mut prefix = Vec::new();
            if !rest.is_empty() {
                prefix.push(b'/');
                prefix.extend_from_slice(rest.as_bytes());
            }
            match &self.from_start {
                Some(Reach::States(states)) => (states.clone(), prefix),
                Some(Reach::Match) | None => return true,
            }
        };
        for entry in entries {
            let mut s = entry;
            for &b in &prefix {
                s = dfa.next_state(s, b);
                if dfa.is_match_state(s) || dfa.is_quit_state(s) {
                    return true;
                }
            }
            if dfa.is_dead_state(s) {
                continue;
            }
            // The directory itself (a single file copied onto that name)...
            let end = dfa.next_eoi_state(s);
            if dfa.is_match_state(end) || dfa.is_quit_state(end) {
                return true;
            }
            // ...or any name below it.
            let below = dfa.next_state(s, b'/');
            if dfa.is_match_state(below) || dfa.is_quit_state(below) {
                return true;
            }
            if !dfa.is_dead_state(below) && some_continuation_matches(dfa, below) {
                return true;
            }
        }
        false
    }

    fn matches_under_some_directory(&self, rest: &str) -> bool {
        let Some(dfa) = &self.dfa else {
            return true;
        };
        let mut tail = Vec::with_capacity(rest.len() + 1);
        tail.push(b'/');
        tail.extend_from_slice(rest.as_bytes());
        match &self.from_start {
            Some(Reach::States(states)) => states.iter().any(|&s| reads_to_match(dfa, s, &tail)),
            Some(Reach::Match) | None => true,
        }
    }
}

fn start_state(dfa: &dense::DFA<Vec<u32>>) -> Option<StateID> {
    dfa.start_state(&start::Config::new().anchored(Anchored::No))
        .ok()
}

/// What can follow a state.
#[derive(Debug, Clone)]
enum Reach {
    /// Every state reachable from it (itself included); in none of them has a match been seen
    /// yet.
    States(Vec<StateID>),
    /// Some text read from it already holds a match (so every longer text does too), or the
    /// DFA cannot say (quit state, too many states).
    Match,
}

/// The states reachable from `from` over any bytes.
fn reachable(dfa: &dense::DFA<Vec<u32>>, from: StateID) -> Option<Reach> {
    let mut seen: HashSet<StateID> = HashSet::new();
    let mut todo = vec![from];
    seen.insert(from);
    while let Some(s) = todo.pop() {
        if dfa.is_quit_state(s) || dfa.is_match_state(s) {
            return Some(Reach::Match);
        }
        for byte in 0..=255u8 {
            let next = dfa.next_state(s, byte);
            if dfa.is_dead_state(next) || !seen.insert(next) {
                continue;
            }
            if seen.len() > MAX_STATES {
                return Some(Reach::Match);
            }
            todo.push(next);
        }
    }
    Some(Reach::States(seen.into_iter().collect()))
}

/// Whether some text read from `from` (then the end of the text) matches.
fn some_continuation_matches(dfa: &dense::DFA<Vec<u32>>, from: StateID) -> bool {
    match reachable(dfa, from) {
        Some(Reach::States(states)) => states.into_iter().any(|s| {
            let end = dfa.next_eoi_state(s);
            dfa.is_match_state(end) || dfa.is_quit_state(end)
        }),
        Some(Reach::Match) | None => true,
    }
}

/// Whether reading `tail` and then the end of the text from `s` meets a match (or a state the
/// DFA cannot go on from).
fn reads_to_match(dfa: &dense::DFA<Vec<u32>>, mut s: StateID, tail: &[u8]) -> bool {
    for &b in tail {
        s = dfa.next_state(s, b);
        if dfa.is_match_state(s) || dfa.is_quit_state(s) {
            return true;
        }
        if dfa.is_dead_state(s) {
            return false;
        }
    }
    let end = dfa.next_eoi_state(s);
    dfa.is_match_state(end) || dfa.is_quit_state(end)
}

/// The part of a relative path that stays the same whatever directory it starts in: leading
/// `~`/`~user`, `.` and `..` parts only pick another starting directory, and `a/../b` is `b`.
fn relative_rest(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let mut components = path.split('/').peekable();
    if components.peek().is_some_and(|c| c.starts_with('~')) {
        components.next();
    }
    for c in components {
        match c {
            "" | "." => {}
            ".." => {
                // Above the first kept part it climbs into the unknown directory: still some
                // directory, so it is dropped like a leading one.
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut rest = parts.join("/");
    if path.ends_with('/') && !rest.is_empty() {
        rest.push('/');
    }
    rest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(p: &str) -> PathGuard {
        PathGuard::new(Regex::new(p).expect("pattern"))
    }

    #[test]
    fn absolute_paths_are_matched_as_written() {
        let g = guard("^/etc/(g)?shadow-?$");
        assert!(g.may_match("/etc/shadow"));
        assert!(!g.may_match("/etc/shadowx"));
        assert!(!g.may_match("/tmp/shadow"));
    }

    #[test]
    fn relative_paths_match_under_some_directory() {
        let g = guard("^/etc/(g)?shadow-?$");
        for p in [
            "shadow",
            "gshadow-",
            "../../etc/shadow",
            "./shadow",
            "~/../../etc/shadow",
            "~root/../etc/gshadow",
            "x/../shadow",
            "etc/shadow",
        ] {
            assert!(g.may_match(p), "{p}");
        }
        for p in [
            "notes.txt",
            "shadow.bak",
            "x/shadow",
            "../etc/passwd",
            "shadow/x",
        ] {
            assert!(!g.may_match(p), "{p}");
        }
    }

    #[test]
    fn unanchored_and_odd_patterns_fail_closed() {
        // Unanchored: some directory can contain the word, so any relative write may match.
        assert!(guard("secret").may_match("notes.txt"));
        assert!(guard(r"^/srv/[^/]+/\.ssh/authorized_keys$").may_match(".ssh/authorized_keys"));
        assert!(!guard(r"^/srv/[^/]+/\.ssh/authorized_keys$").may_match("authorized_keys2"));
        // Case-insensitive flags inside the pattern are the regex's own.
        assert!(guard("(?i)^/ETC/SHADOW$").may_match("shadow"));
        // A Unicode word boundary makes the DFA quit on non-ASCII: counted as a match.
        assert!(guard(r"^/etc/\bshadow$").may_match("shadow"));
    }

    #[test]
    fn a_tree_matches_when_some_file_inside_it_may() {
        let g = guard("^/etc/(g)?shadow-?$");
        for d in [
            "/etc",
            "/etc/",
            "/",
            "/etc/shadow",
            "etc",
            ".",
            "",
            "~",
            "../..",
        ] {
            assert!(g.may_match_tree(d), "{d}");
        }
        for d in ["/tmp", "/etc/ssh", "/etcx", "x/y", "/etc/shadow/x"] {
            assert!(!g.may_match_tree(d), "{d}");
        }
    }
}
