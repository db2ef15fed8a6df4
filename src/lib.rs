//! proctor: a privileged-access bastion for AI agents that records every session as
//! tamper-evident evidence.

pub mod clock;
pub mod fsutil;
pub mod config;
pub mod policy;
pub mod redact;
pub mod recorder;
pub mod approvals;
pub mod bus;
pub mod credentials;
pub mod session;
pub mod cli;
pub mod control;
pub mod dev;
pub mod export;
pub mod listeners;
pub mod monitor;
pub mod ops;
pub mod replay;
pub mod retention;
pub mod serve;
pub mod api;
pub mod webhooks;
