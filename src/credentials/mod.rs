//! Just-in-time credentials: agents never hold a target secret. Proctor signs a short-lived SSH
//! certificate or creates a PostgreSQL role for each session and revokes what it can when the
//! session ends.

pub mod pg_admin;
pub mod pg_roles;
pub mod ssh_ca;
