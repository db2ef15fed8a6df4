//! A small in-memory core (Authority + Gate) and a fixture with a real PostgreSQL behind a
//! real proctor listener.
#![allow(dead_code)]

mod messages;
#[allow(unused_imports)] // Not every test file sends raw messages.
pub use messages::{bind, exchange, parse, query};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, BufMut, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use proctor_gate::*;
use proctor_harness::{LocalPostgres, PostgresOptions};
use proctor_postgres::PgFrontendConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use zeroize::Zeroizing;

pub const AGENT: &str = "alice";
pub const AGENT_SECRET: &str = "alice-secret";
/// Known agent without a grant on the target.
pub const OTHER_AGENT: &str = "bob";
pub const OTHER_SECRET: &str = "bob-secret";
pub const TARGET: &str = "appdb";
pub const ROLE: &str = "proctor_test_role";
pub const ROLE_PASSWORD: &str = "jit-password-9f2";

/// A statement waiting for the test to answer.
pub struct PendingHold {
    pub approval_id: String,
    pub statement: Statement,
    pub answer: oneshot::Sender<Resolution>,
}

pub struct TestGate {
    pub id: String,
    pub events: Mutex<Vec<Event>>,
    pub kill_tx: watch::Sender<Option<String>>,
    holds: mpsc::UnboundedSender<PendingHold>,
    pub ends: AtomicUsize,
    hold_seq: AtomicUsize,
    /// When set, `decide_all_overlapped` overlaps (issue 15): its tickets resolve when the
    /// watch holds `Some(true)` and fail on `Some(false)`.
    pub overlap: Mutex<Option<watch::Receiver<Option<bool>>>>,
    /// Texts of the statements decided with an overlapping ticket.
    pub overlapped: Mutex<Vec<String>>,
    /// Recording fails once this many events are recorded (rule 4 tests).
    pub fail_at: AtomicUsize,
}

impl TestGate {
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    pub fn kill(&self, reason: &str) {
        let _ = self.kill_tx.send(Some(reason.to_string()));
    }

    pub fn statements(&self) -> Vec<Statement> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Statement(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    pub fn results(&self) -> Vec<StatementResult> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::StatementResult(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    pub fn end(&self) -> Option<(Outcome, String)> {
        self.events().into_iter().find_map(|e| match e {
            Event::SessionEnd { outcome, reason } => Some((outcome, reason)),
            _ => None,
        })
    }

    fn push(&self, e: Event) {
        self.events.lock().unwrap().push(e);
    }

    /// Recording fails after `n` more events.
    pub fn fail_recording_after(&self, n: usize) {
        let at = self.events.lock().unwrap().len() + n;
        self.fail_at.store(at, Ordering::SeqCst);
    }

    fn recording(&self) -> Result<(), GateError> {
        if self.events.lock().unwrap().len() >= self.fail_at.load(Ordering::SeqCst) {
            return Err(GateError::Recorder("test: the disk is gone".into()));
        }
        Ok(())
    }

    /// Overlapping tickets from now on, resolved by `durable`.
    pub fn overlap_with(&self, durable: watch::Receiver<Option<bool>>) {
        *self.overlap.lock().unwrap() = Some(durable);
    }

    pub fn overlapped(&self) -> Vec<String> {
        self.overlapped.lock().unwrap().clone()
    }
}

#[async_trait]
impl Gate for TestGate {
    fn session_id(&self) -> &str {
        &self.id
    }

    async fn record(&self, event: Event) -> Result<(), GateError> {
        self.recording()?;
        self.push(event);
        Ok(())
    }

    async fn enqueue(&self, event: Event) -> Result<Durable, GateError> {
        self.recording()?;
        self.push(event);
        Ok(Durable(Box::pin(async { Ok(()) })))
    }

    async fn decide(&self, action: Action) -> Result<Decision, GateError> {
        let Action::Statement(s) = action else {
            return Ok(Decision::Deny {
                rule: "test".into(),
                reason: "not a statement".into(),
            });
        };
        let subject = format!("statement {}", s.id);
        self.recording()?;
        self.push(Event::Statement(s.clone()));
        // An EXECUTE is judged with the statement it runs, as the real policy does.
        let text = format!("{} {}", s.text, s.runs.as_deref().unwrap_or("")).to_ascii_lowercase();
        let verdict = |verdict, rule: &str, reason: &str, approval_id: &str| {
            Event::Verdict(VerdictRecord {
                subject: subject.clone(),
                verdict,
                rule: rule.into(),
                reason: reason.into(),
                approval_id: approval_id.into(),
            })
        };
        if text.contains("forbidden_table") {
            self.push(verdict(
                VerdictKind::Deny,
                "no_forbidden",
                "forbidden_table is off limits",
                "",
            ));
            return Ok(Decision::Deny {
                rule: "no_forbidden".into(),
                reason: "forbidden_table is off limits".into(),
            });
        }
        if text.contains("needs_approval") {
            let n = self.hold_seq.fetch_add(1, Ordering::SeqCst);
            let approval_id = format!("{}-a{n}", self.id);
            self.push(verdict(
                VerdictKind::Hold,
                "ask_human",
                "needs a human",
                &approval_id,
            ));
            let (tx, rx) = oneshot::channel();
            let _ = self.holds.send(PendingHold {
                approval_id: approval_id.clone(),
                statement: s,
                answer: tx,
            });
            return Ok(Decision::Held(Hold {
                approval_id,
                rule: "ask_human".into(),
                reason: "needs a human".into(),
                outcome: Box::pin(async move {
                    rx.await.unwrap_or(Resolution::Deny {
                        rule: "approval".into(),
                        reason: "cancelled".into(),
                        cause: DenyCause::Approver,
                    })
                }),
            }));
        }
        self.recording()?;
        self.push(verdict(VerdictKind::Allow, "default", "", ""));
        Ok(Decision::Allow)
    }

    async fn decide_all_overlapped(
        &self,
        actions: Vec<Action>,
    ) -> Result<(Vec<Decision>, Option<Durable>), GateError> {
        let texts: Vec<String> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Statement(s) => Some(s.text.clone()),
                _ => None,
            })
            .collect();
        let decisions = self.decide_all(actions).await?;
        let durable = self.overlap.lock().unwrap().clone();
        match durable {
            Some(mut rx) if decisions.iter().all(|d| matches!(d, Decision::Allow)) => {
                self.overlapped.lock().unwrap().extend(texts);
                let ticket = Durable(Box::pin(async move {
                    match rx.wait_for(|v| v.is_some()).await.map(|v| *v) {
                        Ok(Some(true)) => Ok(()),
                        _ => Err(GateError::Recorder("test: the record failed".into())),
                    }
                }));
                Ok((decisions, Some(ticket)))
            }
            _ => Ok((decisions, None)),
        }
    }

    fn kill_signal(&self) -> watch::Receiver<Option<String>> {
        self.kill_tx.subscribe()
    }

    async fn end(&self, outcome: Outcome, reason: &str) -> Result<(), GateError> {
        self.ends.fetch_add(1, Ordering::SeqCst);
        let outcome = if self.kill_tx.borrow().is_some() {
            Outcome::Killed
        } else {
            outcome
        };
        self.push(Event::SessionEnd {
            outcome,
            reason: reason.to_string(),
        });
        Ok(())
    }
}

pub struct TestAuthority {
    verifiers: HashMap<String, String>,
    target: PostgresTarget,
    pub refusals: Mutex<Vec<(SessionRequest, Refusal)>>,
    pub sessions: Mutex<Vec<Arc<TestGate>>>,
    holds: mpsc::UnboundedSender<PendingHold>,
    pub opened_params: Mutex<Vec<Vec<(String, String)>>>,
}

#[async_trait]
impl Authority for TestAuthority {
    fn agent_scram_verifier(&self, agent: &str) -> Option<String> {
        self.verifiers.get(agent).cloned()
    }

    fn agent_for_ssh_key(&self, _: &str) -> Option<String> {
        None
    }

    async fn open(&self, request: SessionRequest) -> Result<OpenSession, Refusal> {
        let refusal = if request.target != TARGET {
            Some(Refusal::new(
                RefusalKind::UnknownTarget,
                format!("no target named \"{}\"", request.target),
            ))
        } else if request.agent != AGENT {
            Some(Refusal::new(
                RefusalKind::NotGranted,
                format!("agent {} has no grant on {}", request.agent, request.target),
            ))
        } else {
            None
        };
        if let Some(r) = refusal {
            self.refusals.lock().unwrap().push((request, r.clone()));
            return Err(r);
        }
        self.opened_params
            .lock()
            .unwrap()
            .push(request.params.clone());
        let n = self.sessions.lock().unwrap().len();
        let (kill_tx, _) = watch::channel(None);
        let gate = Arc::new(TestGate {
            id: format!("s{n}"),
            events: Mutex::new(Vec::new()),
            kill_tx,
            holds: self.holds.clone(),
            ends: AtomicUsize::new(0),
            hold_seq: AtomicUsize::new(0),
            overlap: Mutex::new(None),
            overlapped: Mutex::new(Vec::new()),
            fail_at: AtomicUsize::new(usize::MAX),
        });
        self.sessions.lock().unwrap().push(gate.clone());
        Ok(OpenSession {
            gate,
            session_id: format!("s{n}"),
            privilege: Privilege::Routine,
            target: TargetEndpoint::Postgres(self.target.clone()),
            credential: Credential::PostgresRole {
                user: ROLE.into(),
                password: Zeroizing::new(ROLE_PASSWORD.into()),
                builtins_overloaded: false,
            },
        })
    }

    async fn refuse(&self, request: SessionRequest, refusal: Refusal) {
        self.refusals.lock().unwrap().push((request, refusal));
    }
}

impl TestAuthority {
    pub fn session(&self, i: usize) -> Arc<TestGate> {
        self.sessions.lock().unwrap()[i].clone()
    }

    pub fn session_count(&self) -> usize {
        self.sessions.lock().unwrap().len()
    }

    pub fn refusal_kinds(&self) -> Vec<RefusalKind> {
        self.refusals
            .lock()
            .unwrap()
            .iter()
            .map(|(_, r)| r.kind)
            .collect()
    }
}

pub struct Fixture {
    pub pg: Option<LocalPostgres>,
    pub pg_port: u16,
    pub authority: Arc<TestAuthority>,
    pub port: u16,
    pub holds: mpsc::UnboundedReceiver<PendingHold>,
    pub shutdown: watch::Sender<bool>,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
    pub config: Arc<PgFrontendConfig>,
}

pub async fn start_pg() -> LocalPostgres {
    start_pg_with(Vec::new()).await
}

/// A target PostgreSQL with extra `postgresql.conf` lines, the test role and database.
pub async fn start_pg_with(extra_conf: Vec<String>) -> LocalPostgres {
    tokio::task::spawn_blocking(move || {
        let pg = LocalPostgres::start(PostgresOptions {
            extra_conf,
            ..PostgresOptions::default()
        })
        .expect("start postgres");
        pg.psql(
            "postgres",
            &format!("CREATE ROLE {ROLE} LOGIN PASSWORD '{ROLE_PASSWORD}'"),
        )
        .expect("create role");
        pg.psql(
            "postgres",
            &format!("CREATE DATABASE {TARGET} OWNER {ROLE}"),
        )
        .expect("create database");
        pg
    })
    .await
    .expect("join")
}

impl Fixture {
    pub async fn start(config: PgFrontendConfig) -> Fixture {
        let pg = start_pg().await;
        Self::with_pg(pg, config).await
    }

    pub async fn with_pg(pg: LocalPostgres, config: PgFrontendConfig) -> Fixture {
        Self::with_target_tls(pg, config, TargetTls::Disable).await
    }

    pub async fn with_target_tls(
        pg: LocalPostgres,
        config: PgFrontendConfig,
        tls: TargetTls,
    ) -> Fixture {
        let port = pg.port;
        Self::with_endpoint(Some(pg), port, config, tls).await
    }

    /// A proctor listener whose target is whatever listens on 127.0.0.1:`target_port` (a
    /// scripted backend in the hostile-target tests), without TLS.
    pub async fn with_target_port(target_port: u16, config: PgFrontendConfig) -> Fixture {
        Self::with_endpoint(None, target_port, config, TargetTls::Disable).await
    }

    async fn with_endpoint(
        pg: Option<LocalPostgres>,
        target_port: u16,
        config: PgFrontendConfig,
        tls: TargetTls,
    ) -> Fixture {
        let (holds_tx, holds) = mpsc::unbounded_channel();
        let mut verifiers = HashMap::new();
        verifiers.insert(
            AGENT.to_string(),
            postgres_protocol::password::scram_sha_256(AGENT_SECRET.as_bytes()),
        );
        verifiers.insert(
            OTHER_AGENT.to_string(),
            postgres_protocol::password::scram_sha_256(OTHER_SECRET.as_bytes()),
        );
        let authority = Arc::new(TestAuthority {
            verifiers,
            target: PostgresTarget {
                host: "127.0.0.1".into(),
                port: target_port,
                dbname: TARGET.into(),
                tls,
                connect_timeout: Duration::from_secs(5),
                copy_record_limit: proctor_gate::DEFAULT_COPY_RECORD_LIMIT,
            },
            refusals: Mutex::new(Vec::new()),
            sessions: Mutex::new(Vec::new()),
            holds: holds_tx,
            opened_params: Mutex::new(Vec::new()),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (shutdown, rx) = watch::channel(false);
        let config = Arc::new(config);
        let server = tokio::spawn(proctor_postgres::serve(
            listener,
            config.clone(),
            authority.clone(),
            rx,
        ));
        Fixture {
            pg_port: target_port,
            pg,
            authority,
            port,
            holds,
            shutdown,
            server,
            config,
        }
    }

    pub fn pg(&self) -> &LocalPostgres {
        self.pg.as_ref().unwrap()
    }

    pub fn config(&self, user: &str, password: &str) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1")
            .port(self.port)
            .user(user)
            .password(password)
            .dbname(TARGET)
            .application_name("proctor-test")
            .connect_timeout(Duration::from_secs(10));
        c
    }

    pub async fn connect(&self) -> (tokio_postgres::Client, tokio::task::JoinHandle<()>) {
        let (client, conn) = self
            .config(AGENT, AGENT_SECRET)
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect through proctor");
        let h = tokio::spawn(async move {
            let _ = conn.await;
        });
        (client, h)
    }

    /// libpq connection string for psql and pgbench.
    pub fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={AGENT} password={AGENT_SECRET} dbname={TARGET} sslmode=disable",
            self.port
        )
    }

    /// Waits until session `i` has ended (its `Gate::end` was called).
    pub async fn wait_ended(&self, i: usize) -> Arc<TestGate> {
        for _ in 0..400 {
            if self.authority.session_count() > i {
                let g = self.authority.session(i);
                if g.ends.load(Ordering::SeqCst) > 0 {
                    return g;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("session {i} did not end");
    }

    pub async fn next_hold(&mut self) -> PendingHold {
        tokio::time::timeout(Duration::from_secs(10), self.holds.recv())
            .await
            .expect("a hold within 10 s")
            .expect("hold channel open")
    }
}

pub fn db_error(e: &tokio_postgres::Error) -> (String, String, String) {
    match e.as_db_error() {
        Some(d) => (
            d.code().code().to_string(),
            d.severity().to_string(),
            d.message().to_string(),
        ),
        None => (String::new(), String::new(), e.to_string()),
    }
}

/// A hand-driven client for what real clients never send.
pub struct RawClient {
    pub stream: TcpStream,
    pub buf: BytesMut,
    /// The cancel key from BackendKeyData at login.
    pub key: Option<(i32, i32)>,
}

impl RawClient {
    pub async fn connect(port: u16) -> RawClient {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        RawClient {
            stream,
            buf: BytesMut::new(),
            key: None,
        }
    }

    /// Startup and SCRAM as `alice`, until the first ReadyForQuery.
    pub async fn login(port: u16) -> RawClient {
        let mut c = RawClient::connect(port).await;
        let mut out = BytesMut::new();
        frontend::startup_message([("user", AGENT), ("database", TARGET)], &mut out).unwrap();
        c.stream.write_all(&out).await.unwrap();
        let mut scram = ScramSha256::new(AGENT_SECRET.as_bytes(), ChannelBinding::unsupported());
        loop {
            let (tag, body) = c.read().await.expect("message during login");
            let mut out = BytesMut::new();
            match tag {
                b'R' => {
                    let code = (&body[..4]).get_i32();
                    match code {
                        10 => frontend::sasl_initial_response(
                            "SCRAM-SHA-256",
                            scram.message(),
                            &mut out,
                        )
                        .unwrap(),
                        11 => {
                            scram.update(&body[4..]).unwrap();
                            frontend::sasl_response(scram.message(), &mut out).unwrap();
                        }
                        12 => scram.finish(&body[4..]).unwrap(),
                        0 => {}
                        other => panic!("unexpected auth {other}"),
                    }
                    if !out.is_empty() {
                        c.stream.write_all(&out).await.unwrap();
                    }
                }
                b'K' if body.len() == 8 => {
                    let mut b = &body[..];
                    c.key = Some((b.get_i32(), b.get_i32()));
                }
                b'Z' => return c,
                b'E' => panic!("login failed: {}", String::from_utf8_lossy(&body)),
                _ => {}
            }
        }
    }

    /// The next message, or `None` at EOF.
    pub async fn read(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 5 {
                let len = (&self.buf[1..5]).get_i32() as usize;
                if self.buf.len() > len {
                    let tag = self.buf[0];
                    let frame = self.buf.split_to(len + 1);
                    return Some((tag, frame[5..].to_vec()));
                }
            }
            let n =
                tokio::time::timeout(Duration::from_secs(10), self.stream.read_buf(&mut self.buf))
                    .await
                    .expect("read within 10 s")
                    .ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    /// Reads until an ErrorResponse; returns its SQLSTATE and message.
    pub async fn read_error(&mut self) -> Option<(String, String)> {
        while let Some((tag, body)) = self.read().await {
            if tag == b'E' {
                let f = proctor_postgres::wire::ErrorFields::parse(&body);
                return Some((f.code, f.message));
            }
        }
        None
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }
}

pub fn typed(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_u8(tag);
    b.put_i32(body.len() as i32 + 4);
    b.put_slice(body);
    b.to_vec()
}

pub fn peer() -> SocketAddr {
    "127.0.0.1:1".parse().unwrap()
}

pub fn psql(conninfo: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new("psql")
        .arg(conninfo)
        .args(["-X", "-v", "ON_ERROR_STOP=1"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run psql")
}

/// A throw-away CA.
pub struct TestCa {
    pub pem: String,
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

/// A certificate issued by [`TestCa`]: PEM, DER and the private key (PKCS#8 DER and PEM).
pub struct TestCert {
    pub pem: String,
    pub der: rustls::pki_types::CertificateDer<'static>,
    pub key_der: Vec<u8>,
    pub key_pem: String,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "proctor test CA");
        let issuer = rcgen::CertifiedIssuer::self_signed(params, key).unwrap();
        TestCa {
            pem: issuer.pem(),
            issuer,
        }
    }

    pub fn issue(&self, names: &[&str]) -> TestCert {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        TestCert {
            pem: cert.pem(),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
            key_pem: key.serialize_pem(),
        }
    }
}

pub fn server_tls(cert: &TestCert) -> Arc<rustls::ServerConfig> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der.clone()],
        rustls::pki_types::PrivateKeyDer::try_from(cert.key_der.clone()).unwrap(),
    )
    .unwrap();
    cfg.alpn_protocols = vec![proctor_postgres::ALPN_PROTOCOL.to_vec()];
    Arc::new(cfg)
}
