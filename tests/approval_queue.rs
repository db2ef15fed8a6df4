//! The approver sees enough to judge, and the queue helps a person decide (issue 18, items 5
//! and 13). Real proctor, real PostgreSQL and psql, the CLI under a real pty (`script`):
//! - the card of a held statement shows the `search_path` and role it would run under: a
//!   `SET search_path` earlier in the same message as pending, one confirmed by the server in
//!   an earlier message as confirmed; ground truth on the target after the decision;
//! - look-alike holds of one agent form one group with its count, and a `DELETE FROM accounts`
//!   held after them is listed first (API and CLI); approving one hold releases exactly one.

mod api_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use api_support::*;
use serde_json::{Value, json};

/// Runs the proctor CLI under a pseudo-terminal, as a person would see it.
fn on_a_terminal(args: &[&str]) -> String {
    let mut cmd = format!("'{}'", env!("CARGO_BIN_EXE_proctor"));
    for a in args {
        cmd.push_str(&format!(" '{}'", a.replace('\'', "'\\''")));
    }
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) runs");
    assert!(out.status.success(), "{cmd}");
    String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n")
}

fn setting<'a>(hold: &'a Value, name: &str) -> &'a Value {
    hold["settings"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no {name} on the card: {hold}"))
}

/// psql with several `-c`, each its own message on one connection.
fn psql_commands(p: &Proctor, agent: &str, secret: &str, sql: &[&str]) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new("psql");
    cmd.arg(format!(
        "host=127.0.0.1 port={} user={agent} dbname=appdb sslmode=disable",
        p.pg_addr.port()
    ))
    .args(["-X", "-v", "ON_ERROR_STOP=1"]);
    for s in sql {
        cmd.args(["-c", s]);
    }
    cmd.env("PGPASSWORD", secret)
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("psql runs")
}

async fn deny(p: &Proctor, id: &str) {
    let (s, v) = p
        .post(
            APPROVER,
            &format!("/api/approvals/{id}/deny"),
            json!({ "reason": "no" }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
}

fn target_rows(p: &Proctor, table: &str) -> String {
    p.pg.psql("app", &format!("SELECT count(*) FROM {table}"))
        .expect("count on the target")
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_card_shows_search_path_and_role() {
    let p = Proctor::start("").await;
    p.pg.psql(
        "app",
        "CREATE SCHEMA audit; CREATE TABLE audit.log (id int); INSERT INTO audit.log VALUES (1), (2);
         GRANT USAGE ON SCHEMA audit TO app_write; GRANT ALL ON audit.log TO app_write;",
    )
    .expect("audit schema");

    // One message: the SET is allowed and judged first, the TRUNCATE held; the card says the
    // search_path it runs under, pending (the server has not run the SET yet).
    let one = p.psql(AGENT_A, SECRET_A, "SET search_path = audit; TRUNCATE log");
    let hold = p.wait_for_hold("TRUNCATE log").await;
    let sp = setting(&hold, "search_path");
    assert_eq!(sp["value"], "audit", "{hold}");
    assert!(
        sp["note"].as_str().unwrap().contains("not confirmed"),
        "{hold}"
    );
    assert_eq!(setting(&hold, "role")["value"], "app_write");
    let shown = on_a_terminal(&[
        "approvals",
        "show",
        hold["id"].as_str().unwrap(),
        "--data",
        p.dir.path().join("data").to_str().unwrap(),
    ]);
    assert!(shown.contains("search_path = audit"), "{shown}");
    assert!(shown.contains("role = app_write"), "{shown}");
    deny(&p, hold["id"].as_str().unwrap()).await;
    assert!(!one.wait_with_output().await.unwrap().status.success());
    assert_eq!(
        target_rows(&p, "audit.log"),
        "2",
        "the denied TRUNCATE never ran"
    );

    // Two messages: the SET ran and the server confirmed it before the TRUNCATE came.
    let two = psql_commands(
        &p,
        AGENT_A,
        SECRET_A,
        &["SET search_path TO audit, public", "TRUNCATE log"],
    );
    let hold = p.wait_for_hold("TRUNCATE log").await;
    let sp = setting(&hold, "search_path");
    assert_eq!(sp["value"], "audit, public", "{hold}");
    assert!(
        sp["note"]
            .as_str()
            .unwrap()
            .contains("confirmed by the target"),
        "{hold}"
    );
    let (s, _) = p
        .post(
            APPROVER,
            &format!("/api/approvals/{}/approve", hold["id"].as_str().unwrap()),
            json!({ "reason": "audit log rotation" }),
        )
        .await;
    assert_eq!(s, 200);
    let out = two.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        target_rows(&p, "audit.log"),
        "0",
        "what the card said is what ran: audit.log was emptied"
    );
    assert_eq!(target_rows(&p, "t"), "5", "public.t untouched");
    p.stop().await;
}

/// The search_path under other spellings the server reads as the same SET: a `U&` name
/// (allowed, class session) and `SET SCHEMA` (class unknown, approved here) are followed onto
/// the card of the TRUNCATE after them, never shown as the target default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_card_follows_search_path_in_other_spellings() {
    let p = Proctor::start("").await;
    p.pg.psql(
        "app",
        "CREATE SCHEMA audit; CREATE TABLE audit.log (id int); INSERT INTO audit.log VALUES (1), (2);
         CREATE TABLE public.log (id int); INSERT INTO public.log VALUES (1);
         GRANT USAGE ON SCHEMA audit TO app_write; GRANT ALL ON audit.log, public.log TO app_write;",
    )
    .expect("audit schema");
    for (set, value) in [
        ("SET U&\"search!005fpath\" UESCAPE '!' = audit", "audit"),
        ("SET SCHEMA 'audit'", "'audit'"),
    ] {
        let child = psql_commands(&p, AGENT_A, SECRET_A, &[set, "TRUNCATE log"]);
        if set.contains("SCHEMA") {
            let hold = p.wait_for_hold(set).await;
            assert_eq!(hold["class"], "unknown", "{hold}");
            let (s, _) = p
                .post(
                    APPROVER,
                    &format!("/api/approvals/{}/approve", hold["id"].as_str().unwrap()),
                    json!({ "reason": "seen" }),
                )
                .await;
            assert_eq!(s, 200);
        }
        let hold = p.wait_for_hold("TRUNCATE log").await;
        let sp = setting(&hold, "search_path");
        assert_eq!(sp["value"], value, "{set}: {hold}");
        assert!(
            sp["note"]
                .as_str()
                .unwrap()
                .contains("confirmed by the target"),
            "{hold}"
        );
        deny(&p, hold["id"].as_str().unwrap()).await;
        let out = child.wait_with_output().await.unwrap();
        assert!(!out.status.success(), "{set}: {out:?}");
        // Ground truth: the SET ran (its message succeeded); the denied TRUNCATE emptied
        // neither table.
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with("SET"),
            "{set}: {out:?}"
        );
        assert_eq!(target_rows(&p, "audit.log"), "2");
        assert_eq!(target_rows(&p, "public.log"), "1");
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dangerous_hold_comes_first_among_look_alikes() {
    const LOOK_ALIKES: usize = 12;
    let hold_writes = r#"
[[rule]]
name = "test-hold-writes"
action = "hold"
protocol = "postgres"
class = ["write"]
reason = "every write waits for a person"
"#;
    let p = Proctor::start_with("", Some(hold_writes)).await;
    p.pg.psql(
        "app",
        "CREATE TABLE accounts (id int); INSERT INTO accounts VALUES (1), (2), (3);
         GRANT ALL ON accounts TO app_write;",
    )
    .expect("accounts");
    let mut look_alikes = Vec::new();
    for i in 0..LOOK_ALIKES {
        let sql = format!("UPDATE t SET v = 'note {i}' WHERE id = {}", i % 5 + 1);
        look_alikes.push(p.psql(AGENT_A, SECRET_A, &sql));
        p.wait_for_hold(&sql).await;
    }
    let delete = p.psql(AGENT_B, SECRET_B, "DELETE FROM accounts");
    p.wait_for_hold("DELETE FROM accounts").await;

    let list = p.get(APPROVER, "/api/approvals").await;
    let list = list.as_array().expect("a list");
    assert_eq!(list.len(), LOOK_ALIKES + 1);
    assert_eq!(list[0]["detail"], "DELETE FROM accounts", "{:#}", list[0]);
    assert_eq!(list[0]["severity"], "critical");
    assert_eq!(list[0]["group"]["count"], 1);
    assert_eq!(list[0]["rule"], "test-hold-writes");
    for h in &list[1..] {
        assert_eq!(h["group"]["id"], list[1]["group"]["id"], "{h:#}");
        assert_eq!(h["group"]["count"], LOOK_ALIKES);
        assert_eq!(h["severity"], "high");
        assert_eq!(h["agent"], AGENT_A);
    }
    assert_eq!(
        list[1]["group"]["normalised"],
        "update t set v = '' where id = 0"
    );

    // The CLI: the DELETE's group heads the list; the look-alikes follow under one header.
    let shown = on_a_terminal(&[
        "approvals",
        "list",
        "--data",
        p.dir.path().join("data").to_str().unwrap(),
    ]);
    let first = shown.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("== 1 held · critical · agent agent-b"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("== {LOOK_ALIKES} held · high · agent agent-a")),
        "{shown}"
    );
    assert_eq!(shown.matches("== ").count(), 2, "{shown}");
    assert!(
        shown.find("DELETE FROM accounts") < shown.find("UPDATE t SET"),
        "{shown}"
    );

    // An approval releases exactly one hold of the group.
    let one = list[1]["id"].as_str().unwrap().to_string();
    let (s, _) = p
        .post(
            APPROVER,
            &format!("/api/approvals/{one}/approve"),
            json!({ "reason": "ok" }),
        )
        .await;
    assert_eq!(s, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let list = loop {
        let list = p.get(APPROVER, "/api/approvals").await;
        if list.as_array().map(Vec::len) == Some(LOOK_ALIKES) {
            break list;
        }
        assert!(Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for h in list.as_array().unwrap() {
        assert_ne!(h["id"], one.as_str());
        if h["agent"] == AGENT_A {
            assert_eq!(h["group"]["count"], LOOK_ALIKES - 1);
        }
    }
    for h in list.as_array().unwrap() {
        deny(&p, h["id"].as_str().unwrap()).await;
    }
    let mut released = 0;
    for c in look_alikes {
        if c.wait_with_output().await.unwrap().status.success() {
            released += 1;
        }
    }
    assert_eq!(released, 1, "one approval released one hold");
    assert!(!delete.wait_with_output().await.unwrap().status.success());
    assert_eq!(target_rows(&p, "accounts"), "3");
    p.stop().await;
}

/// Issue 18: an approver with the auditor key opens the sealed values of a held action, and
/// the reveal is in the store journal (topic `audit`) before the clear text is shown; over the
/// API the note names the token. Without the key the card keeps the marker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approver_with_the_auditor_key_opens_sealed_values_and_it_is_recorded() {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("auditor.key");
    let public = proctor::redact::seal::generate_key_files(&key).unwrap();
    let extra = format!(
        "[redaction]\nauditor_key = {:?}\nsensitive_columns = [\"public.t.v\"]\n",
        public.display().to_string()
    );
    let p = Proctor::start(&extra).await;
    let data = p.dir.path().join("data");
    let psql = p.psql(AGENT_A, SECRET_A, "UPDATE t SET v = 'the-secret-note'");
    let hold = p.wait_for_hold("UPDATE t SET v").await;
    let id = hold["id"].as_str().unwrap().to_string();
    let detail = hold["detail"].as_str().unwrap();
    assert!(!detail.contains("the-secret-note"), "{hold}");
    assert!(detail.contains("[SEALED:v1:"), "{hold}");

    // Without --reveal: the marker, nothing opened, nothing journaled.
    let shown = on_a_terminal(&["approvals", "show", &id, "--data", data.to_str().unwrap()]);
    assert!(!shown.contains("the-secret-note"), "{shown}");
    // Through the control socket, as the local user.
    let shown = on_a_terminal(&[
        "approvals",
        "show",
        &id,
        "--reveal",
        "--key",
        key.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(
        shown.contains("UPDATE t SET v = 'the-secret-note'"),
        "{shown}"
    );
    assert!(shown.contains("revealed 1 sealed values"), "{shown}");
    // Over the API, as the approver's token.
    let (s, v) = p
        .post(
            APPROVER,
            &format!("/api/approvals/{id}/reveal"),
            json!({ "key": "not hex" }),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = p
        .post(
            APPROVER,
            &format!("/api/approvals/{id}/reveal"),
            json!({ "key": "ab01" }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["id"], id.as_str());
    let (s, _) = p
        .post(
            OPERATOR,
            &format!("/api/approvals/{id}/reveal"),
            json!({ "key": "ab01" }),
        )
        .await;
    assert_eq!(s, 403, "an operator may not");

    // Both notes were durable before their reveal; reading the journal back goes through the
    // index, which follows the log a moment later.
    let deadline = Instant::now() + Duration::from_secs(10);
    let notes = loop {
        let notes: Vec<String> = p
            .events(JOURNAL)
            .await
            .into_iter()
            .filter(|e| e["topic"] == "audit")
            .filter_map(|e| e["text"].as_str().map(String::from))
            .filter(|t| t.contains("reveal:"))
            .collect();
        if notes.len() >= 2 || Instant::now() > deadline {
            break notes;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes[0].contains(&format!("opens 1 sealed values of held action {id}")));
    assert!(notes[0].starts_with("os:"), "the local user: {notes:?}");
    assert!(
        notes[1].contains(&format!("approver \"{APPROVER}\"")),
        "{notes:?}"
    );
    assert!(notes[1].contains("with auditor key ab01"), "{notes:?}");
    assert!(notes.iter().all(|n| !n.contains("the-secret-note")));
    deny(&p, &id).await;
    assert!(!psql.wait_with_output().await.unwrap().status.success());
    assert_eq!(target_rows(&p, "t WHERE v = 'the-secret-note'"), "0");
    p.stop().await;
}
