//! Relay overhead benchmark: pgbench select-only against PostgreSQL directly, through proctor's
//! PostgreSQL front end (with an in-memory gate that allows everything, so this measures the
//! relay, parsing and classification, not the recorder), and through pgbouncer.
//!
//! `cargo run --release -p proctor-postgres --example relay_bench -- [seconds] [rounds] [clients]`

use std::fs;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use proctor_gate::*;
use proctor_harness::{ChildGuard, LocalPostgres, PostgresOptions, free_port};
use tokio::sync::watch;
use zeroize::Zeroizing;

const ROLE: &str = "bench";
const PASSWORD: &str = "bench-pw";

struct NullGate {
    kill: watch::Sender<Option<String>>,
    statements: AtomicU64,
}

#[async_trait]
impl Gate for NullGate {
    fn session_id(&self) -> &str {
        "bench"
    }
    async fn record(&self, _: Event) -> Result<(), GateError> {
        Ok(())
    }
    async fn enqueue(&self, _: Event) -> Result<Durable, GateError> {
        Ok(Durable(Box::pin(async { Ok(()) })))
    }
    async fn decide(&self, action: Action) -> Result<Decision, GateError> {
        // Keep the statement alive until here, like a recorder would encode it.
        std::hint::black_box(&action);
        self.statements.fetch_add(1, Ordering::Relaxed);
        Ok(Decision::Allow)
    }
    fn kill_signal(&self) -> watch::Receiver<Option<String>> {
        self.kill.subscribe()
    }
    async fn end(&self, _: Outcome, _: &str) -> Result<(), GateError> {
        Ok(())
    }
}

struct BenchAuthority {
    verifier: String,
    target: PostgresTarget,
    gate: Arc<NullGate>,
}

#[async_trait]
impl Authority for BenchAuthority {
    fn agent_scram_verifier(&self, agent: &str) -> Option<String> {
        (agent == ROLE).then(|| self.verifier.clone())
    }
    fn agent_for_ssh_key(&self, _: &str) -> Option<String> {
        None
    }
    async fn open(&self, _: SessionRequest) -> Result<OpenSession, Refusal> {
        Ok(OpenSession {
            gate: self.gate.clone(),
            session_id: "bench".into(),
            privilege: Privilege::Routine,
            target: TargetEndpoint::Postgres(self.target.clone()),
            credential: Credential::PostgresRole {
                user: ROLE.into(),
                password: Zeroizing::new(PASSWORD.into()),
                builtins_overloaded: false,
            },
        })
    }
    async fn refuse(&self, _: SessionRequest, _: Refusal) {}
}

fn pgbench(port: u16, mode: &str, secs: u32, clients: u32) -> f64 {
    let out = Command::new("pgbench")
        .args(["-S", "-n", "-M", mode, "-T", &secs.to_string()])
        .args(["-c", &clients.to_string(), "-j", "2"])
        .arg(format!(
            "host=127.0.0.1 port={port} user={ROLE} password={PASSWORD} dbname=bench sslmode=disable"
        ))
        .output()
        .expect("run pgbench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("pgbench failed: {}", String::from_utf8_lossy(&out.stderr)))
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

fn clk_tck() -> f64 {
    100.0
}

fn bouncer_pid(launcher: Option<u32>) -> Option<u32> {
    let launcher = launcher?;
    std::thread::sleep(Duration::from_millis(200));
    let children = fs::read_to_string(format!("/proc/{launcher}/task/{launcher}/children"))
        .unwrap_or_default();
    Some(
        children
            .split_whitespace()
            .next()
            .and_then(|c| c.parse().ok())
            .unwrap_or(launcher),
    )
}

fn start_pgbouncer(dir: &std::path::Path, pg_port: u16) -> (ChildGuard, u16) {
    let port = free_port().unwrap();
    let ini = dir.join("pgbouncer.ini");
    fs::write(
        &ini,
        format!(
            "[databases]\nbench = host=127.0.0.1 port={pg_port} dbname=bench\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nauth_type = scram-sha-256\n\
             auth_file = {}/userlist.txt\npool_mode = session\nmax_client_conn = 100\n\
             default_pool_size = 20\nunix_socket_dir =\nlogfile = {}/pgbouncer.log\n",
            dir.display(),
            dir.display()
        ),
    )
    .unwrap();
    fs::write(
        dir.join("userlist.txt"),
        format!("\"{ROLE}\" \"{PASSWORD}\"\n"),
    )
    .unwrap();
    let _ = Command::new("chown")
        .args(["-R", "nobody"])
        .arg(dir)
        .status();
    let mut cmd = if proctor_harness::is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--", "pgbouncer"]);
        c
    } else {
        Command::new("pgbouncer")
    };
    cmd.arg(&ini).stdout(Stdio::null()).stderr(Stdio::null());
    let child = ChildGuard::spawn("pgbouncer", &mut cmd).unwrap();
    assert!(
        proctor_harness::wait_for_port(port, Duration::from_secs(10)),
        "pgbouncer did not start"
    );
    (child, port)
}

fn main() {
    // BENCH_RT=current runs everything on one thread (default: two workers, like the daemon).
    let rt = if std::env::var("BENCH_RT").as_deref() == Ok("current") {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    };
    rt.expect("tokio runtime").block_on(run());
}

async fn run() {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let secs = args.first().copied().unwrap_or(10);
    let rounds = args.get(1).copied().unwrap_or(3);
    let clients = args.get(2).copied().unwrap_or(8);

    let pg = tokio::task::spawn_blocking(|| {
        let pg = LocalPostgres::start(PostgresOptions::default()).unwrap();
        pg.psql(
            "postgres",
            &format!("CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'"),
        )
        .unwrap();
        pg.psql("postgres", &format!("CREATE DATABASE bench OWNER {ROLE}"))
            .unwrap();
        pg
    })
    .await
    .unwrap();
    let init = Command::new("pgbench")
        .args(["-i", "-s", "10", "-q"])
        .arg(format!(
            "host=127.0.0.1 port={} user={ROLE} password={PASSWORD} dbname=bench",
            pg.port
        ))
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );

    let gate = Arc::new(NullGate {
        kill: watch::channel(None).0,
        statements: AtomicU64::new(0),
    });
    let authority = Arc::new(BenchAuthority {
        verifier: postgres_protocol::password::scram_sha_256(PASSWORD.as_bytes()),
        target: PostgresTarget {
            host: "127.0.0.1".into(),
            port: pg.port,
            dbname: "bench".into(),
            tls: TargetTls::Disable,
            connect_timeout: Duration::from_secs(5),
            copy_record_limit: proctor_gate::DEFAULT_COPY_RECORD_LIMIT,
        },
        gate: gate.clone(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proctor_port = listener.local_addr().unwrap().port();
    let (_stop, rx) = watch::channel(false);
    tokio::spawn(proctor_postgres::serve(
        listener,
        Arc::new(proctor_postgres::PgFrontendConfig::default()),
        authority,
        rx,
    ));
    let dir = tempfile::tempdir().unwrap();
    let (bouncer, bouncer_port) = start_pgbouncer(dir.path(), pg.port);
    // pgbouncer runs under runuser when we are root: find the real process.
    let bouncer_pid = bouncer_pid(bouncer.pid());

    // BENCH_ONLY=proctor (or direct, pgbouncer) runs just that one, e.g. under a profiler.
    let only = std::env::var("BENCH_ONLY").ok();
    let modes: Vec<String> = std::env::var("BENCH_MODES")
        .unwrap_or_else(|_| "simple,prepared".into())
        .split(',')
        .map(str::to_string)
        .collect();
    for mode in modes {
        let mode: &'static str = if mode == "prepared" {
            "prepared"
        } else {
            "simple"
        };
        let mut sums = [0.0f64; 3];
        for round in 0..rounds {
            let mut line = format!("{mode:8} round {round}:");
            for (i, (name, port)) in [
                ("direct", pg.port),
                ("proctor", proctor_port),
                ("pgbouncer", bouncer_port),
            ]
            .into_iter()
            .enumerate()
            {
                if only.as_deref().is_some_and(|o| o != name) {
                    sums[i] = f64::NAN;
                    continue;
                }
                let pid = match name {
                    "proctor" => Some(std::process::id()),
                    "pgbouncer" => bouncer_pid,
                    _ => None,
                };
                let cpu0 = pid.map(cpu_ticks);
                let tps = tokio::task::spawn_blocking(move || pgbench(port, mode, secs, clients))
                    .await
                    .unwrap();
                sums[i] += tps;
                line.push_str(&format!("  {name} {tps:8.0}"));
                if let (Some(pid), Some(c0)) = (pid, cpu0) {
                    // CPU time of the proxy process per transaction: independent of how busy
                    // the rest of the machine is.
                    let ticks = cpu_ticks(pid).saturating_sub(c0) as f64;
                    let us = ticks * 1e6 / clk_tck() / (tps * secs as f64);
                    line.push_str(&format!(" ({us:.1} us cpu/tx)"));
                }
            }
            println!("{line}");
        }
        let n = rounds as f64;
        let (d, p, b) = (sums[0] / n, sums[1] / n, sums[2] / n);
        println!(
            "{mode:8} mean: direct {d:.0}  proctor {p:.0}  pgbouncer {b:.0}  proctor/direct {:.2}  proctor/pgbouncer {:.2}",
            p / d,
            p / b
        );
    }
    println!(
        "statements judged through proctor: {}",
        gate.statements.load(Ordering::Relaxed)
    );
}
