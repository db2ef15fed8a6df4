//! Shared fixtures for the end-to-end SSH tests: a real `proctor serve` process with its real
//! recorder and the shipped policies, a real `sshd` trusting proctor's user CA, the real
//! OpenSSH tools as the agent, and the auditor CLI to check what was recorded.

#![allow(dead_code)]

#[path = "../e2e_common/mod.rs"]
mod e2e_common;
pub use e2e_common::*;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use proctor_harness::sshd::current_user;
use proctor_harness::{ChildGuard, LocalSshd, SshdOptions, free_port};
use serde_json::Value;

pub const T: Duration = Duration::from_secs(30);

pub const AGENT: &str = "e2e-agent";

pub fn keygen(path: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "e2e", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success(), "ssh-keygen failed");
    let line = std::fs::read_to_string(path.with_extension("pub")).expect("public key");
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a test may change in the generated configuration.
pub struct Options {
    pub privilege: &'static str,
    pub port_forwarding: bool,
    pub approval_timeout: &'static str,
    /// Extra `sshd_config` lines for the target.
    pub sshd_extra: Vec<String>,
    /// The `box` grant's `shell` (`judged`, `record-only`, `deny`); unset: the default.
    pub shell: Option<&'static str>,
    /// Rules loaded before the shipped policies (a write guard on a scratch path).
    pub extra_rules: Option<&'static str>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            privilege: "elevated",
            port_forwarding: false,
            approval_timeout: "2m",
            sshd_extra: Vec::new(),
            shell: None,
            extra_rules: None,
        }
    }
}

/// One proctor serving SSH in front of one real sshd.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub config: PathBuf,
    pub port: u16,
    /// The agent's key (registered and granted).
    pub key: PathBuf,
    /// A key no agent owns.
    pub stranger_key: PathBuf,
    pub known_hosts: PathBuf,
    pub login: String,
    pub sshd: LocalSshd,
    pub log: PathBuf,
    proctor: Option<ChildGuard>,
}

impl Env {
    pub fn start() -> Env {
        Env::start_with(Options::default())
    }

    pub fn start_with(opts: Options) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let ca = proctor::credentials::ssh_ca::SshCa::load_or_init(&data).expect("ssh ca");
        let sshd = LocalSshd::start(SshdOptions {
            trusted_user_ca_keys: vec![ca.public_line()],
            extra_config: opts.sshd_extra.clone(),
            ..Default::default()
        })
        .expect("sshd");
        let host_key = dir.path().join("proctor_host_key");
        let host_line = keygen(&host_key);
        let key = dir.path().join("agent_key");
        let agent_line = keygen(&key);
        let stranger_key = dir.path().join("stranger_key");
        keygen(&stranger_key);
        // Keys for targets pinned to something sshd does not present.
        let wrong_host = keygen(&dir.path().join("wrong_host_key"));
        let host_ca = keygen(&dir.path().join("host_ca"));
        let port = free_port().expect("port");
        let known_hosts = dir.path().join("known_hosts");
        std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_line}\n"))
            .expect("known_hosts");
        let login = current_user();
        let config = dir.path().join("proctor.toml");
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let policies = match opts.extra_rules {
            Some(rules) => {
                let extra = dir.path().join("00-extra.toml");
                std::fs::write(&extra, rules).expect("extra rules");
                format!("{}\", \"{}", extra.display(), shipped.display())
            }
            None => shipped.display().to_string(),
        };
        let target = |name: &str, keys: &str| {
            format!(
                "[[targets]]\nname = \"{name}\"\nkind = \"ssh\"\nhost = \"127.0.0.1\"\nport = {}\n{keys}\nconnect_timeout = \"5s\"\n",
                sshd.port
            )
        };
        let cfg = format!(
            r#"data_dir = "{data}"
policies = ["{policies}"]
[listen]
ssh = "127.0.0.1:{port}"
[ssh]
host_key = "{host_key}"
[approvals]
timeout = "{timeout}"
[[agents]]
name = "{AGENT}"
ssh_keys = ["{agent_line}"]
[[agents]]
name = "bystander"
ssh_keys = []
{box_target}
{changed}
{unknown}
{other}
[[grants]]
name = "box"
agent = "{AGENT}"
target = "box"
privilege = "{privilege}"
logins = ["{login}"]
port_forwarding = {forwarding}
{shell}
[[grants]]
name = "changed"
agent = "{AGENT}"
target = "changed-key"
privilege = "routine"
logins = ["{login}"]
[[grants]]
name = "unknown"
agent = "{AGENT}"
target = "unknown-key"
privilege = "routine"
logins = ["{login}"]
[[grants]]
name = "other"
agent = "bystander"
target = "other"
privilege = "routine"
logins = ["{login}"]
"#,
            data = data.display(),
            host_key = host_key.display(),
            timeout = opts.approval_timeout,
            privilege = opts.privilege,
            forwarding = opts.port_forwarding,
            shell = opts
                .shell
                .map(|s| format!("shell = \"{s}\""))
                .unwrap_or_default(),
            box_target = target("box", &format!("host_keys = [\"{}\"]", sshd.host_key)),
            changed = target("changed-key", &format!("host_keys = [\"{wrong_host}\"]")),
            unknown = target("unknown-key", &format!("host_cas = [\"{host_ca}\"]")),
            other = target("other", &format!("host_keys = [\"{}\"]", sshd.host_key)),
        );
        std::fs::write(&config, cfg).expect("config");
        let log = dir.path().join("proctor.log");
        let mut env = Env {
            data,
            config,
            port,
            key,
            stranger_key,
            known_hosts,
            login,
            sshd,
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

    pub fn proctor_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// OpenSSH options shared by ssh, scp, sftp and rsync (no port: scp/sftp spell it `-P`).
    pub fn client_options(&self, key: &Path) -> Vec<String> {
        [
            "-F",
            "/dev/null",
            "-i",
            &key.display().to_string(),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            &format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "LogLevel=ERROR",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    pub fn ssh_with_key(&self, key: &Path, user: &str) -> Command {
        let mut c = Command::new("ssh");
        c.args(self.client_options(key))
            .args(["-p", &self.port.to_string(), "-l", user, "127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// `ssh -l USER 127.0.0.1` as the agent.
    pub fn ssh(&self, user: &str) -> Command {
        self.ssh_with_key(&self.key, user)
    }

    /// An interactive `ssh -tt` to `box` as the agent, in a pty driven by keystrokes.
    pub fn terminal(&self) -> Pty {
        let mut cmd = Command::new("ssh");
        cmd.args(self.client_options(&self.key)).args([
            "-tt",
            "-p",
            &self.port.to_string(),
            "-l",
            "box",
            "127.0.0.1",
        ]);
        Pty::spawn(cmd)
    }

    /// Runs `command` on `box` and returns its output (bounded by `T`).
    pub fn exec(&self, command: &str) -> Output {
        let child = self.ssh("box").arg(command).spawn().expect("ssh");
        wait_output(child, T)
    }

    /// The `-e` argument of rsync.
    pub fn ssh_command_line(&self) -> String {
        let mut v = vec!["ssh".to_string()];
        v.extend(self.client_options(&self.key));
        v.push("-p".into());
        v.push(self.port.to_string());
        v.join(" ")
    }

    /// The proctor CLI against this store.
    pub fn store(&self) -> StoreCli<'_> {
        StoreCli { data: &self.data }
    }

    /// The one live session of the agent (waits for it to appear).
    pub fn live_session(&self) -> String {
        let mut id = None;
        let ok = eventually(T, || {
            id = self
                .store()
                .sessions()
                .into_iter()
                .find(|s| s["sealed"] != Value::Bool(true) && s["agent"] == AGENT)
                .and_then(|s| s["id"].as_str().map(String::from));
            id.is_some()
        });
        assert!(ok, "no live session");
        id.expect("id")
    }

    /// `proctor export SESSION --format jsonl`, one value per record; records of the kinds in
    /// `skip` are left out unparsed (large outputs).
    pub fn export_filtered(&self, session: &str, skip: &[&str]) -> Vec<Value> {
        let mut child = Command::new(bin())
            .args(["export", session, "--format", "jsonl", "--data"])
            .arg(&self.data)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("export");
        let stdout = child.stdout.take().expect("stdout");
        let mut out = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("line");
            if skip
                .iter()
                .any(|k| line.contains(&format!("\"kind\":\"{k}\"")))
            {
                continue;
            }
            out.push(serde_json::from_str(&line).expect("json line"));
        }
        let status = child.wait().expect("export");
        assert!(status.success(), "export failed");
        out
    }

    pub fn export(&self, session: &str) -> Vec<Value> {
        self.export_filtered(session, &[])
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

    pub fn wait_approval(&self) -> Value {
        let mut found = None;
        assert!(
            eventually(T, || {
                found = self.approvals().into_iter().next();
                found.is_some()
            }),
            "nothing was held"
        );
        found.expect("approval")
    }

    /// Kills every process of the target sshd (listener and per-connection children).
    pub fn kill_target(&mut self) {
        let pid: i32 = std::fs::read_to_string(self.sshd.dir.join("sshd.pid"))
            .expect("sshd pid")
            .trim()
            .parse()
            .expect("pid");
        let below = descendants(pid);
        // SAFETY: signalling processes started by this test's own sshd.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
        for p in below {
            // SAFETY: as above; parents first so none reports a child's death as an exit.
            unsafe {
                libc::kill(p, libc::SIGKILL);
            }
        }
        self.sshd.kill();
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

pub fn str_field(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap_or_default().to_string()
}

/// Every process below `pid` (per /proc), parents first.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut all = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            break;
        };
        for entry in entries.flatten() {
            let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
                continue;
            };
            let Some((_, after)) = stat.rsplit_once(')') else {
                continue;
            };
            let ppid = after
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse::<i32>().ok());
            if ppid == Some(p) {
                all.push(child);
                frontier.push(child);
            }
        }
    }
    all
}

/// Resident set size of a process in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> u64 {
    proctor_harness::proc_status_kib(pid, "VmRSS")
}

#[allow(unused_imports)]
pub use proctor_harness::pty::{Pty, set_size};

pub trait PtyWait {
    fn wait_for(&self, needle: &str, count: usize) -> bool;
    /// Waits until nothing new has been printed for a moment.
    fn quiet(&self);
}

impl PtyWait for Pty {
    fn wait_for(&self, needle: &str, count: usize) -> bool {
        eventually(T, || self.output().matches(needle).count() >= count)
    }

    fn quiet(&self) {
        let mut last = self.printed();
        let mut since = Instant::now();
        let start = Instant::now();
        while start.elapsed() < T {
            std::thread::sleep(Duration::from_millis(50));
            let now = self.printed();
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() > Duration::from_millis(300) {
                return;
            }
        }
    }
}
