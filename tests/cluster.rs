//! Cluster mode end to end with real parts: a control-plane PostgreSQL (initdb, scram), two
//! proctor nodes (each its own config file, data directory, ports and real target PostgreSQL),
//! real `psql` agents. A session or hold on node A is acted on through node B's API; the
//! control plane is stopped and started again under live sessions.

mod api_support;

use std::time::{Duration, Instant};

use api_support::*;
use proctor_harness::{LocalPostgres, PostgresOptions};
use serde_json::{Value, json};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A control-plane PostgreSQL with a database of its own.
async fn control_plane() -> (LocalPostgres, String) {
    tokio::task::spawn_blocking(|| {
        let cp = LocalPostgres::start(PostgresOptions::default()).expect("control plane starts");
        cp.psql("postgres", "CREATE DATABASE control")
            .expect("create database");
        let dsn = cp.admin_dsn("control");
        (cp, dsn)
    })
    .await
    .expect("join")
}

fn cluster_toml(dsn: &str, node: &str, poll_ms: u64, notify: bool) -> String {
    format!(
        "\n[cluster]\ncontrol_plane = {}\nnode_id = \"{node}\"\nadvertise = \"{node}.test:8080\"\npoll_interval_ms = {poll_ms}\nnotify = {notify}\n",
        toml::Value::String(dsn.to_string())
    )
}

/// Waits until `p`'s list at `path` has an entry matching `pred`, and returns it.
async fn wait_listed(p: &Proctor, who: &str, path: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = p.get(who, path).await;
        if let Some(v) = list.as_array().and_then(|a| a.iter().find(|v| pred(v))) {
            return v.clone();
        }
        assert!(
            Instant::now() < deadline,
            "nothing matched in {path}: {list}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A live session of `agent` on `node`, as `p` (another node) lists it.
async fn live_on(p: &Proctor, node: &str, agent: &str, known: &[String]) -> String {
    let v = wait_listed(p, OPERATOR, "/api/live", |s| {
        s["node"] == node
            && s["agent"] == agent
            && !known.iter().any(|k| s["id"].as_str() == Some(k.as_str()))
    })
    .await;
    v["id"].as_str().expect("id").to_string()
}

/// The proctor CLI against node `p`'s control socket.
async fn cli(p: &Proctor, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_proctor"))
        .args(args)
        .arg("--data")
        .arg(p.dir.path().join("data"))
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("proctor cli")
}

/// Kills a psql session on A through B's API and returns how long psql took to end.
async fn kill_through(a: &Proctor, b: &Proctor, sql: &str, by_prefix: bool) -> (String, Duration) {
    let psql = a.psql(AGENT_A, SECRET_A, sql);
    let id = live_on(b, "node-a", AGENT_A, &[]).await;
    let name = if by_prefix { &id[..13] } else { &id[..] };
    let t0 = Instant::now();
    let (s, v) = b
        .post(
            OPERATOR,
            &format!("/api/sessions/{name}/kill"),
            json!({ "reason": "cluster test" }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["killed"], id.as_str(), "{v}");
    assert_eq!(v["node"], "node-a", "{v}");
    let out = tokio::time::timeout(Duration::from_secs(10), psql.wait_with_output())
        .await
        .expect("psql ends once killed")
        .expect("psql");
    let took = t0.elapsed();
    assert!(!out.status.success(), "{}", text(&out.stdout));
    let m = a.wait_sealed(&id).await;
    assert_eq!(m["outcome"], "killed", "{m}");
    let reason = m["end_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(OPERATOR) && reason.contains("via node \"node-b\""),
        "the record on A names B's operator: {m}"
    );
    (id, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_approve_and_deny_through_another_node() {
    let t_all = Instant::now();
    let (cp, dsn) = control_plane().await;
    let a = Proctor::start(&cluster_toml(&dsn, "node-a", 1000, true)).await;
    let b = Proctor::start(&cluster_toml(&dsn, "node-b", 1000, true)).await;

    // Kill through B, notified: well under a second from the request to psql's end.
    let (killed, took) = kill_through(&a, &b, "select pg_sleep(60)", true).await;
    eprintln!("kill through node B (NOTIFY): {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");

    // The CLI on B's control socket kills a session on A too, naming B's local user.
    let psql = a.psql(AGENT_A, SECRET_A, "select pg_sleep(60)");
    // (The killed session's row may still be listed for a moment: it is skipped by id.)
    let id = live_on(&b, "node-a", AGENT_A, &[killed]).await;
    let out = cli(&b, &["kill", &id[..13], "--reason", "cli on b"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&id), "{}", text(&out.stdout));
    let done = tokio::time::timeout(Duration::from_secs(10), psql.wait_with_output())
        .await
        .expect("psql ends once killed")
        .unwrap();
    assert!(!done.status.success());
    let m = a.wait_sealed(&id).await;
    let reason = m["end_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("cli on b")
            && reason.contains("os:")
            && reason.contains("via node \"node-b\""),
        "{m}"
    );

    // A hold on A approved through the CLI on B: the label is recorded beside B's local user.
    let psql = a.psql(AGENT_A, SECRET_A, "update t set v = 'x'");
    let hold = wait_listed(&b, APPROVER, "/api/approvals", |h| {
        h["node"] == "node-a" && h["detail"].as_str().is_some_and(|d| d.contains("update t"))
    })
    .await;
    let id = hold["id"].as_str().unwrap().to_string();
    let session = hold["session_id"].as_str().unwrap().to_string();
    let out = cli(&b, &["approvals", "list"]).await;
    assert!(
        text(&out.stdout).contains(&id)
            && text(&out.stdout).contains("held on node node-a (node-a.test:8080)"),
        "{}",
        text(&out.stdout)
    );
    let out = cli(
        &b,
        &[
            "approvals",
            "approve",
            &id,
            "--as",
            "alice",
            "--reason",
            "cli",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let done = tokio::time::timeout(Duration::from_secs(15), psql.wait_with_output())
        .await
        .expect("psql finishes once approved")
        .unwrap();
    assert!(done.status.success(), "{}", text(&done.stderr));
    a.wait_sealed(&session).await;
    let approver = a
        .events(&session)
        .await
        .into_iter()
        .find(|e| e["kind"] == "approval")
        .map(|e| e["approver"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    assert!(
        approver.starts_with("os:") && approver.ends_with("(as \"alice\") via node \"node-b\""),
        "{approver}"
    );

    // A hold on A approved through B: the statement runs, A's record names B's approver.
    let psql = a.psql(AGENT_A, SECRET_A, "delete from t");
    let hold = wait_listed(&b, APPROVER, "/api/approvals", |h| {
        h["node"] == "node-a"
            && h["detail"]
                .as_str()
                .is_some_and(|d| d.contains("delete from t"))
    })
    .await;
    assert_eq!(hold["node_heartbeating"], true, "{hold}");
    let id = hold["id"].as_str().unwrap().to_string();
    let session = hold["session_id"].as_str().unwrap().to_string();
    // The agent's own identity does not count, whichever node relays it.
    let (s, v) = b
        .post(
            SELF_APPROVER,
            &format!("/api/approvals/{id}/approve"),
            json!({ "reason": "me" }),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = b
        .post(
            APPROVER,
            &format!("/api/approvals/{id}/approve"),
            json!({ "reason": "ticket 7" }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["released"], true, "{v}");
    let out = tokio::time::timeout(Duration::from_secs(15), psql.wait_with_output())
        .await
        .expect("psql finishes once approved")
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "DELETE 5");
    assert_eq!(a.pg.psql("app", "select count(*) from t").unwrap(), "0");
    a.wait_sealed(&session).await;
    let approvals: Vec<Value> = a
        .events(&session)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "approval")
        .collect();
    assert_eq!(approvals.len(), 1, "{approvals:?}");
    assert_eq!(
        approvals[0]["approver"],
        format!("{APPROVER} via node \"node-b\""),
        "{approvals:?}"
    );

    // Another denied through B: the agent hears B's approver and reason; nothing ran.
    let psql = a.psql(AGENT_A, SECRET_A, "delete from t2");
    let hold = wait_listed(&b, APPROVER, "/api/approvals", |h| {
        h["node"] == "node-a"
            && h["detail"]
                .as_str()
                .is_some_and(|d| d.contains("delete from t2"))
    })
    .await;
    let id = hold["id"].as_str().unwrap().to_string();
    let (s, v) = b
        .post(
            APPROVER_2,
            &format!("/api/approvals/{id}/deny"),
            json!({ "reason": " " }),
        )
        .await;
    assert_eq!(s, 400, "a denial needs a reason on every node: {v}");
    let (s, v) = b
        .post(
            APPROVER_2,
            &format!("/api/approvals/{id}/deny"),
            json!({ "reason": "not from here" }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let out = tokio::time::timeout(Duration::from_secs(15), psql.wait_with_output())
        .await
        .expect("psql finishes once denied")
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("not from here") && err.contains(APPROVER_2),
        "{err}"
    );
    assert_eq!(a.pg.psql("app", "select count(*) from t2").unwrap(), "5");
    // Deciding it again through B: it is gone.
    let (s, v) = b
        .post(APPROVER, &format!("/api/approvals/{id}/approve"), json!({}))
        .await;
    assert_eq!(s, 404, "{v}");

    // A node that stopped heartbeating is shown as such, and a kill addressed to it is
    // withdrawn after the bounded wait instead of lingering to act later.
    cp.psql(
        "control",
        "INSERT INTO proctor_nodes VALUES ('node-gone', 'gone.test', now() - interval '1 hour', now() - interval '1 hour');
         INSERT INTO proctor_live_sessions VALUES ('0190aaaa-0000-7000-8000-000000000001', 'node-gone', 'agent-a', 'appdb', 'postgres', 1,
           '{\"id\": \"0190aaaa-0000-7000-8000-000000000001\", \"agent\": \"agent-a\", \"started_ns\": 1}')",
    )
    .expect("a node that stopped");
    let gone = wait_listed(&b, OPERATOR, "/api/live", |s| s["node"] == "node-gone").await;
    assert_eq!(gone["node_heartbeating"], false, "{gone}");
    assert_eq!(gone["node_advertise"], "gone.test", "{gone}");
    let t0 = Instant::now();
    let (s, v) = b
        .post(
            OPERATOR,
            "/api/sessions/0190aaaa-0000-7000/kill",
            json!({ "reason": "x" }),
        )
        .await;
    assert_eq!(s, 503, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("was withdrawn"),
        "{v}"
    );
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    assert_eq!(
        cp.psql(
            "control",
            "SELECT count(*) FROM proctor_commands WHERE node = 'node-gone' AND done_at IS NULL"
        )
        .unwrap(),
        "0"
    );
    // A prefix two nodes' sessions share is refused as ambiguous, naming both.
    cp.psql(
        "control",
        "INSERT INTO proctor_live_sessions VALUES ('0190aaaa-0000-7000-8000-000000000002', 'node-b2', 'agent-a', 'appdb', 'postgres', 2,
           '{\"id\": \"0190aaaa-0000-7000-8000-000000000002\", \"agent\": \"agent-a\", \"started_ns\": 2}')",
    )
    .expect("a second session with the same prefix");
    let (s, v) = b
        .post(
            OPERATOR,
            "/api/sessions/0190aaaa-0000-7000/kill",
            json!({ "reason": "x" }),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let msg = v["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains("-000000000001") && msg.contains("-000000000002"),
        "{v}"
    );

    a.stop().await;
    b.stop().await;
    eprintln!(
        "cluster test (kill, approve, deny) took {:?}",
        t_all.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_alone_and_control_plane_outage() {
    let t_all = Instant::now();
    let (mut cp, dsn) = control_plane().await;
    // A never LISTENs: commands reach it by the poll alone.
    let poll = Duration::from_millis(400);
    let a = Proctor::start(&cluster_toml(
        &dsn,
        "node-a",
        poll.as_millis() as u64,
        false,
    ))
    .await;
    let b = Proctor::start(&cluster_toml(&dsn, "node-b", 1000, true)).await;

    let (killed, took) = kill_through(&a, &b, "select pg_sleep(60)", false).await;
    eprintln!("kill through node B (poll of {poll:?} alone): {took:?}");
    assert!(took < poll + Duration::from_millis(700), "took {took:?}");

    // Two live sessions on A, then the control plane goes away.
    let l1 = a.connect(AGENT_A, SECRET_A).await;
    let id1 = live_on(&b, "node-a", AGENT_A, std::slice::from_ref(&killed)).await;
    let l2 = a.connect(AGENT_A, SECRET_A).await;
    let id2 = live_on(&b, "node-a", AGENT_A, &[killed, id1.clone()]).await;
    let mut cp = tokio::task::spawn_blocking(move || {
        cp.stop();
        cp
    })
    .await
    .expect("join");

    // A new session on A is refused, with a clear error and a record.
    let psql = a.psql(AGENT_A, SECRET_A, "select 1");
    let out = tokio::time::timeout(Duration::from_secs(15), psql.wait_with_output())
        .await
        .expect("psql is answered")
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains("control plane is unreachable"), "{err}");
    let refused = wait_listed(&a, AUDITOR, "/api/sessions?outcome=denied", |m| {
        m["end_reason"]
            .as_str()
            .is_some_and(|r| r.contains("control plane"))
    })
    .await;
    assert_eq!(refused["agent"], AGENT_A, "{refused}");

    // Live sessions continue and are recorded; one of them ends during the outage.
    let rows = l1
        .simple_query("select 'still here'")
        .await
        .expect("a live session continues");
    assert!(!rows.is_empty());
    drop(l2);
    a.wait_sealed(&id2).await;
    let events = a.events(&id1).await;
    assert!(
        events.iter().any(|e| e.to_string().contains("still here")),
        "the statement is recorded"
    );

    // The control plane comes back: A re-publishes (id1 listed, id2 gone) and new sessions
    // start again.
    let cp = tokio::task::spawn_blocking(move || {
        cp.start_again().expect("control plane restarts");
        cp
    })
    .await
    .expect("join");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let live = b.get(OPERATOR, "/api/live").await;
        let ids: Vec<&str> = live
            .as_array()
            .map(|a| a.iter().filter_map(|s| s["id"].as_str()).collect())
            .unwrap_or_default();
        if ids.contains(&id1.as_str()) && !ids.contains(&id2.as_str()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "registry not re-published: {live}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let psql = a.psql(AGENT_A, SECRET_A, "select 1");
    let out = tokio::time::timeout(Duration::from_secs(15), psql.wait_with_output())
        .await
        .expect("psql is answered")
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));

    drop(l1);
    a.stop().await;
    b.stop().await;
    drop(cp);
    eprintln!("cluster test (poll, outage) took {:?}", t_all.elapsed());
}

/// Runs `proctor serve` with only `[cluster]` configured and returns its exit and stderr.
fn serve_fails(dir: &std::path::Path, dsn: &str) -> (bool, String) {
    let config = dir.join("proctor.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {}\n{}",
            toml::Value::String(dir.join("data").to_string_lossy().into()),
            cluster_toml(dsn, "node-x", 1000, true)
        ),
    )
    .expect("write config");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_proctor"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn proctor");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("proctor serve kept running without its control plane");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    (out.status.success(), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_does_not_start_without_a_control_plane_it_understands() {
    let dir = tempfile::Builder::new()
        .prefix("proctor-cluster-start-")
        .tempdir()
        .expect("tempdir");
    // Nobody listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let dsn = format!("host=127.0.0.1 port={port} user=x password=y dbname=control");
    let (ok, err) = serve_fails(dir.path(), &dsn);
    assert!(!ok && err.contains("control plane is unreachable"), "{err}");

    // A schema from a newer proctor is refused, not used.
    let (cp, dsn) = control_plane().await;
    cp.psql(
        "control",
        "CREATE TABLE proctor_schema (version int NOT NULL); INSERT INTO proctor_schema VALUES (99)",
    )
    .expect("newer schema");
    let d = dir.path().to_path_buf();
    let (ok, err) = tokio::task::spawn_blocking(move || serve_fails(&d, &dsn))
        .await
        .expect("join");
    assert!(!ok && err.contains("schema is version 99, newer"), "{err}");
}
