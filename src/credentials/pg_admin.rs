//! Admin connections to PostgreSQL targets: a small pool per target, every statement under a
//! lock and statement timeout.
//!
//! Role creation and removal used to share one connection per target, and tokio-postgres
//! pipelines a client's queries: one `DROP ROLE` waiting on a lock (a prepared transaction
//! holding a table the role owns, say) held up every new agent session on that target. Now
//! each admin action takes its own connection, at most [`MAX_PER_TARGET`] at a time (cleanups
//! at most one fewer, so a login always has one), and no statement waits on a lock for longer
//! than [`LOCK_TIMEOUT`]: a stuck cleanup fails quickly and is retried later instead of
//! queueing everyone behind it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, NoTls};

use super::pg_roles::{AdminTarget, RoleError};

/// Admin connections open at once per target.
pub const MAX_PER_TARGET: usize = 4;
/// Of those, how many cleanups (drops, reaping) may hold at once: the rest stay free for
/// issuing roles, so even several stuck cleanups leave new logins a connection.
const MAX_CLEANUPS_PER_TARGET: usize = MAX_PER_TARGET - 1;

/// What an admin connection is taken for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Creating a session's role: someone is waiting to log in.
    Issue,
    /// Dropping or listing roles: nobody waits on it but the record.
    Cleanup,
}
/// How long an admin statement may wait for a lock.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(3);
/// How long an admin statement may run at all.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long an admin action may wait for a free connection or for a new one.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

struct TargetPool {
    slots: Arc<Semaphore>,
    cleanup_slots: Arc<Semaphore>,
    idle: std::sync::Mutex<Vec<Client>>,
}

impl TargetPool {
    fn idle_lock(&self) -> std::sync::MutexGuard<'_, Vec<Client>> {
        match self.idle.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

/// Per-target pools of admin connections.
#[derive(Default)]
pub struct AdminPools {
    pools: std::sync::Mutex<HashMap<String, Arc<TargetPool>>>,
}

/// One admin connection, returned to its pool when dropped (unless it broke).
pub struct AdminConn {
    client: Option<Client>,
    pool: Arc<TargetPool>,
    _slot: OwnedSemaphorePermit,
    _cleanup_slot: Option<OwnedSemaphorePermit>,
}

impl std::ops::Deref for AdminConn {
    type Target = Client;
    fn deref(&self) -> &Client {
        // Only `drop` takes the client out.
        self.client
            .as_ref()
            .unwrap_or_else(|| unreachable!("admin client taken before drop"))
    }
}

impl Drop for AdminConn {
    fn drop(&mut self) {
        if let Some(c) = self.client.take()
            && !c.is_closed()
        {
            self.pool.idle_lock().push(c);
        }
    }
}

impl AdminPools {
    fn pool(&self, target: &str) -> Arc<TargetPool> {
        let mut pools = match self.pools.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        pools
            .entry(target.to_string())
            .or_insert_with(|| {
                Arc::new(TargetPool {
                    slots: Arc::new(Semaphore::new(MAX_PER_TARGET)),
                    cleanup_slots: Arc::new(Semaphore::new(MAX_CLEANUPS_PER_TARGET)),
                    idle: std::sync::Mutex::new(Vec::new()),
                })
            })
            .clone()
    }

    /// A connection of its own for one admin action.
    pub async fn get(
        &self,
        target: &AdminTarget,
        purpose: Purpose,
    ) -> Result<AdminConn, RoleError> {
        let pool = self.pool(&target.name);
        let busy = || RoleError::Connect {
            target: target.name.clone(),
            detail: format!(
                "all {MAX_PER_TARGET} admin connections stayed busy for {}s",
                ACQUIRE_TIMEOUT.as_secs()
            ),
        };
        let acquire = async {
            let cleanup_slot = match purpose {
                Purpose::Cleanup => Some(pool.cleanup_slots.clone().acquire_owned().await?),
                Purpose::Issue => None,
            };
            let slot = pool.slots.clone().acquire_owned().await?;
            Ok::<_, tokio::sync::AcquireError>((slot, cleanup_slot))
        };
        let (slot, cleanup_slot) = tokio::time::timeout(ACQUIRE_TIMEOUT, acquire)
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        let reused = {
            let mut idle = pool.idle_lock();
            idle.retain(|c| !c.is_closed());
            idle.pop()
        };
        let client = match reused {
            Some(c) => c,
            None => connect(target).await?,
        };
        Ok(AdminConn {
            client: Some(client),
            pool,
            _slot: slot,
            _cleanup_slot: cleanup_slot,
        })
    }
}

async fn connect(target: &AdminTarget) -> Result<Client, RoleError> {
    let failed = |detail: String| RoleError::Connect {
        target: target.name.clone(),
        detail,
    };
    let connect = tokio_postgres::connect(target.dsn.as_str(), NoTls);
    let (client, connection) = tokio::time::timeout(ACQUIRE_TIMEOUT, connect)
        .await
        .map_err(|_| failed(format!("timed out after {}s", ACQUIRE_TIMEOUT.as_secs())))?
        // The error text of a failed connect never includes the password.
        .map_err(|e| failed(e.to_string()))?;
    let name = target.name.clone();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(target = %name, error = %e, "admin connection closed");
        }
    });
    // Session settings, so that they hold for every statement on this connection, including
    // the ones tokio-postgres prepares.
    let settings = format!(
        "SET lock_timeout = '{}ms'; SET statement_timeout = '{}ms'",
        LOCK_TIMEOUT.as_millis(),
        STATEMENT_TIMEOUT.as_millis()
    );
    client
        .batch_execute(&settings)
        .await
        .map_err(|e| failed(format!("setting admin timeouts: {e}")))?;
    Ok(client)
}
