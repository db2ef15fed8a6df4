//! `proctor archive`, `proctor purge`, `proctor hold`: retention of recordings. Through the
//! running proctor when there is one, else on the stopped store directly.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, anyhow};
use serde_json::{Value, json};

use super::{StoreArgs, is_running};
use crate::config::RetentionSettings;
use crate::control::{self, Request};
use crate::recorder::{Store, WriterOptions};
use crate::retention;

#[derive(clap::Args, Debug)]
pub struct ArchiveArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Archive sessions that ended longer ago than this (`90days`); by default those past
    /// their online retention.
    #[arg(long)]
    pub older_than: Option<String>,
    /// Archive directory (bundles and manifests are written once, never overwritten).
    #[arg(long)]
    pub to: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct PurgeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Purge every session past its retention and not under legal hold.
    #[arg(long, conflicts_with = "session")]
    pub expired: bool,
    /// Purge one session (refused, and recorded, unless it is past its retention).
    pub session: Option<String>,
    #[arg(long = "as")]
    pub by: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct HoldArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    pub session: String,
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Release the hold instead.
    #[arg(long)]
    pub release: bool,
    #[arg(long = "as")]
    pub by: Option<String>,
}

fn who(by: Option<String>) -> String {
    by.or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "operator".into())
}

fn retention_settings(store: &StoreArgs) -> RetentionSettings {
    store
        .config
        .as_ref()
        .and_then(|c| crate::config::Config::load(c).ok())
        .map(|c| c.retention)
        .unwrap_or_default()
}

/// Runs `req` through the running proctor, or `offline` on the stopped store.
async fn run_on_store<F, Fut>(store: &StoreArgs, req: Request, offline: F) -> Result<Value>
where
    F: FnOnce(Store, RetentionSettings) -> Fut,
    Fut: std::future::Future<Output = Result<Value>>,
{
    let data = store.data_dir()?;
    if is_running(&data) {
        return control::call(&data, &req).await.map_err(|e| anyhow!(e));
    }
    let settings = retention_settings(store);
    let mut s = Store::open(&data, WriterOptions::default())?;
    s.default_retention = (settings.online, settings.total);
    s.finish_recovery().await?;
    offline(s, settings).await
}

fn parse_duration(s: &Option<String>) -> Result<Option<Duration>> {
    s.as_deref()
        .map(|v| humantime::parse_duration(v).map_err(|e| anyhow!("{v:?}: {e}")))
        .transpose()
}

pub async fn archive(args: ArchiveArgs) -> Result<i32> {
    let older_than = parse_duration(&args.older_than)?;
    let to = std::path::absolute(&args.to)?;
    let req = Request::Archive {
        older_than: args.older_than.clone(),
        to: to.clone(),
    };
    let v = run_on_store(&args.store, req, |store, settings| async move {
        let r = retention::archive(&store, older_than, &to, settings.online).await?;
        store.close();
        Ok(json!(r))
    })
    .await?;
    let archived = v["archived"].as_array().map_or(0, |a| a.len());
    println!("archived {archived} session(s)");
    if let Some(m) = v["manifest"].as_str() {
        println!("manifest: {m}");
    }
    for s in v["skipped"].as_array().into_iter().flatten() {
        println!(
            "skipped {}: {}",
            s[0].as_str().unwrap_or(""),
            s[1].as_str().unwrap_or("")
        );
    }
    Ok(0)
}

pub async fn purge(args: PurgeArgs) -> Result<i32> {
    if !args.expired && args.session.is_none() {
        anyhow::bail!("say what to purge: --expired, or a session id");
    }
    let by = who(args.by);
    let req = Request::Purge {
        session: args.session.clone(),
        by: by.clone(),
    };
    let session = args.session.clone();
    let v = run_on_store(&args.store, req, |store, settings| async move {
        let r = retention::purge(&store, session.as_deref(), settings.total, &by).await?;
        store.close();
        Ok(json!(r))
    })
    .await?;
    for p in v["purged"].as_array().into_iter().flatten() {
        println!("purged {}", p.as_str().unwrap_or(""));
    }
    let refused: Vec<&Value> = v["refused"].as_array().into_iter().flatten().collect();
    if args.session.is_some() {
        for r in &refused {
            println!(
                "refused {}: {}",
                r[0].as_str().unwrap_or(""),
                r[1].as_str().unwrap_or("")
            );
        }
        return Ok(if refused.is_empty() { 0 } else { 1 });
    }
    println!(
        "{} kept (not expired, under legal hold, or open)",
        refused.len()
    );
    Ok(0)
}

pub async fn hold(args: HoldArgs) -> Result<i32> {
    let by = who(args.by);
    let req = Request::LegalHold {
        session: args.session.clone(),
        reason: args.reason.clone(),
        release: args.release,
        by: by.clone(),
    };
    let (session, reason, release) = (args.session.clone(), args.reason.clone(), args.release);
    let v = run_on_store(&args.store, req, |store, _| async move {
        let id = retention::legal_hold(&store, &session, &reason, release, &by).await?;
        store.close();
        Ok(json!({ "session": id }))
    })
    .await?;
    println!(
        "{} {}",
        if args.release {
            "released the legal hold on"
        } else {
            "legal hold placed on"
        },
        v["session"].as_str().unwrap_or("")
    );
    Ok(0)
}
