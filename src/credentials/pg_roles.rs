//! Ephemeral PostgreSQL roles: one per agent session, created through the target's admin
//! connection, joined to the role its grant names, and dropped when the session ends. A reaper
//! drops roles a crash left behind.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use postgres_protocol::escape::{escape_identifier, escape_literal};
use proctor_gate::CredentialRecord;
use thiserror::Error;
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};
use zeroize::Zeroizing;

use crate::clock::{format_ns, now_ns};

pub const ROLE_PREFIX: &str = "proctor_";

#[derive(Debug, Error)]
pub enum RoleError {
    #[error("cannot reach the admin connection of target {target}: {detail}")]
    Connect { target: String, detail: String },
    #[error("target {target}: {action} failed: {detail}")]
    Sql {
        target: String,
        action: String,
        detail: String,
    },
}

/// Where and how to administer one target.
#[derive(Clone)]
pub struct AdminTarget {
    pub name: String,
    /// libpq-style connection string; contains a secret, never logged.
    pub dsn: Zeroizing<String>,
}

pub struct Issued {
    pub user: String,
    pub password: Zeroizing<String>,
    pub record: CredentialRecord,
}

#[derive(Default)]
pub struct PgRoles {
    admins: Mutex<HashMap<String, Arc<Client>>>,
    /// Roles whose drop failed (the target was unreachable when their session ended), by
    /// role name: retried until the target answers, so a role never outlives its session by
    /// more than the target's outage.
    pending: std::sync::Mutex<HashMap<String, (AdminTarget, String)>>,
}

/// `proctor_<agent>_<8 hex>`, lower case, within PostgreSQL's 63-byte identifier limit.
pub fn role_name(agent: &str, session_id: &str) -> String {
    let agent: String = agent
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    let short: String = session_id
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .rev()
        .take(8)
        .collect();
    let short: String = short.chars().rev().collect();
    format!("{ROLE_PREFIX}{agent}_{short}")
}

fn sql_err(target: &str, action: &str) -> impl Fn(tokio_postgres::Error) -> RoleError {
    let target = target.to_string();
    let action = action.to_string();
    move |e| RoleError::Sql {
        target: target.clone(),
        action: action.clone(),
        detail: match e.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None => e.to_string(),
        },
    }
}

impl PgRoles {
    async fn admin(&self, target: &AdminTarget) -> Result<Arc<Client>, RoleError> {
        let mut admins = self.admins.lock().await;
        if let Some(c) = admins.get(&target.name)
            && !c.is_closed()
        {
            return Ok(c.clone());
        }
        let connect = tokio_postgres::connect(target.dsn.as_str(), NoTls);
        let (client, connection) = tokio::time::timeout(Duration::from_secs(10), connect)
            .await
            .map_err(|_| RoleError::Connect {
                target: target.name.clone(),
                detail: "timed out after 10s".into(),
            })?
            .map_err(|e| RoleError::Connect {
                target: target.name.clone(),
                // The error text of a failed connect never includes the password.
                detail: e.to_string(),
            })?;
        let name = target.name.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(target = %name, error = %e, "admin connection closed");
            }
        });
        let client = Arc::new(client);
        admins.insert(target.name.clone(), client.clone());
        Ok(client)
    }

    /// Creates the session's role. The password is sent as a SCRAM verifier so that statement
    /// logging on the target never sees it.
    pub async fn issue(
        &self,
        target: &AdminTarget,
        agent: &str,
        session_id: &str,
        member_of: &str,
        valid_for: Duration,
        connection_limit: u32,
    ) -> Result<Issued, RoleError> {
        let client = self.admin(target).await?;
        let user = role_name(agent, session_id);
        let password = Zeroizing::new(hex::encode(rand::random::<[u8; 24]>()));
        let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
        let valid_after = now_ns();
        let valid_before = valid_after + valid_for.as_nanos().min(i64::MAX as u128) as i64;
        let until = format_ns(valid_before);
        let sql = format!(
            "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD {} VALID UNTIL {} CONNECTION LIMIT {} IN ROLE {}",
            escape_identifier(&user),
            escape_literal(&verifier),
            escape_literal(&until),
            connection_limit,
            escape_identifier(member_of),
        );
        client
            .batch_execute(&sql)
            .await
            .map_err(sql_err(&target.name, "CREATE ROLE"))?;
        Ok(Issued {
            user: user.clone(),
            password,
            record: CredentialRecord {
                kind: "postgres-role".into(),
                name: user,
                serial: 0,
                principals: vec![member_of.to_string()],
                valid_after_ns: valid_after,
                valid_before_ns: valid_before,
                detail: format!(
                    "target={}; member of {member_of}; connection limit {connection_limit}",
                    target.name
                ),
            },
        })
    }

    /// Ends the role's sessions on the target and drops it (reassigning anything it created to
    /// the role it was a member of). Returns what was done, for the record.
    /// On failure the role is kept for [`PgRoles::retry_pending`].
    pub async fn revoke(
        &self,
        target: &AdminTarget,
        user: &str,
        member_of: &str,
    ) -> Result<String, RoleError> {
        let result = self.drop_role(target, user, member_of).await;
        let mut pending = self.pending_lock();
        match &result {
            Ok(_) => {
                pending.remove(user);
            }
            Err(_) => {
                pending.insert(user.to_string(), (target.clone(), member_of.to_string()));
            }
        }
        result
    }

    fn pending_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (AdminTarget, String)>> {
        match self.pending.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Roles whose drop is still owed.
    pub fn pending(&self) -> usize {
        self.pending_lock().len()
    }

    /// Tries again to drop every role whose drop failed; returns the ones dropped now.
    pub async fn retry_pending(&self) -> Vec<(String, String)> {
        let owed: Vec<(String, AdminTarget, String)> = self
            .pending_lock()
            .iter()
            .map(|(u, (t, m))| (u.clone(), t.clone(), m.clone()))
            .collect();
        let mut dropped = Vec::new();
        for (user, target, member_of) in owed {
            if let Ok(detail) = self.revoke(&target, &user, &member_of).await {
                dropped.push((user, detail));
            }
        }
        dropped
    }

    async fn drop_role(
        &self,
        target: &AdminTarget,
        user: &str,
        member_of: &str,
    ) -> Result<String, RoleError> {
        let client = self.admin(target).await?;
        let terminated = terminate(&client, &target.name, user).await?;
        let drop = format!("DROP ROLE IF EXISTS {}", escape_identifier(user));
        if let Err(e) = client.batch_execute(&drop).await {
            let dependent = e.as_db_error().is_some_and(|d| d.code().code() == "2BP01");
            if !dependent {
                return Err(sql_err(&target.name, "DROP ROLE")(e));
            }
            let sql = format!(
                "REASSIGN OWNED BY {u} TO {m}; DROP OWNED BY {u}; DROP ROLE IF EXISTS {u}",
                u = escape_identifier(user),
                m = escape_identifier(member_of),
            );
            client
                .batch_execute(&sql)
                .await
                .map_err(sql_err(&target.name, "REASSIGN OWNED / DROP ROLE"))?;
            return Ok(format!(
                "{terminated} backend(s) terminated; objects it owned reassigned to {member_of}; role dropped"
            ));
        }
        Ok(format!("{terminated} backend(s) terminated; role dropped"))
    }

    /// Drops `proctor_` roles that no live session uses: all of them when `everything` (at
    /// start-up, when no session can be live), else only those whose VALID UNTIL has passed.
    pub async fn reap(
        &self,
        target: &AdminTarget,
        live: &HashSet<String>,
        everything: bool,
    ) -> Result<Vec<String>, RoleError> {
        let client = self.admin(target).await?;
        let rows = client
            .query(
                "SELECT rolname, coalesce(rolvaliduntil < now(), true) AS expired,
                        (SELECT string_agg(b.rolname, ',') FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid WHERE m.member = r.oid) AS member_of
                 FROM pg_roles r WHERE rolname LIKE 'proctor\\_%'",
                &[],
            )
            .await
            .map_err(sql_err(&target.name, "list proctor roles"))?;
        let mut dropped = Vec::new();
        for row in rows {
            let name: String = row.get(0);
            let expired: bool = row.get(1);
            let member_of: Option<String> = row.get(2);
            if live.contains(&name) || !(everything || expired) {
                continue;
            }
            let member = member_of
                .as_deref()
                .and_then(|m| m.split(',').next())
                .unwrap_or("postgres")
                .to_string();
            match self.revoke(target, &name, &member).await {
                Ok(_) => dropped.push(name),
                Err(e) => {
                    tracing::warn!(error = %e, role = %proctor_gate::inert::Line(&name), "could not reap a leftover role")
                }
            }
        }
        Ok(dropped)
    }
}

async fn terminate(client: &Client, target: &str, user: &str) -> Result<u64, RoleError> {
    let rows = client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
            &[&user],
        )
        .await
        .map_err(sql_err(target, "pg_terminate_backend"))?;
    // Termination is asynchronous; wait (briefly) until the backends are gone.
    for _ in 0..50 {
        let left = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
                &[&user],
            )
            .await
            .map_err(sql_err(target, "pg_stat_activity"))?;
        let n: i64 = left.get(0);
        if n == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    Ok(rows.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_safe_and_bounded() {
        let n = role_name("Claude-Ops.Agent", "0192f0c4-7b3e-7c1a-9d2e-aa55bb66cc77");
        assert_eq!(n, "proctor_claude_ops_agent_bb66cc77");
        assert!(role_name(&"x".repeat(100), "abcdef0123456789").len() <= 63);
    }
}
