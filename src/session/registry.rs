//! The sessions that are open right now, for listing, approvals context and kill.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use proctor_gate::{Privilege, Protocol};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::recorder::frame::SessionKey;

pub struct LiveSession {
    pub id: String,
    pub key: SessionKey,
    pub agent: String,
    pub target: String,
    pub protocol: Protocol,
    pub privilege: Privilege,
    pub login: String,
    pub client_addr: String,
    pub grant: String,
    pub started_ns: i64,
    pub kill: watch::Sender<Option<String>>,
    /// Reasoning the agent gave so far (annotations, statement comments), newest last.
    pub reasoning: Mutex<Vec<String>>,
    /// `[limits]` reasoning_bytes and reasoning_total_bytes.
    pub reasoning_limits: (usize, usize),
    /// Holds not yet resolved, so a session end can cancel them.
    pub holds: Mutex<Vec<String>>,
    /// Detector state (bursts, egress, first use).
    pub watch: Mutex<crate::monitor::Watch>,
    /// A detector asked to hold the next action: (rule, reason).
    pub hold_next: Mutex<Option<(String, String)>>,
    pub active_hours: Option<(u32, u32)>,
}

/// A live session as the CLI and API show it (and as cluster nodes publish it: a field an
/// older node did not publish reads as empty).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LiveView {
    pub id: String,
    pub agent: String,
    pub target: String,
    pub protocol: String,
    pub privilege: String,
    pub login: String,
    pub client_addr: String,
    pub started_ns: i64,
    pub pending_holds: Vec<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl LiveSession {
    pub fn view(&self) -> LiveView {
        LiveView {
            id: self.id.clone(),
            agent: self.agent.clone(),
            target: self.target.clone(),
            protocol: self.protocol.as_str().into(),
            privilege: self.privilege.as_str().into(),
            login: self.login.clone(),
            client_addr: self.client_addr.clone(),
            started_ns: self.started_ns,
            pending_holds: lock(&self.holds).clone(),
        }
    }

    /// Keeps `text` for approvers, cut visibly past `max_bytes` (see `limits`); the recent
    /// trace only (at most 20 texts and `max_total` bytes): the full trace is in the recording.
    pub fn add_reasoning(&self, text: &str) {
        let (max_bytes, max_total) = self.reasoning_limits;
        let mut r = lock(&self.reasoning);
        r.push(super::limits::bounded_reasoning(text, max_bytes));
        let mut total: usize = r.iter().map(String::len).sum();
        while r.len() > 20 || (max_total > 0 && total > max_total && r.len() > 1) {
            total -= r.remove(0).len();
        }
    }

    pub fn reasoning(&self) -> Vec<String> {
        lock(&self.reasoning).clone()
    }

    pub fn add_hold(&self, id: &str) {
        lock(&self.holds).push(id.to_string());
    }

    pub fn remove_hold(&self, id: &str) {
        lock(&self.holds).retain(|h| h != id);
    }

    pub fn take_holds(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.holds))
    }

    pub fn kill_reason(&self) -> Option<String> {
        self.kill.borrow().clone()
    }
}

#[derive(Default)]
pub struct Registry {
    map: Mutex<HashMap<String, Arc<LiveSession>>>,
}

impl Registry {
    pub fn insert(&self, s: Arc<LiveSession>) {
        lock(&self.map).insert(s.id.clone(), s);
    }

    pub fn remove(&self, id: &str) -> Option<Arc<LiveSession>> {
        lock(&self.map).remove(id)
    }

    pub fn get(&self, id: &str) -> Option<Arc<LiveSession>> {
        lock(&self.map).get(id).cloned()
    }

    pub fn list(&self) -> Vec<LiveView> {
        let mut v: Vec<LiveView> = lock(&self.map).values().map(|s| s.view()).collect();
        v.sort_by_key(|s| s.started_ns);
        v
    }

    pub fn all(&self) -> Vec<Arc<LiveSession>> {
        lock(&self.map).values().cloned().collect()
    }

    /// Asks a session to end; the protocol closes it and the gate seals it `killed`.
    pub fn kill(&self, id: &str, reason: &str) -> bool {
        match self.get(id) {
            Some(s) => {
                s.kill.send_replace(Some(reason.to_string()));
                true
            }
            None => false,
        }
    }

    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
