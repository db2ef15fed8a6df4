//! Proctor's model of the names a server session holds: prepared statements and portals.
//!
//! PostgreSQL keeps one namespace for statements prepared by protocol `Parse` and by SQL
//! `PREPARE`, and one for portals (protocol `Bind`, SQL `DECLARE`). A client's request to
//! change either may fail (`Parse` of a name in use is 42P05 and leaves the old statement in
//! place; `Bind` of a portal in use is 42P03), so a change is kept *pending* until the server
//! confirms it (ParseComplete, BindComplete, CloseComplete, CommandComplete) and dropped when
//! the server refuses or skips it. The model never changes on what the client merely asked.
//!
//! A lookup made while judging a message sees pending changes too, but only those made since
//! the last sync point (Sync, or a simple Query) the client sent. Within one such block the
//! server stops at the first error and skips everything up to the Sync, so a message that
//! relies on a pending change of its own block either runs with that change in effect or does
//! not run at all. A pending change of an *earlier* block is different: it may fail while
//! the later block still runs, so a lookup that meets one answers [`Lookup::Wait`] and the
//! relay waits for the server's answer before it judges the message (a barrier).
//!
//! This module does no I/O; the relay feeds it what it forwards and what the server answers.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::classify::Judged;
use crate::results::Columns;

/// Statements and portals remembered per session: a client that never closes them cannot grow
/// proctor's memory without bound. Past it, new names are not remembered, and a message that
/// uses one is judged as unknown.
pub(super) const MAX_NAMES: usize = 10_000;
/// Unconfirmed changes kept at once. Past it the oldest are forgotten, and the names they
/// touched become unknown (never wrongly known).
const MAX_PENDING: usize = 4 * MAX_NAMES;

/// PostgreSQL keeps names of prepared statements and portals (and SQL identifiers) in
/// `NAMEDATALEN - 1` bytes: a longer name is the same name as its first 63 bytes (`PREPARE` of a
/// 70-character name then `EXECUTE` of it ran what a protocol Parse had put under its first 63).
const NAME_BYTES: usize = 63;

/// The name as the server keys it: its first 63 bytes. `None` when proctor cannot tell: a name
/// with a non-ASCII character. The server converts a name from the client encoding, so its
/// bytes (and where it cuts them) depend on encodings a pipeline may be changing, and proctor
/// reads names as UTF-8, invalid bytes as U+FFFD: two names that differ only in bytes that are
/// not UTF-8 (`\xfe`, `\xff` under `client_encoding = LATIN1`) would be one name to proctor.
pub(super) fn server_name(name: &str) -> Option<&str> {
    if !name.is_ascii() {
        None
    } else if name.len() <= NAME_BYTES {
        Some(name)
    } else {
        name.get(..NAME_BYTES)
    }
}

/// The statement runs code proctor cannot see into, which may PREPARE, DEALLOCATE, open or
/// close cursors by dynamic SQL (plpgsql `EXECUTE 'DEALLOCATE q; PREPARE q AS DELETE ...'`):
/// a call of a function not known to be free of side effects (or of an operator proctor cannot
/// name), `DO`, `CALL`. (A statement proctor could not classify forgets every statement and
/// portal too, but does not make every cursor suspect: it is held by default, and the
/// approver sees its text.) What a statement reaches
/// implicitly (triggers, views, column defaults, rules) is not seen, as for the durability
/// rule; creating any of those is DDL, judged and recorded before it runs.
pub(super) fn runs_code(info: &crate::classify::Classified) -> bool {
    let first = info.command.split(' ').next().unwrap_or("");
    info.effects == crate::durability::Effects::Code
        || first.eq_ignore_ascii_case("DO")
        || first.eq_ignore_ascii_case("CALL")
}

/// The parameter types to hand the core for a statement bound with `params`: only when a value
/// is in binary format (a text value reads as itself).
pub(super) fn binary_types(
    params: &[proctor_gate::Param],
    types: &Arc<[u32]>,
) -> Option<Arc<[u32]>> {
    params.iter().any(|p| p.binary).then(|| types.clone())
}

/// A prepared statement as the server holds it.
#[derive(Clone)]
pub(super) struct Prepared {
    pub judged: Arc<Judged>,
    pub columns: Option<Arc<Columns>>,
    /// Parameter type OIDs: the Parse's, then the server's ParameterDescription once a
    /// Describe answered (to show binary values on cards: `crate::params`).
    pub param_types: Arc<[u32]>,
}

/// A portal as the server holds it.
#[derive(Clone)]
pub(super) struct Portal {
    pub statement: String,
    /// What the portal runs; `None` when its statement was unknown to proctor at Bind.
    pub judged: Option<Arc<Judged>>,
    pub params: Vec<proctor_gate::Param>,
    /// The statement's parameter types when it was bound.
    pub param_types: Arc<[u32]>,
    pub result_formats: Vec<i16>,
    pub columns: Option<Arc<Columns>>,
    /// Set once an Execute of this portal was allowed: later Executes (after PortalSuspended)
    /// continue the same statement.
    pub executed: Option<u64>,
}

/// Which server answer confirms a pending change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Key {
    /// A Parse, Bind or Close message: its ParseComplete, BindComplete or CloseComplete.
    Message(u64),
    /// A SQL statement (by statement id): its CommandComplete.
    Statement(u64),
}

/// A change the client asked for.
pub(super) enum Change {
    Statement(String, Prepared),
    CloseStatement(String),
    /// `DEALLOCATE ALL`, `DISCARD ALL`, or a statement proctor cannot see into (`DO`).
    ForgetStatements,
    Portal(String, Box<Portal>),
    ClosePortal(String),
    /// A statement that may close or open portals by SQL (`CLOSE`, `DECLARE`, transaction
    /// control, `DO`, `CALL`, anything unknown): afterwards no portal is known for sure.
    ForgetPortals,
    /// A statement that runs code proctor cannot see into ([`runs_code`]): by dynamic SQL it
    /// may have deallocated and re-prepared any statement, and closed or opened any portal or
    /// cursor. Afterwards no name is known, and any cursor may run what proctor never saw.
    /// Unlike the other changes it takes effect whatever the server answers: a function that
    /// re-prepares a name and then raises an error leaves the new statement in place
    /// (prepared statements are not transactional).
    CodeRan,
}

impl Change {
    fn touches_statement(&self, name: &str) -> bool {
        match self {
            Change::Statement(n, _) | Change::CloseStatement(n) => n == name,
            Change::ForgetStatements | Change::CodeRan => true,
            _ => false,
        }
    }

    /// Forgets names rather than setting one: taken even when the statement fails.
    fn forgets(&self) -> bool {
        matches!(
            self,
            Change::ForgetStatements | Change::ForgetPortals | Change::CodeRan
        )
    }

    fn touches_portal(&self, name: &str) -> bool {
        match self {
            Change::Portal(n, _) | Change::ClosePortal(n) => n == name,
            Change::ForgetPortals | Change::CodeRan => true,
            _ => false,
        }
    }
}

struct Pending {
    key: Key,
    block: u64,
    change: Change,
}

/// The answer to a lookup made while judging a message.
pub(super) enum Lookup<T> {
    /// What the server holds (or will hold once this block's earlier messages succeed).
    Known(T),
    /// Nothing under that name, as far as proctor can tell: judge the message as unknown.
    Absent,
    /// An earlier block's change to the name is not yet confirmed: wait for the server.
    Wait,
}

#[derive(Default)]
pub(super) struct Names {
    statements: HashMap<String, Prepared>,
    portals: HashMap<String, Portal>,
    pending: VecDeque<Pending>,
    /// Sync points (Sync, simple Query) sent towards the server so far.
    block: u64,
    next_ticket: u64,
    /// Every portal name a protocol Bind was sent for in this session, kept when the model
    /// forgets the portal itself: SQL `FETCH`/`MOVE` of such a name may run a portal proctor
    /// no longer knows, so it is judged as unknown rather than as a plain cursor read.
    bound: std::collections::HashSet<String>,
    /// More names were bound than `bound` keeps: any name may be a portal.
    bound_overflow: bool,
    /// A cursor was declared over code ([`runs_code`]): its query runs at each FETCH or MOVE
    /// (and, WITH HOLD, at COMMIT), so those count as running code from then on.
    pub code_cursor: bool,
    /// Statement names were forgotten (code ran, or a change was dropped) and not learnt back
    /// from the server since: a name absent here may still be held by the server
    /// ([`super::introspect`]).
    stale: bool,
}

impl Names {
    /// A ticket for a Parse, Bind or Close message.
    pub fn ticket(&mut self) -> Key {
        self.next_ticket += 1;
        Key::Message(self.next_ticket)
    }

    /// The client's message carrying `change` is being forwarded (or, for SQL statements,
    /// judged as part of the message being forwarded).
    pub fn push(&mut self, key: Key, change: Change) {
        // Keyed as the server keys names; a change to a name proctor cannot key may touch any
        // name sharing its start, so it forgets them all.
        let owned = |n: &str| server_name(n).map(str::to_string);
        let change = match change {
            Change::Statement(n, p) => match owned(&n) {
                Some(n) => Change::Statement(n, p),
                None => Change::ForgetStatements,
            },
            Change::CloseStatement(n) => match owned(&n) {
                Some(n) => Change::CloseStatement(n),
                None => Change::ForgetStatements,
            },
            Change::Portal(n, p) => match owned(&n) {
                Some(n) => Change::Portal(n, p),
                None => {
                    self.bound_overflow = true;
                    Change::ForgetPortals
                }
            },
            Change::ClosePortal(n) => match owned(&n) {
                Some(n) => Change::ClosePortal(n),
                None => Change::ForgetPortals,
            },
            other => other,
        };
        if let Change::Portal(name, _) = &change
            && !self.bound.contains(name)
        {
            if self.bound.len() < MAX_NAMES {
                self.bound.insert(name.clone());
            } else {
                self.bound_overflow = true;
            }
        }
        if self.pending.len() >= MAX_PENDING
            && let Some(old) = self.pending.pop_front()
        {
            // Forgetting a change must never leave a wrong name behind: drop what it touched.
            self.forget_touched(&old.change);
        }
        self.pending.push_back(Pending {
            key,
            block: self.block,
            change,
        });
    }

    /// A Sync or a simple Query went to the server: later messages are a new block.
    pub fn sync_point(&mut self) {
        self.block += 1;
    }

    /// No change is waiting for the server's word.
    pub fn is_settled(&self) -> bool {
        self.pending.is_empty()
    }

    /// The server confirmed what `key` asked for.
    pub fn confirm(&mut self, key: Key) {
        while let Some(i) = self.pending.iter().position(|p| p.key == key) {
            if let Some(p) = self.pending.remove(i) {
                self.apply(p.change);
            }
        }
    }

    /// The server refused or skipped what `key` asked for, or proctor never forwarded it.
    /// Returns the (first) change dropped, to say what failed.
    pub fn discard(&mut self, key: Key) -> Option<Change> {
        let mut first = None;
        while let Some(i) = self.pending.iter().position(|p| p.key == key) {
            if let Some(p) = self.pending.remove(i) {
                if p.change.forgets() {
                    // It may have failed half-way, after its dynamic SQL changed names;
                    // forgetting is never wrong, only costs a hold.
                    self.apply(p.change);
                } else {
                    first.get_or_insert(p.change);
                }
            }
        }
        first
    }

    /// The server has answered every block before the current one, so nothing of theirs can
    /// still be pending. Should a change be left over (a path that lost track of it), what it
    /// touched is forgotten: a name becomes unknown, never wrongly known, and no later
    /// message waits for it forever.
    pub fn settle_earlier_blocks(&mut self) {
        let block = self.block;
        let mut left = VecDeque::with_capacity(self.pending.len());
        while let Some(p) = self.pending.pop_front() {
            if p.block < block {
                tracing::debug!("postgres: a name change was never answered; forgetting it");
                self.forget_touched(&p.change);
            } else {
                left.push_back(p);
            }
        }
        self.pending = left;
    }

    /// The server answered a sync point: SQL statements up to `last_statement` that it did not
    /// confirm did not take effect (they failed, or were skipped after an earlier error).
    pub fn settle_statements(&mut self, last_statement: u64) {
        let mut left = VecDeque::with_capacity(self.pending.len());
        while let Some(p) = self.pending.pop_front() {
            if !matches!(p.key, Key::Statement(id) if id <= last_statement) {
                left.push_back(p);
            } else if p.change.forgets() {
                // A failed statement's dynamic SQL may have changed names before the error.
                self.apply(p.change);
            }
        }
        self.pending = left;
    }

    /// The server left its transaction (ReadyForQuery `I`): it dropped every portal.
    pub fn transaction_ended(&mut self) {
        self.portals.clear();
    }

    pub fn statement(&self, name: &str) -> Lookup<&Prepared> {
        let Some(name) = server_name(name) else {
            return Lookup::Absent;
        };
        if let Some(p) = self
            .pending
            .iter()
            .rev()
            .find(|p| p.change.touches_statement(name))
        {
            if p.block < self.block {
                return Lookup::Wait;
            }
            return match &p.change {
                Change::Statement(_, prepared) => Lookup::Known(prepared),
                _ => Lookup::Absent,
            };
        }
        match self.statements.get(name) {
            Some(p) => Lookup::Known(p),
            None => Lookup::Absent,
        }
    }

    pub fn portal(&self, name: &str) -> Lookup<&Portal> {
        let Some(name) = server_name(name) else {
            return Lookup::Absent;
        };
        if let Some(p) = self
            .pending
            .iter()
            .rev()
            .find(|p| p.change.touches_portal(name))
        {
            if p.block < self.block {
                return Lookup::Wait;
            }
            return match &p.change {
                Change::Portal(_, portal) => Lookup::Known(portal),
                _ => Lookup::Absent,
            };
        }
        match self.portals.get(name) {
            Some(p) => Lookup::Known(p),
            None => Lookup::Absent,
        }
    }

    /// `name` is a named statement proctor forgot and the server may still hold: asking the
    /// server would tell what it is. Only when nothing is pending (the server is settled).
    pub fn forgotten_statement(&self, name: &str) -> bool {
        self.stale
            && self.pending.is_empty()
            && server_name(name).is_some_and(|n| !n.is_empty() && !self.statements.contains_key(n))
    }

    /// Some statement names were forgotten and not learnt back.
    pub fn statements_stale(&self) -> bool {
        self.stale
    }

    /// The server listed every named statement it holds (nothing pending): `learnt` is what
    /// proctor could read of each (`None`: stays unknown). A named statement the server does not
    /// list does not exist; the unnamed one is not listed and is kept as it is.
    pub fn learn_statements(&mut self, learnt: Vec<(String, Option<Prepared>)>) {
        self.stale = false;
        if !self.pending.is_empty() {
            // Not at a sync point after all: learn nothing (names stay unknown).
            return;
        }
        let unnamed = self.statements.remove("");
        let mut old = std::mem::take(&mut self.statements);
        for (name, p) in learnt {
            let Some(p) = p else { continue };
            if self.statements.len() >= MAX_NAMES {
                break;
            }
            // A statement proctor already knew with the same text keeps what Describe added.
            let keep = old.remove(&name).filter(|o| o.judged.text == p.judged.text);
            self.statements.insert(name, keep.unwrap_or(p));
        }
        if let Some(u) = unnamed {
            self.statements.insert(String::new(), u);
        }
    }

    /// The server's answer could not be used: the forgotten names stay unknown, and are not
    /// asked about again until code runs again.
    pub fn give_up_learning(&mut self) {
        self.stale = false;
    }

    /// Whether a protocol Bind of a portal named `name` was ever sent in this session.
    pub fn ever_bound(&self, name: &str) -> bool {
        self.bound_overflow || server_name(name).is_none_or(|n| self.bound.contains(n))
    }

    pub fn portal_mut(&mut self, name: &str) -> Option<&mut Portal> {
        let name = server_name(name)?;
        let block = self.block;
        if let Some(p) = self
            .pending
            .iter_mut()
            .rev()
            .find(|p| p.change.touches_portal(name))
        {
            return match &mut p.change {
                Change::Portal(_, portal) if p.block == block => Some(portal),
                _ => None,
            };
        }
        self.portals.get_mut(name)
    }

    /// A confirmed statement, to attach what a Describe answered.
    pub fn confirmed_statement_mut(&mut self, name: &str) -> Option<&mut Prepared> {
        let name = server_name(name)?;
        self.statements.get_mut(name)
    }

    pub fn confirmed_portal_mut(&mut self, name: &str) -> Option<&mut Portal> {
        let name = server_name(name)?;
        self.portals.get_mut(name)
    }

    pub fn confirmed_statement(&self, name: &str) -> Option<&Prepared> {
        let name = server_name(name)?;
        self.statements.get(name)
    }

    pub fn confirmed_portal(&self, name: &str) -> Option<&Portal> {
        let name = server_name(name)?;
        self.portals.get(name)
    }

    fn apply(&mut self, change: Change) {
        match change {
            Change::Statement(name, prepared) => {
                if self.statements.len() < MAX_NAMES || self.statements.contains_key(&name) {
                    self.statements.insert(name, prepared);
                } else {
                    // Not remembered: the unnamed statement is kept, so a later message that
                    // names `name` meets Absent (unknown), never an older statement.
                    self.statements.remove(&name);
                }
            }
            Change::CloseStatement(name) => {
                self.statements.remove(&name);
            }
            Change::ForgetStatements => {
                self.statements.clear();
                self.stale = true;
            }
            Change::Portal(name, portal) => {
                if self.portals.len() < MAX_NAMES || self.portals.contains_key(&name) {
                    self.portals.insert(name, *portal);
                } else {
                    self.portals.remove(&name);
                }
            }
            Change::ClosePortal(name) => {
                self.portals.remove(&name);
            }
            Change::ForgetPortals => self.portals.clear(),
            Change::CodeRan => self.forget_everything(),
        }
    }

    fn forget_everything(&mut self) {
        self.statements.clear();
        self.stale = true;
        self.portals.clear();
        self.bound_overflow = true;
    }

    fn forget_touched(&mut self, change: &Change) {
        match change {
            Change::Statement(n, _) | Change::CloseStatement(n) => {
                self.statements.remove(n);
                self.stale = true;
            }
            Change::ForgetStatements => {
                self.statements.clear();
                self.stale = true;
            }
            Change::Portal(n, _) | Change::ClosePortal(n) => {
                self.portals.remove(n);
            }
            Change::ForgetPortals => self.portals.clear(),
            Change::CodeRan => self.forget_everything(),
        }
    }

    #[cfg(test)]
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

/// What a change asked for, for the record of a failure.
pub(super) fn describe(change: Option<&Change>) -> String {
    match change {
        Some(Change::Statement(name, p)) => {
            format!("Parse of statement {name:?} ({:?})", p.judged.text)
        }
        Some(Change::CloseStatement(name)) => format!("Close of statement {name:?}"),
        Some(Change::Portal(name, p)) => {
            format!("Bind of portal {name:?} to statement {:?}", p.statement)
        }
        Some(Change::ClosePortal(name)) => format!("Close of portal {name:?}"),
        Some(Change::ForgetStatements | Change::ForgetPortals | Change::CodeRan) | None => {
            "a message".into()
        }
    }
}

#[cfg(feature = "fuzzing")]
mod fuzz;
#[cfg(feature = "fuzzing")]
pub(crate) use fuzz::fuzz;

#[cfg(test)]
mod tests;
