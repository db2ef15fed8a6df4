//! Shared fixtures for the end-to-end PostgreSQL tests: a real `proctor serve` process with its
//! real recorder and the shipped policies, a real PostgreSQL it issues just-in-time roles on, the
//! real clients (psql, pgbench, tokio-postgres) as agents, and the auditor CLI to check what was
//! recorded. Every environment lives in its own temporary directory on random ports.

#![allow(dead_code)]

#[path = "../e2e_common/mod.rs"]
mod e2e_common;
pub use e2e_common::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use proctor_harness::{ChildGuard, LocalPostgres, PostgresOptions, free_port};
use serde_json::Value;

pub const T: Duration = Duration::from_secs(30);

/// Elevated on `appdb` (the shipped hold rules apply).
pub const AGENT: &str = "e2e-agent";
pub const SECRET: &str = "secret-of-the-e2e-agent";
/// Routine on `appdb` (pgbench: DDL, COPY and TRUNCATE are not held).
pub const BENCH: &str = "bench-agent";
pub const BENCH_SECRET: &str = "secret-of-the-bench-agent";
/// Known, but granted nothing on `appdb`.
pub const STRANGER: &str = "stranger-agent";
pub const STRANGER_SECRET: &str = "secret-of-the-stranger";
pub const TARGET: &str = "appdb";

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// What a test may change in the generated configuration.
pub struct Options {
    pub approval_timeout: &'static str,
    /// The target's `max_connections`.
    pub max_connections: u32,
    /// Serve TLS on the PostgreSQL listener (certificate for `localhost` and 127.0.0.1).
    pub tls: bool,
    /// Extra `postgresql.conf` lines for the target.
    pub target_conf: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            approval_timeout: "2m",
            max_connections: 100,
            tls: false,
            target_conf: Vec::new(),
        }
    }
}

/// One proctor serving PostgreSQL in front of one real PostgreSQL.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub config: PathBuf,
    pub port: u16,
    pub pg: LocalPostgres,
    /// The CA that signed the listener's certificate (when `tls`).
    pub ca_pem: PathBuf,
    pub log: PathBuf,
    proctor: Option<ChildGuard>,
}

/// A self-signed CA and a server certificate it issued for `names`, as PEM files in `dir`.
fn write_tls(dir: &Path, names: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "proctor e2e test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(params, ca_key).expect("CA");
    let key = rcgen::KeyPair::generate().expect("server key");
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("server params");
    let cert = params.signed_by(&key, &ca).expect("server certificate");
    let (ca_path, cert_path, key_path) = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&ca_path, ca.pem()).expect("write CA");
    std::fs::write(&cert_path, cert.pem()).expect("write certificate");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    (ca_path, cert_path, key_path)
}

impl Env {
    pub fn start() -> Env {
        Env::start_with(Options::default())
    }

    pub fn start_with(opts: Options) -> Env {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let pg = LocalPostgres::start(PostgresOptions {
            max_connections: opts.max_connections,
            extra_conf: opts.target_conf.clone(),
            ..PostgresOptions::default()
        })
        .expect("PostgreSQL starts");
        pg.psql("postgres", "CREATE DATABASE app")
            .expect("create database");
        pg.psql(
            "app",
            "CREATE ROLE app_write NOLOGIN;
             CREATE TABLE t (id int PRIMARY KEY, v text);
             INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 5) g;
             CREATE TABLE blobs (id int PRIMARY KEY, n int, b bytea);
             GRANT USAGE, CREATE ON SCHEMA public TO app_write;
             GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public TO app_write;",
        )
        .expect("prepare the database");
        let dir = tempfile::Builder::new()
            .prefix("proctor-pg-e2e-")
            .tempdir()
            .expect("tempdir");
        let data = dir.path().join("data");
        let (ca_pem, cert, key) = write_tls(dir.path(), &["localhost", "127.0.0.1"]);
        let tls = if opts.tls {
            format!(
                "[postgres]\ntls_cert = {}\ntls_key = {}\n",
                toml_str(&cert.to_string_lossy()),
                toml_str(&key.to_string_lossy())
            )
        } else {
            // Plaintext agents are refused by default; these tests speak plain TCP on purpose.
            "[postgres]\nrequire_tls = false\n".to_string()
        };
        let port = free_port().expect("port");
        let scram = |s: &str| toml_str(&postgres_protocol::password::scram_sha_256(s.as_bytes()));
        let cfg = format!(
            r#"data_dir = {data}
policies = [{policies}]

[listen]
postgres = "127.0.0.1:{port}"

{tls}
[approvals]
timeout = "{timeout}"

[[agents]]
name = "{AGENT}"
postgres_scram = {scram_agent}

[[agents]]
name = "{BENCH}"
postgres_scram = {scram_bench}

[[agents]]
name = "{STRANGER}"
postgres_scram = {scram_stranger}

[[targets]]
name = "{TARGET}"
kind = "postgres"
host = "127.0.0.1"
port = {pg_port}
dbname = "app"
admin_dsn = {admin}

[[grants]]
name = "e2e-appdb"
agent = "{AGENT}"
target = "{TARGET}"
privilege = "elevated"
role = "app_write"
connection_limit = 300

[[grants]]
name = "bench-appdb"
agent = "{BENCH}"
target = "{TARGET}"
privilege = "routine"
role = "app_write"
connection_limit = 300
copy_record_limit = 1000
"#,
            data = toml_str(&data.to_string_lossy()),
            policies = toml_str(
                &Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("policies")
                    .to_string_lossy()
            ),
            timeout = opts.approval_timeout,
            scram_agent = scram(SECRET),
            scram_bench = scram(BENCH_SECRET),
            scram_stranger = scram(STRANGER_SECRET),
            pg_port = pg.port,
            admin = toml_str(&pg.admin_dsn("app")),
        );
        let config = dir.path().join("proctor.toml");
        std::fs::write(&config, cfg).expect("config");
        let log = dir.path().join("proctor.log");
        let mut env = Env {
            data,
            config,
            port,
            pg,
            ca_pem,
            log,
            proctor: None,
            dir,
        };
        env.start_proctor();
        env
    }

    pub fn start_proctor(&mut self) {
        self.proctor = Some(start_serve(&self.config, &self.log, self.port));
    }

    pub fn proctor_pid(&self) -> u32 {
        self.proctor
            .as_ref()
            .and_then(ChildGuard::pid)
            .expect("proctor runs")
    }

    /// Stops proctor with SIGTERM (open sessions are sealed `interrupted`).
    pub fn stop_proctor(&mut self) {
        if let Some(mut p) = self.proctor.take() {
            p.stop(Duration::from_secs(20));
        }
    }

    /// Kills proctor with SIGKILL (a crash: nothing is sealed, roles are left behind).
    pub fn crash_proctor(&mut self) {
        if let Some(mut p) = self.proctor.take() {
            p.kill();
        }
    }

    pub fn proctor_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// libpq connection string for an agent over plain TCP.
    pub fn conninfo(&self, agent: &str, secret: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={agent} password={secret} dbname={TARGET} sslmode=disable connect_timeout=10",
            self.port
        )
    }

    /// `psql` as an agent: `-X -v ON_ERROR_STOP=1` then `args`; stdout unaligned, tuples only.
    pub fn psql_cmd(&self, conninfo: &str, args: &[&str]) -> Command {
        let mut c = Command::new("psql");
        c.arg(conninfo)
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Runs psql as the elevated agent to completion (bounded by `T`).
    pub fn psql(&self, args: &[&str]) -> Output {
        let child = self
            .psql_cmd(&self.conninfo(AGENT, SECRET), args)
            .spawn()
            .expect("psql runs (apt-get install postgresql-client)");
        wait_output(child, T)
    }

    /// The proctor CLI against this store.
    pub fn store(&self) -> StoreCli<'_> {
        StoreCli { data: &self.data }
    }

    /// Ids of the sessions of `agent` that are still open.
    pub fn live_sessions(&self, agent: &str) -> Vec<String> {
        self.store()
            .sessions()
            .into_iter()
            .filter(|s| s["sealed"] != Value::Bool(true) && s["agent"] == agent)
            .filter_map(|s| s["id"].as_str().map(String::from))
            .collect()
    }

    /// The one live session of `agent` not in `known` (waits for it to appear).
    pub fn new_live_session(&self, agent: &str, known: &[String]) -> String {
        let mut id = None;
        let ok = eventually(T, || {
            id = self
                .live_sessions(agent)
                .into_iter()
                .find(|s| !known.contains(s));
            id.is_some()
        });
        assert!(ok, "no new live session of {agent}");
        id.expect("id")
    }

    /// `proctor export SESSION --format jsonl`, one value per record.
    pub fn export(&self, session: &str) -> Vec<Value> {
        let out = self.store().ok(&["export", session, "--format", "jsonl"]);
        out.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }

    /// `proctor verify SESSION` must pass.
    pub fn verify_session(&self, session: &str) {
        let out = self.store().run(&["verify", session]);
        assert!(
            verified(&out),
            "verify {session} failed: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }

    /// `proctor verify` over the whole store must pass.
    pub fn verify(&self) {
        let out = self.store().run(&["verify"]);
        assert!(
            verified(&out),
            "verify failed: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }

    /// Pending approvals as the CLI lists them.
    pub fn approvals(&self) -> Vec<Value> {
        match self.store().json(&["approvals", "list", "--json"]) {
            Value::Array(v) => v,
            other => panic!("approvals list: {other}"),
        }
    }

    /// Waits for a pending approval whose statement contains `needle`.
    pub fn wait_approval(&self, needle: &str) -> Value {
        let mut found = None;
        assert!(
            eventually(T, || {
                found = self
                    .approvals()
                    .into_iter()
                    .find(|a| a.to_string().contains(needle));
                found.is_some()
            }),
            "nothing containing {needle:?} was held"
        );
        found.expect("approval")
    }

    /// `proctor_` roles on the target, as the superuser sees them.
    pub fn proctor_roles(&self) -> Vec<String> {
        self.pg
            .psql(
                "app",
                "SELECT rolname FROM pg_roles WHERE rolname LIKE 'proctor\\_%' ORDER BY 1",
            )
            .expect("list roles")
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop_proctor();
    }
}

/// Records of `kind` in an export.
pub fn of_kind<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["kind"] == kind).collect()
}

/// The statement records whose text contains `needle`, each with its result (by statement id).
pub fn statement_with_result<'a>(
    records: &'a [Value],
    needle: &str,
) -> Option<(&'a Value, Option<&'a Value>)> {
    let s = records.iter().find(|r| {
        r["kind"] == "statement" && r["text"].as_str().is_some_and(|t| t.contains(needle))
    })?;
    let id = s["statement_id"].clone();
    let result = records
        .iter()
        .find(|r| r["kind"] == "result" && r["statement_id"] == id);
    Some((s, result))
}

/// Resident set size of a process in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> u64 {
    proctor_harness::proc_status_kib(pid, "VmRSS")
}
