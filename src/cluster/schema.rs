//! The control-plane schema, created or migrated at start in one transaction under an advisory
//! lock (so two nodes starting together do not race), and refused when it is newer than this
//! proctor understands.

use tokio_postgres::Client;

use super::ClusterError;

/// The schema version this proctor writes and understands.
pub const VERSION: i32 = 1;

const V1: &str = "
CREATE TABLE proctor_nodes (
    id text PRIMARY KEY,
    advertise text NOT NULL,
    started timestamptz NOT NULL,
    heartbeat timestamptz NOT NULL
);
CREATE TABLE proctor_live_sessions (
    session_id text PRIMARY KEY,
    node text NOT NULL,
    agent text NOT NULL,
    target text NOT NULL,
    protocol text NOT NULL,
    started_ns bigint NOT NULL,
    view text NOT NULL
);
CREATE INDEX ON proctor_live_sessions (node);
CREATE TABLE proctor_pending_holds (
    hold_id text PRIMARY KEY,
    session_id text NOT NULL,
    node text NOT NULL,
    agent text NOT NULL,
    created_ns bigint NOT NULL,
    view text NOT NULL
);
CREATE INDEX ON proctor_pending_holds (node);
CREATE TABLE proctor_commands (
    id bigserial PRIMARY KEY,
    node text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('kill', 'approve', 'deny')),
    subject text NOT NULL,
    issued_by text NOT NULL,
    label text,
    issued_from text NOT NULL,
    reason text NOT NULL,
    created timestamptz NOT NULL DEFAULT now(),
    done_at timestamptz,
    ok boolean,
    result text
);
CREATE INDEX ON proctor_commands (node) WHERE done_at IS NULL;
";

/// Creates the tables, or checks that the existing ones are a version this proctor knows.
pub async fn migrate(client: &mut Client) -> Result<(), ClusterError> {
    let q = |e: tokio_postgres::Error| ClusterError::Query(e.to_string());
    let tx = client.transaction().await.map_err(q)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('proctor control-plane schema'))",
        &[],
    )
    .await
    .map_err(q)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS proctor_schema (version int NOT NULL)")
        .await
        .map_err(q)?;
    let row = tx
        .query_opt("SELECT max(version) FROM proctor_schema", &[])
        .await
        .map_err(q)?;
    let current: Option<i32> = row.and_then(|r| r.try_get(0).ok()).flatten();
    match current {
        Some(v) if v > VERSION => {
            return Err(ClusterError::SchemaTooNew {
                found: v,
                known: VERSION,
            });
        }
        Some(_) => {}
        None => {
            tx.batch_execute(V1).await.map_err(q)?;
            tx.execute(
                "INSERT INTO proctor_schema (version) VALUES ($1)",
                &[&VERSION],
            )
            .await
            .map_err(q)?;
        }
    }
    tx.commit().await.map_err(q)
}
