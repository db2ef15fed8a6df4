//! An id prefix is resolved the same way at every door, because every door calls the one
//! service layer: a prefix several sessions share is refused (CLI and HTTP: kill, show,
//! export, replay) naming every candidate with its agent, and a hold is decided by a prefix
//! only it has (HTTP approve, CLI show and deny), against a real proctor and PostgreSQL.

mod api_support;

use std::time::Duration;

use api_support::*;
use serde_json::json;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn cli(p: &Proctor, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_proctor"))
        .args(args)
        .arg("--data")
        .arg(p.dir.path().join("data"))
        .output()
        .await
        .expect("proctor CLI")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_session_prefix_is_refused_at_every_door_naming_ids_and_agents() {
    let p = Proctor::start("").await;
    let a = p.connect(AGENT_A, SECRET_A).await;
    let b = p.connect(AGENT_B, SECRET_B).await;
    let ida = p.live_of(AGENT_A).await.pop().expect("a live");
    let idb = p.live_of(AGENT_B).await.pop().expect("b live");
    // UUIDv7: sessions opened in the same minute share at least their first 8 characters.
    let common: String = ida
        .chars()
        .zip(idb.chars())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x)
        .collect();
    assert!(common.len() >= 4, "{ida} {idb}");
    let names_both = |s: &str| {
        s.contains(&format!("{ida} (agent {AGENT_A})"))
            && s.contains(&format!("{idb} (agent {AGENT_B})"))
    };

    for args in [
        vec!["kill", common.as_str(), "--reason", "test"],
        vec!["sessions", "show", common.as_str()],
        vec!["export", common.as_str(), "--format", "jsonl"],
        vec!["replay", common.as_str(), "--step"],
    ] {
        let out = cli(&p, &args).await;
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} must fail: {err}");
        assert!(names_both(&err), "{args:?} names both candidates: {err}");
    }
    for (method, path) in [
        ("GET", format!("/api/sessions/{common}")),
        ("GET", format!("/api/sessions/{common}/export")),
        ("GET", format!("/api/sessions/{common}/events")),
        ("POST", format!("/api/sessions/{common}/kill")),
    ] {
        let (who, body) = if method == "POST" {
            (OPERATOR, Some(json!({ "reason": "test" })))
        } else {
            (AUDITOR, None)
        };
        let (status, v) = p.call(method, &path, Some(p.token(who)), body).await;
        assert_eq!(status.as_u16(), 400, "{method} {path}: {v}");
        let msg = v["error"].as_str().unwrap_or_default();
        assert!(names_both(msg), "{method} {path}: {v}");
    }
    // Nothing was killed.
    a.simple_query("SELECT 1").await.expect("a still live");
    b.simple_query("SELECT 1").await.expect("b still live");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_is_decided_by_a_prefix_only_it_has() {
    let p = Proctor::start("").await;

    // HTTP: approve by prefix; the answer names the full id.
    let psql = p.psql(AGENT_A, SECRET_A, "delete from t");
    let hold = p.wait_for_hold("delete from t").await;
    let id = hold["id"].as_str().expect("id").to_string();
    let (s, v) = p
        .post(
            APPROVER,
            &format!("/api/approvals/{}/approve", &id[..6]),
            json!({ "reason": "ticket 42" }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["released"], true);
    let out = tokio::time::timeout(Duration::from_secs(15), psql.wait_with_output())
        .await
        .expect("psql finishes once approved")
        .expect("psql");
    assert!(out.status.success(), "{}", text(&out.stderr));

    // A prefix too short to mean anything names nothing.
    let psql = p.psql(AGENT_A, SECRET_A, "delete from t2");
    let hold = p.wait_for_hold("delete from t2").await;
    let id = hold["id"].as_str().expect("id").to_string();
    let (s, v) = p
        .post(
            APPROVER,
            &format!("/api/approvals/{}/deny", &id[..3]),
            json!({ "reason": "no" }),
        )
        .await;
    assert_eq!(s, 404, "{v}");

    // CLI (through the control socket): show and deny by prefix.
    let out = cli(&p, &["approvals", "show", &id[..6]]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&id), "{}", text(&out.stdout));
    let out = cli(&p, &["approvals", "deny", &id[..6], "--reason", "not now"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = tokio::time::timeout(Duration::from_secs(15), psql.wait_with_output())
        .await
        .expect("psql finishes once denied")
        .expect("psql");
    assert!(!out.status.success(), "denied: {}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("not now"),
        "{}",
        text(&out.stderr)
    );
    p.stop().await;
}
