//! Real OpenSSH client -> proctor -> real sshd: exec, verdicts, holds, kill, target loss,
//! refusals, multiplexing and a large transfer checked against the recorded digest.

mod common;

use std::time::{Duration, Instant};

use common::{Env, eventually, keygen};
use proctor_gate::{ChannelKind, Event, Outcome, RefusalKind};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

const T: Duration = Duration::from_secs(20);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Agents holding RSA or ECDSA keys log in too (RSA with SHA-2 signatures, as OpenSSH signs
/// since 8.8); the session is the same agent's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_and_ecdsa_agent_keys_log_in() {
    let env = Env::start().await;
    for kind in ["rsa", "ecdsa"] {
        let key = env.dir.path().join(format!("agent_{kind}"));
        let line = common::keygen_typed(&key, kind);
        env.authority
            .agents
            .lock()
            .unwrap()
            .insert(line, "agent-a".into());
        let out = env
            .ssh_with_key(&key, "web1")
            .arg("echo key-ok")
            .output()
            .await
            .expect("ssh");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{kind} key: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), "key-ok\n", "{kind} key");
    }
    let sessions = env.authority.sessions();
    assert_eq!(sessions.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_relays_output_and_exit_status() {
    let env = Env::start().await;
    let out = env
        .ssh("web1")
        .arg("echo hello; echo oops >&2; exit 3")
        .output()
        .await
        .expect("ssh");
    assert_eq!(out.status.code(), Some(3), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello\n");
    assert!(text(&out.stderr).contains("oops"));

    let gate = env.session(0);
    assert!(eventually(T, || gate.outcome().is_some()).await);
    assert_eq!(gate.outcome(), Some(Outcome::Completed));
    let events = gate.events();
    assert!(events.iter().any(
        |e| matches!(e, Event::Exec { command, .. } if command == "echo hello; echo oops >&2; exit 3")
    ));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ExitStatus { status: 3, .. }))
    );
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Output { stream: proctor_gate::OutputStream::Stderr, data, .. } if data.as_ref() == b"oops\n"
    )));
    let close = events
        .iter()
        .find_map(|e| match e {
            Event::ChannelClose { summary, .. } => Some(summary.clone()),
            _ => None,
        })
        .expect("channel close");
    assert_eq!(close.bytes_out, 11);
    let want: [u8; 32] = Sha256::digest(b"hello\noops\n").into();
    let want_alt: [u8; 32] = Sha256::digest(b"oops\nhello\n").into();
    assert!(close.digest_out == want || close.digest_out == want_alt);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_at_target_and_reasoning_env() {
    let env = Env::start().await;
    let user = format!("{}@web1", proctor_harness::sshd::current_user());
    let out = env
        .ssh(&user)
        .args([
            "-o",
            "SetEnv=PROCTOR_REASON=\"checking the kernel version\"",
        ])
        .arg("uname -s")
        .output()
        .await
        .expect("ssh");
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "Linux");
    let gate = env.session(0);
    assert!(eventually(T, || gate.outcome().is_some()).await);
    assert!(gate.events().iter().any(|e| matches!(
        e,
        Event::Annotation { source, text } if source == "agent" && text == "checking the kernel version"
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_exec_gets_126_and_the_reason() {
    let env = Env::start().await;
    let out = env
        .ssh("web1")
        .arg("touch /tmp/forbidden-proctor-test")
        .output()
        .await
        .expect("ssh");
    assert_eq!(out.status.code(), Some(126));
    let err = text(&out.stderr);
    assert!(
        err.contains("denied by policy (rule no-forbidden)"),
        "{err}"
    );
    assert!(!std::path::Path::new("/tmp/forbidden-proctor-test").exists());
}

/// A command that is not UTF-8 would be recorded, judged and shown with U+FFFD where the
/// target runs the bytes (round 3 ran `rm -rf /tmp/pv/\xc0\xaf\xff`, shown and recorded as
/// `/tmp/pv/\u{fffd}\u{fffd}\u{fffd}`, which `\xfe` would have read as too). It is refused,
/// nothing runs, and the record names the bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_that_is_not_utf8_is_refused_and_recorded_as_bytes() {
    use std::os::unix::ffi::OsStringExt;
    let env = Env::start().await;
    let marker = env.dir.path().join("ran");
    let mut cmd = format!("touch {}", marker.display()).into_bytes();
    cmd.extend_from_slice(b"\xc0\xaf\xff");
    let out = env
        .ssh("web1")
        .arg(std::ffi::OsString::from_vec(cmd))
        .output()
        .await
        .expect("ssh");
    assert_eq!(out.status.code(), Some(126), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not UTF-8"),
        "{}",
        text(&out.stderr)
    );
    let parent = marker.parent().unwrap();
    assert!(
        std::fs::read_dir(parent).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .as_encoded_bytes()
            .starts_with(b"ran")),
        "nothing ran on the target"
    );
    let events = env.session(0).events();
    let refused = events.iter().find_map(|e| match e {
        Event::ChannelRequest {
            request,
            detail,
            accepted: false,
            ..
        } if request == "exec" => Some(detail.clone()),
        _ => None,
    });
    assert_eq!(
        refused.as_deref(),
        Some(
            format!(
                "refused: the command is not UTF-8: touch {}\\xc0\\xaf\\xff",
                marker.display()
            )
            .as_str()
        ),
        "{events:?}"
    );
    assert!(
        !events.iter().any(|e| matches!(e, Event::Exec { .. })),
        "no exec was judged from a lossy text: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_exec_runs_after_approval_without_blocking_other_channels() {
    let env = Env::start().await;
    let sock = env.dir.path().join("cm");
    let master = env
        .ssh("web1")
        .args(["-M", "-S"])
        .arg(&sock)
        .args(["-o", "ControlPersist=no", "-N"])
        .spawn()
        .expect("master");
    assert!(eventually(T, || sock.exists()).await, "control socket");
    let held = env
        .ssh("web1")
        .arg("-S")
        .arg(&sock)
        .arg("echo needs_approval-ran")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("held ssh");
    let gate = env.session(0);
    assert!(eventually(T, || !gate.pending_holds().is_empty()).await);

    // Another channel on the same connection runs while the first one waits.
    let started = Instant::now();
    let other = env
        .ssh("web1")
        .arg("-S")
        .arg(&sock)
        .arg("echo meanwhile")
        .output()
        .await
        .expect("other");
    assert_eq!(text(&other.stdout), "meanwhile\n");
    assert!(started.elapsed() < Duration::from_secs(10));

    let id = gate.pending_holds().remove(0);
    gate.resolve(&id, true);
    let out = tokio::time::timeout(T, held.wait_with_output())
        .await
        .expect("held finishes")
        .expect("output");
    assert!(
        out.status.success(),
        "{:?}; stdout: {:?}; stderr: {}; events: {:?}",
        out.status,
        text(&out.stdout),
        text(&out.stderr),
        common::kinds(&gate.events())
    );
    assert_eq!(text(&out.stdout), "needs_approval-ran\n");
    assert!(text(&out.stderr).contains(&format!("held for approval {id}")));

    let _ = std::process::Command::new("ssh")
        .args(env.ssh_options())
        .arg("-S")
        .arg(&sock)
        .args(["-O", "exit", "web1@127.0.0.1"])
        .output();
    let _ = tokio::time::timeout(T, master.wait_with_output()).await;
    // Both commands went through one agent connection, one session.
    assert_eq!(env.authority.sessions().len(), 1);
    assert!(eventually(T, || gate.outcome().is_some()).await);
    let execs: Vec<String> = gate
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Exec { command, .. } => Some(command),
            _ => None,
        })
        .collect();
    assert_eq!(execs.len(), 2, "{execs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_exec_denied_by_approver_never_runs() {
    let env = Env::start().await;
    let marker = env.dir.path().join("ran");
    let held = env
        .ssh("web1")
        .arg(format!("touch {} # needs_approval", marker.display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ssh");
    assert!(eventually(T, || !env.authority.sessions().is_empty()).await);
    let gate = env.session(0);
    assert!(eventually(T, || !gate.pending_holds().is_empty()).await);
    let id = gate.pending_holds().remove(0);
    gate.resolve(&id, false);
    let out = tokio::time::timeout(T, held.wait_with_output())
        .await
        .expect("ends")
        .expect("output");
    assert_eq!(out.status.code(), Some(126));
    assert!(
        text(&out.stderr).contains("an approver said no"),
        "{}",
        text(&out.stderr)
    );
    assert!(!marker.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_ends_a_running_command_with_the_reason() {
    let env = Env::start().await;
    let child = env
        .ssh("web1")
        .arg("echo started; sleep 60; echo finished")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ssh");
    assert!(eventually(T, || !env.authority.sessions().is_empty()).await);
    let gate = env.session(0);
    assert!(
        eventually(T, || gate
            .events()
            .iter()
            .any(|e| matches!(e, Event::Output { .. })))
        .await
    );
    let t0 = Instant::now();
    gate.kill("operator says stop");
    let out = tokio::time::timeout(T, child.wait_with_output())
        .await
        .expect("ssh ends after kill")
        .expect("output");
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert!(!out.status.success());
    assert!(!text(&out.stdout).contains("finished"));
    assert!(
        text(&out.stderr).contains("killed by an operator: operator says stop"),
        "{}",
        text(&out.stderr)
    );
    assert!(eventually(T, || gate.outcome().is_some()).await);
    assert_eq!(gate.outcome(), Some(Outcome::Killed));
}

/// Every process below `pid` (per /proc), parents first: the sshd processes must die before
/// the shell, or they would report its death as a normal exit.
fn descendants(pid: i32) -> Vec<i32> {
    let mut all = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for entry in std::fs::read_dir("/proc").expect("proc").flatten() {
            let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
                continue;
            };
            let Some(after) = stat.rsplit_once(')') else {
                continue;
            };
            let ppid = after
                .1
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_killed_mid_session_is_target_lost() {
    let mut env = Env::start().await;
    let child = env
        .ssh("web1")
        .arg("echo started; sleep 60")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ssh");
    assert!(eventually(T, || !env.authority.sessions().is_empty()).await);
    let gate = env.session(0);
    assert!(
        eventually(T, || gate
            .events()
            .iter()
            .any(|e| matches!(e, Event::Output { .. })))
        .await
    );
    let pid: i32 = std::fs::read_to_string(env.sshd.dir.join("sshd.pid"))
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
        // SAFETY: signalling processes started by this test's own sshd.
        unsafe {
            libc::kill(p, libc::SIGKILL);
        }
    }
    // Reap the listener.
    env.sshd.kill();
    let out = tokio::time::timeout(T, child.wait_with_output())
        .await
        .expect("ssh ends")
        .expect("output");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("connection to the target was lost"),
        "{}",
        text(&out.stderr)
    );
    assert!(eventually(T, || gate.outcome().is_some()).await);
    assert_eq!(gate.outcome(), Some(Outcome::TargetLost));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_key_is_refused_and_recorded() {
    let env = Env::start().await;
    let other = env.dir.path().join("stranger");
    keygen(&other);
    let out = env
        .ssh_with_key(&other, "web1")
        .arg("true")
        .output()
        .await
        .expect("ssh");
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("Permission denied (publickey)"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        eventually(T, || env
            .authority
            .refusals()
            .iter()
            .any(|(_, r)| r.kind == RefusalKind::UnknownAgent))
        .await
    );
    assert!(env.authority.sessions().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_ungranted_targets_are_refused_with_a_message() {
    let env = Env::start().await;
    let out = env.ssh("nosuch").arg("true").output().await.expect("ssh");
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("proctor: session refused: unknown target nosuch"),
        "{}",
        text(&out.stderr)
    );
    env.authority
        .targets
        .lock()
        .unwrap()
        .insert("db9".into(), common::target_for(&env.sshd));
    let out = env.ssh("db9").arg("true").output().await.expect("ssh");
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("is not granted db9"),
        "{}",
        text(&out.stderr)
    );
    let out = env
        .ssh("bad name!")
        .arg("true")
        .output()
        .await
        .expect("ssh");
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("does not name a target"),
        "{}",
        text(&out.stderr)
    );
    let kinds: Vec<RefusalKind> = env
        .authority
        .refusals()
        .iter()
        .map(|(_, r)| r.kind)
        .collect();
    assert!(kinds.contains(&RefusalKind::UnknownTarget));
    assert!(kinds.contains(&RefusalKind::NotGranted));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_host_key_is_refused() {
    let other = russh::keys::PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519)
        .expect("key");
    let line = other.public_key().to_openssh().expect("line");
    let env = Env::start_with(|t| t.host_keys = vec![line]).await;
    let out = env
        .ssh("web1")
        .arg("echo should-not-run")
        .output()
        .await
        .expect("ssh");
    assert_eq!(out.status.code(), Some(255));
    assert!(text(&out.stdout).is_empty());
    assert!(
        text(&out.stderr).contains("does not match the pinned key"),
        "{}",
        text(&out.stderr)
    );
    let gate = env.session(0);
    assert!(eventually(T, || gate.outcome().is_some()).await);
    assert_eq!(gate.outcome(), Some(Outcome::Denied));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_output_matches_the_recorded_digest() {
    let env = Env::start().await;
    const N: u64 = 100_000_000;
    let mut child = env
        .ssh("web1")
        .arg(format!("head -c {N} /dev/urandom"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("ssh");
    let mut stdout = child.stdout.take().expect("stdout");
    let t0 = Instant::now();
    let mut hash = Sha256::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = stdout.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        total += n as u64;
        hash.update(&buf[..n]);
    }
    let elapsed = t0.elapsed();
    let status = child.wait().await.expect("wait");
    assert!(status.success());
    assert_eq!(total, N);
    eprintln!(
        "100 MB through proctor (debug build of proctor-ssh): {:.1} MiB/s",
        N as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64()
    );
    let gate = env.session(0);
    assert!(eventually(T, || gate.outcome().is_some()).await);
    let summary = gate
        .events()
        .iter()
        .find_map(|e| match e {
            Event::ChannelClose { summary, .. } => Some(summary.clone()),
            _ => None,
        })
        .expect("close");
    let digest: [u8; 32] = hash.finalize().into();
    assert_eq!(summary.bytes_out, N);
    assert_eq!(summary.digest_out, digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forwarding_is_refused_unless_granted() {
    let env = Env::start().await;
    let out = env
        .ssh("web1")
        .args(["-o", "ExitOnForwardFailure=yes", "-W"])
        .arg(format!("127.0.0.1:{}", env.sshd.port))
        .output()
        .await
        .expect("ssh");
    assert!(!out.status.success());
    let gate = env.session(0);
    assert!(eventually(T, || gate.outcome().is_some()).await);
    assert!(gate.events().iter().any(|e| matches!(
        e,
        Event::ChannelOpen { kind: ChannelKind::DirectTcpip, detail, .. } if detail.contains("refused")
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_forward_is_refused_and_recorded() {
    let env = Env::start().await;
    let out = env
        .ssh("web1")
        .args([
            "-o",
            "ExitOnForwardFailure=yes",
            "-R",
            "127.0.0.1:0:127.0.0.1:9",
        ])
        .arg("true")
        .output()
        .await
        .expect("ssh");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("remote port forwarding failed"),
        "{}",
        text(&out.stderr)
    );
    let gate = env.session(0);
    assert!(eventually(T, || gate.outcome().is_some()).await);
    assert!(gate.events().iter().any(|e| matches!(
        e,
        Event::ChannelRequest { request, accepted: false, detail, .. }
            if request == "tcpip-forward" && detail.starts_with("127.0.0.1:0 refused")
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_port_forward_is_relayed_and_summarised() {
    let env = Env::start_with(|t| t.allow_port_forwarding = true).await;
    // `ssh -W` to the target's own sshd port: the banner comes back through the forward.
    let out = env
        .ssh("web1")
        .arg("-W")
        .arg(format!("127.0.0.1:{}", env.sshd.port))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("ssh");
    let out = tokio::time::timeout(Duration::from_secs(5), async {
        let mut out = out;
        let mut stdout = out.stdout.take().expect("stdout");
        let mut buf = vec![0u8; 256];
        let n = stdout.read(&mut buf).await.expect("read");
        drop(out);
        buf.truncate(n);
        buf
    })
    .await
    .expect("banner");
    assert!(text(&out).starts_with("SSH-2.0-"), "{}", text(&out));
    let gate = env.session(0);
    assert!(eventually(T, || gate.outcome().is_some()).await);
    let events = gate.events();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::ChannelOpen { kind: ChannelKind::DirectTcpip, detail, .. } if detail.ends_with(&env.sshd.port.to_string())
    )));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ChannelClose { summary, .. } if summary.bytes_out > 0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_interrupts_sessions() {
    let mut env = Env::start().await;
    let child = env
        .ssh("web1")
        .arg("echo started; sleep 60")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ssh");
    assert!(eventually(T, || !env.authority.sessions().is_empty()).await);
    let gate = env.session(0);
    assert!(
        eventually(T, || gate
            .events()
            .iter()
            .any(|e| matches!(e, Event::Output { .. })))
        .await
    );
    env.shutdown().await;
    let out = tokio::time::timeout(T, child.wait_with_output())
        .await
        .expect("ends")
        .expect("output");
    assert!(
        text(&out.stderr).contains("shutting down"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(gate.outcome(), Some(Outcome::Interrupted));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidirectional_stream_through_cat_does_not_stall() {
    // Input and output at full speed at once: the agent's window adjustments must never be
    // stuck behind input waiting for the target.
    let env = Env::start().await;
    let n: u64 = std::env::var("PROCTOR_CAT_BYTES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(67108864);
    let script = format!(
        "head -c {n} /dev/zero | {} -l web1 127.0.0.1 cat | wc -c",
        {
            let mut v = vec!["ssh".to_string()];
            v.extend(env.ssh_options());
            v.push("-p".into());
            v.push(env.port.to_string());
            v.join(" ")
        }
    );
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("sh")
            .args(["-c", &script])
            .output(),
    )
    .await
    .expect("no stall")
    .expect("sh");
    assert_eq!(
        text(&out.stdout).trim(),
        n.to_string(),
        "{}",
        text(&out.stderr)
    );
    let gate = env.session(0);
    assert!(eventually(T, || gate.outcome().is_some()).await);
    let summary = gate
        .events()
        .iter()
        .find_map(|e| match e {
            Event::ChannelClose { summary, .. } => Some(summary.clone()),
            _ => None,
        })
        .expect("close");
    assert_eq!(summary.bytes_in, n);
    assert_eq!(summary.bytes_out, n);
    assert_eq!(summary.digest_in, summary.digest_out);
}

struct AnyHostKey;

impl russh::client::Handler for AnyHostKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// After EOF nothing but requests and the close may follow on a channel (RFC 4254 5.3):
/// asyncssh drops the whole connection on a second EOF or on data after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_gets_one_eof_and_nothing_after_it() {
    use russh::ChannelMsg;
    let env = Env::start().await;
    let key = russh::keys::PrivateKey::read_openssh_file(&env.key).expect("agent key");
    let config = std::sync::Arc::new(russh::client::Config::default());
    let mut h = russh::client::connect(config, ("127.0.0.1", env.port), AnyHostKey)
        .await
        .expect("connect");
    let auth = h
        .authenticate_publickey(
            "web1",
            russh::keys::PrivateKeyWithHashAlg::new(std::sync::Arc::new(key), None),
        )
        .await
        .expect("auth");
    assert!(auth.success());
    let mut ch = h.channel_open_session().await.expect("channel");
    ch.exec(true, "echo hello; echo oops >&2")
        .await
        .expect("exec");
    let mut seen = Vec::new();
    let deadline = Instant::now() + T;
    while Instant::now() < deadline {
        match tokio::time::timeout(T, ch.wait()).await {
            Ok(Some(ChannelMsg::Data { .. })) => seen.push("data"),
            Ok(Some(ChannelMsg::ExtendedData { .. })) => seen.push("stderr"),
            Ok(Some(ChannelMsg::Eof)) => seen.push("eof"),
            Ok(Some(ChannelMsg::Close)) | Ok(None) => break,
            Ok(Some(_)) => {}
            Err(_) => panic!("no close in time: {seen:?}"),
        }
    }
    assert_eq!(seen.iter().filter(|s| **s == "eof").count(), 1, "{seen:?}");
    assert_eq!(seen.last(), Some(&"eof"), "{seen:?}");
}
