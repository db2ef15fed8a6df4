//! Cluster mode (`[cluster]`): several proctor nodes on one PostgreSQL control plane. Each node
//! publishes its live sessions and pending holds there, and takes kill/approve/deny commands
//! addressed to it from a command table (LISTEN/NOTIFY, with a poll as the backstop). A command
//! is applied by the owning node through the same code as a local one, so the owning node's
//! record says what happened and who (on which node) asked for it.
//!
//! This slice holds live state and commands only: recordings, the index and the ledger stay
//! in each node's own store.

pub mod commands;
// `[cluster]` is a section of the configuration; its types live there, below the cluster.
pub use crate::config::cluster as config;
mod db;
mod listener;
pub mod peers;
pub mod registry;
pub mod schema;

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::watch;

pub use config::ClusterConfig;

#[derive(Debug, Error)]
pub enum ClusterError {
    #[error("the cluster control plane is unreachable: {0}")]
    Unreachable(String),
    #[error("the cluster control plane failed: {0}")]
    Query(String),
    #[error(
        "the cluster control plane's schema is version {found}, newer than this proctor understands ({known}); upgrade this node"
    )]
    SchemaTooNew { found: i32, known: i32 },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Ambiguous(String),
    /// The owning node refused the command; `kind` says whose fault it is.
    #[error("{message}")]
    Refused { kind: String, message: String },
    #[error("{0}")]
    NoAnswer(String),
}

#[async_trait::async_trait]
impl crate::session::core::ClusterAdmission for Cluster {
    async fn admit(&self) -> Result<(), String> {
        Cluster::admit(self).await.map_err(|e| e.to_string())
    }
}

/// One node's handle on the control plane.
pub struct Cluster {
    pub node: String,
    pub advertise: String,
    pub config: ClusterConfig,
    db: db::Db,
}

impl Cluster {
    /// Connects, creates or checks the schema, and registers this node. Any failure is an
    /// error at start: a node that cannot reach its control plane does not serve.
    pub async fn connect(
        config: &ClusterConfig,
        data_dir: &std::path::Path,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let node = config::node_id(config, data_dir);
        let mut client = db::connect(&config.control_plane).await?;
        schema::migrate(&mut client).await?;
        let advertise = if config.advertise.is_empty() {
            node.clone()
        } else {
            config.advertise.clone()
        };
        let q = |e: tokio_postgres::Error| ClusterError::Query(e.to_string());
        client
            .execute(
                "INSERT INTO proctor_nodes (id, advertise, started, heartbeat) VALUES ($1, $2, now(), now())
                 ON CONFLICT (id) DO UPDATE SET advertise = EXCLUDED.advertise, started = now(), heartbeat = now()",
                &[&node, &advertise],
            )
            .await
            .map_err(q)?;
        // Commands addressed to an earlier run of this node are not applied now, out of the
        // context their issuer saw.
        client
            .execute(
                "UPDATE proctor_commands SET done_at = now(), ok = false, result = $2
                 WHERE node = $1 AND done_at IS NULL",
                &[
                    &node,
                    &commands::error_json(
                        "no_answer",
                        "the node restarted before taking the command",
                    ),
                ],
            )
            .await
            .map_err(q)?;
        Ok(Arc::new(Cluster {
            node,
            advertise,
            config: config.clone(),
            db: db::Db::new(&config.control_plane),
        }))
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.config.poll_interval_ms.max(1))
    }

    /// A node whose heartbeat is older than this is shown as not heartbeating.
    pub fn stale_after(&self) -> Duration {
        (self.poll_interval() * 5).max(Duration::from_secs(5))
    }

    /// Starts the registry publisher and the command listener.
    /// Commands from other nodes are applied through `service`, as this node's own are.
    pub fn spawn(
        self: &Arc<Self>,
        service: crate::service::Service,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        vec![
            tokio::spawn(registry::publish_loop(
                self.clone(),
                service.core().clone(),
                shutdown.clone(),
            )),
            tokio::spawn(listener::run(self.clone(), service, shutdown)),
        ]
    }
}
