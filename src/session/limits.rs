//! Limits per agent: what one authenticated agent may hold of the bastion at once, so that it
//! cannot wear it down for the others (open sessions, pending holds, reasoning kept for
//! approvers, statement size). Each refusal names the limit and is recorded by the caller.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `[limits]` in the configuration. Zero turns a limit off (not recommended).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Sessions one agent may have open at once, over all its grants and both protocols.
    #[serde(default = "d_sessions_per_agent")]
    pub sessions_per_agent: u32,
    /// Sessions one grant may have open at once, unless the grant sets `max_sessions`.
    #[serde(default = "d_sessions_per_grant")]
    pub sessions_per_grant: u32,
    /// Actions of one agent waiting for approval at once; past it a new hold is denied.
    #[serde(default = "d_pending_holds_per_agent")]
    pub pending_holds_per_agent: u32,
    /// Bytes of one reasoning text (comment, annotation, `PROCTOR_REASON`) kept for approvers;
    /// a longer one is shown cut, with its full size and digest (the recording has it all).
    #[serde(default = "d_reasoning_bytes")]
    pub reasoning_bytes: u32,
    /// Bytes of reasoning kept for approvers per session, oldest dropped first.
    #[serde(default = "d_reasoning_total_bytes")]
    pub reasoning_total_bytes: u32,
    /// Bytes of one statement's text; a longer statement is denied (and recorded).
    #[serde(default = "d_statement_bytes")]
    pub statement_bytes: u64,
}

fn d_sessions_per_agent() -> u32 {
    32
}
fn d_sessions_per_grant() -> u32 {
    32
}
fn d_pending_holds_per_agent() -> u32 {
    20
}
fn d_reasoning_bytes() -> u32 {
    8 * 1024
}
fn d_reasoning_total_bytes() -> u32 {
    64 * 1024
}
fn d_statement_bytes() -> u64 {
    16 * 1024 * 1024
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            sessions_per_agent: d_sessions_per_agent(),
            sessions_per_grant: d_sessions_per_grant(),
            pending_holds_per_agent: d_pending_holds_per_agent(),
            reasoning_bytes: d_reasoning_bytes(),
            reasoning_total_bytes: d_reasoning_total_bytes(),
            statement_bytes: d_statement_bytes(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Open sessions per agent and per grant, counted from admission (before the credential is
/// issued, which is what the limit protects) to the session's end.
#[derive(Default)]
pub struct Admissions {
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    agents: HashMap<String, u32>,
    grants: HashMap<String, u32>,
}

/// One admitted session's place; released when dropped.
pub struct Admission {
    owner: Arc<Admissions>,
    agent: String,
    grant: String,
}

impl Admissions {
    /// Takes a place for a session of `agent` under `grant`, or says which limit is reached.
    /// A limit of 0 is no limit.
    pub fn admit(
        self: &Arc<Self>,
        agent: &str,
        grant: &str,
        per_agent: u32,
        per_grant: u32,
    ) -> Result<Admission, String> {
        let mut c = lock(&self.counts);
        let a = c.agents.get(agent).copied().unwrap_or(0);
        if per_agent > 0 && a >= per_agent {
            return Err(format!(
                "too many sessions: agent {agent:?} already has {a} open (limit {per_agent}, \
                 [limits] sessions_per_agent); close one and retry"
            ));
        }
        let g = c.grants.get(grant).copied().unwrap_or(0);
        if per_grant > 0 && g >= per_grant {
            return Err(format!(
                "too many sessions: grant {grant:?} already has {g} open (limit {per_grant}, \
                 the grant's max_sessions or [limits] sessions_per_grant); close one and retry"
            ));
        }
        *c.agents.entry(agent.to_string()).or_default() += 1;
        *c.grants.entry(grant.to_string()).or_default() += 1;
        Ok(Admission {
            owner: self.clone(),
            agent: agent.to_string(),
            grant: grant.to_string(),
        })
    }

    /// Open sessions of `agent` (for tests and the status line).
    pub fn open_for_agent(&self, agent: &str) -> u32 {
        lock(&self.counts).agents.get(agent).copied().unwrap_or(0)
    }
}

fn release(map: &mut HashMap<String, u32>, key: &str) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut c = lock(&self.owner.counts);
        release(&mut c.agents, &self.agent);
        release(&mut c.grants, &self.grant);
    }
}

/// `text` as kept for approvers: whole if it fits in `max` bytes, otherwise its start and a
/// line that says it was cut, its full size and SHA-256 (the recording holds all of it, so
/// nothing is removed out of sight).
pub fn bounded_reasoning(text: &str, max: usize) -> String {
    if max == 0 || text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let digest = hex::encode(Sha256::digest(text.as_bytes()));
    format!(
        "{}\n[proctor: cut here: {} of {} bytes shown (limit [limits] reasoning_bytes = {max}); \
         sha256 {digest}; the session recording holds the full text]",
        &text[..end],
        end,
        text.len()
    )
}

/// Why a statement of `len` bytes is refused, if it is over `max` (0: no limit).
pub fn statement_too_large(len: usize, max: u64) -> Option<String> {
    (max > 0 && len as u64 > max).then(|| {
        format!(
            "statement of {len} bytes exceeds the limit of {max} bytes ([limits] statement_bytes)"
        )
    })
}

/// Bytes of a refused oversized statement's text kept in the recording.
pub const OVERSIZED_KEPT_BYTES: usize = 64 * 1024;

/// The recorded form of a statement refused for its size: its first [`OVERSIZED_KEPT_BYTES`]
/// and a line that says it was cut, with the full size and SHA-256 (of the redacted text, as
/// recorded). The statement never reached the target, and recording all of it would let one
/// agent spend the shared recorder's writes and memory at will: four 63 MB statements at once
/// cost ~1 GiB of RSS and held every other session's records behind their fdatasync.
pub fn oversized_recorded(text: &str) -> String {
    let mut end = OVERSIZED_KEPT_BYTES.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let digest = hex::encode(Sha256::digest(text.as_bytes()));
    format!(
        "{}\n[proctor: cut here: {end} of {} bytes recorded; sha256 {digest}; refused for its \
         size ([limits] statement_bytes), never sent to the target]",
        &text[..end],
        text.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversized_statement_is_recorded_cut_with_its_size_and_digest() {
        let text = format!("select '{}'", "é".repeat(OVERSIZED_KEPT_BYTES));
        let kept = oversized_recorded(&text);
        let (start, note) = kept.rsplit_once('\n').unwrap();
        assert!(text.starts_with(start) && start.len() <= OVERSIZED_KEPT_BYTES);
        assert!(start.len() > OVERSIZED_KEPT_BYTES - 4);
        let digest = hex::encode(Sha256::digest(text.as_bytes()));
        assert!(
            note.contains(&format!("{} of {} bytes", start.len(), text.len()))
                && note.contains(&digest),
            "{note}"
        );
    }

    #[test]
    fn admissions_count_per_agent_and_grant_and_release_on_drop() {
        let a = Arc::new(Admissions::default());
        let one = a.admit("x", "g1", 2, 0).unwrap();
        let two = a.admit("x", "g2", 2, 0).unwrap();
        let err = a.admit("x", "g1", 2, 0).err().unwrap();
        assert!(err.contains("sessions_per_agent"), "{err}");
        assert!(a.admit("y", "g1", 2, 0).is_ok());
        drop(one);
        let _three = a.admit("x", "g1", 2, 0).unwrap();
        drop(two);
        assert_eq!(a.open_for_agent("x"), 1);
        let _g = a.admit("z", "gz", 0, 1).unwrap();
        let err = a.admit("w", "gz", 0, 1).err().unwrap();
        assert!(err.contains("grant \"gz\""), "{err}");
    }

    #[test]
    fn long_reasoning_is_cut_visibly_with_size_and_digest() {
        assert_eq!(bounded_reasoning("short", 16), "short");
        let long = "é".repeat(100);
        let cut = bounded_reasoning(&long, 15);
        assert!(cut.starts_with(&"é".repeat(7)));
        assert!(cut.contains("14 of 200 bytes shown"), "{cut}");
        assert!(cut.contains(&hex::encode(Sha256::digest(long.as_bytes()))));
    }
}
