//! Throughput comparison (ignored by default; run with
//! `cargo test -p proctor-ssh --release --test bench -- --ignored --nocapture`):
//! 512 MiB piped through `cat` on the target, interleaved runs of direct ssh, an OpenSSH
//! double hop (ProxyJump through a second sshd) and proctor.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::pty::PtyWait;
use common::{Env, eventually};
use proctor_harness::sshd::current_user;
use proctor_harness::{LocalSshd, SshdOptions};

const MIB: u64 = 1024 * 1024;

fn sign_agent_key(env: &Env) -> std::path::PathBuf {
    // The test CA signs the agent key so plain OpenSSH can log in to the sshd directly.
    let ca = env.dir.path().join("ca");
    std::fs::write(&ca, env.authority.ca_private_openssh()).expect("ca");
    std::fs::set_permissions(&ca, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let ok = std::process::Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(&ca)
        .args(["-I", "bench", "-n", &current_user(), "-V", "-5m:+1h"])
        .arg(env.key.with_extension("pub"))
        .status()
        .expect("sign");
    assert!(ok.success());
    env.key.clone()
}

async fn run(cmdline: &str, bytes: u64) -> f64 {
    let script = format!("head -c {bytes} /dev/zero | {cmdline} cat | wc -c");
    let t0 = Instant::now();
    let out = tokio::process::Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .output()
        .await
        .expect("sh");
    let secs = t0.elapsed().as_secs_f64();
    let got: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert_eq!(
        got,
        bytes,
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bytes as f64 / MIB as f64 / secs
}

fn base_opts(env: &Env, known: &Path) -> String {
    format!(
        "-F /dev/null -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o LogLevel=ERROR",
        env.key.display(),
        known.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput_through_cat() {
    let env = Env::start().await;
    sign_agent_key(&env);
    let jump = LocalSshd::start(SshdOptions {
        trusted_user_ca_keys: vec![env.authority.ca_line()],
        ..Default::default()
    })
    .expect("jump sshd");
    let known = env.dir.path().join("known_direct");
    std::fs::write(
        &known,
        format!(
            "{}\n{}\n{}\n",
            env.sshd.known_hosts_line(),
            jump.known_hosts_line(),
            std::fs::read_to_string(&env.known_hosts)
                .expect("kh")
                .trim()
        ),
    )
    .expect("known");
    let opts = base_opts(&env, &known);
    let user = current_user();
    let direct = format!("ssh {opts} -p {} {user}@127.0.0.1", env.sshd.port);
    let double = format!(
        "ssh {opts} -o ProxyCommand='ssh {opts} -p {} -W %h:%p {user}@127.0.0.1' -p {} {user}@127.0.0.1",
        jump.port, env.sshd.port
    );
    let proctor = format!("ssh {opts} -p {} web1@127.0.0.1", env.port);
    let bytes: u64 = std::env::var("PROCTOR_BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(512)
        * MIB;
    let mut results = vec![Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..3 {
        for (i, c) in [&direct, &double, &proctor].iter().enumerate() {
            results[i].push(run(c, bytes).await);
        }
    }
    for (name, r) in ["direct", "double hop", "proctor"].iter().zip(&results) {
        let mut r = r.clone();
        r.sort_by(|a, b| a.total_cmp(b));
        eprintln!("{name:>10}: median {:.1} MiB/s  (runs {:?})", r[1], r);
    }
    let last = env.authority.sessions().last().cloned().expect("session");
    assert!(eventually(Duration::from_secs(20), || last.outcome().is_some()).await);
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

/// Round trip of one typed character to its echo, in microseconds.
async fn echo_latency(mut cmd: std::process::Command, samples: usize) -> Vec<f64> {
    cmd.arg("-tt");
    let mut pty = common::pty::Pty::spawn(cmd);
    pty.quiet().await;
    let mut out = Vec::new();
    for i in 0..samples {
        let key: &[u8] = if i % 2 == 0 { b"a" } else { b"\x7f" };
        let t0 = Instant::now();
        pty.type_in(key);
        let deadline = t0 + Duration::from_secs(5);
        let got = loop {
            if let Some(t) = pty.first_output_after(t0) {
                break t;
            }
            assert!(Instant::now() < deadline, "no echo");
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        out.push(got.duration_since(t0).as_secs_f64() * 1e6);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    pty.type_in(b"exit\r");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn keystroke_echo_latency() {
    let env = Env::start().await;
    sign_agent_key(&env);
    let known = env.dir.path().join("known_direct");
    std::fs::write(
        &known,
        format!(
            "{}\n{}\n",
            env.sshd.known_hosts_line(),
            std::fs::read_to_string(&env.known_hosts)
                .expect("kh")
                .trim()
        ),
    )
    .expect("known");
    let opts = base_opts(&env, &known);
    let user = current_user();
    let mk = |port: u16, user: &str| {
        let mut c = std::process::Command::new("ssh");
        c.args(opts.split_whitespace())
            .args(["-p", &port.to_string(), "-l", user, "127.0.0.1"]);
        c
    };
    // The same target as a judged shell: proctor echoes what it edits.
    let mut judged_target = common::target_for(&env.sshd);
    judged_target.shell = proctor_gate::ShellMode::Judged;
    env.authority
        .targets
        .lock()
        .unwrap()
        .insert("judged".into(), judged_target);
    env.authority
        .grants
        .lock()
        .unwrap()
        .push(("agent-a".into(), "judged".into()));
    let mut direct = Vec::new();
    let mut proctor = Vec::new();
    let mut judged = Vec::new();
    for _ in 0..3 {
        direct.extend(echo_latency(mk(env.sshd.port, &user), 100).await);
        proctor.extend(echo_latency(mk(env.port, "web1"), 100).await);
        judged.extend(echo_latency(mk(env.port, "judged"), 100).await);
    }
    eprintln!(
        "echo round trip: direct p50 {:.0} us p99 {:.0} us; proctor p50 {:.0} us p99 {:.0} us; \
         judged shell p50 {:.0} us p99 {:.0} us",
        percentile(&mut direct, 0.5),
        percentile(&mut direct, 0.99),
        percentile(&mut proctor, 0.5),
        percentile(&mut proctor, 0.99),
        percentile(&mut judged, 0.5),
        percentile(&mut judged, 0.99)
    );
}
