//! The cluster's live state: each node publishes its live sessions and pending holds (what the
//! approval card shows) under its node id, and any node lists everyone's. Publishing replaces
//! the node's rows in one transaction whenever they change, after any control-plane failure
//! (so rows come back when it does), and the heartbeat is refreshed on every tick.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::watch;

use super::{Cluster, ClusterError};
use crate::approvals::PendingView;
use crate::ops;
use crate::session::Core;

/// Where a live session or hold lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Local(String),
    Remote { node: String, id: String },
}

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

    /// Every live session in the cluster, this node's first-hand, each with its node.
    pub async fn live(&self, core: &Core) -> Result<Vec<Value>, ClusterError> {
        let remote = self.rows("proctor_live_sessions").await?;
        let mut out: Vec<Value> = core
            .sessions
            .list()
            .into_iter()
            .map(|v| self.tag(json!(v), &self.node, &self.advertise, true))
            .collect();
        out.extend(
            remote
                .into_iter()
                .map(|r| self.tag(r.view, &r.node, &r.advertise, r.alive)),
        );
        out.sort_by_key(|v| {
            v.get("started_ns")
                .and_then(Value::as_i64)
                .unwrap_or_default()
        });
        Ok(out)
    }

    /// Every pending hold in the cluster, in the queue's order, each with its node.
    pub async fn holds(&self, core: &Core) -> Result<Vec<Value>, ClusterError> {
        let remote = self.rows("proctor_pending_holds").await?;
        let mut nodes = std::collections::HashMap::new();
        let mut all = core.approvals.list();
        for v in &all {
            nodes.insert(
                v.id.clone(),
                (self.node.clone(), self.advertise.clone(), true),
            );
        }
        for r in remote {
            if let Ok(v) = serde_json::from_value::<PendingView>(r.view) {
                nodes.insert(v.id.clone(), (r.node, r.advertise, r.alive));
                all.push(v);
            }
        }
        crate::approval_queue::order(&mut all);
        Ok(all
            .into_iter()
            .map(|v| {
                let (node, adv, alive) = nodes.get(&v.id).cloned().unwrap_or_default();
                self.tag(json!(v), &node, &adv, alive)
            })
            .collect())
    }

    pub fn tag(&self, mut v: Value, node: &str, advertise: &str, alive: bool) -> Value {
        if let Some(o) = v.as_object_mut() {
            o.insert("node".into(), json!(node));
            o.insert("node_advertise".into(), json!(advertise));
            o.insert("node_heartbeating".into(), json!(alive));
        }
        v
    }

    /// Which node holds the live session `prefix` names, resolved over the whole cluster so a
    /// prefix is unambiguous across nodes. With the control plane down only this node's
    /// sessions can be found (killing them stays possible).
    pub async fn route_session(&self, core: &Core, prefix: &str) -> Result<Owner, ClusterError> {
        let local: Vec<String> = core.sessions.list().into_iter().map(|s| s.id).collect();
        let remote = match self.rows("proctor_live_sessions").await {
            Ok(r) => r,
            Err(e) => {
                return match ops::resolve_prefix(prefix, local.iter().map(String::as_str)) {
                    Ok(id) => Ok(Owner::Local(id)),
                    Err(_) => Err(e),
                };
            }
        };
        let remote: Vec<(String, String)> = remote
            .into_iter()
            .filter_map(|r| Some((r.view.get("id")?.as_str()?.to_string(), r.node)))
            .collect();
        let ids = local
            .iter()
            .map(String::as_str)
            .chain(remote.iter().map(|(id, _)| id.as_str()));
        match ops::resolve_prefix(prefix, ids) {
            Ok(id) if local.contains(&id) => Ok(Owner::Local(id)),
            Ok(id) => {
                let node = remote
                    .iter()
                    .find(|(r, _)| *r == id)
                    .map(|(_, n)| n.clone())
                    .unwrap_or_default();
                Ok(Owner::Remote { node, id })
            }
            Err(ops::OpsError::NoSuchSession(_)) => Err(ClusterError::NotFound(format!(
                "no live session matches {prefix:?} on any node"
            ))),
            Err(e) => Err(ClusterError::Ambiguous(e.to_string())),
        }
    }

    /// Which node holds the pending hold `id`, when it is not this one.
    pub async fn hold_owner(&self, id: &str) -> Result<Option<String>, ClusterError> {
        let id = id.to_string();
        let node = self.node.clone();
        let row = self
            .db
            .run(move |c| {
                Box::pin(async move {
                    c.query_opt(
                        "SELECT node FROM proctor_pending_holds WHERE hold_id = $1 AND node <> $2",
                        &[&id, &node],
                    )
                    .await
                })
            })
            .await?;
        Ok(row.and_then(|r| r.try_get(0).ok()))
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
            _ = crate::serve::stopped(&mut shutdown) => break,
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
