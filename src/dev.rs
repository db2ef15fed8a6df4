//! `proctor dev`: proctor with real local targets, for trying it out. It starts a PostgreSQL
//! cluster from `initdb` and, when OpenSSH's server is installed, an `sshd` that trusts proctor's
//! user CA; generates every key, secret and certificate; writes a config; serves; and prints how
//! to connect as the dev agent (the same facts go to `DATA/dev.json` for scripts).

use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use proctor_targets::{LocalPostgres, LocalSshd, PostgresOptions, SshdOptions};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::Config;
use crate::credentials::ssh_ca::SshCa;
use crate::fsutil::write_private;
use sha2::Digest;

pub const DEFAULT_POLICIES: &[(&str, &str)] = &[
    (
        "10-postgres.toml",
        include_str!("../policies/10-postgres.toml"),
    ),
    ("20-ssh.toml", include_str!("../policies/20-ssh.toml")),
];

#[derive(clap::Args, Debug, Clone)]
pub struct DevArgs {
    /// Keep state (recordings, keys, targets) in DIR; a temporary directory otherwise.
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long, default_value = "127.0.0.1:6432")]
    pub postgres_listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:2222")]
    pub ssh_listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub api_listen: SocketAddr,
    /// Do not start an sshd target even when one is installed.
    #[arg(long)]
    pub no_ssh: bool,
}

/// Secrets dev mode keeps between runs with the same data directory.
#[derive(Serialize, Deserialize)]
struct DevState {
    agent_secret: String,
    tokens: std::collections::BTreeMap<String, String>,
}

const AGENT: &str = "dev-agent";

fn load_state(data: &Path) -> Result<DevState> {
    let path = data.join("dev-state.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return Ok(serde_json::from_str(&text)?);
    }
    let mut tokens = std::collections::BTreeMap::new();
    for role in ["operator", "approver", "auditor", "agent"] {
        tokens.insert(
            role.to_string(),
            format!("prt_{role}_{}", hex::encode(rand::random::<[u8; 16]>())),
        );
    }
    let state = DevState {
        agent_secret: hex::encode(rand::random::<[u8; 16]>()),
        tokens,
    };
    write_private(&path, serde_json::to_string_pretty(&state)?.as_bytes())?;
    Ok(state)
}

/// The requested address, or a free loopback port when it is taken.
fn pick(addr: SocketAddr) -> SocketAddr {
    TcpListener::bind(addr)
        .or_else(|_| TcpListener::bind((addr.ip(), 0)))
        .and_then(|l| l.local_addr())
        .unwrap_or(addr)
}

fn ensure_tls(data: &Path) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let dir = data.join("tls");
    let (ca, cert, key) = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    if ca.exists() && cert.exists() && key.exists() {
        return Ok((ca, cert, key));
    }
    std::fs::create_dir_all(&dir)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "proctor dev CA");
    let ca_key = rcgen::KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "proctor dev server");
    let server_key = rcgen::KeyPair::generate()?;
    let server_cert = params.signed_by(&server_key, &issuer)?;
    std::fs::write(&ca, ca_cert.pem())?;
    std::fs::write(&cert, server_cert.pem())?;
    write_private(&key, server_key.serialize_pem().as_bytes())?;
    Ok((ca, cert, key))
}

/// The agent's SSH key pair and a known_hosts file pinning proctor's host key.
fn ensure_agent_ssh(
    data: &Path,
    proctor_host_key: &Path,
    ssh_listen: SocketAddr,
) -> Result<(PathBuf, PathBuf, String)> {
    use russh::keys::ssh_key::{Algorithm, LineEnding, PrivateKey};
    let dir = data.join("agent");
    std::fs::create_dir_all(&dir)?;
    let key_path = dir.join("id_ed25519");
    let key = if key_path.exists() {
        PrivateKey::read_openssh_file(&key_path)?
    } else {
        let mut k = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)?;
        k.set_comment("dev-agent@proctor");
        write_private(&key_path, k.to_openssh(LineEnding::LF)?.as_bytes())?;
        std::fs::write(
            key_path.with_extension("pub"),
            k.public_key().to_openssh()? + "\n",
        )?;
        k
    };
    let host = PrivateKey::read_openssh_file(proctor_host_key)?;
    let known = dir.join("known_hosts");
    let host_line = host.public_key().to_openssh()?;
    let host_line: String = host_line
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    std::fs::write(
        &known,
        format!("[{}]:{} {host_line}\n", ssh_listen.ip(), ssh_listen.port()),
    )?;
    Ok((key_path, known, key.public_key().to_openssh()?))
}

fn ensure_host_key(data: &Path) -> Result<PathBuf> {
    use russh::keys::ssh_key::{Algorithm, LineEnding, PrivateKey};
    let path = data.join("keys").join("ssh_host_ed25519_key");
    if !path.exists() {
        let k = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)?;
        write_private(&path, k.to_openssh(LineEnding::LF)?.as_bytes())?;
    }
    Ok(path)
}

/// Where the PostgreSQL target lives. Inside the data directory when PostgreSQL runs as
/// ourselves; when we are root it runs as `nobody`, who must not reach into the data directory
/// (0700), so it gets a temporary directory of its own, removed when dev mode stops.
fn postgres_dir(data: &Path) -> Option<PathBuf> {
    if proctor_targets::is_root() {
        None
    } else {
        Some(data.join("targets").join("postgres"))
    }
}

/// The local user the dev SSH target logs agents in as: never proctor's own user, so an agent
/// on this host cannot read proctor's data or reach its control socket (and approve itself).
pub const AGENT_LOGIN: &str = "proctor-agent";

/// Creates the unprivileged agent login if it does not exist yet. It is a system account with
/// a home of its own (scp and sftp need somewhere to write) and stays for later runs.
fn ensure_agent_login() -> Result<()> {
    let known = || {
        std::process::Command::new("getent")
            .args(["passwd", AGENT_LOGIN])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if known() {
        return Ok(());
    }
    let shell = if Path::new("/bin/bash").exists() {
        "/bin/bash"
    } else {
        "/bin/sh"
    };
    let out = std::process::Command::new("useradd")
        .args([
            "--system",
            "--create-home",
            "--home-dir",
            "/var/lib/proctor-agent",
            "--shell",
            shell,
            "--comment",
            "proctor dev agent login",
            // No password, but not "locked" either (`!`): sshd refuses locked accounts even
            // for certificate logins.
            "--password",
            "*",
            AGENT_LOGIN,
        ])
        .output()
        .context("running useradd")?;
    // Another dev instance may have created it meanwhile.
    if !known() {
        anyhow::bail!(
            "useradd {AGENT_LOGIN} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Owner-only access to everything under the data directory, including what an earlier run
/// (or an older proctor) left more open. Symlinks are left alone, not followed.
fn tighten(dir: &Path) -> Result<()> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("chmod 0700 {}", dir.display()))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() {
            tighten(&path)?;
        } else if kind.is_file() {
            let mode = entry.metadata()?.permissions().mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o700))?;
            }
        }
    }
    Ok(())
}

fn setup_database(pg: &LocalPostgres) -> Result<()> {
    let exists = pg.psql(
        "postgres",
        "SELECT 1 FROM pg_database WHERE datname = 'app'",
    )?;
    if exists.trim() != "1" {
        pg.psql("postgres", "CREATE DATABASE app")?;
    }
    pg.psql(
        "app",
        r#"
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_read') THEN CREATE ROLE app_read NOLOGIN; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_write') THEN CREATE ROLE app_write NOLOGIN IN ROLE app_read; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_admin') THEN CREATE ROLE app_admin NOLOGIN IN ROLE app_write; END IF;
END $$;
CREATE TABLE IF NOT EXISTS accounts (id serial PRIMARY KEY, owner text NOT NULL, balance numeric(12,2) NOT NULL DEFAULT 0);
INSERT INTO accounts (owner, balance) SELECT 'owner ' || g, g * 100 FROM generate_series(1, 5) g WHERE NOT EXISTS (SELECT 1 FROM accounts);
GRANT USAGE ON SCHEMA public TO app_read;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO app_read;
GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO app_write;
GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO app_read;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO app_write;
GRANT CREATE ON SCHEMA public TO app_admin;
GRANT CREATE, TEMPORARY ON DATABASE app TO app_write;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO app_read;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT INSERT, UPDATE, DELETE ON TABLES TO app_write;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON SEQUENCES TO app_read;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE ON SEQUENCES TO app_write;
"#,
    )?;
    Ok(())
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

pub async fn run(args: DevArgs) -> Result<()> {
    // Everything dev mode writes (config with secrets, dev.json with every token, keys,
    // recordings) is for its own user alone.
    // SAFETY: umask only changes this process's file creation mask.
    unsafe {
        libc::umask(0o077);
    }
    let temp;
    let data = match &args.data {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            std::fs::canonicalize(d)?
        }
        None => {
            temp = tempfile::Builder::new().prefix("proctor-dev-").tempdir()?;
            temp.path().to_path_buf()
        }
    };
    tighten(&data)?;
    let state = load_state(&data)?;
    let policies = data.join("policies");
    if !policies.exists() {
        std::fs::create_dir_all(&policies)?;
        for (name, text) in DEFAULT_POLICIES {
            std::fs::write(policies.join(name), text)?;
        }
    }
    eprintln!("proctor dev: starting a local PostgreSQL...");
    let pg = LocalPostgres::start(PostgresOptions {
        dir: postgres_dir(&data),
        max_connections: 300,
        ..Default::default()
    })
    .context("starting the local PostgreSQL target")?;
    setup_database(&pg).context("preparing the dev database")?;
    let ssh_ca = SshCa::load_or_init(&data)?;
    let sshd = if args.no_ssh {
        None
    } else if !proctor_targets::is_root() {
        // sshd run by us can only log agents in as us, and then the agent could read this
        // data directory and approve its own holds.
        eprintln!(
            "proctor dev: no SSH target: it logs agents in as the separate user {AGENT_LOGIN}, \
             which needs root; PostgreSQL only"
        );
        None
    } else if let Err(e) = ensure_agent_login() {
        eprintln!("proctor dev: no SSH target ({e:#}); PostgreSQL only");
        None
    } else {
        match LocalSshd::start(SshdOptions {
            dir: Some(data.join("targets").join("sshd")),
            trusted_user_ca_keys: vec![ssh_ca.public_line()],
            ..Default::default()
        }) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("proctor dev: no SSH target ({e}); PostgreSQL only");
                None
            }
        }
    };
    let pg_listen = pick(args.postgres_listen);
    let ssh_listen = pick(args.ssh_listen);
    let api_listen = pick(args.api_listen);
    let (ca, cert, key) = ensure_tls(&data)?;
    let host_key = ensure_host_key(&data)?;
    let (agent_key, known_hosts, agent_pub) = ensure_agent_ssh(&data, &host_key, ssh_listen)?;
    let verifier = postgres_protocol::password::scram_sha_256(state.agent_secret.as_bytes());
    let login = AGENT_LOGIN;
    let mut config = format!(
        r#"# Written by `proctor dev`.
data_dir = {data}
policies = [{policies}]

[listen]
postgres = "{pg_listen}"
ssh = "{ssh_listen}"
api = "{api_listen}"

[postgres]
tls_cert = {cert}
tls_key = {key}

[ssh]
host_key = {host_key}

[approvals]
timeout = "10m"

[[agents]]
name = "{AGENT}"
postgres_scram = {verifier}
ssh_keys = [{agent_pub}]

[[targets]]
name = "appdb"
kind = "postgres"
host = "127.0.0.1"
port = {pg_port}
dbname = "app"
admin_dsn = {admin_dsn}

[[grants]]
name = "dev-agent-appdb"
agent = "{AGENT}"
target = "appdb"
privilege = "elevated"
role = "app_admin"
max_session = "8h"
connection_limit = 10
"#,
        data = toml_str(&data.to_string_lossy()),
        policies = toml_str(&policies.to_string_lossy()),
        cert = toml_str(&cert.to_string_lossy()),
        key = toml_str(&key.to_string_lossy()),
        host_key = toml_str(&host_key.to_string_lossy()),
        verifier = toml_str(&verifier),
        agent_pub = toml_str(&agent_pub),
        pg_port = pg.port,
        admin_dsn = toml_str(&pg.admin_dsn("app")),
    );
    if let Some(s) = &sshd {
        config.push_str(&format!(
            r#"
[[targets]]
name = "devbox"
kind = "ssh"
host = "127.0.0.1"
port = {port}
host_keys = [{hk}]

[[grants]]
name = "dev-agent-devbox"
agent = "{AGENT}"
target = "devbox"
privilege = "elevated"
logins = [{login}]
max_session = "8h"
"#,
            port = s.port,
            hk = toml_str(&s.host_key),
            login = toml_str(login),
        ));
    }
    for (role, token) in &state.tokens {
        let hash = hex::encode(sha2::Sha256::digest(token.as_bytes()));
        let agent_line = if role == "agent" {
            format!("agent = \"{AGENT}\"\n")
        } else {
            String::new()
        };
        config.push_str(&format!(
            "\n[[api.tokens]]\nname = \"dev-{role}\"\nrole = \"{role}\"\n{agent_line}sha256 = \"{hash}\"\n"
        ));
    }
    let config_path = data.join("proctor.toml");
    write_private(&config_path, config.as_bytes())?;
    let config = Config::load(&config_path)?;
    let server = crate::serve::start(config).await?;
    let started = server.started.clone();
    let pg_addr = started.postgres.unwrap_or(pg_listen);
    let dsn = format!(
        "postgresql://{AGENT}:{}@{}:{}/appdb?sslmode=verify-full&sslrootcert={}",
        state.agent_secret,
        pg_addr.ip(),
        pg_addr.port(),
        ca.display()
    );
    let ssh_addr = started.ssh.unwrap_or(ssh_listen);
    let ssh_args: Vec<String> = vec![
        "-p".into(),
        ssh_addr.port().to_string(),
        "-i".into(),
        agent_key.display().to_string(),
        "-o".into(),
        "IdentitiesOnly=yes".into(),
        "-o".into(),
        format!("UserKnownHostsFile={}", known_hosts.display()),
        "-o".into(),
        "StrictHostKeyChecking=yes".into(),
        "-l".into(),
        "devbox".into(),
        ssh_addr.ip().to_string(),
    ];
    let api_url = started.api.map(|a| format!("http://{a}"));
    let facts = json!({
        "data_dir": data,
        "config": config_path,
        "agent": AGENT,
        "postgres_dsn": dsn,
        "postgres_listen": pg_addr.to_string(),
        "ssh_args": if sshd.is_some() && started.ssh.is_some() { json!(ssh_args) } else { json!(null) },
        "ssh_listen": started.ssh.map(|a| a.to_string()),
        "api_url": api_url,
        "tokens": state.tokens,
        "recorder_public_key": crate::recorder::signing::public_key_path(&data),
        "ssh_user_ca": ssh_ca.public_line(),
        "targets": {
            "postgres": { "port": pg.port, "admin_dsn": pg.admin_dsn("app"), "dir": pg.data_dir.parent() },
            "sshd": sshd.as_ref().map(|s| json!({ "port": s.port, "host_key": s.host_key })),
        },
    });
    write_private(
        &data.join("dev.json"),
        serde_json::to_string_pretty(&facts)?.as_bytes(),
    )?;
    println!("proctor dev is running. Data: {}", data.display());
    println!();
    println!("  PostgreSQL as the agent:  psql \"{dsn}\"");
    if facts["ssh_args"].is_array() {
        println!(
            "  SSH as the agent:         ssh {} 'uname -a'",
            ssh_args.join(" ")
        );
        if let Ok(line) = std::fs::read_to_string(&known_hosts) {
            println!("  proctor's host key:       {}", line.trim());
        }
    }
    if let Some(u) = &api_url {
        println!("  Web console and API:      {u}/  (tokens in dev.json)");
    }
    println!(
        "  Held actions:             proctor approvals list --data {}",
        data.display()
    );
    println!(
        "  Recorded sessions:        proctor sessions list --data {}",
        data.display()
    );
    println!(
        "  Verify the evidence:      proctor verify --data {}",
        data.display()
    );
    println!();
    println!("Facts for scripts: {}", data.join("dev.json").display());
    if args.data.is_none() {
        println!("(temporary data directory: removed at exit; pass --data DIR to keep it)");
    }
    println!("Ctrl-C stops proctor and the local targets.");
    crate::serve::wait_for_termination().await;
    server.stop().await;
    drop(sshd);
    drop(pg);
    Ok(())
}
