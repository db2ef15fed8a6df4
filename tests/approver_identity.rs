//! Approvers are identities, not labels: through the control socket the approver is the local
//! user the kernel names (SO_PEERCRED), whatever `--as` says, so one user counts once towards
//! `min_approvals`; and the API checks a route's role before it reads anything else, so a
//! token of the wrong role learns nothing about the body's schema.

mod api_support;

use std::process::{Command, Output, Stdio};

use api_support::*;
use serde_json::json;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn cli(p: &Proctor, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_proctor"))
        .args(args)
        .arg("--data")
        .arg(p.dir.path().join("data"))
        .stdin(Stdio::null())
        .output()
        .expect("proctor CLI")
}

fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    text(&out.stdout).trim().to_string()
}

const TWO_PERSON: &str = r#"
[[rule]]
name = "two-person-truncate"
action = "hold"
protocol = "postgres"
commands = ["TRUNCATE"]
min_approvals = 2
reason = "TRUNCATE needs two approvers"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_local_user_is_one_approver_whatever_it_calls_itself() {
    let p = Proctor::start_with("", Some(TWO_PERSON)).await;
    let psql = p.psql(AGENT_A, SECRET_A, "truncate t2");
    let hold = p.wait_for_hold("truncate t2").await;
    let id = hold["id"].as_str().expect("id").to_string();
    let me = whoami();

    // First approval through the socket, under a label: recorded as the OS user, label beside.
    let first = tokio::task::spawn_blocking({
        let data = p.dir.path().join("data");
        let id = id.clone();
        move || {
            Command::new(env!("CARGO_BIN_EXE_proctor"))
                .args([
                    "approvals",
                    "approve",
                    &id,
                    "--reason",
                    "first",
                    "--as",
                    "alice",
                ])
                .arg("--data")
                .arg(data)
                .output()
                .expect("cli")
        }
    })
    .await
    .expect("join");
    assert!(first.status.success(), "{}", text(&first.stderr));

    // The same user again, under another label or none: not a second person.
    for extra in [&["--as", "bob"][..], &["--as", AGENT_B][..], &[][..]] {
        let mut args = vec!["approvals", "approve", &id, "--reason", "again"];
        args.extend_from_slice(extra);
        let out = cli(&p, &args);
        assert!(
            !out.status.success(),
            "{extra:?} counted as another approver"
        );
        assert!(
            text(&out.stderr).contains("distinct approvers"),
            "{extra:?}: {}",
            text(&out.stderr)
        );
    }
    // Nor can the user pose as the agent to get around that.
    let list = p.get(APPROVER, "/api/approvals").await;
    assert_eq!(
        list[0]["approvals"],
        json!([format!("os:{me} (as \"alice\")")]),
        "{list}"
    );
    assert_eq!(p.pg.psql("app", "select count(*) from t2").unwrap(), "5");

    // Another local user cannot reach the socket at all.
    let data = p.dir.path().join("data");
    let out = Command::new("runuser")
        .args(["-u", "nobody", "--", env!("CARGO_BIN_EXE_proctor")])
        .args(["approvals", "approve", &id, "--reason", "sneaky", "--data"])
        .arg(&data)
        .output()
        .expect("runuser");
    assert!(
        !out.status.success(),
        "nobody approved: {}",
        text(&out.stdout)
    );
    let list = p.get(APPROVER, "/api/approvals").await;
    assert_eq!(list[0]["approvals"].as_array().map(Vec::len), Some(1));

    // A second identity (an approver token) releases it; the record names both.
    let (s, v) = p
        .post(
            APPROVER,
            &format!("/api/approvals/{id}/approve"),
            json!({ "reason": "second" }),
        )
        .await;
    assert_eq!((s.as_u16(), &v["released"]), (200, &json!(true)), "{v}");
    let out = tokio::time::timeout(std::time::Duration::from_secs(15), psql.wait_with_output())
        .await
        .expect("psql ends")
        .expect("psql");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(p.pg.psql("app", "select count(*) from t2").unwrap(), "0");
    let sid = hold["session_id"].as_str().expect("session").to_string();
    let events = p.events(&sid).await;
    assert!(
        events.iter().any(|e| {
            let e = e.to_string();
            e.contains(&format!("os:{me}")) && e.contains(APPROVER)
        }),
        "the recorded approval names both identities: {events:?}"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_role_learns_nothing_from_a_body() {
    let p = Proctor::start("").await;
    let known = p.live_of(AGENT_A).await;
    let _a = p.connect(AGENT_A, SECRET_A).await;
    let live = p.wait_new_live(AGENT_A, &known).await;
    let bodies: [&[u8]; 3] = [br#"{"bogus": 1}"#, b"not json at all", br#"{"text": 5}"#];
    let routes = [
        (format!("/api/approvals/{live}/approve"), OPERATOR),
        (format!("/api/approvals/{live}/deny"), AUDITOR),
        (format!("/api/sessions/{live}/kill"), APPROVER),
        (format!("/api/sessions/{live}/annotations"), OPERATOR),
        (format!("/api/sessions/{live}/annotations"), APPROVER),
    ];
    for (path, who) in &routes {
        for body in bodies {
            let (status, _, bytes) = p
                .raw("POST", path, Some(p.token(who)), Some(body.to_vec()))
                .await;
            let said = String::from_utf8_lossy(&bytes).to_lowercase();
            assert_eq!(status.as_u16(), 403, "{who} {path}: {said}");
            for leak in ["field", "expected", "json", "reason", "text", "missing"] {
                assert!(!said.contains(leak), "{who} {path} leaks {leak:?}: {said}");
            }
        }
        // Without a token: 401, likewise before the body.
        let (status, _, _) = p.raw("POST", path, None, Some(b"{}".to_vec())).await;
        assert_eq!(status.as_u16(), 401, "{path}");
    }
    // The right role still gets the body checked.
    let (status, _, bytes) = p
        .raw(
            "POST",
            &format!("/api/sessions/{live}/kill"),
            Some(p.token(OPERATOR)),
            Some(br#"{"bogus": 1}"#.to_vec()),
        )
        .await;
    assert_eq!(status.as_u16(), 422, "{}", String::from_utf8_lossy(&bytes));
    p.stop().await;
}
