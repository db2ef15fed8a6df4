//! The other nodes of a cluster, as the service needs them: what they publish (live sessions,
//! pending holds) and a way to hand them a command for what they own. The cluster module
//! implements [`Peers`]; on a single node there are none.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::ServiceError;
use crate::approvals::PendingView;
use crate::session::registry::LiveView;

/// Where a listed item lives, in cluster mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeTag {
    pub node: String,
    pub node_advertise: String,
    /// False when that node's heartbeat is stale: what it published may be gone.
    pub node_heartbeating: bool,
}

/// A live session or a hold, with its node in cluster mode (flattened into one object).
#[derive(Debug, Clone, Serialize)]
pub struct Placed<T> {
    #[serde(flatten)]
    pub item: T,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub place: Option<NodeTag>,
}

impl<T> Placed<T> {
    pub fn here(item: T) -> Placed<T> {
        Placed { item, place: None }
    }

    pub fn on(item: T, place: NodeTag) -> Placed<T> {
        Placed {
            item,
            place: Some(place),
        }
    }
}

/// A command for the node that owns its subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Kill,
    Approve,
    Deny,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Kill => "kill",
            Command::Approve => "approve",
            Command::Deny => "deny",
        }
    }

    pub fn parse(s: &str) -> Option<Command> {
        match s {
            "kill" => Some(Command::Kill),
            "approve" => Some(Command::Approve),
            "deny" => Some(Command::Deny),
            _ => None,
        }
    }
}

#[async_trait]
pub trait Peers: Send + Sync {
    /// This node, as the lists tag what it owns.
    fn here(&self) -> NodeTag;

    /// The live sessions the other nodes published.
    async fn live(&self) -> Result<Vec<Placed<LiveView>>, ServiceError>;

    /// The pending holds the other nodes published.
    async fn holds(&self) -> Result<Vec<Placed<PendingView>>, ServiceError>;

    /// Sends `command` about `subject` (a full id) to `node` and waits, bounded, for its
    /// answer: the owning node's typed result as it wrote it.
    async fn relay(
        &self,
        node: &str,
        command: Command,
        subject: &str,
        who: &super::Actor,
        reason: &str,
    ) -> Result<serde_json::Value, ServiceError>;
}
