//! Live sessions: the core's side of `proctor_gate`. `CoreAuthority` admits sessions,
//! `SessionGate` records and decides for one of them, `Registry` lists and kills them.

pub mod authority;
pub mod core;
pub mod gate;
pub mod limits;
pub mod pg_settings;
pub mod registry;
pub mod shell_context;
pub mod unauth;

pub use self::authority::CoreAuthority;
pub use self::core::Core;
pub use self::gate::SessionGate;
pub use self::registry::{LiveSession, Registry};
