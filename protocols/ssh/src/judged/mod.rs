//! Judged shells: proctor is the line discipline (issue 13). The target runs a bash without
//! line editing, history, aliases or rc files, with its terminal's echo off; proctor edits
//! each line itself, judges the complete command, and only then sends it whole. These
//! modules are I/O-free: bytes in, actions out; `start` says how the target shell is started.

pub mod complete;
pub mod discipline;
pub mod editor;
pub mod keys;
pub mod prompts;
#[cfg(test)]
mod proptests;
mod start;

pub use discipline::{Discipline, Out};
pub use prompts::{CwdDue, Prompts};
pub use start::{command, plain_shell, pty_modes};
