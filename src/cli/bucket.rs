//! `proctor verify-bucket`: the evidence in an object-store bucket, checked with only the
//! recorder's public key (FORMAT.md, "Object storage").

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use clap::Args;

#[derive(Debug, Args)]
pub struct BucketArgs {
    /// The S3 endpoint (`http(s)://host:port`).
    #[arg(long)]
    pub endpoint: String,
    #[arg(long)]
    pub bucket: String,
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// The recorder's public key (PEM or hex), pinned out of band. Required: the bucket's
    /// bundles carry a key, but a key read from the evidence proves nothing about origin.
    #[arg(long)]
    pub pubkey: PathBuf,
    /// Also keep the downloaded objects under this directory (by object name).
    #[arg(long)]
    pub download_to: Option<PathBuf>,
    /// Credentials that can list and read the bucket (reading is all this does).
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    pub access_key_id: String,
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub secret_access_key: String,
    #[arg(long)]
    pub json: bool,
}

pub async fn verify(a: BucketArgs) -> Result<i32> {
    let key = crate::recorder::signing::load_public_key(&a.pubkey)
        .map_err(|e| anyhow!("{}: {e}", a.pubkey.display()))?;
    let s3 = crate::evidence_store::client::S3::new(
        &a.endpoint,
        &a.region,
        &a.access_key_id,
        &a.secret_access_key,
        &a.bucket,
    );
    let objects = crate::evidence_store::fetch::download(&s3, a.download_to.as_deref())
        .await
        .map_err(|e| anyhow!(e))?;
    let report = crate::evidence_store::fetch::check(&objects, &key);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "bucket {}: {} objects, {} ledger leaves, {} tree heads (newest covers {}), {} sealed sessions, {} attestations (not checked here)",
            a.bucket,
            report.objects,
            report.leaves,
            report.heads,
            report.tree_size,
            report.sessions,
            report.attestations
        );
        for p in &report.problems {
            // Object names come from the bucket: shown escaped, never obeyed by a terminal.
            println!("PROBLEM: {}", p.escape_debug());
        }
        println!(
            "{}",
            if report.problems.is_empty() {
                "OK"
            } else {
                "FAILED"
            }
        );
    }
    Ok(if report.problems.is_empty() { 0 } else { 1 })
}
