//! Scale: many concurrent idle SSH sessions through a real `proctor serve` (each an
//! authenticated agent connection, a target connection with its just-in-time certificate, and
//! an open channel running `cat`), with proctor's resident memory measured. Heavy (it starts as
//! many sshd sessions on the target), so ignored by default:
//!
//! ```sh
//! cargo test --test ssh_scale -- --ignored --nocapture
//! PROCTOR_SSH_SESSIONS=500 PROCTOR_BIN=target/release/proctor cargo test --test ssh_scale -- --ignored --nocapture
//! ```

mod ssh_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::client;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use ssh_support::{Env, eventually, rss_kib};

struct AcceptAny;

impl client::Handler for AcceptAny {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

type Idle = (client::Handle<AcceptAny>, russh::Channel<client::Msg>);

async fn open_idle(port: u16, key: Arc<PrivateKey>) -> Result<Idle, String> {
    let config = Arc::new(client::Config {
        inactivity_timeout: None,
        ..Default::default()
    });
    let mut h = client::connect(config, ("127.0.0.1", port), AcceptAny)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let ok = h
        .authenticate_publickey("box", PrivateKeyWithHashAlg::new(key, None))
        .await
        .map_err(|e| format!("auth: {e}"))?;
    if !ok.success() {
        return Err("agent key refused".into());
    }
    let ch = h
        .channel_open_session()
        .await
        .map_err(|e| format!("channel: {e}"))?;
    ch.exec(true, "cat")
        .await
        .map_err(|e| format!("exec: {e}"))?;
    Ok((h, ch))
}

fn vm_hwm_kib(pid: u32) -> u64 {
    proctor_harness::proc_status_kib(pid, "VmHWM")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn many_idle_sessions_stay_small() {
    let n: usize = std::env::var("PROCTOR_SSH_SESSIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let mut env = Env::start();
    // This measures many sessions of one agent: the per-agent limits are lifted.
    env.stop_proctor();
    let mut cfg = std::fs::read_to_string(&env.config).expect("config");
    cfg.push_str("\n[limits]\nsessions_per_agent = 0\nsessions_per_grant = 0\n");
    std::fs::write(&env.config, cfg).expect("config");
    env.start_proctor();
    let pid = env.proctor_pid();
    let key = Arc::new(PrivateKey::read_openssh_file(&env.key).expect("agent key"));
    let base = rss_kib(pid);
    let t0 = Instant::now();
    let mut sessions = Vec::with_capacity(n);
    // Proctor admits at most 10 unauthenticated connections per address: log in 8 at a time.
    while sessions.len() < n {
        let batch = (n - sessions.len()).min(8);
        let mut tasks = Vec::new();
        for _ in 0..batch {
            tasks.push(tokio::spawn(open_idle(env.port, key.clone())));
        }
        for t in tasks {
            let s = t
                .await
                .expect("task")
                .unwrap_or_else(|e| panic!("session {}: {e}", sessions.len() + 1));
            sessions.push(s);
        }
    }
    let opened = t0.elapsed();
    // Let buffers settle, then measure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = rss_kib(pid);
    let peak = vm_hwm_kib(pid);
    eprintln!(
        "{n} idle SSH sessions through proctor (opened in {:.1}s): RSS {:.1} MiB (idle proctor {:.1} MiB, {:.1} KiB per session), peak {:.1} MiB",
        opened.as_secs_f64(),
        rss as f64 / 1024.0,
        base as f64 / 1024.0,
        (rss.saturating_sub(base)) as f64 / n as f64,
        peak as f64 / 1024.0
    );
    // Every one of them is live and still relays.
    let (_, ch) = sessions.last_mut().expect("sessions");
    ch.data(&b"still alive\n"[..]).await.expect("data");
    let mut got = Vec::new();
    let mut seen = Vec::new();
    // The target runs each `cat` through the login shell, whose start-up files may be slow
    // under hundreds of concurrent logins (a pyenv rehash lock on one test machine): allow
    // the last shell time to start.
    let patience = Duration::from_secs(180);
    let deadline = Instant::now() + patience;
    while !got.ends_with(b"still alive\n") && Instant::now() < deadline {
        match tokio::time::timeout(patience, ch.wait()).await {
            Ok(Some(russh::ChannelMsg::Data { data })) => got.extend_from_slice(&data),
            Ok(Some(other)) => seen.push(format!("{other:?}")),
            Ok(None) => {
                seen.push("channel closed".into());
                break;
            }
            Err(_) => {
                seen.push("timed out".into());
                break;
            }
        }
    }
    assert_eq!(
        String::from_utf8_lossy(&got),
        "still alive\n",
        "other messages: {seen:?}; proctor log ends:\n{}",
        env.proctor_log()
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        rss < 256 * 1024,
        "proctor uses {} MiB with {n} idle SSH sessions (goal < 256 MiB)",
        rss / 1024
    );
    for (h, ch) in sessions {
        let _ = ch.eof().await;
        drop(ch);
        let _ = h
            .disconnect(russh::Disconnect::ByApplication, "done", "en")
            .await;
    }
    assert!(
        eventually(Duration::from_secs(120), || env
            .store()
            .sessions()
            .iter()
            .filter(|s| s["sealed"] == true && s["outcome"] == "completed")
            .count()
            == n),
        "not every session was sealed"
    );
    env.verify();
}
