//! proctor: a privileged-access bastion for AI agents that records every session as
//! tamper-evident evidence.

pub mod clock;
pub mod fsutil;
pub mod recorder;
