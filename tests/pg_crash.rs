//! Issue 15's proof: the PostgreSQL durability rule loses nothing that persists and nothing an
//! agent saw. pgbench (a mixed script: a transaction of an update, a read and an insert, then
//! an autocommit update and an autocommit read) and two clients that log every answer they
//! receive (extended protocol, in and out of transactions) run through the real `proctor`
//! binary against a real PostgreSQL whose tables keep an audit table by trigger; `proctor` is
//! killed with SIGKILL at a random moment, restarted (recovery), and killed again, several
//! times. Then (a) every row change the target committed carries a tag that is in a recorded
//! statement, and (b) every answer a client logged is for a recorded statement. A thread
//! writing to the same disk keeps proctor's fdatasyncs slow, which widens the windows a wrong
//! rule would lose records in (checked by hand: letting autocommit writes overlap, or releasing
//! answers early, fails this test within 6 kills).
//!
//! `PROCTOR_PG_CRASH_RUNS` sets the number of kills (default 3; the longer loop by hand:
//! `PROCTOR_PG_CRASH_RUNS=12 cargo test --test pg_crash -- --nocapture`).

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proctor_harness::{ChildGuard, LocalPostgres, PostgresOptions, free_port, wait_for_port};

const AGENT: &str = "crasher";
const SECRET: &str = "crasher-secret";

/// Every write sets `tag` to a number no other statement uses (12 digits: longer ones may be
/// redacted as card numbers); the trigger copies it into `audit` with the row change,
/// committed or rolled back with it.
const SCHEMA: &str = r#"
CREATE ROLE app_write NOLOGIN;
CREATE TABLE acct (id int PRIMARY KEY, bal bigint NOT NULL DEFAULT 0, tag text);
INSERT INTO acct SELECT g, 0, NULL FROM generate_series(1, 100) g;
CREATE TABLE hist (id int, delta int, tag text);
CREATE TABLE audit (seq bigserial PRIMARY KEY, tbl text, op text, tag text);
CREATE FUNCTION audit_row() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $f$
BEGIN
  INSERT INTO audit (tbl, op, tag) VALUES (TG_TABLE_NAME, TG_OP, NEW.tag);
  RETURN NULL;
END $f$;
CREATE TRIGGER acct_audit AFTER INSERT OR UPDATE ON acct FOR EACH ROW EXECUTE FUNCTION audit_row();
CREATE TRIGGER hist_audit AFTER INSERT OR UPDATE ON hist FOR EACH ROW EXECUTE FUNCTION audit_row();
GRANT SELECT, INSERT, UPDATE ON acct, hist TO app_write;
"#;

/// pgbench's script (simple protocol: the tags are literals in the recorded text).
const SCRIPT: &str = r#"\set id random(1, 100)
\set t1 random(100000000000, 999999999999)
\set t2 random(100000000000, 999999999999)
\set t3 random(100000000000, 999999999999)
BEGIN;
UPDATE acct SET bal = bal + 1, tag = :t1 WHERE id = :id;
SELECT bal FROM acct WHERE id = :id;
INSERT INTO hist (id, delta, tag) VALUES (:id, 1, :t2);
END;
UPDATE acct SET bal = bal - 1, tag = :t3 WHERE id = :id;
SELECT count(*) FROM hist WHERE id = :id;
"#;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_proctor")
}

fn pgbench() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect();
    if let Ok(rd) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut v: Vec<PathBuf> = rd.flatten().map(|e| e.path().join("bin")).collect();
        v.sort();
        dirs.extend(v.into_iter().rev());
    }
    dirs.into_iter()
        .map(|d| d.join("pgbench"))
        .find(|p| p.is_file())
}

struct Env {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    data: PathBuf,
    config: PathBuf,
    port: u16,
    pg: LocalPostgres,
}

fn setup() -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let pg = LocalPostgres::start(PostgresOptions::default()).expect("postgres");
    pg.psql("postgres", SCHEMA).expect("schema");
    let port = free_port().expect("port");
    let config = dir.path().join("proctor.toml");
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    std::fs::write(
        &config,
        format!(
            r#"
data_dir = "{data}"
policies = ["{policies}"]
[listen]
postgres = "127.0.0.1:{port}"
[postgres]
require_tls = false
[[agents]]
name = "{AGENT}"
postgres_scram = "{verifier}"
[[targets]]
name = "db"
kind = "postgres"
host = "127.0.0.1"
port = {target}
dbname = "postgres"
admin_dsn = "{admin}"
[[grants]]
name = "pg"
agent = "{AGENT}"
target = "db"
privilege = "routine"
role = "app_write"
connection_limit = 10
"#,
            data = data.display(),
            policies = policies.display(),
            verifier = postgres_protocol::password::scram_sha_256(SECRET.as_bytes()),
            target = pg.port,
            admin = pg.admin_dsn("postgres"),
        ),
    )
    .expect("config");
    std::fs::write(dir.path().join("mixed.sql"), SCRIPT).expect("script");
    Env {
        dir: dir.path().to_path_buf(),
        _dir: dir,
        data,
        config,
        port,
        pg,
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
        wait_for_port(env.port, Duration::from_secs(30)),
        "proctor's PostgreSQL listener is up"
    );
    child
}

fn start_pgbench(env: &Env, pgbench: &Path) -> ChildGuard {
    let mut cmd = Command::new(pgbench);
    cmd.args(["-n", "-M", "simple", "-c", "8", "-T", "60", "-f"])
        .arg(env.dir.join("mixed.sql"))
        .arg(format!(
            "host=127.0.0.1 port={} user={AGENT} dbname=db sslmode=disable",
            env.port
        ))
        .env("PGPASSWORD", SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    ChildGuard::spawn("pgbench", &mut cmd).expect("spawn pgbench")
}

/// A client that logs the tag of every answer it receives (reads and writes, in a
/// transaction and in autocommit), until its connection dies.
async fn logging_client(port: u16, seed: u64, seen: Arc<Mutex<Vec<String>>>) {
    let conninfo = format!("host=127.0.0.1 port={port} user={AGENT} password={SECRET} dbname=db");
    let Ok((mut db, conn)) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await else {
        return;
    };
    tokio::spawn(conn);
    let log = |t: String| {
        if let Ok(mut s) = seen.lock() {
            s.push(t);
        }
    };
    for n in 0u64.. {
        let id = (n % 100 + 1) as i32;
        let tag = |k: u64| format!("c{seed}x{n}x{k}");
        let (t0, t1, t2, t3) = (tag(0), tag(1), tag(2), tag(3));
        if db
            .query("SELECT bal, $2::text FROM acct WHERE id = $1", &[&id, &t0])
            .await
            .is_err()
        {
            return;
        }
        log(t0);
        let Ok(tx) = db.transaction().await else {
            return;
        };
        if tx
            .execute(
                "UPDATE acct SET bal = bal + 1, tag = $2 WHERE id = $1",
                &[&id, &t1],
            )
            .await
            .is_err()
        {
            return;
        }
        log(t1);
        if tx
            .execute(
                "INSERT INTO hist (id, delta, tag) VALUES ($1, 1, $2)",
                &[&id, &t2],
            )
            .await
            .is_err()
        {
            return;
        }
        log(t2);
        if tx.commit().await.is_err() {
            return;
        }
        if db
            .execute(
                "UPDATE acct SET bal = bal - 1, tag = $2 WHERE id = $1",
                &[&id, &t3],
            )
            .await
            .is_err()
        {
            return;
        }
        log(t3);
    }
}

/// The words (runs of letters and digits) of every statement's text and parameters, from
/// every session.
fn recorded(env: &Env) -> HashSet<String> {
    let out = Command::new(bin())
        .args(["sessions", "list", "--json", "--data"])
        .arg(&env.data)
        .output()
        .expect("sessions list");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sessions: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let sessions = sessions.as_array().expect("array");
    assert!(
        sessions.iter().all(|s| s["sealed"] == true),
        "every session is sealed after recovery"
    );
    let mut hay = HashSet::new();
    let mut words = |text: &str| {
        for w in text.split(|c: char| !c.is_ascii_alphanumeric()) {
            if !w.is_empty() {
                hay.insert(w.to_string());
            }
        }
    };
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
            if v["kind"] != "statement" {
                continue;
            }
            words(v["text"].as_str().unwrap_or_default());
            for p in v["params"].as_array().into_iter().flatten() {
                if let Some(h) = p["binary_hex"].as_str()
                    && let Ok(b) = hex::decode(h)
                {
                    words(&String::from_utf8_lossy(&b));
                } else if let Some(t) = p.as_str() {
                    words(t);
                }
            }
        }
    }
    hay
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_loses_no_row_change_and_no_answer() {
    let Some(pgbench) = pgbench() else {
        panic!("pgbench is needed (Debian: postgresql-contrib or the server package)");
    };
    let runs: u32 = std::env::var("PROCTOR_PG_CRASH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let env = setup();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    // A neighbour writing to the same disk makes proctor's fdatasyncs slow, and so the window
    // in which a statement forwarded early runs on the target while its record is still in
    // memory wide: the rule must hold whatever the disk does.
    let stop_noise = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let noise = {
        let stop = stop_noise.clone();
        let path = env.dir.join("noise");
        std::thread::spawn(move || {
            use std::io::Write;
            let Ok(mut f) = std::fs::File::create(&path) else {
                return;
            };
            let chunk = vec![7u8; 256 << 10];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if f.write_all(&chunk).is_err() || f.sync_data().is_err() {
                    return;
                }
                if f.metadata().map(|m| m.len()).unwrap_or(0) > 64 << 20 {
                    let _ = f.set_len(0);
                }
            }
        })
    };
    for run in 0..runs {
        let mut proctor = start_proctor(&env);
        let mut bench = start_pgbench(&env, &pgbench);
        let clients: Vec<_> = (0..2u64)
            .map(|c| tokio::spawn(logging_client(env.port, run as u64 * 10 + c, seen.clone())))
            .collect();
        let at = Duration::from_millis(rand::random_range(300..1500u64));
        tokio::time::sleep(at).await;
        proctor.kill();
        eprintln!("run {run}: proctor killed after {at:?}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !bench.exited() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(bench);
        for c in clients {
            let _ = tokio::time::timeout(Duration::from_secs(20), c).await;
        }
    }
    stop_noise.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = noise.join();
    // Recovery seals what the last kill left open.
    let mut last = start_proctor(&env);
    last.stop(Duration::from_secs(10));

    let verify = Command::new(bin())
        .args(["verify", "--data"])
        .arg(&env.data)
        .output()
        .expect("verify");
    assert!(
        matches!(verify.status.code(), Some(0 | 3)),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let hay = recorded(&env);

    // (a) Every committed row change is a recorded statement's.
    let audit = env
        .pg
        .psql(
            "postgres",
            "SELECT coalesce(tag, '<none>') FROM audit ORDER BY seq",
        )
        .expect("audit");
    let changes: Vec<&str> = audit
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let unrecorded: Vec<&&str> = changes.iter().filter(|t| !hay.contains(**t)).collect();
    // (b) Every answer a client saw is a recorded statement's.
    let answers: BTreeSet<String> = seen.lock().expect("lock").iter().cloned().collect();
    let unseen: Vec<&String> = answers.iter().filter(|t| !hay.contains(*t)).collect();
    eprintln!(
        "{runs} kills: {} committed row changes, {} logged answers",
        changes.len(),
        answers.len()
    );
    assert!(changes.len() > 20, "the write load ran: {}", changes.len());
    assert!(
        answers.len() > 20,
        "the logging clients ran: {}",
        answers.len()
    );
    assert!(
        unrecorded.is_empty(),
        "row changes the target committed without a recorded statement: {unrecorded:?}"
    );
    assert!(
        unseen.is_empty(),
        "answers the agent received for statements not recorded: {unseen:?}"
    );
}
