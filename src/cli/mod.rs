//! The `proctor` command line. Command names and flags are an interface: scripts depend on them.

mod admin;
mod approvals;
// Load generator for benchmarks and the crash tests; not in the release binary.
#[cfg(feature = "bench")]
mod bench;
mod bucket;
mod evidence;
mod ledger;
mod replay;
mod retention;
mod sessions;
mod timestamps;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Parser)]
#[command(
    name = "proctor",
    version,
    about = "A privileged-access bastion for AI agents that records every session as tamper-evident evidence"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Where the store is: `--data DIR`, or the `data_dir` of `--config FILE`, or `$PROCTOR_DATA`.
#[derive(clap::Args, Clone, Debug)]
pub struct StoreArgs {
    /// Data directory of the store.
    #[arg(long, global = true, env = "PROCTOR_DATA")]
    pub data: Option<PathBuf>,
    /// Config file (its data_dir is used when --data is absent).
    #[arg(long, global = true, env = "PROCTOR_CONFIG")]
    pub config: Option<PathBuf>,
}

impl StoreArgs {
    pub fn data_dir(&self) -> Result<PathBuf> {
        if let Some(d) = &self.data {
            return Ok(d.clone());
        }
        if let Some(c) = &self.config {
            return Ok(Config::load(c)?.data_dir);
        }
        bail!("which store? pass --data DIR (or --config FILE, or set PROCTOR_DATA)")
    }
}

/// A remote proctor's HTTP API instead of the local store (approvals, kill, sessions).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct RemoteArgs {
    /// URL of a proctor's HTTP API (`https://bastion:8080`); the local store when absent.
    #[arg(long, global = true, env = "PROCTOR_SERVER")]
    pub server: Option<String>,
    /// File holding the bearer token for --server; its role must allow the command.
    #[arg(long, global = true, env = "PROCTOR_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM CA bundle to trust for an https --server with a private CA (system roots otherwise).
    #[arg(long, global = true, env = "PROCTOR_SERVER_CA")]
    pub server_ca: Option<PathBuf>,
}

impl RemoteArgs {
    /// The API client when --server is given.
    pub fn client(&self) -> Result<Option<crate::api::client::ApiClient>> {
        let Some(server) = &self.server else {
            return Ok(None);
        };
        let Some(token_file) = &self.token_file else {
            bail!("--server needs --token-file FILE (a file holding the API token)");
        };
        Ok(Some(crate::api::client::ApiClient::from_token_file(
            server,
            token_file,
            self.server_ca.as_deref(),
        )?))
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the bastion with a config file.
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run proctor with real local targets (PostgreSQL, and sshd when installed) for trying it out.
    Dev(crate::dev::DevArgs),
    /// Check recordings: chains, checkpoints, seals, the ledger and its signed tree heads.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        /// Verify one session (full id or unique prefix); all sessions when absent.
        session: Option<String>,
        /// The recorder's public key to verify against (PEM or hex); pin it out of band.
        #[arg(long)]
        pubkey: Option<PathBuf>,
        /// Verify an exported bundle offline instead of a store.
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// Verify an archive directory (manifests and bundles); with a store (--data), also
        /// that every session its ledger says was archived there is.
        #[arg(long)]
        archive: Option<PathBuf>,
        /// A tree head saved earlier (`proctor ledger head`, or any bundle): fail when the
        /// store's ledger is not an extension of it (rolled back or forked).
        #[arg(long)]
        known_head: Option<PathBuf>,
        /// A trusted TSA certificate (PEM: the TSA's CA, or its own certificate); repeatable.
        /// Checks the RFC 3161 timestamp tokens of the tree heads and names the heads without.
        #[arg(long = "tsa-cert")]
        tsa_cert: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// The store's Merkle ledger: its current signed tree head, and consistency proofs.
    Ledger {
        #[command(subcommand)]
        command: ledger::LedgerCommand,
    },
    /// Export a session: jsonl (every record), asciicast (terminal player), bundle (evidence).
    Export {
        #[command(flatten)]
        store: StoreArgs,
        session: String,
        #[arg(long, default_value = "jsonl")]
        format: String,
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        /// Open sealed fields (jsonl only) with the auditor private key given by --key; the
        /// reveal is recorded in the store.
        #[arg(long, requires = "key")]
        reveal: bool,
        /// Auditor private key file (`proctor keys auditor-init`).
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Step through a recorded session, or re-run a PostgreSQL one against a sandbox.
    Replay(replay::ReplayArgs),
    /// Archive sealed sessions past their online retention into self-verifying bundles.
    Archive(retention::ArchiveArgs),
    /// Delete sessions past their retention (recorded in the ledger); nothing else deletes.
    Purge(retention::PurgeArgs),
    /// Place (or release) a legal hold on a session: it never expires while held.
    Hold(retention::HoldArgs),
    /// Search and show recorded sessions.
    Sessions {
        #[command(subcommand)]
        command: sessions::SessionsCommand,
    },
    /// The recorder's key pair and the SSH user CA.
    Keys {
        #[command(subcommand)]
        command: admin::KeysCommand,
    },
    /// Rebuild the index from the log.
    Reindex {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Held actions waiting for a person.
    Approvals {
        #[command(subcommand)]
        command: approvals::ApprovalsCommand,
    },
    /// End a live session now.
    Kill {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        remote: RemoteArgs,
        session: String,
        #[arg(long)]
        reason: String,
    },
    /// Make a SCRAM-SHA-256 verifier for an agent's PostgreSQL secret (read from stdin, or random).
    AgentSecret {
        /// Print a new random secret too, instead of reading one from stdin.
        #[arg(long)]
        generate: bool,
    },
    /// Measure the recorder: durable events per second (also the crash tests' load).
    #[cfg(feature = "bench")]
    #[command(hide = true)]
    BenchRecorder(bench::BenchArgs),
    /// Verify the evidence shipped to an object-store bucket, with only the public key.
    VerifyBucket(bucket::BucketArgs),
    /// Check and test policy files.
    Policy {
        #[command(subcommand)]
        command: admin::PolicyCommand,
    },
}

pub fn is_running(data: &Path) -> bool {
    crate::recorder::is_locked(data) && crate::control::socket_path(data).exists()
}

pub async fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Serve { config } => {
            crate::serve::run(config).await?;
            Ok(0)
        }
        Command::Dev(args) => {
            crate::dev::run(args).await?;
            Ok(0)
        }
        Command::Verify {
            store,
            session,
            pubkey,
            bundle,
            archive,
            known_head,
            tsa_cert,
            json,
        } => match archive {
            Some(dir) => evidence::verify_archive(&dir, &store, pubkey.as_deref(), json),
            None => {
                let opts = evidence::VerifyArgs {
                    session,
                    pubkey,
                    bundle,
                    known_head,
                    tsa_certs: tsa_cert,
                    json,
                };
                evidence::verify(store, opts).await
            }
        },
        Command::Ledger { command } => ledger::run(command),
        Command::Export {
            store,
            session,
            format,
            output,
            reveal,
            key,
        } => match reveal {
            true => evidence::export_reveal(store, &session, &format, output, key).await,
            false => evidence::export(store, &session, &format, output).await,
        },
        Command::Sessions { command } => sessions::run(command).await,
        Command::Replay(args) => replay::run(args).await,
        Command::Archive(args) => retention::archive(args).await,
        Command::Purge(args) => retention::purge(args).await,
        Command::Hold(args) => retention::hold(args).await,
        Command::Keys { command } => admin::keys(command),
        Command::Reindex { store } => admin::reindex(store),
        Command::Approvals { command } => approvals::run(command).await,
        Command::Kill {
            store,
            remote,
            session,
            reason,
        } => approvals::kill(store, remote, &session, &reason).await,
        Command::AgentSecret { generate } => {
            let secret = if generate {
                let s = hex::encode(rand::random::<[u8; 24]>());
                println!("secret:   {s}");
                s
            } else {
                let mut s = String::new();
                std::io::stdin()
                    .read_line(&mut s)
                    .context("reading the secret from stdin")?;
                s.trim_end_matches(['\n', '\r']).to_string()
            };
            if secret.is_empty() {
                bail!("empty secret");
            }
            println!(
                "verifier: {}",
                postgres_protocol::password::scram_sha_256(secret.as_bytes())
            );
            Ok(0)
        }
        Command::Policy { command } => admin::policy(command),
        Command::VerifyBucket(args) => bucket::verify(args).await,
        #[cfg(feature = "bench")]
        Command::BenchRecorder(args) => bench::run(args).await,
    }
}

/// Formats nanoseconds as a short local-independent timestamp for tables.
pub fn ts(ns: i64) -> String {
    crate::clock::format_ns_short(ns)
}
