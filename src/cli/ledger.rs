//! `proctor ledger head`: the store's current signed tree head, to save off the host and give
//! back to `proctor verify --known-head` later; with `--from SIZE`, the consistency proof from
//! an earlier head of that size (FORMAT.md, "Known heads").

use anyhow::{Result, anyhow};
use clap::Subcommand;

use super::StoreArgs;
use crate::export::bundle::TreeHeadJson;
use crate::recorder::consistency;

#[derive(Subcommand)]
pub enum LedgerCommand {
    /// Print the latest signed tree head as JSON (save it; `verify --known-head` checks a
    /// later store against it).
    Head {
        #[command(flatten)]
        store: StoreArgs,
        /// Also print the RFC 6962 consistency proof from the tree of the first SIZE leaves.
        #[arg(long)]
        from: Option<u64>,
        /// JSON only: leave out the text lines on timestamping (stderr); the JSON carries them
        /// as `timestamps` either way.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: LedgerCommand) -> Result<i32> {
    match cmd {
        LedgerCommand::Head { store, from, json } => {
            let data = store.data_dir()?;
            let (leaves, head) = consistency::read_ledger(&data)?;
            let head = head.ok_or_else(|| anyhow!("the ledger has no tree head yet"))?;
            let mut out = serde_json::to_value(TreeHeadJson::from_head(&head))?;
            if let Some(m) = from {
                let n = usize::try_from(head.size)?.min(leaves.len());
                let m_usize = usize::try_from(m)?;
                if m == 0 || m_usize > n {
                    anyhow::bail!("--from must be between 1 and the head's size {n}");
                }
                let proof = consistency::consistency_proof(&leaves[..n], m_usize);
                out["consistency_from"] = m.into();
                out["consistency_proof"] = proof.iter().map(hex::encode).collect();
            }
            // Timestamping lag per TSA: those configured (with --config) and those the store
            // has tokens or a status from.
            let configured: Vec<String> = match &store.config {
                Some(c) => crate::config::Config::load(c)?
                    .ledger
                    .timestamp
                    .tsa
                    .iter()
                    .map(|t| t.url.clone())
                    .collect(),
                None => Vec::new(),
            };
            let lags =
                crate::recorder::timestamp::check::lag(&data, &configured, crate::clock::now_ns())?;
            if !lags.is_empty() {
                out["timestamps"] = serde_json::to_value(&lags)?;
                if !json {
                    eprint!("{}", super::timestamps::lag_text(&lags));
                }
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(0)
        }
    }
}
