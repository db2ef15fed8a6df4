//! End to end over SSH with nothing mocked: the real OpenSSH tools (`ssh`, `scp`, `sftp`,
//! `rsync`, ControlMaster) as the agent, a real `proctor serve` process with its durable
//! recorder and the shipped policies, and a real `sshd` that trusts proctor's user CA. After
//! each scenario the store passes `proctor verify` and the export holds what was run.

mod ssh_support;

use std::io::Read;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use ssh_support::{
    AGENT, Env, Options, Pty, PtyWait, T, eventually, of_kind, set_size, str_field, text,
    wait_output,
};

fn id(session: &Value) -> String {
    str_field(session, "id")
}

fn by(agent: &'static str, target: &'static str) -> impl Fn(&Value) -> bool {
    move |s: &Value| s["agent"] == agent && s["target"] == target
}

/// Command lines and exec commands recorded in a session, in order.
fn commands(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| match r["kind"].as_str() {
            Some("exec") => Some(str_field(r, "command")),
            Some("command_line") => Some(str_field(r, "line")),
            _ => None,
        })
        .collect()
}

fn verdicts(records: &[Value]) -> Vec<(String, String)> {
    of_kind(records, "verdict")
        .iter()
        .map(|v| (str_field(v, "verdict"), str_field(v, "rule")))
        .collect()
}

/// `replay --step` lists every command of the session.
fn assert_replay_shows(env: &Env, session: &str, wanted: &[&str]) {
    let step = env.store().ok(&["replay", session, "--step"]);
    for w in wanted {
        assert!(step.contains(w), "replay --step lacks {w:?}:\n{step}");
    }
}

#[test]
fn exec_relays_output_and_exit_status() {
    let env = Env::start();
    let out = env.exec("echo hello-$((6*7)); echo on-stderr >&2; exit 3");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello-42\n");
    assert!(text(&out.stderr).contains("on-stderr"));

    let s = env.store().sealed_session(by(AGENT, "box"));
    assert_eq!(s["outcome"], "completed");
    assert_eq!(s["login"], env.login.as_str());
    let recs = env.export(&id(&s));
    assert_eq!(
        commands(&recs),
        vec!["echo hello-$((6*7)); echo on-stderr >&2; exit 3"]
    );
    assert_eq!(verdicts(&recs), vec![("allow".into(), "default".into())]);
    let exit = of_kind(&recs, "exit_status");
    assert_eq!(exit.len(), 1);
    assert_eq!(exit[0]["status"], 3);
    let outputs = of_kind(&recs, "output");
    assert!(
        outputs
            .iter()
            .any(|o| o["stream"] == "stdout" && o["data"] == "hello-42\n")
    );
    assert!(outputs.iter().any(|o| o["stream"] == "stderr"));
    assert_eq!(of_kind(&recs, "credential_issued").len(), 1);
    assert_eq!(of_kind(&recs, "credential_revoked").len(), 1);
    env.verify();
    assert_replay_shows(&env, &id(&s), &["exec", "echo hello-$((6*7))", "hello-42"]);
}

#[test]
fn interactive_shell_resize_held_line_approved_and_denied_line() {
    let env = Env::start();
    let victim = env.dir.path().join("victim");
    std::fs::create_dir_all(victim.join("inner")).expect("victim");
    let mut cmd = Command::new("ssh");
    cmd.args(env.client_options(&env.key)).args([
        "-tt",
        "-o",
        "SetEnv=PROCTOR_REASON=\"cleaning up the e2e victim\"",
        "-p",
        &env.port.to_string(),
        "-l",
        "box",
        "127.0.0.1",
    ]);
    // ssh asks for a terminal of this type; the asciicast export must say the same.
    cmd.env("TERM", "vt220");
    let mut pty = Pty::spawn(cmd);
    pty.quiet();

    pty.type_in(b"echo hello-$((40+2))\r");
    assert!(pty.wait_for("hello-42", 1), "{}", pty.output());
    pty.quiet();

    set_size(pty.master.as_raw_fd(), 100, 40);
    std::thread::sleep(Duration::from_millis(300));
    pty.type_in(b"stty size\r");
    assert!(pty.wait_for("40 100", 1), "{}", pty.output());
    pty.quiet();

    // Held by ssh-hold-recursive-remove; approved from the CLI while the agent waits.
    let rm = format!("rm -r {}", victim.display());
    pty.type_in(format!("{rm}\r").as_bytes());
    let approval = env.wait_approval();
    assert!(pty.wait_for("held for approval", 1), "{}", pty.output());
    assert_eq!(approval["kind"], "line");
    assert_eq!(approval["detail"], rm.as_str());
    assert_eq!(approval["rule"], "ssh-hold-recursive-remove");
    assert!(
        approval["reasoning"]
            .to_string()
            .contains("cleaning up the e2e victim")
    );
    assert!(victim.exists(), "nothing runs before the approval");
    let approval_id = str_field(&approval, "id");
    env.store()
        .ok(&["approvals", "approve", &approval_id, "--reason", "e2e ok"]);
    assert!(eventually(T, || !victim.exists()), "{}", pty.output());
    pty.quiet();

    // Denied by ssh-deny-shadow-write: cleared on the target (the line appends nothing anyway).
    pty.type_in(b"cat /dev/null >> /etc/shadow\r");
    assert!(pty.wait_for("denied by policy", 1), "{}", pty.output());
    pty.quiet();
    pty.type_in(b"echo after-$((2+2))\r");
    assert!(pty.wait_for("after-4", 1), "{}", pty.output());
    pty.quiet();
    pty.type_in(b"exit\r");
    assert!(eventually(T, || pty.exited()), "{}", pty.output());

    let s = env.store().sealed_session(by(AGENT, "box"));
    assert_eq!(s["outcome"], "completed");
    let sid = id(&s);
    let recs = env.export(&sid);
    assert_eq!(
        commands(&recs),
        vec![
            "echo hello-$((40+2))".to_string(),
            "stty size".into(),
            rm.clone(),
            "cat /dev/null >> /etc/shadow".into(),
            "echo after-$((2+2))".into(),
            "exit".into(),
        ],
        "{}",
        pty.output()
    );
    let v = verdicts(&recs);
    assert!(v.contains(&("hold".into(), "ssh-hold-recursive-remove".into())));
    assert!(v.contains(&("deny".into(), "ssh-deny-shadow-write".into())));
    let approvals = of_kind(&recs, "approval");
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0]["outcome"], "approved");
    assert_eq!(approvals[0]["approval_id"], approval_id.as_str());
    assert!(
        of_kind(&recs, "resize")
            .iter()
            .any(|r| r["cols"] == 100 && r["rows"] == 40)
    );
    assert!(
        of_kind(&recs, "annotation")
            .iter()
            .any(|a| str_field(a, "text").contains("cleaning up"))
    );
    assert!(!of_kind(&recs, "input").is_empty());
    env.verify();
    assert_replay_shows(
        &env,
        &sid,
        &["stty size", &rm, "cat /dev/null >> /etc/shadow", "after-4"],
    );

    // The terminal export plays: a v2 header with the first terminal size, then events.
    let cast = env.store().ok(&["export", &sid, "--format", "asciicast"]);
    let mut lines = cast.lines();
    let header: Value = serde_json::from_str(lines.next().expect("header")).expect("json");
    assert_eq!(header["version"], 2);
    assert_eq!(header["width"], 80);
    assert_eq!(header["height"], 24);
    assert!(header["timestamp"].as_i64().unwrap_or(0) > 1_600_000_000);
    // TERM is the one the client asked for in its pty request.
    let pty_term = of_kind(&recs, "channel_request")
        .iter()
        .filter(|r| r["request"] == "pty-req")
        .find_map(|r| {
            str_field(r, "detail")
                .split_whitespace()
                .find_map(|w| w.strip_prefix("term=").map(str::to_string))
        })
        .expect("a recorded pty request");
    assert_eq!(pty_term, "vt220");
    assert_eq!(header["env"]["TERM"], "vt220");
    let events: Vec<Value> = lines
        .map(|l| serde_json::from_str(l).expect("event"))
        .collect();
    assert!(events.iter().any(|e| e[1] == "o"));
    assert!(events.iter().any(|e| e[1] == "r" && e[2] == "100x40"));
    let times: Vec<f64> = events.iter().filter_map(|e| e[0].as_f64()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "times go forward");
}

#[test]
fn held_exec_denied_by_an_approver_never_runs() {
    let env = Env::start();
    let victim = env.dir.path().join("keep-me");
    std::fs::create_dir_all(&victim).expect("victim");
    let rm = format!("rm -r {}", victim.display());
    let child = env.ssh("box").arg(&rm).spawn().expect("ssh");
    let approval = env.wait_approval();
    assert_eq!(approval["kind"], "exec");
    let aid = str_field(&approval, "id");
    env.store()
        .ok(&["approvals", "deny", &aid, "--reason", "not on a Friday"]);
    let out = wait_output(child, T);
    assert_eq!(
        out.status.code(),
        Some(proctor_ssh::DENIED_EXIT_STATUS as i32)
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&aid), "{stderr}");
    assert!(stderr.contains("not on a Friday"), "{stderr}");
    assert!(victim.exists());

    let s = env.store().sealed_session(by(AGENT, "box"));
    let recs = env.export(&id(&s));
    assert_eq!(commands(&recs), vec![rm]);
    assert_eq!(
        verdicts(&recs),
        vec![("hold".into(), "ssh-hold-recursive-remove".into())]
    );
    let a = of_kind(&recs, "approval");
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["outcome"], "denied");
    assert_eq!(of_kind(&recs, "exit_status")[0]["status"], 126);
    env.verify();
}

#[test]
fn scp_both_ways_and_sftp_batch() {
    let env = Env::start();
    let dir = env.dir.path();
    let local = dir.join("local.bin");
    let content: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&local, &content).expect("local");
    let remote = dir.join("remote");
    std::fs::create_dir_all(&remote).expect("remote dir");
    let scp = |legacy: bool, from: String, to: String| {
        let mut c = Command::new("scp");
        c.args(env.client_options(&env.key))
            .args(["-P", &env.port.to_string()]);
        if legacy {
            c.arg("-O");
        }
        let out = wait_output(
            c.arg(from)
                .arg(to)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("scp"),
            T,
        );
        assert!(out.status.success(), "scp: {}", text(&out.stderr));
    };
    let host = |p: &std::path::Path| format!("box@127.0.0.1:{}", p.display());
    // SFTP-mode scp, both ways.
    let up = remote.join("up.bin");
    scp(false, local.display().to_string(), host(&up));
    assert_eq!(std::fs::read(&up).expect("up"), content);
    let down = dir.join("down.bin");
    scp(false, host(&up), down.display().to_string());
    assert_eq!(std::fs::read(&down).expect("down"), content);
    // Legacy scp (an exec of `scp -t` / `scp -f`), both ways.
    let up_legacy = remote.join("up-legacy.bin");
    scp(true, local.display().to_string(), host(&up_legacy));
    assert_eq!(std::fs::read(&up_legacy).expect("up legacy"), content);
    let down_legacy = dir.join("down-legacy.bin");
    scp(true, host(&up_legacy), down_legacy.display().to_string());
    assert_eq!(std::fs::read(&down_legacy).expect("down legacy"), content);

    // sftp in batch mode: put, get, mkdir, rename, remove.
    let batch = dir.join("batch");
    let fetched = dir.join("fetched.bin");
    std::fs::write(
        &batch,
        format!(
            "put {local} {r}/put.bin\nget {r}/put.bin {fetched}\nmkdir {r}/sub\nrename {r}/put.bin {r}/sub/moved.bin\nrm {r}/up-legacy.bin\nls {r}/sub\n",
            local = local.display(),
            r = remote.display(),
            fetched = fetched.display()
        ),
    )
    .expect("batch");
    let mut c = Command::new("sftp");
    c.args(env.client_options(&env.key))
        .args(["-P", &env.port.to_string(), "-b"])
        .arg(&batch)
        .arg("box@127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = wait_output(c.spawn().expect("sftp"), T);
    assert!(out.status.success(), "sftp: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("moved.bin"));
    assert_eq!(std::fs::read(&fetched).expect("fetched"), content);
    assert_eq!(
        std::fs::read(remote.join("sub/moved.bin")).expect("moved"),
        content
    );
    assert!(!remote.join("up-legacy.bin").exists());

    // Five connections, five sealed sessions; every file operation is in the recording.
    assert!(eventually(T, || env
        .store()
        .sessions()
        .iter()
        .filter(|s| s["sealed"] == true)
        .count()
        == 5));
    let digest = hex::encode(Sha256::digest(&content));
    let mut sftp_ops = Vec::new();
    let mut execs = Vec::new();
    for s in env.store().sessions() {
        assert_eq!(s["outcome"], "completed", "{s}");
        let recs = env.export(&id(&s));
        execs.extend(commands(&recs));
        for op in of_kind(&recs, "sftp") {
            sftp_ops.push(op.clone());
        }
    }
    let has_op = |op: &str, path: &std::path::Path| {
        sftp_ops
            .iter()
            .any(|o| o["op"] == op && str_field(o, "path") == path.display().to_string())
    };
    assert!(
        has_op("open-write", &up) || has_op("open", &up),
        "{sftp_ops:?}"
    );
    assert!(has_op("mkdir", &remote.join("sub")), "{sftp_ops:?}");
    assert!(has_op("rename", &remote.join("put.bin")), "{sftp_ops:?}");
    assert!(
        has_op("remove", &remote.join("up-legacy.bin")),
        "{sftp_ops:?}"
    );
    // The bytes written to and read from the files are digested per file.
    let digests: Vec<String> = sftp_ops
        .iter()
        .flat_map(|o| {
            [
                str_field(o, "sha256_written"),
                str_field(o, "sha256_read"),
                str_field(o, "digest_written"),
                str_field(o, "digest_read"),
            ]
        })
        .collect();
    assert!(
        digests.iter().any(|d| d == &digest),
        "no SFTP record carries the file's SHA-256 {digest}: {sftp_ops:?}"
    );
    assert!(
        execs.iter().any(|e| e.starts_with("scp -t")),
        "legacy upload is an exec: {execs:?}"
    );
    assert!(
        execs.iter().any(|e| e.starts_with("scp -f")),
        "legacy download is an exec: {execs:?}"
    );
    env.verify();
}

#[test]
fn rsync_both_ways() {
    let env = Env::start();
    let dir = env.dir.path();
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("nested")).expect("src");
    std::fs::write(src.join("a.txt"), b"alpha\n").expect("a");
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(src.join("nested/b.bin"), &big).expect("b");
    let dst = dir.join("dst");
    let back = dir.join("back");
    let rsync = |from: String, to: String| {
        let out = wait_output(
            Command::new("rsync")
                .args(["-a", "-e", &env.ssh_command_line()])
                .arg(from)
                .arg(to)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("rsync"),
            T,
        );
        assert!(out.status.success(), "rsync: {}", text(&out.stderr));
    };
    rsync(
        format!("{}/", src.display()),
        format!("box@127.0.0.1:{}/", dst.display()),
    );
    assert_eq!(std::fs::read(dst.join("a.txt")).expect("a"), b"alpha\n");
    assert_eq!(std::fs::read(dst.join("nested/b.bin")).expect("b"), big);
    rsync(
        format!("box@127.0.0.1:{}/", dst.display()),
        format!("{}/", back.display()),
    );
    assert_eq!(std::fs::read(back.join("nested/b.bin")).expect("b"), big);

    assert!(eventually(T, || env
        .store()
        .sessions()
        .iter()
        .filter(|s| s["sealed"] == true)
        .count()
        == 2));
    let mut execs = Vec::new();
    for s in env.store().sessions() {
        assert_eq!(s["outcome"], "completed");
        execs.extend(commands(&env.export(&id(&s))));
    }
    assert_eq!(execs.len(), 2, "{execs:?}");
    assert!(
        execs.iter().all(|e| e.starts_with("rsync --server")),
        "{execs:?}"
    );
    env.verify();
}

#[test]
fn control_master_carries_two_commands_on_one_connection() {
    let env = Env::start();
    let socket = env.dir.path().join("cm");
    let mut opts = env.client_options(&env.key);
    opts.extend([
        "-o".to_string(),
        format!("ControlPath={}", socket.display()),
        "-p".into(),
        env.port.to_string(),
        "-l".into(),
        "box".into(),
    ]);
    let mut master = Command::new("ssh")
        .args(&opts)
        .args(["-M", "-N", "127.0.0.1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("master");
    assert!(eventually(T, || socket.exists()), "no control socket");
    for word in ["first", "second"] {
        let out = wait_output(
            Command::new("ssh")
                .args(&opts)
                .args(["-o", "ControlMaster=no", "127.0.0.1"])
                .arg(format!("echo {word}-$((1+1))"))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("ssh"),
            T,
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("{word}-2\n"));
    }
    // Both ran inside the one session the master opened.
    assert_eq!(env.store().sessions().len(), 1);
    let out = Command::new("ssh")
        .args(&opts)
        .args(["-O", "exit", "127.0.0.1"])
        .stdin(Stdio::null())
        .output()
        .expect("ssh -O exit");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let _ = wait_output_or_kill(&mut master);

    let s = env.store().sealed_session(by(AGENT, "box"));
    assert_eq!(s["outcome"], "completed");
    let recs = env.export(&id(&s));
    assert_eq!(
        commands(&recs),
        vec!["echo first-$((1+1))", "echo second-$((1+1))"]
    );
    let channels: std::collections::BTreeSet<i64> = of_kind(&recs, "exec")
        .iter()
        .filter_map(|e| e["channel"].as_i64())
        .collect();
    assert_eq!(channels.len(), 2, "two channels of one connection");
    env.verify();
}

fn wait_output_or_kill(child: &mut std::process::Child) -> Option<std::process::ExitStatus> {
    let ok = eventually(T, || matches!(child.try_wait(), Ok(Some(_))));
    if !ok {
        let _ = child.kill();
    }
    child.wait().ok()
}

#[test]
fn large_output_matches_the_recorded_digest() {
    const SIZE: usize = 100 * 1000 * 1000;
    let env = Env::start();
    // Incompressible, reproducible content (xorshift), so a truncation or reorder shows.
    let file = env.dir.path().join("big.bin");
    let mut content = vec![0u8; SIZE];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for chunk in content.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(&file, &content).expect("big file");
    let expected = hex::encode(Sha256::digest(&content));
    drop(content);

    let mut child = env
        .ssh("box")
        .arg(format!("cat {}", file.display()))
        .spawn()
        .expect("ssh");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut h = Sha256::new();
        let mut n = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => {
                    h.update(&buf[..k]);
                    n += k;
                }
            }
        }
        (n, hex::encode(h.finalize()))
    });
    let out = wait_output(child, Duration::from_secs(600));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (got_len, got) = reader.join().expect("reader");
    assert_eq!(got_len, SIZE);
    assert_eq!(got, expected, "the agent received the file");

    let s = env.store().sealed_session(by(AGENT, "box"));
    let recs = env.export_filtered(&id(&s), &["output"]);
    let close = of_kind(&recs, "channel_close");
    assert_eq!(close.len(), 1);
    assert_eq!(close[0]["bytes_out"], SIZE as u64);
    assert_eq!(str_field(close[0], "sha256_out"), expected);
    env.verify();
}

#[test]
fn every_auth_refusal_is_recorded_as_a_denied_session_or_counted() {
    let mut env = Env::start();
    let refused = |cmd: &mut Command| {
        let out = wait_output(cmd.arg("echo should-not-run").spawn().expect("ssh"), T);
        assert!(!out.status.success());
        assert!(!text(&out.stdout).contains("should-not-run"));
        text(&out.stderr)
    };
    // A key no agent owns: authentication itself fails.
    let e = refused(&mut env.ssh_with_key(&env.stranger_key, "box"));
    assert!(e.contains("Permission denied"), "{e}");
    // Unknown target, a target not granted to this agent, a login the grant does not list.
    let e = refused(&mut env.ssh("no-such-target"));
    assert!(e.contains("no-such-target"), "{e}");
    let e = refused(&mut env.ssh("other"));
    assert!(e.contains("refused"), "{e}");
    let e = refused(&mut env.ssh("nobody-else@box"));
    assert!(e.contains("refused"), "{e}");

    assert!(
        eventually(T, || env
            .store()
            .sessions()
            .iter()
            .filter(|s| s["outcome"] == "denied" && s["sealed"] == true)
            .count()
            == 3),
        "{:?}",
        env.store().sessions()
    );
    let sessions = env.store().sessions();
    let denied = |pred: &dyn Fn(&Value) -> bool| {
        sessions.iter().any(|s| s["outcome"] == "denied" && pred(s))
    };
    // The unknown key authenticated nobody: no session, a count in the journal's summary.
    assert!(!denied(&|s| s["agent"] != AGENT));
    assert!(denied(
        &|s| s["target"] == "no-such-target" && s["agent"] == AGENT
    ));
    assert!(denied(&|s| s["target"] == "other" && s["agent"] == AGENT));
    assert!(denied(&|s| s["target"] == "box"
        && s["agent"] == AGENT
        && s["login"] == "nobody-else"));
    // No denied session ever issued a credential.
    for s in &sessions {
        let recs = env.export(&id(s));
        assert!(of_kind(&recs, "credential_issued").is_empty(), "{s}");
        assert!(!str_field(s, "end_reason").is_empty(), "{s}");
    }
    env.verify();
    env.stop_proctor();
    let out = env.store().ok(&[
        "export",
        "00000000-0000-0000-0000-000000000000",
        "--format",
        "jsonl",
    ]);
    assert!(
        out.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["topic"] == "unauthenticated")
            .any(|r| r["text"]
                .as_str()
                .is_some_and(|t| t.contains("\"unknown_agent\":1"))),
        "{out}"
    );
}

#[test]
fn unknown_and_changed_target_host_keys_are_refused() {
    let env = Env::start();
    for target in ["changed-key", "unknown-key"] {
        let out = wait_output(
            env.ssh(target)
                .arg("echo should-not-run")
                .spawn()
                .expect("ssh"),
            T,
        );
        assert!(!out.status.success());
        let e = text(&out.stderr);
        assert!(e.contains("host key"), "{target}: {e}");
        assert!(!text(&out.stdout).contains("should-not-run"));
    }
    for target in ["changed-key", "unknown-key"] {
        let s = env.store().sealed_session(|s| s["target"] == target);
        assert_eq!(s["outcome"], "denied", "{s}");
        let recs = env.export(&id(&s));
        assert!(
            of_kind(&recs, "protocol_error")
                .iter()
                .any(|e| str_field(e, "message").contains("host key")),
            "{recs:?}"
        );
        assert!(commands(&recs).is_empty());
    }
    env.verify();
}

#[test]
fn kill_ends_a_long_command() {
    let env = Env::start();
    let child = env
        .ssh("box")
        .arg("echo started; sleep 120")
        .spawn()
        .expect("ssh");
    let sid = env.live_session();
    assert!(eventually(T, || {
        let recs = env.export(&sid);
        !of_kind(&recs, "output").is_empty()
    }));
    env.store()
        .ok(&["kill", &sid, "--reason", "e2e operator stop"]);
    let out = wait_output(child, T);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("e2e operator stop"),
        "{}",
        text(&out.stderr)
    );
    let s = env.store().sealed_session(|s| s["id"] == sid.as_str());
    assert_eq!(s["outcome"], "killed");
    assert!(str_field(&s, "end_reason").contains("e2e operator stop"));
    let recs = env.export(&sid);
    assert_eq!(commands(&recs), vec!["echo started; sleep 120"]);
    env.verify();
}

#[test]
fn target_killed_mid_session_is_target_lost() {
    let mut env = Env::start();
    let child = env
        .ssh("box")
        .arg("echo started; sleep 120")
        .spawn()
        .expect("ssh");
    let sid = env.live_session();
    assert!(eventually(T, || {
        let recs = env.export(&sid);
        !of_kind(&recs, "output").is_empty()
    }));
    env.kill_target();
    let out = wait_output(child, T);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("connection to the target was lost"),
        "{}",
        text(&out.stderr)
    );
    let s = env.store().sealed_session(|s| s["id"] == sid.as_str());
    assert_eq!(s["outcome"], "target_lost");
    let recs = env.export(&sid);
    assert_eq!(commands(&recs), vec!["echo started; sleep 120"]);
    env.verify();
}

#[test]
fn routine_grant_allows_what_elevated_would_hold() {
    // The hold rules only apply to elevated sessions: the same `rm -r` runs at once here.
    let env = Env::start_with(Options {
        privilege: "routine",
        ..Options::default()
    });
    let victim = env.dir.path().join("routine-victim");
    std::fs::create_dir_all(victim.join("x")).expect("victim");
    let out = env.exec(&format!("rm -r {}", victim.display()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!victim.exists());
    // The deny rule applies whatever the privilege.
    let out = env.exec("cat /dev/null >> /etc/shadow");
    assert_eq!(out.status.code(), Some(126));
    assert!(text(&out.stderr).contains("ssh-deny-shadow-write"));
    env.verify();
}
