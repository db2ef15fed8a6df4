//! Test-only helpers, a dev-dependency of every crate that uses them and never part of the
//! release binary: the real local targets of `proctor-targets` (re-exported, so tests name one
//! crate), a pseudo-terminal for driving interactive shells, and process memory readings.

mod memory;
pub mod pty;

pub use memory::proc_status_kib;
pub use proctor_targets::*;
