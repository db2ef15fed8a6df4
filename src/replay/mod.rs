//! `proctor replay`: step through a recorded session (AG-305 clause 4.9). SSH sessions play
//! their terminal with the original timing; PostgreSQL sessions step statement by statement with
//! parameters, verdict, outcome and rows. `--against` re-runs a PostgreSQL session's statements
//! on a sandbox and compares result digests.

pub mod against;
pub mod screen;
pub mod sql;
pub mod terminal;

use proctor_gate::Event;

use crate::recorder::codec::Body;

/// A decoded record of the session being replayed.
#[derive(Debug, Clone)]
pub struct Rec {
    pub seq: u64,
    pub ts_ns: i64,
    pub event: Event,
}

/// Keeps the events (checkpoints, seals and undecodable records are not replayed).
pub fn events(records: Vec<crate::recorder::reader::DecodedRecord>) -> Vec<Rec> {
    records
        .into_iter()
        .filter_map(|(h, _, b)| match b {
            Ok(Body::Event(event)) => Some(Rec {
                seq: h.seq,
                ts_ns: h.ts_ns,
                event,
            }),
            _ => None,
        })
        .collect()
}

/// Options shared by both kinds of replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub speed: f64,
    /// Seconds from the session start to begin at.
    pub from_secs: f64,
    /// Print one step at a time without timing (for scripts); no key handling.
    pub step: bool,
    /// Idle gaps longer than this are shortened to it (seconds).
    pub max_idle: f64,
}
