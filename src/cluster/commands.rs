//! Commands between nodes: a node that is asked to kill a session or decide a hold owned by
//! another node inserts a command addressed to that node (and `NOTIFY`s it in the same
//! transaction), then waits, bounded, for the owner's answer. The owner claims each command
//! exactly once (`done_at` set before acting), applies it through the same code as a local
//! request, and writes the result.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Cluster, ClusterError};
use crate::service::{Actor, Command, Service, ServiceError};

/// How long the node that took the request waits for the owner's answer.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// Commands older than this when claimed are not applied (their issuer stopped waiting).
pub const STALE_AFTER_SECS: f64 = 30.0;

/// Who asked: the identity the issuing node authenticated, and the label they typed (if any).
#[derive(Debug, Clone)]
pub struct Issuer {
    pub identity: String,
    pub label: Option<String>,
}

pub fn error_json(kind: &str, message: &str) -> String {
    json!({ "error": message, "kind": kind }).to_string()
}

/// A claimed command.
struct Claimed {
    id: i64,
    kind: String,
    subject: String,
    issued_by: String,
    label: Option<String>,
    from: String,
    reason: String,
    stale: bool,
}

impl Cluster {
    /// Sends a command to `node` and waits for its answer (the owner's result JSON).
    pub async fn relay(
        &self,
        node: &str,
        kind: Command,
        subject: &str,
        who: &Issuer,
        reason: &str,
    ) -> Result<Value, ClusterError> {
        let (n, k, s, by, label, from, reason) = (
            node.to_string(),
            kind.as_str(),
            subject.to_string(),
            who.identity.clone(),
            who.label.clone(),
            self.node.clone(),
            reason.to_string(),
        );
        let notify = self.config.notify;
        let id: i64 = self
            .db
            .run(move |c| {
                Box::pin(async move {
                    let tx = c.transaction().await?;
                    let row = tx
                        .query_one(
                            "INSERT INTO proctor_commands (node, kind, subject, issued_by, label, issued_from, reason)
                             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                            &[&n, &k, &s, &by, &label, &from, &reason],
                        )
                        .await?;
                    let id: i64 = row.try_get(0)?;
                    if notify {
                        tx.execute("SELECT pg_notify('proctor_cmd_' || $1, $2)", &[&n, &id.to_string()])
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(id)
                })
            })
            .await?;
        tracing::info!(command = id, node = %node, kind = kind.as_str(), "command sent to the owning node");
        let deadline = Instant::now() + ANSWER_WITHIN;
        // Once sent, a lost control plane must not read as "nothing happened".
        let lost = |e: ClusterError| {
            ClusterError::NoAnswer(format!(
                "command {id} was sent to node {node} but its answer could not be read ({e}); node {node} may still apply it within {STALE_AFTER_SECS}s, and its record says whether it did"
            ))
        };
        loop {
            if let Some(answer) = self.answer(id).await.map_err(lost)? {
                return answer;
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Withdrawn unless the owner has claimed it: a late command must not act unseen.
        let withdrawn = self
            .db
            .run(move |c| {
                Box::pin(async move {
                    c.execute(
                        "UPDATE proctor_commands SET done_at = now(), ok = false, result = $2
                         WHERE id = $1 AND done_at IS NULL",
                        &[
                            &id,
                            &error_json(
                                "no_answer",
                                "withdrawn: the owning node did not take it in time",
                            ),
                        ],
                    )
                    .await
                })
            })
            .await
            .map_err(lost)?;
        if withdrawn == 1 {
            return Err(ClusterError::NoAnswer(format!(
                "node {node} did not take the command within {}s (is it running?); the command was withdrawn",
                ANSWER_WITHIN.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        match self.answer(id).await.map_err(lost)? {
            Some(a) => a,
            None => Err(ClusterError::NoAnswer(format!(
                "node {node} took the command but has not answered; its record says what it did"
            ))),
        }
    }

    async fn answer(&self, id: i64) -> Result<Option<Result<Value, ClusterError>>, ClusterError> {
        let row = self
            .db
            .run(move |c| {
                Box::pin(async move {
                    c.query_opt(
                        "SELECT ok, result FROM proctor_commands WHERE id = $1 AND result IS NOT NULL",
                        &[&id],
                    )
                    .await
                })
            })
            .await?;
        let Some(row) = row else { return Ok(None) };
        let ok: bool = row
            .try_get::<_, Option<bool>>(0)
            .ok()
            .flatten()
            .unwrap_or(false);
        let text: String = row
            .try_get::<_, Option<String>>(1)
            .ok()
            .flatten()
            .unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if ok {
            return Ok(Some(Ok(value)));
        }
        let field = |k: &str| {
            value
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Ok(Some(Err(ClusterError::Refused {
            kind: field("kind"),
            message: field("error"),
        })))
    }

    /// Claims the oldest undone command addressed to this node, if any.
    async fn claim(&self) -> Result<Option<Claimed>, ClusterError> {
        let node = self.node.clone();
        let row = self
            .db
            .run(move |c| {
                Box::pin(async move {
                    c.query_opt(
                        "UPDATE proctor_commands SET done_at = now() WHERE id = (
                             SELECT id FROM proctor_commands WHERE node = $1 AND done_at IS NULL
                             ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
                         RETURNING id, kind, subject, issued_by, label, issued_from, reason,
                                   extract(epoch FROM now() - created)::float8",
                        &[&node],
                    )
                    .await
                })
            })
            .await?;
        let Some(r) = row else { return Ok(None) };
        let get = |i: usize| r.try_get::<_, String>(i).unwrap_or_default();
        Ok(Some(Claimed {
            id: r
                .try_get(0)
                .map_err(|e| ClusterError::Query(e.to_string()))?,
            kind: get(1),
            subject: get(2),
            issued_by: get(3),
            label: r.try_get::<_, Option<String>>(4).ok().flatten(),
            from: get(5),
            reason: get(6),
            stale: r.try_get::<_, f64>(7).unwrap_or(f64::MAX) > STALE_AFTER_SECS,
        }))
    }

    async fn finish(&self, id: i64, result: Result<Value, String>) -> Result<(), ClusterError> {
        let (ok, text) = match result {
            Ok(v) => (true, v.to_string()),
            Err(e) => (false, e),
        };
        self.db
            .run(move |c| {
                Box::pin(async move {
                    c.execute(
                        "UPDATE proctor_commands SET ok = $2, result = $3 WHERE id = $1",
                        &[&id, &ok, &text],
                    )
                    .await
                })
            })
            .await
            .map(|_| ())
    }

    /// Applies every command waiting for this node.
    pub async fn drain(&self, service: &Service) -> Result<(), ClusterError> {
        while let Some(c) = self.claim().await? {
            let result = if c.stale {
                Err(error_json("no_answer", "expired before this node took it"))
            } else {
                apply(service, &c).await
            };
            if let Err(e) = self.finish(c.id, result).await {
                tracing::error!(command = c.id, error = %e, "command applied but its result could not be written");
            }
        }
        Ok(())
    }
}

/// Applies one command through the service, as this node's own request would be, naming the
/// issuer and its node.
async fn apply(service: &Service, c: &Claimed) -> Result<Value, String> {
    let who = Actor::Relayed {
        identity: c.issued_by.clone(),
        label: c.label.clone(),
        node: c.from.clone(),
    };
    tracing::info!(command = c.id, kind = %c.kind, from = %proctor_gate::inert::Line(&c.from), by = %proctor_gate::inert::Line(&c.issued_by), "applying a command from another node");
    let refused = |e: ServiceError| error_json(e.kind(), &e.to_string());
    let encoded = |v: Result<Value, serde_json::Error>| {
        v.map_err(|e| error_json("failed", &format!("the answer could not be encoded: {e}")))
    };
    match Command::parse(&c.kind) {
        Some(Command::Kill) => {
            let k = service
                .kill_here(&who, &c.subject, &c.reason)
                .await
                .map_err(refused)?;
            encoded(serde_json::to_value(k))
        }
        Some(Command::Approve) => {
            let d = service
                .approve_here(&who, &c.subject, &c.reason)
                .map_err(refused)?;
            encoded(serde_json::to_value(d))
        }
        Some(Command::Deny) => {
            let d = service
                .deny_here(&who, &c.subject, &c.reason)
                .map_err(refused)?;
            encoded(serde_json::to_value(d))
        }
        None => Err(error_json(
            "bad_request",
            &format!("unknown command kind {:?}", c.kind),
        )),
    }
}
