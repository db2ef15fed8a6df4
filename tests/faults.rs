//! Faults between the parties: a fault proxy between clients and proctor and between proctor and
//! its PostgreSQL target splits writes into single bytes, delays, resets and black-holes
//! traffic. Proctor keeps working where the protocol allows, ends sessions with the right
//! outcome where it does not, never forwards a held statement whose client went away, and
//! every recording verifies.

mod fault_proxy;

use std::net::SocketAddr;
use std::time::Duration;

use fault_proxy::{FaultProxy, Mode};
use proctor::config::Config;
use proctor_harness::{LocalPostgres, PostgresOptions};

const AGENT: &str = "faulty";
const SECRET: &str = "faulty-secret";

struct Env {
    server: Option<proctor::serve::Server>,
    pg: LocalPostgres,
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    /// Between proctor and the target.
    target_proxy: FaultProxy,
    /// Between the client and proctor.
    client_proxy: FaultProxy,
}

impl Env {
    async fn start() -> Env {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let pg = tokio::task::spawn_blocking(|| {
            let pg = LocalPostgres::start(PostgresOptions::default()).expect("postgres");
            pg.psql(
                "postgres",
                "CREATE ROLE app_write NOLOGIN; CREATE TABLE t (id int, v text);
                 INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g;
                 GRANT SELECT, INSERT, UPDATE, DELETE ON t TO app_write;",
            )
            .expect("schema");
            pg
        })
        .await
        .expect("join");
        let target_proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], pg.port))).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let text = format!(
            r#"
data_dir = "{data}"
policies = ["{policies}"]
[listen]
postgres = "127.0.0.1:0"
[postgres]
require_tls = false
[approvals]
timeout = "30s"
[[agents]]
name = "{AGENT}"
postgres_scram = "{verifier}"
[[targets]]
name = "db"
kind = "postgres"
host = "127.0.0.1"
port = {proxy_port}
dbname = "postgres"
admin_dsn = "{admin}"
connect_timeout = "3s"
[[grants]]
name = "g"
agent = "{AGENT}"
target = "db"
privilege = "elevated"
role = "app_write"
"#,
            data = data.display(),
            policies = concat!(env!("CARGO_MANIFEST_DIR"), "/policies"),
            verifier = postgres_protocol::password::scram_sha_256(SECRET.as_bytes()),
            proxy_port = target_proxy.addr.port(),
            admin = pg.admin_dsn("postgres"),
        );
        let path = dir.path().join("proctor.toml");
        std::fs::write(&path, text).expect("config");
        let server = proctor::serve::start(Config::load(&path).expect("config loads"))
            .await
            .expect("proctor starts");
        let addr = server.started.postgres.expect("postgres listener");
        let client_proxy = FaultProxy::start(addr).await;
        Env {
            server: Some(server),
            pg,
            _dir: dir,
            data,
            target_proxy,
            client_proxy,
        }
    }

    fn conninfo(&self, via_proxy: bool) -> String {
        let port = if via_proxy {
            self.client_proxy.addr.port()
        } else {
            self.server
                .as_ref()
                .and_then(|s| s.started.postgres)
                .map_or(0, |a| a.port())
        };
        format!(
            "host=127.0.0.1 port={port} user={AGENT} password={SECRET} dbname=db sslmode=disable"
        )
    }

    async fn connect(&self, via_proxy: bool) -> tokio_postgres::Client {
        let (c, conn) = tokio_postgres::connect(&self.conninfo(via_proxy), tokio_postgres::NoTls)
            .await
            .expect("connects through proctor");
        tokio::spawn(conn);
        c
    }

    fn core(&self) -> &std::sync::Arc<proctor::session::Core> {
        &self.server.as_ref().expect("running").core
    }

    /// Waits until no session is live (every one ended and sealed).
    async fn wait_idle(&self) {
        for _ in 0..200 {
            if self.core().sessions.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("sessions still live: {:?}", self.core().sessions.list());
    }

    fn outcomes(&self) -> Vec<String> {
        let index = self.core().store.index();
        index
            .all_sessions()
            .expect("index")
            .into_iter()
            .filter_map(|m| m.outcome)
            .collect()
    }

    async fn stop_and_verify(mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
        let (report, _) = proctor::ops::verify(&self.data, None, None, false).expect("verify runs");
        assert!(report.ok(), "{:?}", report.problems);
        let left = self
            .pg
            .psql(
                "postgres",
                "select count(*) from pg_roles where rolname like 'proctor\\_%'",
            )
            .expect("roles");
        assert_eq!(left, "0", "no proctor_ role outlives its session");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_byte_writes_and_delays_change_nothing() {
    let env = Env::start().await;
    env.client_proxy.set(Mode::SingleBytes);
    env.target_proxy.set(Mode::SingleBytes);
    let c = env.connect(true).await;
    let rows = c
        .query("select id, v from t where id <= $1 order by id", &[&50i32])
        .await
        .expect("query");
    assert_eq!(rows.len(), 50);
    let n: i64 = c
        .query_one("select count(*) from t", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 20000);
    env.target_proxy.set_delay(Duration::from_millis(30));
    env.client_proxy.set_delay(Duration::from_millis(30));
    let msgs = c
        .simple_query("select 1; select 2; select 3")
        .await
        .expect("multi-statement");
    assert!(msgs.len() >= 6);
    drop(c);
    env.wait_idle().await;
    assert_eq!(env.outcomes(), vec!["completed".to_string()]);
    env.stop_and_verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn target_reset_mid_statement_ends_the_session_target_lost() {
    let env = Env::start().await;
    let c = env.connect(false).await;
    c.simple_query("select 1").await.expect("works before");
    let pending = tokio::spawn(async move { c.simple_query("select pg_sleep(10)").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.target_proxy.reset_all();
    let result = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .expect("the client hears about it promptly")
        .expect("join");
    let err = result.expect_err("the statement cannot succeed");
    let code = err.code().map(|c| c.code().to_string()).unwrap_or_default();
    assert!(
        code == "57P01" || code == "08006" || err.is_closed(),
        "expected 57P01/08006 or a closed connection, got {err:?}"
    );
    env.wait_idle().await;
    assert_eq!(env.outcomes(), vec!["target_lost".to_string()]);
    env.stop_and_verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn black_holed_target_can_still_be_killed() {
    let env = Env::start().await;
    let c = env.connect(false).await;
    c.simple_query("select 1").await.expect("works before");
    env.target_proxy.set(Mode::BlackHole);
    let pending = tokio::spawn(async move { c.simple_query("select count(*) from t").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let live = env.core().sessions.list();
    assert_eq!(live.len(), 1);
    assert!(env.core().sessions.kill(&live[0].id, "target unresponsive"));
    let result = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .expect("the kill reaches the client promptly")
        .expect("join");
    let err = result.expect_err("killed");
    assert!(
        err.code().is_some_and(|c| c.code() == "57P01") || err.is_closed(),
        "{err:?}"
    );
    env.wait_idle().await;
    assert_eq!(env.outcomes(), vec!["killed".to_string()]);
    env.target_proxy.set(Mode::Pass);
    env.stop_and_verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_gone_during_a_hold_cancels_it_and_nothing_reaches_the_target() {
    let env = Env::start().await;
    let c = env.connect(true).await;
    // DELETE without WHERE is held by the default policy in an elevated session.
    let held = tokio::spawn(async move {
        let r = c.simple_query("delete from t").await;
        (r, c)
    });
    let mut pending = Vec::new();
    for _ in 0..100 {
        pending = env.core().approvals.list();
        if !pending.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(pending.len(), 1, "the delete is held");
    // The client's connection dies (reset), not a polite Terminate.
    env.client_proxy.reset_all();
    held.abort();
    env.wait_idle().await;
    assert!(
        env.core().approvals.list().is_empty(),
        "the approval was withdrawn"
    );
    // Approving now finds nothing to release.
    assert!(
        env.core()
            .approvals
            .approve(
                &pending[0].id,
                &proctor::approvals::Approver::token("alice"),
                "too late"
            )
            .is_err()
    );
    let count = env
        .pg
        .psql("postgres", "select count(*) from t")
        .expect("count");
    assert_eq!(count, "20000", "the held delete never reached the target");
    let outcomes = env.outcomes();
    assert_eq!(outcomes.len(), 1);
    let meta = env
        .core()
        .store
        .index()
        .all_sessions()
        .expect("index")
        .remove(0);
    let data = env.data.clone();
    let events = proctor::ops::events(&data, &meta, 0, 10_000).expect("events");
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "approval" && e["outcome"] == "cancelled"),
        "the cancellation is recorded"
    );
    env.stop_and_verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_reset_mid_result_is_sealed_and_cleaned_up() {
    let env = Env::start().await;
    env.client_proxy.set_delay(Duration::from_millis(5));
    let c = env.connect(true).await;
    let big = tokio::spawn(async move {
        c.simple_query("select * from t, generate_series(1, 20)")
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.client_proxy.reset_all();
    let _ = tokio::time::timeout(Duration::from_secs(10), big).await;
    env.wait_idle().await;
    assert_eq!(env.outcomes().len(), 1);
    env.stop_and_verify().await;
}
