//! What a protocol asks before it forwards something, and the answer.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::event::{ChannelKind, Statement};

/// Something the agent wants done on the target. The core records it (as the matching event)
/// together with its verdict, durably, before `Gate::decide` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// One SQL statement (a multi-statement simple query is judged as one action per statement,
    /// but the protocol forwards the message only if every part is allowed).
    Statement(Statement),
    /// An SSH `exec` request, judged before the target channel is opened.
    Exec { channel: u32, command: String },
    /// A line submitted in an interactive shell (the Enter is held until judged).
    CommandLine { channel: u32, line: String },
    /// A new channel: an interactive shell, a subsystem such as `sftp`, or a port forward.
    Channel {
        channel: u32,
        kind: ChannelKind,
        /// Subsystem name, or `host:port` for a forward.
        detail: String,
    },
    /// An SFTP operation that changes the target (write, remove, rename, setstat, mkdir...).
    SftpChange {
        channel: u32,
        op: String,
        path: String,
        /// The other path of a rename, hard link or symlink (where it goes or points); empty
        /// for operations on one path. Policy judges both: moving a file away changes it too.
        target_path: String,
    },
}

impl Action {
    /// What the verdict record calls this action.
    pub fn subject(&self) -> String {
        match self {
            Action::Statement(s) => format!("statement {}", s.id),
            Action::Exec { channel, .. } => format!("exec channel {channel}"),
            Action::CommandLine { channel, .. } => format!("line channel {channel}"),
            Action::Channel {
                channel,
                kind,
                detail,
            } => {
                if detail.is_empty() {
                    format!("{} channel {channel}", kind.as_str())
                } else {
                    format!("{} channel {channel} {detail}", kind.as_str())
                }
            }
            Action::SftpChange {
                channel,
                op,
                path,
                target_path,
            } => {
                if target_path.is_empty() {
                    format!("sftp {op} {path} channel {channel}")
                } else {
                    format!("sftp {op} {path} -> {target_path} channel {channel}")
                }
            }
        }
    }
}

/// The rule of a denial for a statement over the configured size: the protocol answers it as
/// a program limit (PostgreSQL SQLSTATE 54000), not as a permission refusal.
pub const RULE_STATEMENT_SIZE: &str = "limit:statement-size";

/// Final answer for an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    Allow,
    Deny {
        /// Rule name, or `approval` when a person denied it, `timeout` when nobody answered.
        rule: String,
        reason: String,
        /// Why it was refused, for the protocol to pick its error code.
        cause: DenyCause,
    },
}

/// Why an action was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyCause {
    Policy,
    Approver,
    Timeout,
    Killed,
}

/// A pending approval. The protocol tells the agent about it, then awaits `outcome`.
/// Dropping a `Hold` before it resolves cancels the approval (e.g. the client went away).
pub struct Hold {
    pub approval_id: String,
    pub rule: String,
    pub reason: String,
    pub outcome: Pin<Box<dyn Future<Output = Resolution> + Send>>,
}

impl fmt::Debug for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hold")
            .field("approval_id", &self.approval_id)
            .field("rule", &self.rule)
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

/// Immediate answer from `Gate::decide`.
#[derive(Debug)]
pub enum Decision {
    Allow,
    Deny {
        rule: String,
        reason: String,
    },
    /// Wait for a person; the action is not forwarded until `Hold::outcome` says `Allow`.
    Held(Hold),
}
