//! Timestamping never slows a session (issue 14): a real `proctor serve` in front of a real
//! PostgreSQL, configured with three TSAs: one that accepts connections and never answers, one
//! that refuses them, and a real one (`openssl ts -reply`). psql sessions run as fast as with no
//! TSA at all; the working TSA's tokens cover the heads of those sessions and verify, also in a
//! bundle of one of them; `proctor ledger head` shows the two broken TSAs' lag.

mod pg_support;
mod tsa_support;

use std::io::Write as _;
use std::time::{Duration, Instant};

use pg_support::*;
use serde_json::Value;
use tsa_support::*;

/// Runs `n` psql sessions (connect, a few statements, disconnect) and returns how long they took.
fn sessions(env: &Env, n: usize) -> Duration {
    let t = Instant::now();
    for i in 0..n {
        let out = env.psql(&[
            "-c",
            &format!("select {i}"),
            "-c",
            "select count(*) from t",
            "-c",
            "select v from t where id = 1",
        ]);
        assert!(out.status.success(), "psql: {}", text(&out.stderr));
    }
    t.elapsed()
}

fn ledger_head(env: &Env) -> (Value, String) {
    let out = std::process::Command::new(bin())
        .args(["ledger", "head", "--config"])
        .arg(&env.config)
        .output()
        .expect("ledger head");
    assert!(out.status.success(), "{}", text(&out.stderr));
    (
        serde_json::from_slice(&out.stdout).expect("json"),
        text(&out.stderr),
    )
}

fn tsa_entry<'a>(head: &'a Value, url: &str) -> &'a Value {
    head["timestamps"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["url"] == url))
        .unwrap_or_else(|| panic!("{url} not in {head:#}"))
}

#[test]
fn a_tsa_that_is_down_delays_no_session_and_shows_as_lag() {
    let mut env = Env::start();
    let pki = make_pki(env.dir.path(), "tsa", false);
    let good = start_tsa(&pki);
    let hole = black_hole();
    let refused = refused_url();
    const N: usize = 8;
    sessions(&env, 1); // warm-up: the first role creation and policy load
    let baseline = sessions(&env, N);

    env.stop_proctor();
    let mut cfg = std::fs::OpenOptions::new()
        .append(true)
        .open(&env.config)
        .expect("config");
    write!(
        cfg,
        r#"
[ledger.timestamp]
interval = "1s"
every_leaves = 1
timeout = "1h"
max_backoff = "2s"

[[ledger.timestamp.tsa]]
url = "{hole}"

[[ledger.timestamp.tsa]]
url = "{refused}"

[[ledger.timestamp.tsa]]
url = "{good}"
tsa_cert = {ca}
"#,
        hole = hole.url,
        good = good.url,
        ca = toml::Value::String(pki.ca.to_string_lossy().into_owned()),
    )
    .expect("append");
    drop(cfg);
    env.start_proctor();
    sessions(&env, 1);
    let with_tsas = sessions(&env, N);
    eprintln!(
        "{N} psql sessions: {:.0} ms without TSAs, {:.0} ms with a hung, a refusing and a working TSA",
        baseline.as_secs_f64() * 1e3,
        with_tsas.as_secs_f64() * 1e3
    );
    // The hung TSA's request waits up to an hour: had any session waited for it, this would
    // not hold.
    assert!(
        with_tsas < baseline * 3 + Duration::from_secs(3),
        "sessions slowed down: {with_tsas:?} against {baseline:?}"
    );
    assert!(
        hole.requests.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the hung TSA was asked"
    );

    // The working TSA catches up with the newest head; the others lag, named and measured.
    let mut head = Value::Null;
    let mut stderr = String::new();
    let caught_up = eventually(Duration::from_secs(30), || {
        (head, stderr) = ledger_head(&env);
        tsa_entry(&head, &good.url)["untimestamped_since_ns"].is_null()
            && tsa_entry(&head, &refused)["failures"].as_u64() >= Some(1)
    });
    assert!(caught_up, "{head:#}\n{}", env.proctor_log());
    let size = head["size"].as_u64().expect("size");
    assert_eq!(tsa_entry(&head, &good.url)["timestamped_size"], size);
    for url in [&hole.url, &refused] {
        let t = tsa_entry(&head, url);
        assert_eq!(t["timestamped_size"], 0, "{t:#}");
        assert!(t["lag_seconds"].as_f64() > Some(0.0), "{t:#}");
    }
    assert!(
        tsa_entry(&head, &refused)["last_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{head:#}"
    );
    assert!(
        stderr.contains(&format!(
            "timestamps from {}: newest token covers tree size 0; not timestamped since tree size 0"
        , hole.url)),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("timestamps from {}: newest token covers tree size {size}; every tree head is timestamped", good.url)),
        "{stderr}"
    );

    // The store's tokens verify against the TSA's CA; a bundle of a real session carries one.
    let ca = pki.ca.to_string_lossy().into_owned();
    let v = env.store().json(&["verify", "--tsa-cert", &ca, "--json"]);
    assert_eq!(v["verdict"], "ok", "{v:#}");
    assert!(
        !v["timestamps"]["tokens"]
            .as_array()
            .expect("tokens")
            .is_empty()
    );
    let id = env.store().sealed_session(|s| s["agent"] == AGENT)["id"]
        .as_str()
        .expect("id")
        .to_string();
    let bundle = env.dir.path().join("s.bundle");
    env.store().ok(&[
        "export",
        &id,
        "--format",
        "bundle",
        "-o",
        &bundle.to_string_lossy(),
    ]);
    let out = std::process::Command::new(bin())
        .args(["verify", "--json", "--tsa-cert", &ca, "--bundle"])
        .arg(&bundle)
        .output()
        .expect("verify bundle");
    let bv: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(out.status.code(), Some(0), "{bv:#}");
    assert_eq!(bv["timestamps"]["tokens"].as_array().map(Vec::len), Some(1));
    env.stop_proctor();
}
