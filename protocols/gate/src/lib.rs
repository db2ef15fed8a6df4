//! `proctor-gate`: the vocabulary between a protocol front end and proctor's core.
//!
//! A protocol crate terminates the agent's connection, talks to the target, and turns traffic
//! into [`Event`]s and [`Action`]s. It knows nothing of storage, policy or HTTP: it asks an
//! [`Authority`] to admit a session and a [`Gate`] to record and decide.

pub mod action;
pub mod event;
pub mod gate;
pub mod inert;
pub mod locale;
pub mod preauth;

pub use action::{Action, Decision, DenyCause, Hold, RULE_STATEMENT_SIZE, Resolution};
pub use event::*;
pub use gate::{
    Authority, Credential, DEFAULT_COPY_RECORD_LIMIT, Durable, Gate, GateError, OpenSession,
    PostgresTarget, RULE_SHELL_SYNTAX_UNCHECKED, Refusal, RefusalKind, SessionRequest, ShellMode,
    ShellSyntax, SshTarget, TargetEndpoint, TargetTls,
};
