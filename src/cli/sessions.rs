//! `proctor sessions list|show`.

use anyhow::{Result, anyhow};
use clap::Subcommand;

use super::{RemoteArgs, StoreArgs, is_running, ts};
use crate::api::client::segment;
use crate::control::{self, Request};
use crate::ops::Filter;
use crate::recorder::index::SessionMeta;
use proctor_gate::inert::line;

#[derive(Subcommand)]
pub enum SessionsCommand {
    /// List sessions, newest first.
    List {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        remote: RemoteArgs,
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        target: Option<String>,
        /// RFC 3339 time, a date, or a duration ago (`2h`).
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        /// routine, elevated or break-glass.
        #[arg(long)]
        privilege: Option<String>,
        /// ssh or postgres.
        #[arg(long)]
        protocol: Option<String>,
        /// completed, killed, interrupted, target_lost, denied.
        #[arg(long)]
        outcome: Option<String>,
        /// Only sessions still open.
        #[arg(long)]
        open: bool,
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Show one session's record (full id or unique prefix).
    Show {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        remote: RemoteArgs,
        session: String,
        #[arg(long)]
        json: bool,
    },
}

/// Loads session metadata through the running proctor or, when stopped, from the index.
pub async fn query_sessions(store: &StoreArgs, filter: Filter) -> Result<Vec<SessionMeta>> {
    let data = store.data_dir()?;
    if is_running(&data) {
        let v = control::call(&data, &Request::SessionsList { filter })
            .await
            .map_err(|e| anyhow!(e))?;
        return Ok(serde_json::from_value(v)?);
    }
    let _lock = crate::recorder::lock_data_dir(&data)?;
    let (index, _) = crate::recorder::recover::index_for_reading(&data)?;
    Ok(crate::service::list_sessions(&index, &filter)?)
}

pub async fn find_session(store: &StoreArgs, id: &str) -> Result<SessionMeta> {
    let data = store.data_dir()?;
    if is_running(&data) {
        let v = control::call(&data, &Request::SessionsShow { id: id.to_string() })
            .await
            .map_err(|e| anyhow!(e))?;
        return Ok(serde_json::from_value(v)?);
    }
    let _lock = crate::recorder::lock_data_dir(&data)?;
    let (index, _) = crate::recorder::recover::index_for_reading(&data)?;
    Ok(crate::service::find_session(&index, id)?)
}

fn parse_time(s: &Option<String>) -> Result<Option<i64>> {
    s.as_deref()
        .map(crate::clock::parse_time)
        .transpose()
        .map_err(|e| anyhow!(e))
}

pub async fn run(cmd: SessionsCommand) -> Result<i32> {
    match cmd {
        SessionsCommand::List {
            store,
            remote,
            agent,
            target,
            since,
            until,
            privilege,
            protocol,
            outcome,
            open,
            limit,
            json,
        } => {
            let sessions = if let Some(c) = remote.client()? {
                // The server parses the times, so `--since 2h` means two hours before its clock.
                let limit = limit
                    .unwrap_or(crate::api::sessions::MAX_LIST_LIMIT)
                    .to_string();
                let open = open.then(|| "true".to_string());
                let params = [
                    ("agent", agent),
                    ("target", target),
                    ("since", since),
                    ("until", until),
                    ("privilege", privilege),
                    ("protocol", protocol),
                    ("outcome", outcome),
                    ("open", open),
                    ("limit", Some(limit)),
                ];
                let query: Vec<String> = params
                    .into_iter()
                    .filter_map(|(k, v)| v.map(|v| format!("{k}={}", segment(&v))))
                    .collect();
                serde_json::from_value(c.get(&format!("/api/sessions?{}", query.join("&"))).await?)?
            } else {
                let filter = Filter {
                    agent,
                    target,
                    since_ns: parse_time(&since)?,
                    until_ns: parse_time(&until)?,
                    privilege,
                    protocol: protocol.map(|p| {
                        if p == "pg" || p == "postgresql" {
                            "postgres".into()
                        } else {
                            p
                        }
                    }),
                    outcome,
                    open,
                    limit,
                };
                query_sessions(&store, filter).await?
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&sessions)?);
                return Ok(0);
            }
            println!(
                "{:<36}  {:<20}  {:<12}  {:<14}  {:<8}  {:<11}  {:<12}  {:>6}  {:>5}  {:>5}",
                "SESSION",
                "STARTED",
                "AGENT",
                "TARGET",
                "PROTO",
                "PRIVILEGE",
                "OUTCOME",
                "EVENTS",
                "HOLDS",
                "DENY"
            );
            for m in sessions {
                println!(
                    "{:<36}  {:<20}  {:<12}  {:<14}  {:<8}  {:<11}  {:<12}  {:>6}  {:>5}  {:>5}",
                    line(&m.id),
                    ts(m.started_ns),
                    line(&m.agent),
                    line(&m.target),
                    line(&m.protocol),
                    line(&m.privilege),
                    line(m.outcome.as_deref().unwrap_or("open")),
                    m.events,
                    m.holds,
                    m.denies
                );
            }
            Ok(0)
        }
        SessionsCommand::Show {
            store,
            remote,
            session,
            json,
        } => {
            let m = match remote.client()? {
                Some(c) => serde_json::from_value(
                    c.get(&format!("/api/sessions/{}", segment(&session)))
                        .await?,
                )?,
                None => find_session(&store, &session).await?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&m)?);
                return Ok(0);
            }
            println!("session      {}", line(&m.id));
            println!("agent        {}", line(&m.agent));
            println!("target       {} ({})", line(&m.target), line(&m.protocol));
            println!("login        {}", line(&m.login));
            println!(
                "privilege    {} (grant {})",
                line(&m.privilege),
                line(&m.grant)
            );
            println!("client       {}", line(&m.client_addr));
            println!("started      {}", crate::clock::format_ns(m.started_ns));
            println!(
                "ended        {}",
                m.ended_ns
                    .map(crate::clock::format_ns)
                    .unwrap_or_else(|| "-".into())
            );
            println!(
                "outcome      {}{}",
                line(m.outcome.as_deref().unwrap_or("open")),
                if m.end_reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", line(&m.end_reason))
                }
            );
            for c in &m.credentials {
                println!(
                    "credential   {} {} valid until {}{}",
                    line(&c.kind),
                    line(&c.name),
                    crate::clock::format_ns(c.valid_before_ns),
                    if c.revoked { ", revoked" } else { "" }
                );
            }
            println!(
                "events       {} ({} bytes): {} statements, {} commands, {} holds, {} denials, {} alerts",
                m.events, m.record_bytes, m.statements, m.commands, m.holds, m.denies, m.alerts
            );
            println!(
                "sealed       {}{}",
                m.sealed,
                m.ledger_index
                    .map(|i| format!(" (ledger leaf {i})"))
                    .unwrap_or_default()
            );
            println!("last hash    {} (seq {})", line(&m.last_hash), m.last_seq);
            Ok(0)
        }
    }
}
