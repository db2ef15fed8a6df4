//! Takes the commands addressed to this node: woken by `NOTIFY proctor_cmd_<node>` on a
//! connection of its own, and by a poll every `poll_interval_ms`, because notifications sent
//! while the listener is reconnecting are lost.

use std::sync::Arc;

use tokio::sync::{Notify, watch};
use tokio_postgres::{AsyncMessage, NoTls};

use super::Cluster;
use crate::service::Service;

pub async fn run(cluster: Arc<Cluster>, service: Service, mut shutdown: watch::Receiver<bool>) {
    let wake = Arc::new(Notify::new());
    let listen = cluster
        .config
        .notify
        .then(|| tokio::spawn(listen(cluster.clone(), wake.clone())));
    let mut tick = tokio::time::interval(cluster.poll_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = wake.notified() => {}
            _ = crate::shutdown::stopped(&mut shutdown) => break,
        }
        if let Err(e) = cluster.drain(&service).await {
            tracing::debug!(error = %e, "cannot take commands from the control plane");
        }
    }
    if let Some(l) = listen {
        l.abort();
    }
}

/// Keeps a LISTEN connection open, reconnecting after the poll interval when it drops, and
/// wakes the taker on every notification (and after every reconnect, for what was missed).
async fn listen(cluster: Arc<Cluster>, wake: Arc<Notify>) {
    let channel = format!("proctor_cmd_{}", cluster.node);
    loop {
        match tokio_postgres::connect(&cluster.config.control_plane, NoTls).await {
            Ok((client, mut conn)) => {
                let listening = async {
                    // The node id is checked to be [A-Za-z0-9._-], so quoting is enough.
                    client.batch_execute(&format!("LISTEN \"{channel}\"")).await
                };
                let driver = async {
                    while let Some(m) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                        match m {
                            Ok(AsyncMessage::Notification(_)) => wake.notify_one(),
                            Ok(_) => {}
                            Err(e) => {
                                tracing::debug!(error = %e, "control-plane listener failed");
                                break;
                            }
                        }
                    }
                };
                tokio::pin!(driver);
                tokio::select! {
                    r = listening => match r {
                        Ok(()) => {
                            wake.notify_one();
                            driver.await;
                        }
                        Err(e) => tracing::debug!(error = %e, "LISTEN failed"),
                    },
                    _ = &mut driver => {}
                }
            }
            Err(e) => tracing::debug!(error = %e, "control-plane listener cannot connect"),
        }
        tokio::time::sleep(cluster.poll_interval()).await;
    }
}
