//! Real local targets for `proctor dev`: a PostgreSQL cluster from `initdb` and an OpenSSH
//! `sshd`, each on a random loopback port in its own directory, always cleaned up. Product code
//! (a README command starts them); the tests reach the same launcher through `proctor-harness`,
//! which adds what only tests need.
//!
//! PostgreSQL refuses to run as root, so when the current user is root the cluster runs as
//! `nobody` (data directory owned by it); sshd runs as whoever we are.

pub mod postgres;
mod process;
pub mod sshd;

pub use postgres::{LocalPostgres, PostgresOptions};
pub use process::{ChildGuard, free_port, is_root, wait_for_port};
pub use sshd::{LocalSshd, SshdOptions};

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
    #[error("{program} not found; {hint}")]
    Missing { program: String, hint: String },
}

impl TargetError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TargetError {
        let what = what.into();
        move |source| TargetError::Io { what, source }
    }
}

pub type Result<T> = std::result::Result<T, TargetError>;
