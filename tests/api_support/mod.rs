//! A real proctor (store, policies, PostgreSQL listener, HTTP API) in-process, in front of a
//! real PostgreSQL, and a plain HTTP client to drive it. Everything lives in temporary
//! directories on random ports, so tests run in parallel and clean up after themselves.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use proctor::config::Config;
use proctor::serve::Server;
use proctor_harness::{LocalPostgres, PostgresOptions};
use serde_json::Value;
use sha2::Digest;

pub const AGENT_A: &str = "agent-a";
pub const AGENT_B: &str = "agent-b";
pub const SECRET_A: &str = "secret-of-agent-a";
pub const SECRET_B: &str = "secret-of-agent-b";
/// The recorder's journal, readable like a session.
pub const JOURNAL: &str = "00000000-0000-0000-0000-000000000000";

/// Token names (as recorded) by test role.
pub const OPERATOR: &str = "ops-1";
pub const APPROVER: &str = "appr-1";
pub const APPROVER_2: &str = "appr-2";
pub const AUDITOR: &str = "aud-1";
pub const BOT_A: &str = "bot-a";
pub const BOT_B: &str = "bot-b";
/// An approver token named like agent-a: must never decide agent-a's holds.
pub const SELF_APPROVER: &str = "agent-a";

pub struct Proctor {
    server: Option<Server>,
    pub pg: LocalPostgres,
    pub dir: tempfile::TempDir,
    /// Token name -> secret token.
    pub tokens: HashMap<&'static str, String>,
    pub api: SocketAddr,
    pub pg_addr: SocketAddr,
    pub http: Client<HttpConnector, Full<Bytes>>,
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

pub fn repo_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

impl Proctor {
    /// Starts PostgreSQL and proctor; `extra` is appended to the config (webhooks...).
    pub async fn start(extra: &str) -> Proctor {
        Proctor::start_with(extra, None).await
    }

    /// As `start`, with a policy file evaluated before the repository's rules.
    pub async fn start_with(extra: &str, first_policy: Option<&str>) -> Proctor {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let pg = tokio::task::spawn_blocking(|| {
            let pg = LocalPostgres::start(PostgresOptions::default()).expect("PostgreSQL starts");
            pg.psql("postgres", "CREATE DATABASE app")
                .expect("create database");
            pg.psql(
                "app",
                "CREATE ROLE app_write NOLOGIN;
                 CREATE TABLE t (id int PRIMARY KEY, v text);
                 CREATE TABLE t2 (id int PRIMARY KEY, v text);
                 INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 5) g;
                 INSERT INTO t2 SELECT g, 'row ' || g FROM generate_series(1, 5) g;
                 GRANT USAGE, CREATE ON SCHEMA public TO app_write;
                 GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public TO app_write;",
            )
            .expect("prepare the database");
            pg
        })
        .await
        .expect("join");
        let dir = tempfile::Builder::new()
            .prefix("proctor-api-test-")
            .tempdir()
            .expect("tempdir");
        let mut tokens = HashMap::new();
        let mut token_toml = String::new();
        for (name, role, agent) in [
            (OPERATOR, "operator", None),
            (APPROVER, "approver", None),
            (APPROVER_2, "approver", None),
            (SELF_APPROVER, "approver", None),
            (AUDITOR, "auditor", None),
            (BOT_A, "agent", Some(AGENT_A)),
            (BOT_B, "agent", Some(AGENT_B)),
        ] {
            let token = format!("prt_{}", hex::encode(rand::random::<[u8; 16]>()));
            let digest = hex::encode(sha2::Sha256::digest(token.as_bytes()));
            let agent_line = agent
                .map(|a| format!("agent = {}\n", toml_str(a)))
                .unwrap_or_default();
            token_toml.push_str(&format!(
                "\n[[api.tokens]]\nname = {}\nrole = \"{role}\"\n{agent_line}sha256 = \"{digest}\"\n",
                toml_str(name)
            ));
            tokens.insert(name, token);
        }
        let config = format!(
            r#"data_dir = {data}
policies = [{policies}]

[listen]
postgres = "127.0.0.1:0"
api = "127.0.0.1:0"

[postgres]
require_tls = false

[approvals]
timeout = "60s"

[[agents]]
name = "{AGENT_A}"
postgres_scram = {scram_a}

[[agents]]
name = "{AGENT_B}"
postgres_scram = {scram_b}

[[targets]]
name = "appdb"
kind = "postgres"
host = "127.0.0.1"
port = {pg_port}
dbname = "app"
admin_dsn = {admin}

[[grants]]
name = "a-appdb"
agent = "{AGENT_A}"
target = "appdb"
privilege = "elevated"
role = "app_write"

[[grants]]
name = "b-appdb"
agent = "{AGENT_B}"
target = "appdb"
privilege = "elevated"
role = "app_write"
{token_toml}
{extra}
"#,
            data = toml_str(&dir.path().join("data").to_string_lossy()),
            policies = toml_str(&repo_policies().to_string_lossy()),
            scram_a = toml_str(&postgres_protocol::password::scram_sha_256(
                SECRET_A.as_bytes()
            )),
            scram_b = toml_str(&postgres_protocol::password::scram_sha_256(
                SECRET_B.as_bytes()
            )),
            pg_port = pg.port,
            admin = toml_str(&pg.admin_dsn("app")),
        );
        let config = match first_policy {
            Some(rules) => {
                let file = dir.path().join("00-test.toml");
                std::fs::write(&file, rules).expect("write policy");
                config.replacen(
                    "policies = [",
                    &format!("policies = [{}, ", toml_str(&file.to_string_lossy())),
                    1,
                )
            }
            None => config,
        };
        let path = dir.path().join("proctor.toml");
        std::fs::write(&path, config).expect("write config");
        let config = Config::load(&path).expect("config loads");
        let server = proctor::serve::start(config).await.expect("proctor starts");
        let api = server.started.api.expect("API listener");
        let pg_addr = server.started.postgres.expect("PostgreSQL listener");
        Proctor {
            server: Some(server),
            pg,
            dir,
            tokens,
            api,
            pg_addr,
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub fn core(&self) -> &std::sync::Arc<proctor::session::Core> {
        &self.server.as_ref().expect("running").core
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    pub fn token(&self, name: &str) -> &str {
        self.tokens
            .get(name)
            .map(String::as_str)
            .expect("known token name")
    }

    /// libpq connection string for an agent (plain TCP; the listener has no TLS here).
    pub fn conninfo(&self, agent: &str, secret: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={agent} password={secret} dbname=appdb sslmode=disable",
            self.pg_addr.port()
        )
    }

    /// A live agent session over tokio-postgres (the connection task runs until dropped).
    pub async fn connect(&self, agent: &str, secret: &str) -> tokio_postgres::Client {
        let (client, conn) =
            tokio_postgres::connect(&self.conninfo(agent, secret), tokio_postgres::NoTls)
                .await
                .expect("agent connects through proctor");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    /// Runs the real `psql` binary as an agent.
    pub fn psql(&self, agent: &str, secret: &str, sql: &str) -> tokio::process::Child {
        tokio::process::Command::new("psql")
            .arg(format!(
                "host=127.0.0.1 port={} user={agent} dbname=appdb sslmode=disable",
                self.pg_addr.port()
            ))
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGPASSWORD", secret)
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("psql runs (apt-get install postgresql-client)")
    }

    /// One HTTP request; the body parsed as JSON when it is JSON, else as a string.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, _, bytes) = self
            .raw(
                method,
                path,
                token,
                body.map(|b| b.to_string().into_bytes()),
            )
            .await;
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, value)
    }

    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (StatusCode, hyper::HeaderMap, Bytes) {
        let resp = self.send(method, path, token, body).await;
        let (parts, body) = resp.into_parts();
        let bytes = tokio::time::timeout(Duration::from_secs(30), body.collect())
            .await
            .expect("body within 30s")
            .expect("body")
            .to_bytes();
        (parts.status, parts.headers, bytes)
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> hyper::Response<Incoming> {
        let mut req = Request::builder().method(method).uri(self.url(path));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("request");
        tokio::time::timeout(Duration::from_secs(30), self.http.request(req))
            .await
            .expect("answer within 30s")
            .expect("HTTP request")
    }

    /// GET as a named token; panics unless 2xx.
    pub async fn get(&self, who: &str, path: &str) -> Value {
        let (s, v) = self.call("GET", path, Some(self.token(who)), None).await;
        assert!(s.is_success(), "GET {path} as {who}: {s} {v}");
        v
    }

    pub async fn post(&self, who: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call("POST", path, Some(self.token(who)), Some(body))
            .await
    }

    /// Waits until a hold shows up in the approval queue whose statement contains `needle`.
    pub async fn wait_for_hold(&self, needle: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let list = self.get(APPROVER, "/api/approvals").await;
            if let Some(h) = list.as_array().and_then(|a| {
                a.iter()
                    .find(|h| h["detail"].as_str().is_some_and(|d| d.contains(needle)))
            }) {
                return h.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no hold for {needle:?} in 20s: {list}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The auditor's view of a session's records (all of them, paging through).
    pub async fn events(&self, session: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut from = 0;
        loop {
            let page = self
                .get(
                    AUDITOR,
                    &format!("/api/sessions/{session}/events?from={from}&limit=200"),
                )
                .await;
            out.extend(page["events"].as_array().cloned().unwrap_or_default());
            match page["next_from"].as_u64() {
                Some(n) => from = n,
                None => return out,
            }
        }
    }

    /// Waits until the index shows the session sealed.
    pub async fn wait_sealed(&self, session: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let m = self.get(AUDITOR, &format!("/api/sessions/{session}")).await;
            if m["sealed"].as_bool() == Some(true) {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "session {session} not sealed in 20s: {m}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Live session ids of an agent, as the operator sees them.
    pub async fn live_of(&self, agent: &str) -> Vec<String> {
        let live = self.get(OPERATOR, "/api/live").await;
        live.as_array()
            .map(|a| {
                a.iter()
                    .filter(|s| s["agent"] == agent)
                    .filter_map(|s| s["id"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits for a new live session of `agent` not in `known`.
    pub async fn wait_new_live(&self, agent: &str, known: &[String]) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(id) = self
                .live_of(agent)
                .await
                .into_iter()
                .find(|id| !known.contains(id))
            {
                return id;
            }
            assert!(Instant::now() < deadline, "no new live session of {agent}");
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
}

/// One Server-Sent Event (`event` is ":" for a comment line such as the keep-alive).
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
    pub received: Instant,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

pub struct SseStream {
    body: Incoming,
    buf: String,
}

impl SseStream {
    pub async fn open(p: &Proctor, token: &str) -> SseStream {
        let resp = p.send("GET", "/api/events", Some(token), None).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("text/event-stream")
        );
        SseStream {
            body: resp.into_body(),
            buf: String::new(),
        }
    }

    /// The next event or comment, or None when nothing arrives within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut ev = SseEvent {
                    event: String::new(),
                    data: String::new(),
                    received: Instant::now(),
                };
                for line in block.lines() {
                    if let Some(c) = line.strip_prefix(':') {
                        ev.event = ":".into();
                        ev.data = c.trim().to_string();
                    } else if let Some(e) = line.strip_prefix("event:") {
                        ev.event = e.trim().to_string();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        if !ev.data.is_empty() {
                            ev.data.push('\n');
                        }
                        ev.data.push_str(d.strip_prefix(' ').unwrap_or(d));
                    }
                }
                return Some(ev);
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .ok()??
                .ok()?;
            if let Ok(data) = frame.into_data() {
                self.buf.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }

    /// Waits for the first event (not comment) satisfying `f`.
    pub async fn wait_for(
        &mut self,
        wait: Duration,
        mut f: impl FnMut(&SseEvent) -> bool,
    ) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let ev = self.next(left).await?;
            if ev.event != ":" && f(&ev) {
                return Some(ev);
            }
        }
    }
}
