//! `proctor keys`, `reindex`, `policy`: the store's key, its index, and policy files.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Subcommand;

use super::StoreArgs;
use crate::recorder::signing;
use proctor_gate::inert::{line, text};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create the recorder's signing key pair (refuses to overwrite one).
    Init {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print the recorder's public key (for auditors), or the SSH CA line targets trust.
    Show {
        #[command(flatten)]
        store: StoreArgs,
        /// Print the `TrustedUserCAKeys` line of proctor's SSH user CA instead.
        #[arg(long)]
        ssh_ca: bool,
    },
    /// Make an auditor X25519 key pair for sealed fields: FILE (private, 0600) and FILE.pub
    /// (for `[redaction] auditor_key`).
    AuditorInit {
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Load policy files or directories and report errors with file and line.
    Check { paths: Vec<PathBuf> },
    /// Run a case file (action -> expected verdict) against a policy; exit 1 on any failure.
    Test {
        /// Policy directory (or file).
        policy: PathBuf,
        /// TOML file of `[[case]]` tables (see policies/tests/cases.toml).
        cases: PathBuf,
    },
}

pub fn keys(cmd: KeysCommand) -> Result<i32> {
    match cmd {
        KeysCommand::AuditorInit { out } => {
            let public = crate::redact::seal::generate_key_files(&out)?;
            print!("{}", std::fs::read_to_string(&public)?);
            eprintln!(
                "auditor private key written to {} (keep it offline); public key to {} (set [redaction] auditor_key to it)",
                out.display(),
                public.display()
            );
            Ok(0)
        }
        KeysCommand::Init { store } => {
            let data = store.data_dir()?;
            let key = signing::RecorderKey::init(&data)?;
            println!(
                "{}",
                signing::public_key_pem(&key.verifying_key()).trim_end()
            );
            eprintln!(
                "recorder key written to {}",
                signing::private_key_path(&data).display()
            );
            Ok(0)
        }
        KeysCommand::Show { store, ssh_ca } => {
            let data = store.data_dir()?;
            if ssh_ca {
                let ca = crate::credentials::ssh_ca::SshCa::load_or_init(&data)?;
                println!("{}", ca.public_line());
                return Ok(0);
            }
            let path = signing::public_key_path(&data);
            let key = signing::load_public_key(&path)?;
            print!("{}", signing::public_key_pem(&key));
            println!("ed25519 raw (hex): {}", hex::encode(key.as_bytes()));
            println!("key id (sha256):   {}", hex::encode(signing::key_id(&key)));
            Ok(0)
        }
    }
}

pub fn reindex(store: StoreArgs) -> Result<i32> {
    let data = store.data_dir()?;
    if super::is_running(&data) {
        bail!(
            "proctor is running on {}; stop it first (the index is rebuilt at start-up when missing)",
            data.display()
        );
    }
    let report = crate::recorder::recover::reindex(&data)?;
    for n in &report.notes {
        println!("note: {}", line(&n.to_string()));
    }
    println!("reindexed {} records", report.reindexed_records);
    Ok(0)
}

pub fn policy(cmd: PolicyCommand) -> Result<i32> {
    match cmd {
        PolicyCommand::Test { policy, cases } => {
            match crate::policy::cases::run_cli(&[policy], &cases) {
                // Cases and the statements they quote may hold any character.
                Ok((out, ok)) => {
                    print!("{}", text(&out));
                    Ok(if ok { 0 } else { 1 })
                }
                Err(e) => {
                    println!("{}", text(&e.to_string()));
                    Ok(1)
                }
            }
        }
        PolicyCommand::Check { paths } => {
            if paths.is_empty() {
                bail!("name the policy files or directories to check");
            }
            match crate::policy::Policy::load(&paths) {
                Ok(p) => {
                    println!("OK: {} rules in {} files", p.rules.len(), p.files.len());
                    Ok(0)
                }
                Err(e) => {
                    println!("{}", text(&e.to_string()));
                    Ok(1)
                }
            }
        }
    }
}
