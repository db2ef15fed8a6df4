//! `GET /metrics` over real HTTP from a real proctor (PostgreSQL in front of a real
//! PostgreSQL, a real TSA from `openssl ts -reply`, and one that never answers): the
//! Prometheus text names each TSA's lag and last success, the ledger's size, the unsigned
//! window and the recorder's figures, and only operators and auditors may read it.

mod api_support;
mod tsa_support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use api_support::*;
use hyper::StatusCode;

/// The samples of an exposition text: `name{labels}` -> value. Panics on a line that is not
/// a comment or a `name[{labels}] value` sample.
fn samples(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("{line:?}"));
        out.insert(key.to_string(), v);
    }
    out
}

async fn metrics(p: &Proctor, who: &str) -> (StatusCode, Option<String>, String) {
    let (s, headers, body) = p.raw("GET", "/metrics", Some(p.token(who)), None).await;
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (s, ct, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_name_the_lag_the_ledger_and_the_unsigned_window() {
    let work = tempfile::tempdir().expect("tempdir");
    let pki = tsa_support::make_pki(work.path(), "m", true);
    let good = tsa_support::start_tsa(&pki);
    let hole = tsa_support::black_hole();
    let extra = format!(
        r#"
[ledger.timestamp]
interval = "1s"
every_leaves = 1
timeout = "1h"
max_backoff = "2s"

[[ledger.timestamp.tsa]]
url = "{hole}"

[[ledger.timestamp.tsa]]
url = "{good}"
tsa_cert = {ca}
"#,
        hole = hole.url,
        good = good.url,
        ca = toml::Value::String(pki.ca.to_string_lossy().into_owned()),
    );
    let p = Proctor::start(&extra).await;
    {
        // A session open longer than the store checkpoint interval is signed by one.
        let c = p.connect(AGENT_A, SECRET_A).await;
        c.simple_query("select count(*) from t")
            .await
            .expect("query");
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (_, _, text) = metrics(&p, AUDITOR).await;
        let m = samples(&text);
        assert!(
            m["proctor_store_checkpoint_last_timestamp_seconds"] > 1.7e9,
            "{text}"
        );
        // Store checkpoints run every 100 ms while anything is written: the window is small.
        assert!(m["proctor_unsigned_window_seconds"] < 5.0, "{text}");
    }
    // Wait until the session is sealed (a ledger leaf and tree head) and the working TSA
    // has a token.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (good_key, hole_key) = (
        format!("tsa=\"{}\"", good.url),
        format!("tsa=\"{}\"", hole.url),
    );
    let m = loop {
        let (status, ct, text) = metrics(&p, AUDITOR).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert_eq!(
            ct.as_deref(),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        let m = samples(&text);
        let size = m["proctor_ledger_tree_size"];
        let covered = m
            .get(&format!("proctor_tsa_timestamped_tree_size{{{good_key}}}"))
            .copied();
        if size >= 2.0 && covered == Some(size) {
            break m;
        }
        assert!(Instant::now() < deadline, "no token yet:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(m["proctor_ledger_leaves"] >= m["proctor_ledger_tree_size"] - 0.5);
    assert_eq!(
        m[&format!("proctor_tsa_untimestamped_age_seconds{{{good_key}}}")],
        0.0
    );
    assert!(m[&format!("proctor_tsa_last_success_timestamp_seconds{{{good_key}}}")] > 1.7e9);
    // The TSA that never answers lags behind every head, and has no success to show.
    assert!(m[&format!("proctor_tsa_untimestamped_age_seconds{{{hole_key}}}")] > 0.0);
    assert_eq!(
        m[&format!("proctor_tsa_timestamped_tree_size{{{hole_key}}}")],
        0.0
    );
    assert!(!m.contains_key(&format!(
        "proctor_tsa_last_success_timestamp_seconds{{{hole_key}}}"
    )));
    assert!(m["proctor_recorder_durable_records_total"] >= 5.0);
    assert_eq!(m["proctor_recorder_failed"], 0.0);
    assert!(m.contains_key("proctor_recorder_queued_bytes"));
    assert!(m["proctor_unsigned_window_seconds"] < 5.0, "{m:?}");

    // Operators may read it too; approvers and agents may not, nor anyone without a token.
    assert_eq!(metrics(&p, OPERATOR).await.0, StatusCode::OK);
    assert_eq!(metrics(&p, APPROVER).await.0, StatusCode::FORBIDDEN);
    assert_eq!(metrics(&p, BOT_A).await.0, StatusCode::FORBIDDEN);
    let (s, _, _) = p.raw("GET", "/metrics", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    p.stop().await;
}
