//! Ephemeral PostgreSQL roles: one per agent session, created through the target's admin
//! connections, joined to the role its grant names, and dropped when the session ends. A reaper
//! drops roles a crash left behind and retries drops that could not be done yet.
//!
//! Each session logs in as its own throwaway role, but acts as the grant's role: the throwaway
//! role is created with `SET role = <grant role>` as its per-role default, which the server
//! applies at login before the agent's first statement. So everything an agent creates is
//! owned by the grant's role from the start, and a reconnect (psql's `\c` opens the new
//! connection before closing the old one) behaves as it does directly: the next session may
//! alter or drop what the previous one created, and may `COMMIT PREPARED` what it prepared.
//! The grant's role rather than a stable per-agent role: it is the role that holds the grant's
//! privileges and that the cleanup already reassigned objects to, so it adds no long-lived
//! roles on the target for proctor to keep; who did what is in proctor's record. Since the
//! setting is the role's default, `RESET ROLE`, `RESET ALL` and `DISCARD ALL` return to the
//! grant's role, not to the throwaway one; only `SET ROLE NONE` (or `set_config('role',...)`)
//! reaches the throwaway role, and the default policies hold those in elevated sessions.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use postgres_protocol::escape::{escape_identifier, escape_literal};
use proctor_gate::CredentialRecord;
use thiserror::Error;
use tokio_postgres::Client;
use zeroize::Zeroizing;

use super::pg_admin::{AdminPools, Purpose};

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
    /// The target's database may resolve a built-in's name to someone's code
    /// ([`builtins_overloaded`]).
    pub builtins_overloaded: bool,
}

/// Whether a statement in database `dbname` may call someone's code where proctor sees a
/// built-in: a function outside `pg_catalog` (and `information_schema`) named like one proctor
/// takes as a built-in (PostgreSQL picks `public.lower(integer)` for `lower(5)` over the
/// built-in `lower(text)`, whatever the `search_path`), any operator outside them (`=` on a
/// user's argument types), a cast through a function outside them, or code outside them that
/// statements reach implicitly: a trigger, a view or rule, a column default or generated
/// column, a CHECK constraint, a domain, a row-level policy or an event trigger that calls
/// such a function (as the catalog's dependencies record it); or a default `search_path` for
/// the database (or every role) that names `pg_catalog` (`ALTER DATABASE app SET search_path =
/// public, pg_catalog`, in force at this login). Asked on the admin
/// connection when the session's role is made, so the agent's backend runs nothing proctor
/// did not judge. `true` too when it cannot tell (the admin connection is to another database,
/// the query failed): the session then judges every query and DML as running code.
async fn builtins_overloaded(client: &tokio_postgres::Client, dbname: &str) -> bool {
    const SQL: &str = "SELECT pg_catalog.current_database() OPERATOR(pg_catalog.=) $1 \
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p WHERE p.proname OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.text[]) \
            AND p.pronamespace NOT IN ('pg_catalog'::pg_catalog.regnamespace, 'information_schema'::pg_catalog.regnamespace)) \
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_operator o \
            WHERE o.oprnamespace NOT IN ('pg_catalog'::pg_catalog.regnamespace, 'information_schema'::pg_catalog.regnamespace)) \
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_cast c JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) c.castfunc \
            WHERE p.pronamespace NOT IN ('pg_catalog'::pg_catalog.regnamespace, 'information_schema'::pg_catalog.regnamespace)) \
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) d.refobjid \
            WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass \
            AND d.classid IN ('pg_catalog.pg_rewrite'::pg_catalog.regclass, 'pg_catalog.pg_attrdef'::pg_catalog.regclass, \
                'pg_catalog.pg_constraint'::pg_catalog.regclass, 'pg_catalog.pg_trigger'::pg_catalog.regclass, \
                'pg_catalog.pg_policy'::pg_catalog.regclass, 'pg_catalog.pg_event_trigger'::pg_catalog.regclass, \
                'pg_catalog.pg_type'::pg_catalog.regclass) \
            AND p.pronamespace NOT IN ('pg_catalog'::pg_catalog.regnamespace, 'information_schema'::pg_catalog.regnamespace)) \
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_db_role_setting s, pg_catalog.unnest(s.setconfig) AS c(v) \
            WHERE s.setrole OPERATOR(pg_catalog.=) 0 \
            AND s.setdatabase IN (0, (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname OPERATOR(pg_catalog.=) $1)) \
            AND pg_catalog.lower(c.v) OPERATOR(pg_catalog.~~) 'search_path=%pg_catalog%')";
    let names: Vec<&str> = proctor_postgres::classify::builtin_names();
    match client.query_one(SQL, &[&dbname, &names]).await {
        Ok(row) => !row.try_get::<_, bool>(0).unwrap_or(false),
        Err(e) => {
            tracing::warn!(error = %e, "postgres: cannot tell whether built-ins are overloaded; judging every statement as running code");
            true
        }
    }
}

/// A drop still owed.
struct Owed {
    target: AdminTarget,
    member_of: String,
    /// Failed attempts so far.
    attempts: u32,
    next_try: Instant,
}

/// First wait before retrying a failed drop; doubled per failure up to [`RETRY_MAX`], so a
/// role stuck behind a prepared transaction for a day costs a few hundred attempts, not tens
/// of thousands, and each attempt's failure can be recorded.
const RETRY_FIRST: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(300);

/// What one retry of an owed drop did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retry {
    Dropped {
        role: String,
        detail: String,
    },
    Failed {
        role: String,
        attempts: u32,
        error: String,
        next_in: Duration,
    },
}

#[derive(Default)]
pub struct PgRoles {
    admins: AdminPools,
    /// Roles whose drop failed (the target was unreachable, or a lock such as a prepared
    /// transaction's was in the way, when their session ended), by role name: retried with
    /// back-off until it succeeds, so a role never outlives its session by more than what
    /// blocked it.
    pending: std::sync::Mutex<HashMap<String, Owed>>,
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
    /// Creates the session's role. The password is sent as a SCRAM verifier so that statement
    /// logging on the target never sees it.
    #[allow(clippy::too_many_arguments)]
    pub async fn issue(
        &self,
        target: &AdminTarget,
        agent: &str,
        session_id: &str,
        member_of: &str,
        valid_for: Duration,
        connection_limit: u32,
        dbname: &str,
    ) -> Result<Issued, RoleError> {
        let client = self.admins.get(target, Purpose::Issue).await?;
        let user = role_name(agent, session_id);
        let password = Zeroizing::new(hex::encode(rand::random::<[u8; 24]>()));
        let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
        let valid_after = now_ns();
        let valid_before = valid_after + valid_for.as_nanos().min(i64::MAX as u128) as i64;
        let until = format_ns(valid_before);
        // One simple query, so one transaction: the role never exists without its default.
        let sql = format!(
            "CREATE ROLE {u} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD {} VALID UNTIL {} CONNECTION LIMIT {} IN ROLE {m}; \
             ALTER ROLE {u} SET role = {}",
            escape_literal(&verifier),
            escape_literal(&until),
            connection_limit,
            escape_literal(member_of),
            u = escape_identifier(&user),
            m = escape_identifier(member_of),
        );
        client
            .batch_execute(&sql)
            .await
            .map_err(sql_err(&target.name, "CREATE ROLE"))?;
        let overloaded = builtins_overloaded(&client, dbname).await;
        Ok(Issued {
            builtins_overloaded: overloaded,
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
                    "target={}; member of {member_of}, acts as {member_of} (SET role at login); connection limit {connection_limit}{}",
                    target.name,
                    if overloaded {
                        "; built-in names may resolve to code outside pg_catalog (every query and DML judged as running code)"
                    } else {
                        ""
                    }
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
                let owed = pending.entry(user.to_string()).or_insert_with(|| Owed {
                    target: target.clone(),
                    member_of: member_of.to_string(),
                    attempts: 0,
                    next_try: Instant::now(),
                });
                owed.attempts = owed.attempts.saturating_add(1);
                owed.next_try = Instant::now() + retry_delay(owed.attempts);
            }
        }
        result
    }

    fn pending_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Owed>> {
        match self.pending.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Roles whose drop is still owed.
    pub fn pending(&self) -> usize {
        self.pending_lock().len()
    }

    fn is_pending(&self, role: &str) -> bool {
        self.pending_lock().contains_key(role)
    }

    /// Tries again to drop every owed role whose back-off has passed; says what happened to
    /// each, so that every attempt can be recorded.
    pub async fn retry_pending(&self) -> Vec<Retry> {
        let now = Instant::now();
        let due: Vec<(String, AdminTarget, String)> = self
            .pending_lock()
            .iter()
            .filter(|(_, o)| o.next_try <= now)
            .map(|(u, o)| (u.clone(), o.target.clone(), o.member_of.clone()))
            .collect();
        let mut done = Vec::new();
        for (role, target, member_of) in due {
            match self.revoke(&target, &role, &member_of).await {
                Ok(detail) => done.push(Retry::Dropped { role, detail }),
                Err(e) => {
                    let attempts = self.pending_lock().get(&role).map_or(0, |o| o.attempts);
                    done.push(Retry::Failed {
                        role,
                        attempts,
                        error: e.to_string(),
                        next_in: retry_delay(attempts),
                    });
                }
            }
        }
        done
    }

    async fn drop_role(
        &self,
        target: &AdminTarget,
        user: &str,
        member_of: &str,
    ) -> Result<String, RoleError> {
        let client = self.admins.get(target, Purpose::Cleanup).await?;
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
    ) -> Result<Vec<Retry>, RoleError> {
        let client = self.admins.get(target, Purpose::Cleanup).await?;
        let rows = client
            .query(
                "SELECT rolname, coalesce(rolvaliduntil < now(), true) AS expired,
                        (SELECT string_agg(b.rolname, ',') FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid WHERE m.member = r.oid) AS member_of
                 FROM pg_roles r WHERE rolname LIKE 'proctor\\_%'",
                &[],
            )
            .await
            .map_err(sql_err(&target.name, "list proctor roles"))?;
        // The listing's connection goes back before each drop takes one of its own.
        drop(client);
        let mut dropped = Vec::new();
        for row in rows {
            let name: String = row.get(0);
            let expired: bool = row.get(1);
            let member_of: Option<String> = row.get(2);
            // Owed drops are retried on their own back-off (and recorded there).
            if live.contains(&name) || !(everything || expired) || self.is_pending(&name) {
                continue;
            }
            let member = member_of
                .as_deref()
                .and_then(|m| m.split(',').next())
                .unwrap_or("postgres")
                .to_string();
            match self.revoke(target, &name, &member).await {
                Ok(detail) => dropped.push(Retry::Dropped { role: name, detail }),
                Err(e) => {
                    tracing::warn!(error = %e, role = %proctor_gate::inert::Line(&name), "could not reap a leftover role");
                    // Now owed: retried on its back-off.
                    dropped.push(Retry::Failed {
                        role: name,
                        attempts: 1,
                        error: e.to_string(),
                        next_in: retry_delay(1),
                    });
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

/// Wait after `attempts` failures: 2 s, 4 s, 8 s ... up to 5 minutes.
fn retry_delay(attempts: u32) -> Duration {
    let doubled = RETRY_FIRST.saturating_mul(1u32 << attempts.saturating_sub(1).min(16));
    doubled.min(RETRY_MAX)
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

    #[test]
    fn retries_back_off_to_a_ceiling() {
        assert_eq!(retry_delay(1), Duration::from_secs(2));
        assert_eq!(retry_delay(2), Duration::from_secs(4));
        assert_eq!(retry_delay(5), Duration::from_secs(32));
        assert_eq!(retry_delay(9), RETRY_MAX);
        assert_eq!(retry_delay(u32::MAX), RETRY_MAX);
    }
}
