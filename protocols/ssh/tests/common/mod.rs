//! Test fixtures: an in-memory `Authority` + `Gate` that signs its own user certificates, a
//! real `sshd` trusting that CA, proctor's SSH front end on a random port, and the real
//! OpenSSH client as the agent.

#![allow(dead_code)]

pub mod pty;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use proctor_gate::{
    Action, Authority, ChannelKind, Credential, Decision, DenyCause, Durable, Event, Gate,
    GateError, Hold, OpenSession, Outcome, Privilege, Refusal, RefusalKind, Resolution,
    SessionRequest, SshTarget, TargetEndpoint, VerdictKind, VerdictRecord,
};
use proctor_harness::{LocalSshd, SshdOptions, sshd::current_user};
use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::certificate::{Builder, CertType};
use russh::keys::{Algorithm, PrivateKey};
use tokio::sync::{oneshot, watch};
use zeroize::Zeroizing;

/// Output/Input bytes kept per session; beyond it only lengths are kept (large transfers).
const KEEP_DATA: usize = 16 * 1024 * 1024;

pub struct TestGate {
    pub id: String,
    events: Mutex<Vec<Event>>,
    kept: Mutex<usize>,
    kill: watch::Sender<Option<String>>,
    pub ended: Mutex<Option<(Outcome, String)>>,
    holds: Mutex<HashMap<String, oneshot::Sender<Resolution>>>,
    next_hold: Mutex<u32>,
    /// Fault injection: recording an event this matches fails, as a full or broken disk would.
    fail_when: Mutex<Option<FaultRule>>,
}

pub type FaultRule = Arc<dyn Fn(&Event) -> bool + Send + Sync>;

impl TestGate {
    fn new(id: String) -> Self {
        TestGate {
            id,
            events: Mutex::new(Vec::new()),
            kept: Mutex::new(0),
            kill: watch::Sender::new(None),
            ended: Mutex::new(None),
            holds: Mutex::new(HashMap::new()),
            next_hold: Mutex::new(0),
            fail_when: Mutex::new(None),
        }
    }

    /// From now on, recording any event `rule` matches fails (`record`, `enqueue` and the
    /// action event of `decide`); the event is not kept.
    pub fn fail_recording(&self, rule: impl Fn(&Event) -> bool + Send + Sync + 'static) {
        *self.fail_when.lock().unwrap() = Some(Arc::new(rule));
    }

    fn faulty(&self, ev: &Event) -> Result<(), GateError> {
        match &*self.fail_when.lock().unwrap() {
            Some(rule) if rule(ev) => Err(GateError::Recorder("injected fault".into())),
            _ => Ok(()),
        }
    }

    fn push(&self, mut ev: Event) {
        if let Event::Input { data, .. } | Event::Output { data, .. } = &mut ev {
            let mut kept = self.kept.lock().unwrap();
            if *kept + data.len() > KEEP_DATA {
                *data = bytes::Bytes::new();
            } else {
                *kept += data.len();
            }
        }
        self.events.lock().unwrap().push(ev);
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    pub fn command_lines(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::CommandLine { line, .. } => Some(line),
                _ => None,
            })
            .collect()
    }

    pub fn kill(&self, reason: &str) {
        let _ = self.kill.send(Some(reason.to_string()));
    }

    pub fn pending_holds(&self) -> Vec<String> {
        self.holds.lock().unwrap().keys().cloned().collect()
    }

    pub fn resolve(&self, id: &str, approve: bool) {
        let tx = self.holds.lock().unwrap().remove(id).expect("hold exists");
        let r = if approve {
            Resolution::Allow
        } else {
            Resolution::Deny {
                rule: "approval".into(),
                reason: "an approver said no".into(),
                cause: DenyCause::Approver,
            }
        };
        self.push(Event::Approval(proctor_gate::ApprovalRecord {
            approval_id: id.to_string(),
            outcome: if approve {
                proctor_gate::ApprovalOutcome::Approved
            } else {
                proctor_gate::ApprovalOutcome::Denied
            },
            approver: "tester".into(),
            reason: String::new(),
        }));
        let _ = tx.send(r);
    }

    pub fn outcome(&self) -> Option<Outcome> {
        self.ended.lock().unwrap().as_ref().map(|(o, _)| *o)
    }

    fn verdict(&self, subject: String, verdict: VerdictKind, rule: &str, reason: &str, id: &str) {
        self.push(Event::Verdict(VerdictRecord {
            subject,
            verdict,
            rule: rule.into(),
            reason: reason.into(),
            approval_id: id.into(),
        }));
    }
}

#[async_trait]
impl Gate for TestGate {
    fn session_id(&self) -> &str {
        &self.id
    }

    async fn record(&self, event: Event) -> Result<(), GateError> {
        if self.ended.lock().unwrap().is_some() {
            return Err(GateError::Closed("ended".into()));
        }
        self.faulty(&event)?;
        self.push(event);
        Ok(())
    }

    async fn enqueue(&self, event: Event) -> Result<Durable, GateError> {
        self.faulty(&event)?;
        self.push(event);
        Ok(Durable(Box::pin(async { Ok(()) })))
    }

    async fn decide(&self, action: Action) -> Result<Decision, GateError> {
        let subject = action.subject();
        // Record the action as its own event, as the core does.
        let text = match &action {
            Action::Exec { channel, command } => {
                let ev = Event::Exec {
                    channel: *channel,
                    command: command.clone(),
                };
                self.faulty(&ev)?;
                self.push(ev);
                command.clone()
            }
            Action::CommandLine { channel, line } => {
                let ev = Event::CommandLine {
                    channel: *channel,
                    line: line.clone(),
                };
                self.faulty(&ev)?;
                self.push(ev);
                line.clone()
            }
            Action::Channel {
                channel,
                kind,
                detail,
            } => {
                self.push(Event::ChannelOpen {
                    channel: *channel,
                    kind: *kind,
                    detail: detail.clone(),
                });
                detail.clone()
            }
            Action::SftpChange {
                path, target_path, ..
            } => format!("{path} {target_path}"),
            Action::Statement(s) => s.text.clone(),
        };
        if text.contains("forbidden") {
            self.verdict(
                subject,
                VerdictKind::Deny,
                "no-forbidden",
                "forbidden things are forbidden",
                "",
            );
            return Ok(Decision::Deny {
                rule: "no-forbidden".into(),
                reason: "forbidden things are forbidden".into(),
            });
        }
        if text.contains("needs_approval") {
            let id = {
                let mut n = self.next_hold.lock().unwrap();
                *n += 1;
                format!("apr-{}", *n)
            };
            self.verdict(
                subject,
                VerdictKind::Hold,
                "approve-me",
                "a person must look",
                &id,
            );
            let (tx, rx) = oneshot::channel();
            self.holds.lock().unwrap().insert(id.clone(), tx);
            return Ok(Decision::Held(Hold {
                approval_id: id,
                rule: "approve-me".into(),
                reason: "a person must look".into(),
                outcome: Box::pin(async move {
                    rx.await.unwrap_or(Resolution::Deny {
                        rule: "cancelled".into(),
                        reason: "cancelled".into(),
                        cause: DenyCause::Approver,
                    })
                }),
            }));
        }
        self.verdict(subject, VerdictKind::Allow, "default", "", "");
        Ok(Decision::Allow)
    }

    /// A real bash's parser, as the core asks it (read, never run).
    async fn shell_syntax(&self, text: &str) -> proctor_gate::ShellSyntax {
        let text = format!("{text}\n");
        let run = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut child = std::process::Command::new("bash")
                .args(["--noprofile", "--norc", "-n"])
                .env_clear()
                .env("LC_ALL", "C")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()?;
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(text.as_bytes());
            }
            child.wait_with_output()
        })
        .await;
        match run {
            Ok(Ok(out)) => {
                let msg = String::from_utf8_lossy(&out.stderr);
                if msg.contains("unexpected end of file")
                    || msg.contains("unexpected EOF")
                    || msg.contains("delimited by end-of-file")
                {
                    proctor_gate::ShellSyntax::Unfinished
                } else {
                    proctor_gate::ShellSyntax::Complete
                }
            }
            other => proctor_gate::ShellSyntax::Unchecked(format!("{other:?}")),
        }
    }

    fn kill_signal(&self) -> watch::Receiver<Option<String>> {
        self.kill.subscribe()
    }

    async fn end(&self, outcome: Outcome, reason: &str) -> Result<(), GateError> {
        let outcome = if self.kill.borrow().is_some() {
            Outcome::Killed
        } else {
            outcome
        };
        let mut e = self.ended.lock().unwrap();
        assert!(e.is_none(), "end called twice");
        self.events.lock().unwrap().push(Event::SessionEnd {
            outcome,
            reason: reason.to_string(),
        });
        *e = Some((outcome, reason.to_string()));
        Ok(())
    }
}

pub struct TestAuthority {
    ca: PrivateKey,
    pub agents: Mutex<HashMap<String, String>>,
    pub targets: Mutex<HashMap<String, SshTarget>>,
    /// (agent, target) pairs that are granted.
    pub grants: Mutex<Vec<(String, String)>>,
    pub sessions: Mutex<Vec<Arc<TestGate>>>,
    pub refusals: Mutex<Vec<(SessionRequest, Refusal)>>,
    serial: Mutex<u64>,
    /// Fault injection for every session opened from now on (see `TestGate::fail_recording`).
    pub recording_fault: Mutex<Option<FaultRule>>,
}

impl TestAuthority {
    pub fn new() -> Self {
        TestAuthority {
            ca: PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).expect("ca key"),
            agents: Mutex::new(HashMap::new()),
            targets: Mutex::new(HashMap::new()),
            grants: Mutex::new(Vec::new()),
            sessions: Mutex::new(Vec::new()),
            refusals: Mutex::new(Vec::new()),
            serial: Mutex::new(0),
            recording_fault: Mutex::new(None),
        }
    }

    pub fn ca_private_openssh(&self) -> String {
        self.ca.to_openssh(LineEnding::LF).expect("ca").to_string()
    }

    pub fn ca_line(&self) -> String {
        self.ca.public_key().to_openssh().expect("ca line")
    }

    pub fn sessions(&self) -> Vec<Arc<TestGate>> {
        self.sessions.lock().unwrap().clone()
    }

    pub fn refusals(&self) -> Vec<(SessionRequest, Refusal)> {
        self.refusals.lock().unwrap().clone()
    }

    fn issue(&self, login: &str, target: &SshTarget, session: &str) -> Credential {
        let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).expect("key");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("time")
            .as_secs();
        let serial = {
            let mut s = self.serial.lock().unwrap();
            *s += 1;
            *s
        };
        let mut b = Builder::new_with_random_nonce(
            &mut rand::rng(),
            key.public_key().key_data().clone(),
            now - 60,
            now + 300,
        )
        .expect("builder");
        b.serial(serial).expect("serial");
        b.key_id(format!("proctor session={session}"))
            .expect("key id");
        b.cert_type(CertType::User).expect("type");
        b.valid_principal(login).expect("principal");
        if target.allow_pty {
            b.extension("permit-pty", "").expect("ext");
        }
        if target.allow_port_forwarding {
            b.extension("permit-port-forwarding", "").expect("ext");
        }
        let cert = b.sign(&self.ca).expect("sign");
        Credential::SshCertificate {
            login: login.to_string(),
            private_key_openssh: Zeroizing::new(
                key.to_openssh(LineEnding::LF).expect("openssh").to_string(),
            ),
            certificate_openssh: cert.to_openssh().expect("cert"),
        }
    }
}

#[async_trait]
impl Authority for TestAuthority {
    fn agent_scram_verifier(&self, _agent: &str) -> Option<String> {
        None
    }

    fn agent_for_ssh_key(&self, public_key_openssh: &str) -> Option<String> {
        let key: Vec<&str> = public_key_openssh.split_whitespace().take(2).collect();
        self.agents.lock().unwrap().get(&key.join(" ")).cloned()
    }

    async fn open(&self, request: SessionRequest) -> Result<OpenSession, Refusal> {
        let target = self.targets.lock().unwrap().get(&request.target).cloned();
        let refuse = |kind, msg: String| {
            let r = Refusal::new(kind, msg);
            self.refusals
                .lock()
                .unwrap()
                .push((request.clone(), r.clone()));
            Err(r)
        };
        let Some(target) = target else {
            return refuse(
                RefusalKind::UnknownTarget,
                format!("unknown target {}", request.target),
            );
        };
        let granted = self
            .grants
            .lock()
            .unwrap()
            .contains(&(request.agent.clone(), request.target.clone()));
        if !granted {
            return refuse(
                RefusalKind::NotGranted,
                format!("{} is not granted {}", request.agent, request.target),
            );
        }
        let id = format!("s{}", self.sessions.lock().unwrap().len() + 1);
        let login = request.login.clone().unwrap_or_else(current_user);
        let credential = self.issue(&login, &target, &id);
        let gate = Arc::new(TestGate::new(id.clone()));
        *gate.fail_when.lock().unwrap() = self.recording_fault.lock().unwrap().clone();
        self.sessions.lock().unwrap().push(gate.clone());
        Ok(OpenSession {
            gate,
            session_id: id,
            privilege: Privilege::Routine,
            target: TargetEndpoint::Ssh(target),
            credential,
        })
    }

    async fn refuse(&self, request: SessionRequest, refusal: Refusal) {
        self.refusals.lock().unwrap().push((request, refusal));
    }
}

pub fn keygen(path: &Path) -> String {
    keygen_typed(path, "ed25519")
}

/// An OpenSSH key pair of `kind` (`ed25519`, `rsa`, `ecdsa`); returns the public key line.
pub fn keygen_typed(path: &Path, kind: &str) -> String {
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-C", "agent", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success(), "ssh-keygen failed");
    let line = std::fs::read_to_string(path.with_extension("pub")).expect("pub");
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One proctor front end in front of one real sshd, with one agent key.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub sshd: LocalSshd,
    pub authority: Arc<TestAuthority>,
    pub port: u16,
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    shutdown: watch::Sender<bool>,
    pub server: Option<tokio::task::JoinHandle<()>>,
}

pub fn target_for(sshd: &LocalSshd) -> SshTarget {
    SshTarget {
        host: "127.0.0.1".into(),
        port: sshd.port,
        host_keys: vec![sshd.host_key.clone()],
        host_cas: vec![],
        connect_timeout: Duration::from_secs(10),
        allow_port_forwarding: false,
        allow_pty: true,
        shell: proctor_gate::ShellMode::RecordOnly,
    }
}

impl Env {
    pub async fn start() -> Env {
        Env::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut SshTarget)) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let authority = Arc::new(TestAuthority::new());
        let sshd = LocalSshd::start(SshdOptions {
            trusted_user_ca_keys: vec![authority.ca_line()],
            ..Default::default()
        })
        .expect("sshd");
        let mut target = target_for(&sshd);
        adjust(&mut target);
        authority
            .targets
            .lock()
            .unwrap()
            .insert("web1".into(), target);
        let key = dir.path().join("agent_key");
        let line = keygen(&key);
        authority
            .agents
            .lock()
            .unwrap()
            .insert(line, "agent-a".into());
        authority
            .grants
            .lock()
            .unwrap()
            .push(("agent-a".into(), "web1".into()));

        let host_key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).expect("host key");
        let mut config = proctor_ssh::SshFrontendConfig::new(host_key);
        config.auth_rejection_time = Duration::from_millis(50);
        config.auth_timeout = Duration::from_secs(20);
        config.shutdown_grace = Duration::from_secs(5);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let known_hosts = dir.path().join("known_hosts");
        std::fs::write(
            &known_hosts,
            config.known_hosts_line("127.0.0.1", port) + "\n",
        )
        .expect("known_hosts");
        let (shutdown, rx) = watch::channel(false);
        let auth: Arc<dyn Authority> = authority.clone();
        let server = tokio::spawn(async move {
            proctor_ssh::serve(listener, Arc::new(config), auth, rx)
                .await
                .expect("serve");
        });
        Env {
            dir,
            sshd,
            authority,
            port,
            key,
            known_hosts,
            shutdown,
            server: Some(server),
        }
    }

    /// OpenSSH client options shared by ssh, scp, sftp and rsync.
    pub fn ssh_options(&self) -> Vec<String> {
        self.ssh_options_with_key(&self.key)
    }

    /// The same options, authenticating with `key` alone.
    pub fn ssh_options_with_key(&self, key: &Path) -> Vec<String> {
        vec![
            "-F".into(),
            "/dev/null".into(),
            "-i".into(),
            key.display().to_string(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
        ]
    }

    pub fn ssh(&self, user: &str) -> tokio::process::Command {
        self.ssh_with_key(&self.key, user)
    }

    /// `ssh` as `user`, authenticating with `key` alone.
    pub fn ssh_with_key(&self, key: &Path, user: &str) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("ssh");
        c.args(self.ssh_options_with_key(key))
            .args(["-p", &self.port.to_string(), "-l", user, "127.0.0.1"])
            .kill_on_drop(true)
            .stdin(std::process::Stdio::null());
        c
    }

    /// The one-line ssh command rsync and friends take with `-e`.
    pub fn ssh_command_line(&self) -> String {
        let mut v = vec!["ssh".to_string()];
        v.extend(self.ssh_options());
        v.push("-p".into());
        v.push(self.port.to_string());
        v.join(" ")
    }

    /// Every session opened from now on fails to record the events `rule` matches.
    pub fn fail_recording(&self, rule: impl Fn(&Event) -> bool + Send + Sync + 'static) {
        *self.authority.recording_fault.lock().unwrap() = Some(Arc::new(rule));
    }

    pub fn session(&self, n: usize) -> Arc<TestGate> {
        self.authority.sessions()[n].clone()
    }

    pub async fn shutdown(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(s) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), s).await;
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Polls `f` until it is true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

pub fn kinds(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind_name()).collect()
}

pub fn output_of(events: &[Event], channel_kind_filter: Option<ChannelKind>) -> Vec<u8> {
    let _ = channel_kind_filter;
    let mut out = Vec::new();
    for e in events {
        if let Event::Output { data, .. } = e {
            out.extend_from_slice(data);
        }
    }
    out
}

pub fn peer() -> SocketAddr {
    "127.0.0.1:1".parse().expect("addr")
}
