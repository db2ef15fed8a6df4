//! One control-plane connection for commands and registry writes, opened on demand and
//! dropped on any error so the next use reconnects. Every call is bounded in time: a control
//! plane that hangs must look like one that is down, never hold up a session.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

use super::ClusterError;

/// How long one connect or one query may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);

pub struct Db {
    dsn: String,
    client: Mutex<Option<Client>>,
}

/// Opens a connection whose driver runs on its own task.
pub async fn connect(dsn: &str) -> Result<Client, ClusterError> {
    let (client, conn) = tokio::time::timeout(CALL_TIMEOUT, tokio_postgres::connect(dsn, NoTls))
        .await
        .map_err(|_| ClusterError::Unreachable("connecting timed out".into()))?
        .map_err(|e| ClusterError::Unreachable(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "control-plane connection ended");
        }
    });
    Ok(client)
}

impl Db {
    pub fn new(dsn: &str) -> Db {
        Db {
            dsn: dsn.to_string(),
            client: Mutex::new(None),
        }
    }

    /// Runs `f` on the connection (connecting first if needed), within [`CALL_TIMEOUT`]; on
    /// any failure the connection is dropped and the next call reconnects.
    pub async fn run<T, F>(&self, f: F) -> Result<T, ClusterError>
    where
        F: for<'c> FnOnce(
            &'c mut Client,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, tokio_postgres::Error>> + Send + 'c>,
        >,
    {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(connect(&self.dsn).await?);
        }
        let Some(client) = guard.as_mut() else {
            return Err(ClusterError::Unreachable("no connection".into()));
        };
        match tokio::time::timeout(CALL_TIMEOUT, f(client)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                *guard = None;
                Err(ClusterError::Query(e.to_string()))
            }
            Err(_) => {
                *guard = None;
                Err(ClusterError::Unreachable("the query timed out".into()))
            }
        }
    }
}
