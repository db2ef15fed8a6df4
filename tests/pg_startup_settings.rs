//! The session settings on the approval card, in ways found by the PostgreSQL red team. Real
//! proctor, real PostgreSQL, real psql and tokio-postgres:
//! - `PGOPTIONS='-c search_path=audit'` or `options=...` in the connection string (the startup
//!   packet's `options`) is passed to the target, so it is the session's `search_path`: the approval card of a held `TRUNCATE log` shows it (it used to say "target
//!   default" while `audit.log` was what ran), and after approval `audit.log` is the table the
//!   target emptied;
//! - `EXECUTE s0` of a statement a driver prepared by protocol Parse as `SET search_path =
//!   audit` changes the card's `search_path` as that SET does (it used to stay "target
//!   default").

mod api_support;

use std::process::Stdio;

use api_support::*;
use serde_json::{Value, json};

fn setting<'a>(hold: &'a Value, name: &str) -> &'a Value {
    hold["settings"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no {name} on the card: {hold}"))
}

/// psql as agent-a with extra connection-string words and environment.
fn psql_with(
    p: &Proctor,
    conninfo: &str,
    env: &[(&str, &str)],
    sql: &str,
) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new("psql");
    cmd.arg(format!(
        "host=127.0.0.1 port={} user={AGENT_A} dbname=appdb sslmode=disable {conninfo}",
        p.pg_addr.port()
    ))
    .args(["-X", "-v", "ON_ERROR_STOP=1", "-c", sql])
    .env("PGPASSWORD", SECRET_A)
    .env("PGCONNECT_TIMEOUT", "10")
    .env_remove("PGOPTIONS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("psql runs")
}

fn target_rows(p: &Proctor, table: &str) -> String {
    p.pg.psql("app", &format!("SELECT count(*) FROM {table}"))
        .expect("count on the target")
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_path_from_the_startup_packet_is_on_the_card() {
    let p = Proctor::start("").await;
    p.pg.psql(
        "app",
        "CREATE SCHEMA audit; CREATE TABLE audit.log (id int); INSERT INTO audit.log VALUES (1), (2);
         CREATE TABLE public.log (id int); INSERT INTO public.log VALUES (1), (2), (3);
         GRANT USAGE ON SCHEMA audit TO app_write; GRANT ALL ON audit.log, public.log TO app_write;",
    )
    .expect("audit schema");

    // `options` (PGOPTIONS): denied, so nothing runs; the card names the schema.
    let child = psql_with(
        &p,
        "",
        &[("PGOPTIONS", "-c search_path=audit")],
        "TRUNCATE log",
    );
    let hold = p.wait_for_hold("TRUNCATE log").await;
    let sp = setting(&hold, "search_path");
    assert_eq!(sp["value"], "audit", "{hold}");
    assert!(
        sp["note"].as_str().unwrap().contains("set at login"),
        "{hold}"
    );
    let (s, v) = p
        .post(
            APPROVER,
            &format!("/api/approvals/{}/deny", hold["id"].as_str().unwrap()),
            json!({ "reason": "no" }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(!child.wait_with_output().await.unwrap().status.success());
    assert_eq!(target_rows(&p, "audit.log"), "2");
    assert_eq!(target_rows(&p, "public.log"), "3");

    // In the connection string this time, and with a RESET before the hold in the same
    // message: RESET returns to the login value. Approved, and what the card said is what ran.
    let child = psql_with(
        &p,
        "options='-c search_path=public'",
        &[],
        "SET application_name = x; RESET search_path; TRUNCATE log",
    );
    let hold = p.wait_for_hold("TRUNCATE log").await;
    let sp = setting(&hold, "search_path");
    assert_eq!(
        sp["value"], "public",
        "RESET returns to the login value: {hold}"
    );
    let (s, v) = p
        .post(
            APPROVER,
            &format!("/api/approvals/{}/approve", hold["id"].as_str().unwrap()),
            json!({ "reason": "seen" }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(target_rows(&p, "public.log"), "0", "public.log was emptied");
    assert_eq!(target_rows(&p, "audit.log"), "2", "audit.log untouched");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execute_of_a_prepared_set_changes_the_card() {
    let p = Proctor::start("").await;
    p.pg.psql(
        "app",
        "CREATE SCHEMA audit; CREATE TABLE audit.log (id int); INSERT INTO audit.log VALUES (1), (2);
         GRANT USAGE ON SCHEMA audit TO app_write; GRANT ALL ON audit.log TO app_write;",
    )
    .expect("audit schema");
    let (db, conn) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user={AGENT_A} password={SECRET_A} dbname=appdb sslmode=disable",
            p.pg_addr.port()
        ),
        tokio_postgres::NoTls,
    )
    .await
    .expect("agent connects");
    let conn = tokio::spawn(conn);
    // A protocol Parse, as drivers prepare: the server names it, the agent runs it by name.
    // Kept alive: tokio-postgres closes a statement when it is dropped.
    let _set = db
        .prepare("SET search_path = audit")
        .await
        .expect("prepared");
    let name: String = db
        .query_one(
            "SELECT name FROM pg_prepared_statements WHERE statement = 'SET search_path = audit'",
            &[],
        )
        .await
        .expect("its name")
        .get(0);
    db.simple_query(&format!("EXECUTE {name}"))
        .await
        .expect("the SET runs");
    let truncate = tokio::spawn(async move { db.simple_query("TRUNCATE log").await.is_ok() });
    let hold = p.wait_for_hold("TRUNCATE log").await;
    let sp = setting(&hold, "search_path");
    assert_eq!(sp["value"], "audit", "{hold}");
    assert!(
        sp["note"]
            .as_str()
            .unwrap()
            .contains("confirmed by the target"),
        "{hold}"
    );
    let (s, v) = p
        .post(
            APPROVER,
            &format!("/api/approvals/{}/deny", hold["id"].as_str().unwrap()),
            json!({ "reason": "no" }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(!truncate.await.unwrap(), "the denied TRUNCATE fails");
    assert_eq!(target_rows(&p, "audit.log"), "2");
    conn.abort();
    p.stop().await;
}
