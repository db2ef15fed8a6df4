//! `proctor replay --against` re-runs a recorded session on a sandbox: every digest matches on
//! an unchanged copy and a change is caught. Break-glass access needs a stated reason and
//! raises an alert at once. Real PostgreSQL, real psql, real proctor.

mod api_support;

use std::process::Command;

use api_support::{AGENT_A, AUDITOR, Proctor, SECRET_A};

fn proctor_cli(data: &std::path::Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_proctor"))
        .args(args)
        .arg("--data")
        .arg(data)
        .output()
        .expect("proctor cli");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

const SANDBOX_SQL: &str = "CREATE TABLE t (id int PRIMARY KEY, v text);
     CREATE TABLE t2 (id int PRIMARY KEY, v text);
     INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 5) g;
     INSERT INTO t2 SELECT g, 'row ' || g FROM generate_series(1, 5) g;";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_against_a_sandbox_matches_then_catches_a_change() {
    let p = Proctor::start("").await;
    // The sandbox starts as the target did before the session.
    p.pg.psql("postgres", "CREATE DATABASE sandbox")
        .expect("sandbox");
    p.pg.psql("sandbox", SANDBOX_SQL).expect("sandbox schema");
    let out = p
        .psql(
            AGENT_A,
            SECRET_A,
            "select * from t order by id; select count(*) from t2; update t set v = 'x' where id = 1; select v from t where id = 1;",
        )
        .wait_with_output()
        .await
        .expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data = p.dir.path().join("data");
    let session = {
        let mut id = None;
        for _ in 0..50 {
            let list = p.get(AUDITOR, "/api/sessions?agent=agent-a").await;
            if let Some(s) = list
                .as_array()
                .and_then(|a| a.iter().find(|s| s["sealed"] == true))
            {
                id = s["id"].as_str().map(str::to_string);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        id.expect("the psql session is sealed")
    };
    let url = p.pg.admin_dsn("sandbox");
    let (code, text) = proctor_cli(&data, &["replay", &session, "--against", &url]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("4 statements: 4 match, 0 mismatch"), "{text}");

    // Someone changed the data: the replay no longer gives the recorded effect.
    p.pg.psql("sandbox", "DROP TABLE t, t2").expect("reset");
    p.pg.psql("sandbox", SANDBOX_SQL).expect("sandbox again");
    p.pg.psql("sandbox", "UPDATE t SET v = 'changed' WHERE id = 3")
        .expect("change");
    let (code, text) = proctor_cli(&data, &["replay", &session, "--against", &url, "--json"]);
    assert_eq!(code, 1, "{text}");
    let checks: serde_json::Value = serde_json::from_str(
        text.lines()
            .take_while(|l| !l.starts_with("proctor:"))
            .collect::<Vec<_>>()
            .join("\n")
            .as_str(),
    )
    .expect("json");
    let verdicts: Vec<&str> = checks
        .as_array()
        .expect("array")
        .iter()
        .map(|c| c["verdict"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        verdicts,
        vec!["mismatch", "match", "match", "match"],
        "{text}"
    );

    // Step-by-step replay for scripts shows each statement with its outcome.
    let (code, text) = proctor_cli(&data, &["replay", &session, "--step"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("statement 3 of 4"), "{text}");
    assert!(text.contains("UPDATE 1"), "{text}");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn break_glass_needs_a_reason_and_alerts() {
    let extra = format!(
        r#"
[[agents]]
name = "responder"
postgres_scram = "{}"

[[grants]]
name = "responder-appdb"
agent = "responder"
target = "appdb"
privilege = "break-glass"
role = "app_write"
"#,
        postgres_protocol::password::scram_sha_256(b"responder-secret")
    );
    let p = Proctor::start(&extra).await;
    let mut alerts = p.core().bus.subscribe();
    let base = format!(
        "host=127.0.0.1 port={} user=responder password=responder-secret dbname=appdb sslmode=disable",
        p.pg_addr.port()
    );
    let refused = tokio_postgres::connect(&base, tokio_postgres::NoTls).await;
    let err = refused.err().expect("no reason, no break-glass session");
    let err = err
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| err.to_string());
    assert!(
        err.contains("PROCTOR_REASON") || err.contains("reason"),
        "{err}"
    );
    let with_reason =
        format!("{base} options='-c proctor.reason=incident\\\\ 4711\\\\ database\\\\ down'");
    let (client, conn) = tokio_postgres::connect(&with_reason, tokio_postgres::NoTls)
        .await
        .expect("a stated reason admits the session");
    tokio::spawn(conn);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
    let mut alerted = false;
    while let Ok(Ok(e)) = tokio::time::timeout_at(deadline, alerts.recv()).await {
        if let proctor::bus::LiveEvent::Alert { rule, message, .. } = e
            && rule == "break-glass"
        {
            assert!(message.contains("incident 4711 database down"), "{message}");
            alerted = true;
            break;
        }
    }
    assert!(alerted, "the break-glass alert is raised within a second");
    client.simple_query("select 1").await.expect("works");
    drop(client);
    p.stop().await;
}
