//! The cluster's live state: each node publishes its live sessions and pending holds (what the
//! approval card shows) under its node id, and any node lists everyone's. Publishing replaces
//! the node's rows in one transaction whenever they change, after any control-plane failure
//! (so rows come back when it does), and the heartbeat is refreshed on every tick.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::watch;

use super::{Cluster, ClusterError};
use crate::approvals::PendingView;
use crate::service::{NodeTag, Placed};
use crate::session::Core;
use crate::session::registry::LiveView;

/// A remote row: its node, whether that node still heartbeats, and the view it published.
struct Row {
    node: String,
    advertise: String,
    alive: bool,
    view: Value,
}

impl Cluster {
    /// Checks, before a session starts, that the control plane takes this node's writes (a
    /// heartbeat): a session the cluster cannot see cannot be killed from another node, so
    /// cluster mode refuses it instead (fail closed). The session's row is published once it
    /// is live and killable here, so no node lists a session its owner cannot yet kill.
    pub async fn admit(&self) -> Result<(), ClusterError> {
        self.publish(None).await
    }

    /// Heartbeats, and replaces this node's rows with `snapshot` when `replace`.
    async fn publish(
        &self,
        snapshot: Option<(Vec<Value>, Vec<PendingView>)>,
    ) -> Result<(), ClusterError> {
        let node = self.node.clone();
        let advertise = self.advertise.clone();
        self.db
            .run(move |c| {
                Box::pin(async move {
                    let tx = c.transaction().await?;
                    tx.execute(
                        "INSERT INTO proctor_nodes (id, advertise, started, heartbeat) VALUES ($1, $2, now(), now())
                         ON CONFLICT (id) DO UPDATE SET heartbeat = now()",
                        &[&node, &advertise],
                    )
                    .await?;
                    if let Some((sessions, holds)) = snapshot {
                        // Answered commands are kept a day for whoever looks; the owning
                        // node's record is the lasting account of what each one did.
                        tx.execute(
                            "DELETE FROM proctor_commands WHERE issued_from = $1 AND done_at < now() - interval '1 day'",
                            &[&node],
                        )
                        .await?;
                        tx.execute("DELETE FROM proctor_live_sessions WHERE node = $1", &[&node]).await?;
                        tx.execute("DELETE FROM proctor_pending_holds WHERE node = $1", &[&node]).await?;
                        for s in &sessions {
                            let text = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
                            let started = s.get("started_ns").and_then(Value::as_i64).unwrap_or_default();
                            tx.execute(
                                "INSERT INTO proctor_live_sessions (session_id, node, agent, target, protocol, started_ns, view)
                                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (session_id) DO UPDATE
                                 SET node = EXCLUDED.node, view = EXCLUDED.view",
                                &[&text("id"), &node, &text("agent"), &text("target"), &text("protocol"), &started, &s.to_string()],
                            )
                            .await?;
                        }
                        for h in &holds {
                            let view = serde_json::to_string(h).unwrap_or_default();
                            tx.execute(
                                "INSERT INTO proctor_pending_holds (hold_id, session_id, node, agent, created_ns, view)
                                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (hold_id) DO UPDATE
                                 SET node = EXCLUDED.node, view = EXCLUDED.view",
                                &[&h.id, &h.session_id, &node, &h.agent, &h.created_ns, &view],
                            )
                            .await?;
                        }
                    }
                    tx.commit().await
                })
            })
            .await
    }

    async fn rows(&self, table: &'static str) -> Result<Vec<Row>, ClusterError> {
        let node = self.node.clone();
        let sql = format!(
            "SELECT r.node, coalesce(n.advertise, r.node), \
             coalesce(extract(epoch FROM now() - n.heartbeat)::float8, 1e9), r.view \
             FROM {table} r LEFT JOIN proctor_nodes n ON n.id = r.node WHERE r.node <> $1"
        );
        let rows = self
            .db
            .run(move |c| Box::pin(async move { c.query(&sql, &[&node]).await }))
            .await?;
        let stale = self.stale_after().as_secs_f64();
        Ok(rows
            .iter()
            .filter_map(|r| {
                let view: String = r.try_get(3).ok()?;
                Some(Row {
                    node: r.try_get(0).ok()?,
                    advertise: r.try_get(1).ok()?,
                    alive: r.try_get::<_, f64>(2).ok()? <= stale,
                    view: serde_json::from_str(&view).ok()?,
                })
            })
            .collect())
    }

    /// This node, as the lists tag what it owns.
    pub fn here(&self) -> NodeTag {
        NodeTag {
            node: self.node.clone(),
            node_advertise: self.advertise.clone(),
            node_heartbeating: true,
        }
    }

    /// What the other nodes published in `table`, each with its node; a view this node cannot
    /// read (from a much older or newer node) is left out.
    async fn published<T: serde::de::DeserializeOwned>(
        &self,
        table: &'static str,
    ) -> Result<Vec<Placed<T>>, ClusterError> {
        Ok(self
            .rows(table)
            .await?
            .into_iter()
            .filter_map(|r| {
                let item = serde_json::from_value(r.view).ok()?;
                Some(Placed::on(
                    item,
                    NodeTag {
                        node: r.node,
                        node_advertise: r.advertise,
                        node_heartbeating: r.alive,
                    },
                ))
            })
            .collect())
    }

    /// The live sessions the other nodes published.
    pub async fn remote_live(&self) -> Result<Vec<Placed<LiveView>>, ClusterError> {
        self.published("proctor_live_sessions").await
    }

    /// The pending holds the other nodes published.
    pub async fn remote_holds(&self) -> Result<Vec<Placed<PendingView>>, ClusterError> {
        self.published("proctor_pending_holds").await
    }
}

/// Publishes this node's state: on every tick (heartbeat), and at once when a session starts
/// or ends or a hold changes. After a failure everything is re-published on the next success.
pub async fn publish_loop(
    cluster: Arc<Cluster>,
    core: Arc<Core>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(cluster.poll_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut bus = core.bus.subscribe();
    let mut holds = core.approvals.subscribe();
    let mut last: Option<String> = None;
    let mut failing = false;
    // Rows are rewritten in full now and then even when nothing changed, so rows lost on the
    // control plane's side (a restore, a manual delete) come back.
    let mut since_full = 0u32;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = bus.recv() => {}
            _ = holds.recv() => {}
            _ = crate::shutdown::stopped(&mut shutdown) => break,
        }
        let sessions: Vec<Value> = core.sessions.list().into_iter().map(|v| json!(v)).collect();
        let pending = core.approvals.list();
        let fingerprint = json!([sessions, pending]).to_string();
        since_full += 1;
        let changed = last.as_deref() != Some(fingerprint.as_str()) || since_full >= 30;
        if changed {
            since_full = 0;
        }
        let snapshot = changed.then_some((sessions, pending));
        match cluster.publish(snapshot).await {
            Ok(()) => {
                if failing {
                    tracing::info!(node = %cluster.node, "control plane reachable again; live state re-published");
                    let _ = core.recorder.journal("cluster", "control plane reachable again; this node's live sessions and holds re-published").await;
                }
                failing = false;
                last = Some(fingerprint);
            }
            Err(e) => {
                if !failing {
                    tracing::error!(node = %cluster.node, error = %e, "cannot publish live state; new sessions are refused until the control plane is back");
                    let _ = core.recorder.journal("cluster", &format!("control plane unreachable ({e}); new sessions are refused, live ones continue")).await;
                }
                failing = true;
                last = None;
            }
        }
    }
    // A clean stop: this node's rows go with it (its sessions have ended).
    let _ = cluster.publish(Some((Vec::new(), Vec::new()))).await;
}
