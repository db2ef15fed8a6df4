//! proctor: a privileged-access bastion for AI agents that records every session as
//! tamper-evident evidence.

pub mod api;
pub mod approval_queue;
pub mod approvals;
pub mod bus;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod credentials;
pub mod dev;
pub mod export;
pub mod fsutil;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod listeners;
pub mod monitor;
pub mod ops;
pub mod policy;
pub mod recorder;
pub mod redact;
pub mod replay;
pub mod retention;
pub mod serve;
pub mod session;
pub mod webhooks;
