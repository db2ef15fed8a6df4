//! Limits per agent over SSH, through a real `proctor serve` in front of a real sshd with the
//! real OpenSSH client as the agent: past its open-session limit an agent is refused with a
//! message its client shows, the refusal is recorded, and a closed session frees its place.

mod ssh_support;

use std::process::Child;
use std::time::Duration;

use serde_json::Value;
use ssh_support::*;

/// Kills and reaps a child this test started.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn live_count(env: &Env) -> usize {
    env.store()
        .sessions()
        .into_iter()
        .filter(|s| s["sealed"] != Value::Bool(true) && s["agent"] == AGENT)
        .count()
}

#[test]
fn ssh_sessions_per_agent_are_capped_with_a_refusal_the_client_shows() {
    let mut env = Env::start();
    env.stop_proctor();
    let mut cfg = std::fs::read_to_string(&env.config).expect("config");
    cfg.push_str("\n[limits]\nsessions_per_agent = 2\n");
    std::fs::write(&env.config, cfg).expect("config");
    env.start_proctor();

    let mut long: Vec<Reap> = (0..2)
        .map(|_| Reap(env.ssh("box").arg("sleep 60").spawn().expect("ssh")))
        .collect();
    assert!(
        eventually(T, || live_count(&env) == 2),
        "{:?}",
        env.store().sessions()
    );
    let out = env.exec("echo third");
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("proctor: session refused: too many sessions")
            && stderr.contains("sessions_per_agent"),
        "{stderr}"
    );
    assert!(!text(&out.stdout).contains("third"));
    // The refusal is a sealed, denied session whose verdict names the limit.
    let refused = env
        .store()
        .sealed_session(|s| s["agent"] == AGENT && s["outcome"] == "denied");
    let records = env.export(refused["id"].as_str().expect("id"));
    assert!(
        of_kind(&records, "verdict")
            .iter()
            .any(|v| v["rule"] == "overloaded"
                && str_field(v, "reason").contains("already has 2 open (limit 2")),
        "{records:?}"
    );
    // Ending one session frees its place.
    drop(long.remove(0));
    let mut ran = false;
    for _ in 0..50 {
        let out = env.exec("echo again");
        if out.status.success() {
            assert_eq!(text(&out.stdout).trim(), "again");
            ran = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(ran, "the closed session's place was never freed");
}
