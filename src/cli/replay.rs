//! `proctor replay SESSION`: step through a recorded session, or re-run it against a sandbox.

use anyhow::{Result, anyhow};

use proctor_gate::inert::line;

use super::StoreArgs;
use super::sessions::find_session;
use crate::replay::{self, ReplayOptions};

#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    pub session: String,
    /// Playback speed (2 = twice as fast).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Start this far into the session: seconds (`90`) or a duration (`1m30s`).
    #[arg(long)]
    pub from: Option<String>,
    /// Print one step (command or statement) at a time, without timing or keys (for scripts).
    #[arg(long)]
    pub step: bool,
    /// Shorten idle gaps to at most this many seconds.
    #[arg(long, default_value_t = 2.0)]
    pub max_idle: f64,
    /// PostgreSQL: re-run the statements against this sandbox (libpq URI) and compare digests.
    #[arg(long)]
    pub against: Option<String>,
    #[arg(long)]
    pub json: bool,
}

fn parse_offset(s: &str) -> Result<f64> {
    if let Ok(v) = s.parse::<f64>() {
        return Ok(v);
    }
    humantime::parse_duration(s)
        .map(|d| d.as_secs_f64())
        .map_err(|e| anyhow!("--from {s:?}: {e}"))
}

pub async fn run(args: ReplayArgs) -> Result<i32> {
    let data = args.store.data_dir()?;
    let meta = find_session(&args.store, &args.session).await?;
    let records = crate::recorder::reader::read_all(&data, &meta)?;
    let recs = replay::events(records);
    if let Some(url) = &args.against {
        if meta.protocol != "postgres" {
            anyhow::bail!(
                "--against re-runs PostgreSQL sessions; {} is an {} session",
                meta.id,
                meta.protocol
            );
        }
        let checks = replay::against::run(url, &recs)
            .await
            .map_err(|e| anyhow!(e))?;
        let mismatches = checks.iter().filter(|c| c.verdict == "mismatch").count();
        if args.json {
            println!("{}", serde_json::to_string_pretty(&checks)?);
        } else {
            for c in &checks {
                println!(
                    "statement {:>4}  {:<8}  recorded {:<14} {}  replayed {:<14} {}  {}",
                    c.statement_id,
                    c.verdict.to_uppercase(),
                    line(c.recorded_error.as_deref().unwrap_or(&c.recorded_tag)),
                    c.recorded_digest.get(..12).unwrap_or("-"),
                    line(c.replayed_error.as_deref().unwrap_or(&c.replayed_tag)),
                    c.replayed_digest.get(..12).unwrap_or("-"),
                    // The whole statement, on one line: nothing cut off out of sight.
                    line(&c.text)
                );
            }
            println!(
                "{} statements: {} match, {} mismatch, {} skipped (not executed in the recording), {} format differences",
                checks.len(),
                checks.iter().filter(|c| c.verdict == "match").count(),
                mismatches,
                checks.iter().filter(|c| c.verdict == "skipped").count(),
                checks.iter().filter(|c| c.verdict == "format").count()
            );
        }
        return Ok(if mismatches == 0 { 0 } else { 1 });
    }
    let opts = ReplayOptions {
        speed: args.speed,
        from_secs: args
            .from
            .as_deref()
            .map(parse_offset)
            .transpose()?
            .unwrap_or(0.0),
        step: args.step,
        max_idle: args.max_idle.max(0.0),
    };
    if meta.protocol == "postgres" {
        replay::sql::replay(&recs, &opts)?;
    } else {
        replay::terminal::replay(&recs, &opts)?;
    }
    Ok(0)
}
