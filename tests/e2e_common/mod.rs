//! What the end-to-end suites share: the binary under test, bounded waits, and the auditor
//! CLI run against a test's data directory.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use proctor_harness::{ChildGuard, wait_for_port};
use serde_json::Value;

/// Upper bound for anything a test waits on.
pub const T: Duration = Duration::from_secs(30);

/// The proctor binary under test; `PROCTOR_BIN` points the scale tests at a release build.
pub fn bin() -> String {
    std::env::var("PROCTOR_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_proctor").to_string())
}

/// Polls `f` until it holds or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// Waits for a child with a deadline; kills it (and fails) when the deadline passes.
pub fn wait_output(mut child: Child, timeout: Duration) -> Output {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("output");
                panic!(
                    "child did not finish in {timeout:?}; stdout: {} stderr: {}",
                    text(&out.stdout),
                    text(&out.stderr)
                );
            }
        }
    }
    child.wait_with_output().expect("output")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Whether `proctor verify` passed. Its summary is the last line; notes may come before it
/// (against a live store: a session sealed a moment ago whose ledger entry is being written).
/// After a crash, exit 3 with an `UNSIGNED TAIL` summary is intact too: records after a
/// session's last checkpoint, sealed by the restart, are named but not a failure.
pub fn verified(out: &Output) -> bool {
    let last = text(&out.stdout)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(str::to_string)
        .unwrap_or_default();
    match out.status.code() {
        Some(0) => last.starts_with("OK"),
        Some(3) => last.starts_with("UNSIGNED TAIL:"),
        _ => false,
    }
}

/// The proctor CLI against one data directory (`--data` appended to every command).
pub struct StoreCli<'a> {
    pub data: &'a Path,
}

impl StoreCli<'_> {
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .args(args)
            .arg("--data")
            .arg(self.data)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .expect("proctor cli")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "proctor {args:?} failed: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("proctor {args:?}: {e}: {out}"))
    }

    /// Every session, newest first.
    pub fn sessions(&self) -> Vec<Value> {
        match self.json(&["sessions", "list", "--json"]) {
            Value::Array(v) => v,
            other => panic!("sessions list: {other}"),
        }
    }

    /// Waits for a session matching `pred` to be sealed, and returns it.
    pub fn sealed_session(&self, pred: impl Fn(&Value) -> bool) -> Value {
        let mut found = None;
        let ok = eventually(T, || {
            found = self
                .sessions()
                .into_iter()
                .find(|s| pred(s) && s["sealed"] == Value::Bool(true));
            found.is_some()
        });
        assert!(
            ok,
            "no sealed session matched; sessions: {:?}",
            self.sessions()
        );
        found.expect("session")
    }
}

/// Starts `proctor serve --config CONFIG`, appending its log to `log`, and waits until it
/// listens on `port`.
pub fn start_serve(config: &Path, log: &Path, port: u16) -> ChildGuard {
    let logf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log");
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--config"])
        .arg(config)
        .env("PROCTOR_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(logf);
    let mut child = ChildGuard::spawn("proctor", &mut cmd).expect("spawn proctor");
    let up = wait_for_port(port, T);
    assert!(
        up && !child.exited(),
        "proctor did not start: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    child
}
