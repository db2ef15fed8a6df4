//! `kill -9` of a running proctor under load from several PostgreSQL and SSH clients, then a
//! restart: every acknowledged statement and command is in the recording, `proctor verify`
//! passes, the interrupted sessions are sealed, and no `proctor_` role outlives its session.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proctor_harness::{
    ChildGuard, LocalPostgres, LocalSshd, PostgresOptions, SshdOptions, free_port, wait_for_port,
};

const AGENT: &str = "loader";
const SECRET: &str = "loader-secret";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_proctor")
}

fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen");
    assert!(ok.success());
}

struct Env {
    _dir: tempfile::TempDir,
    data: PathBuf,
    config: PathBuf,
    pg_port: u16,
    ssh_port: u16,
    agent_key: PathBuf,
    known_hosts: PathBuf,
    pg: LocalPostgres,
    _sshd: LocalSshd,
}

fn setup() -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let pg = LocalPostgres::start(PostgresOptions::default()).expect("postgres");
    pg.psql(
        "postgres",
        "CREATE ROLE app_write NOLOGIN; CREATE TABLE acks (v bigint); GRANT INSERT, SELECT ON acks TO app_write;",
    )
    .expect("schema");
    let ca = proctor::credentials::ssh_ca::SshCa::load_or_init(&data).expect("ca");
    let sshd = LocalSshd::start(SshdOptions {
        trusted_user_ca_keys: vec![ca.public_line()],
        ..Default::default()
    })
    .expect("sshd");
    let host_key = dir.path().join("proctor_host_key");
    keygen(&host_key);
    let agent_key = dir.path().join("agent_key");
    keygen(&agent_key);
    let agent_pub = std::fs::read_to_string(agent_key.with_extension("pub")).expect("pub");
    let host_pub = std::fs::read_to_string(host_key.with_extension("pub")).expect("host pub");
    let pg_port = free_port().expect("port");
    let ssh_port = free_port().expect("port");
    let known_hosts = dir.path().join("known_hosts");
    let host_line: Vec<&str> = host_pub.split_whitespace().take(2).collect();
    std::fs::write(
        &known_hosts,
        format!("[127.0.0.1]:{ssh_port} {}\n", host_line.join(" ")),
    )
    .expect("known_hosts");
    let login = proctor_harness::sshd::current_user();
    let config = dir.path().join("proctor.toml");
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    std::fs::write(
        &config,
        format!(
            r#"
data_dir = "{data}"
policies = ["{policies}"]
[listen]
postgres = "127.0.0.1:{pg_port}"
ssh = "127.0.0.1:{ssh_port}"
[postgres]
require_tls = false
[ssh]
host_key = "{host_key}"
[[agents]]
name = "{AGENT}"
postgres_scram = "{verifier}"
ssh_keys = ["{agent_pub}"]
[[targets]]
name = "db"
kind = "postgres"
host = "127.0.0.1"
port = {target_pg}
dbname = "postgres"
admin_dsn = "{admin}"
[[targets]]
name = "box"
kind = "ssh"
host = "127.0.0.1"
port = {target_ssh}
host_keys = ["{target_hostkey}"]
[[grants]]
name = "pg"
agent = "{AGENT}"
target = "db"
privilege = "routine"
role = "app_write"
connection_limit = 10
[[grants]]
name = "ssh"
agent = "{AGENT}"
target = "box"
privilege = "routine"
logins = ["{login}"]
"#,
            data = data.display(),
            policies = policies.display(),
            host_key = host_key.display(),
            verifier = postgres_protocol::password::scram_sha_256(SECRET.as_bytes()),
            agent_pub = agent_pub.trim(),
            target_pg = pg.port,
            admin = pg.admin_dsn("postgres"),
            target_ssh = sshd.port,
            target_hostkey = sshd.host_key,
        ),
    )
    .expect("config");
    Env {
        data,
        config,
        pg_port,
        ssh_port,
        agent_key,
        known_hosts,
        pg,
        _sshd: sshd,
        _dir: dir,
    }
}

fn start_proctor(env: &Env) -> ChildGuard {
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--config"])
        .arg(&env.config)
        .env("PROCTOR_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = ChildGuard::spawn("proctor", &mut cmd).expect("spawn proctor");
    assert!(
        wait_for_port(env.pg_port, Duration::from_secs(30)),
        "proctor's PostgreSQL listener is up"
    );
    assert!(
        wait_for_port(env.ssh_port, Duration::from_secs(30)),
        "proctor's SSH listener is up"
    );
    child
}

fn proctor_json(env: &Env, args: &[&str]) -> serde_json::Value {
    let out = Command::new(bin())
        .args(args)
        .arg("--data")
        .arg(&env.data)
        .output()
        .expect("proctor cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_loses_nothing_acknowledged() {
    let env = setup();
    let mut proctor = start_proctor(&env);
    let acked_sql: Arc<Mutex<BTreeSet<i64>>> = Arc::default();
    let acked_ssh: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let stop_at = Instant::now() + Duration::from_secs(3);

    let mut tasks = Vec::new();
    for client in 0..4i64 {
        let acked = acked_sql.clone();
        let conninfo = format!(
            "host=127.0.0.1 port={} user={AGENT} password={SECRET} dbname=db",
            env.pg_port
        );
        tasks.push(tokio::spawn(async move {
            let Ok((db, conn)) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await
            else {
                return;
            };
            tokio::spawn(conn);
            let mut n = 0i64;
            while Instant::now() < stop_at + Duration::from_secs(5) {
                let v = client * 1_000_000 + n;
                if db
                    .execute("insert into acks values ($1)", &[&v])
                    .await
                    .is_err()
                {
                    return;
                }
                // The insert was acknowledged to the agent: it must be in the recording.
                if let Ok(mut a) = acked.lock() {
                    a.insert(v);
                }
                n += 1;
            }
        }));
    }
    for client in 0..2 {
        let acked = acked_ssh.clone();
        let (key, known, port) = (env.agent_key.clone(), env.known_hosts.clone(), env.ssh_port);
        tasks.push(tokio::spawn(async move {
            for n in 0.. {
                if Instant::now() > stop_at + Duration::from_secs(5) {
                    break;
                }
                let word = format!("mark-{client}-{n}");
                let out = tokio::process::Command::new("ssh")
                    .arg("-i")
                    .arg(&key)
                    .arg("-o")
                    .arg(format!("UserKnownHostsFile={}", known.display()))
                    .args([
                        "-o",
                        "BatchMode=yes",
                        "-o",
                        "IdentitiesOnly=yes",
                        "-p",
                        &port.to_string(),
                        "-l",
                        "box",
                        "127.0.0.1",
                    ])
                    .arg(format!("echo {word}"))
                    .output()
                    .await;
                match out {
                    Ok(o)
                        if o.status.success()
                            && String::from_utf8_lossy(&o.stdout).trim() == word =>
                    {
                        if let Ok(mut a) = acked.lock() {
                            a.insert(word);
                        }
                    }
                    _ => break,
                }
            }
        }));
    }
    tokio::time::sleep_until(tokio::time::Instant::from_std(stop_at)).await;
    proctor.kill();
    for t in tasks {
        let _ = t.await;
    }
    let sql: BTreeSet<i64> = acked_sql.lock().expect("lock").clone();
    let ssh: BTreeSet<String> = acked_ssh.lock().expect("lock").clone();
    assert!(sql.len() > 20, "the SQL load ran: {}", sql.len());
    assert!(!ssh.is_empty(), "the SSH load ran");

    // Restart: recovery seals what was open; the reaper drops leftover roles.
    let proctor2 = start_proctor(&env);
    let leftover = env
        .pg
        .psql(
            "postgres",
            "select count(*) from pg_roles where rolname like 'proctor\\_%'",
        )
        .expect("roles");
    assert_eq!(leftover, "0", "no proctor_ role outlives its session");
    drop(proctor2);

    let verify = Command::new(bin())
        .arg("verify")
        .arg("--data")
        .arg(&env.data)
        .output()
        .expect("verify");
    // Exit 3: intact, with the records written after each session's last checkpoint named as
    // an unsigned tail (FORMAT.md, "Recovery").
    assert!(
        matches!(verify.status.code(), Some(0 | 3)),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );

    let sessions = proctor_json(&env, &["sessions", "list", "--json"]);
    let sessions = sessions.as_array().expect("array");
    assert!(
        sessions.iter().any(|s| s["outcome"] == "interrupted"),
        "sessions cut by the crash are sealed interrupted"
    );
    assert!(
        sessions.iter().all(|s| s["sealed"] == true),
        "every session is sealed after recovery"
    );
    let mut recorded_sql = BTreeSet::new();
    let mut recorded_ssh = BTreeSet::new();
    for s in sessions {
        let id = s["id"].as_str().expect("id");
        let out = Command::new(bin())
            .args(["export", id, "--format", "jsonl", "--data"])
            .arg(&env.data)
            .output()
            .expect("export");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if v["kind"] == "statement" {
                for p in v["params"].as_array().into_iter().flatten() {
                    if let Some(hex) = p["binary_hex"].as_str()
                        && let Ok(b) = hex::decode(hex)
                        && let Ok(arr) = <[u8; 8]>::try_from(b.as_slice())
                    {
                        recorded_sql.insert(i64::from_be_bytes(arr));
                    }
                }
            }
            if v["kind"] == "exec"
                && let Some(c) = v["command"].as_str()
            {
                recorded_ssh.insert(c.trim_start_matches("echo ").to_string());
            }
        }
    }
    let missing_sql: Vec<&i64> = sql.difference(&recorded_sql).collect();
    assert!(
        missing_sql.is_empty(),
        "acknowledged inserts missing from the recording: {missing_sql:?}"
    );
    let missing_ssh: Vec<&String> = ssh.difference(&recorded_ssh).collect();
    assert!(
        missing_ssh.is_empty(),
        "acknowledged commands missing from the recording: {missing_ssh:?}"
    );
}
