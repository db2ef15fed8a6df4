//! The cluster as the service layer sees it ([`Peers`]): the other nodes' published live
//! sessions and holds, and commands relayed to the node that owns their subject. Without
//! `[cluster]` there is no `ClusterPeers`, and the service acts on this node alone.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::{Cluster, ClusterError};
use crate::approvals::PendingView;
use crate::service::{Actor, Command, NodeTag, Peers, Placed, ServiceError};
use crate::session::registry::LiveView;

impl From<ClusterError> for ServiceError {
    fn from(e: ClusterError) -> Self {
        match e {
            ClusterError::NotFound(m) => ServiceError::NotFound(m),
            ClusterError::Ambiguous(m) => ServiceError::BadRequest(m),
            ClusterError::Refused { kind, message } => ServiceError::from_kind(&kind, message),
            other => ServiceError::Unavailable(other.to_string()),
        }
    }
}

pub struct ClusterPeers {
    cluster: Arc<Cluster>,
}

impl ClusterPeers {
    pub fn new(cluster: Arc<Cluster>) -> ClusterPeers {
        ClusterPeers { cluster }
    }
}

#[async_trait]
impl Peers for ClusterPeers {
    fn here(&self) -> NodeTag {
        self.cluster.here()
    }

    async fn live(&self) -> Result<Vec<Placed<LiveView>>, ServiceError> {
        Ok(self.cluster.remote_live().await?)
    }

    async fn holds(&self) -> Result<Vec<Placed<PendingView>>, ServiceError> {
        Ok(self.cluster.remote_holds().await?)
    }

    async fn relay(
        &self,
        node: &str,
        command: Command,
        subject: &str,
        who: &Actor,
        reason: &str,
    ) -> Result<Value, ServiceError> {
        let (identity, label) = who.issuer();
        let issuer = super::commands::Issuer { identity, label };
        Ok(self
            .cluster
            .relay(node, command, subject, &issuer, reason)
            .await?)
    }
}
