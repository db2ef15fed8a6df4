//! End-to-end flows over HTTP against a real proctor and PostgreSQL: a real `psql` waiting on
//! a held statement while an approver decides over the API, the live event stream, annotations,
//! the audit journal of auditors' reads, and the CLI's `--server` mode.

mod api_support;

use std::time::{Duration, Instant};

use api_support::*;
use serde_json::{Value, json};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_waits_for_an_approval_given_over_http() {
    let p = Proctor::start("").await;

    // Approve: psql blocks on the held DELETE until the approver answers, then completes.
    let psql = p.psql(AGENT_A, SECRET_A, "delete from t");
    let hold = p.wait_for_hold("delete from t").await;
    assert_eq!(hold["agent"], AGENT_A);
    assert_eq!(hold["target"], "appdb");
    assert_eq!(hold["privilege"], "elevated");
    assert_eq!(hold["protocol"], "postgres");
    assert_eq!(hold["rule"], "pg-hold-unqualified-dml");
    assert_eq!(hold["kind"], "statement");
    assert!(
        hold["tables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t.as_str().unwrap().ends_with('t')),
        "{hold}"
    );
    let id = hold["id"].as_str().unwrap();
    let session = hold["session_id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        p.pg.psql("app", "select count(*) from t").unwrap(),
        "5",
        "nothing ran while held"
    );

    // An approver token named like the session's agent may not decide its holds.
    let (s, v) = p
        .post(
            SELF_APPROVER,
            &format!("/api/approvals/{id}/approve"),
            json!({ "reason": "me" }),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = p
        .post(
            APPROVER,
            &format!("/api/approvals/{id}/approve"),
            json!({ "reason": "ticket 42" }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["released"], true);
    assert_eq!(v["approver"], APPROVER);
    let out = tokio::time::timeout(Duration::from_secs(15), psql.wait_with_output())
        .await
        .expect("psql finishes once approved")
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "DELETE 5");
    assert_eq!(p.pg.psql("app", "select count(*) from t").unwrap(), "0");
    // Deciding again: it is gone.
    let (s, _) = p
        .post(
            APPROVER_2,
            &format!("/api/approvals/{id}/approve"),
            json!({}),
        )
        .await;
    assert_eq!(s, 404);

    // Deny: psql gets the error with the approver's reason; nothing is deleted.
    let psql = p.psql(AGENT_A, SECRET_A, "delete from t2");
    let hold = p.wait_for_hold("delete from t2").await;
    let id = hold["id"].as_str().unwrap();
    let (s, v) = p
        .post(
            APPROVER,
            &format!("/api/approvals/{id}/deny"),
            json!({ "reason": " " }),
        )
        .await;
    assert_eq!(s, 400, "a denial needs a reason: {v}");
    let (s, v) = p
        .post(
            APPROVER_2,
            &format!("/api/approvals/{id}/deny"),
            json!({ "reason": "not during the freeze" }),
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
        err.contains("not during the freeze") && err.contains(APPROVER_2),
        "{err}"
    );
    assert_eq!(p.pg.psql("app", "select count(*) from t2").unwrap(), "5");

    // The recording holds the approval with the token's name as the approver.
    p.wait_sealed(&session).await;
    let approvals: Vec<Value> = p
        .events(&session)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "approval")
        .collect();
    assert_eq!(approvals.len(), 1, "{approvals:?}");
    assert_eq!(approvals[0]["approver"], APPROVER, "{approvals:?}");
    p.stop().await;
}

fn fresh(ev: &SseEvent) -> Duration {
    let ts = ev.json()["ts_ns"].as_i64().unwrap_or(0);
    Duration::from_nanos((proctor::clock::now_ns() - ts).max(0) as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_delivers_within_a_second_and_by_role() {
    let p = Proctor::start("").await;
    let mut auditor = SseStream::open(&p, p.token(AUDITOR)).await;
    let mut bot_a = SseStream::open(&p, p.token(BOT_A)).await;
    let mut bot_b = SseStream::open(&p, p.token(BOT_B)).await;
    for s in [&mut auditor, &mut bot_a, &mut bot_b] {
        let ready = s.next(Duration::from_secs(5)).await.expect("ready event");
        assert_eq!(ready.event, "ready");
    }
    let within = Duration::from_secs(1);

    // DDL in an elevated session: an alert and a hold.
    let psql = p.psql(AGENT_A, SECRET_A, "create table audit_me (a int)");
    let start = auditor
        .wait_for(Duration::from_secs(10), |e| e.event == "session_start")
        .await
        .expect("session_start");
    assert_eq!(start.json()["agent"], AGENT_A);
    assert!(
        fresh(&start) < within,
        "session_start after {:?}",
        fresh(&start)
    );
    let session = start.json()["session_id"].as_str().unwrap().to_string();
    let alert = auditor
        .wait_for(Duration::from_secs(10), |e| {
            e.event == "alert" && e.json()["rule"] == "pg-alert-destructive"
        })
        .await
        .expect("alert");
    assert!(fresh(&alert) < within, "alert after {:?}", fresh(&alert));
    let hold = auditor
        .wait_for(Duration::from_secs(10), |e| e.event == "hold")
        .await
        .expect("hold");
    assert!(fresh(&hold) < within, "hold after {:?}", fresh(&hold));
    assert_eq!(hold.json()["session_id"], session.as_str());
    assert_eq!(hold.json()["rule"], "pg-hold-ddl");
    let approval_id = hold.json()["approval_id"].as_str().unwrap().to_string();

    let (s, v) = p
        .post(
            APPROVER,
            &format!("/api/approvals/{approval_id}/deny"),
            json!({ "reason": "no new tables" }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let decided = auditor
        .wait_for(Duration::from_secs(10), |e| e.event == "approval")
        .await
        .expect("approval event");
    assert_eq!(decided.json()["outcome"], "denied");
    assert!(fresh(&decided) < within);
    let out = psql.wait_with_output().await.unwrap();
    assert!(!out.status.success());
    let end = auditor
        .wait_for(Duration::from_secs(10), |e| e.event == "session_end")
        .await
        .expect("session_end");
    assert_eq!(end.json()["session_id"], session.as_str());
    assert!(fresh(&end) < within, "session_end after {:?}", fresh(&end));

    // agent-a's own token saw its session; agent-b's saw none of it.
    for kind in ["session_start", "alert", "hold", "approval", "session_end"] {
        let e = bot_a
            .wait_for(Duration::from_secs(5), |e| e.event == kind)
            .await
            .unwrap_or_else(|| panic!("bot-a missed {kind}"));
        assert!(e.data.contains(&session) || kind == "alert", "{e:?}");
    }
    let out = p
        .psql(AGENT_B, SECRET_B, "select 1")
        .wait_with_output()
        .await
        .unwrap();
    assert!(out.status.success());
    let mine = bot_b
        .wait_for(Duration::from_secs(10), |e| e.event == "session_start")
        .await
        .expect("bot-b sees its own agent's session");
    assert_eq!(
        mine.json()["agent"],
        AGENT_B,
        "bot-b must not see agent-a's events: {mine:?}"
    );
    while let Some(e) = bot_b.next(Duration::from_millis(500)).await {
        assert!(
            !e.data.contains(AGENT_A) && !e.data.contains(&session),
            "bot-b saw {e:?}"
        );
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotations_land_in_the_right_session_and_reach_approvers() {
    let p = Proctor::start("").await;
    let known = p.live_of(AGENT_A).await;
    let a1 = p.connect(AGENT_A, SECRET_A).await;
    let a1_id = p.wait_new_live(AGENT_A, &known).await;
    let known = p.live_of(AGENT_A).await;
    let _a2 = p.connect(AGENT_A, SECRET_A).await;
    let a2_id = p.wait_new_live(AGENT_A, &known).await;
    let known = p.live_of(AGENT_B).await;
    let _b1 = p.connect(AGENT_B, SECRET_B).await;
    let b1_id = p.wait_new_live(AGENT_B, &known).await;

    let note = "the user asked to purge test rows; t holds only test data";
    let (s, v) = p
        .post(
            BOT_A,
            &format!("/api/sessions/{a1_id}/annotations"),
            json!({ "source": "planner", "text": note }),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    // A unique prefix works too.
    let (s, v) = p
        .post(
            BOT_A,
            &format!("/api/sessions/{}/annotations", &a1_id[..18]),
            json!({ "text": "second thought" }),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    for (who, id) in [(BOT_A, &b1_id), (BOT_B, &a1_id), (BOT_B, &a2_id)] {
        let (s, v) = p
            .post(
                who,
                &format!("/api/sessions/{id}/annotations"),
                json!({ "text": "sneaky" }),
            )
            .await;
        assert_eq!(s, 403, "{who} on {id}: {v}");
    }
    let (s, _) = p
        .post(
            BOT_A,
            "/api/sessions/ffffffff-ffff-ffff-ffff-ffffffffffff/annotations",
            json!({ "text": "x" }),
        )
        .await;
    assert_eq!(s, 404);

    // The agent's reasoning is in front of the approver when its statement is held.
    let task = tokio::spawn(async move { a1.execute("delete from t", &[]).await });
    let hold = p.wait_for_hold("delete from t").await;
    assert_eq!(hold["session_id"], a1_id.as_str());
    let reasoning: Vec<&str> = hold["reasoning"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(reasoning.contains(&note), "{reasoning:?}");
    let (s, _) = p
        .post(
            APPROVER,
            &format!("/api/approvals/{}/approve", hold["id"].as_str().unwrap()),
            json!({ "reason": "ok" }),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(task.await.unwrap().unwrap(), 5);

    let in_a1: Vec<Value> = p
        .events(&a1_id)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "annotation")
        .collect();
    assert_eq!(in_a1.len(), 2, "{in_a1:?}");
    assert_eq!(in_a1[0]["source"], "bot-a/planner");
    assert_eq!(in_a1[0]["text"], note);
    assert_eq!(in_a1[1]["source"], "bot-a");
    for other in [&a2_id, &b1_id] {
        assert!(
            !p.events(other)
                .await
                .iter()
                .any(|e| e["kind"] == "annotation"),
            "annotation leaked into {other}"
        );
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditor_reads_are_journaled() {
    let p = Proctor::start("").await;
    let out = p
        .psql(AGENT_B, SECRET_B, "select 1")
        .wait_with_output()
        .await
        .unwrap();
    assert!(out.status.success());
    let id = p.get(AUDITOR, "/api/sessions").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    p.wait_sealed(&id).await;

    let aud = Some(p.token(AUDITOR));
    for path in [
        format!("/api/sessions/{id}/events?from=0&limit=2"),
        format!("/api/sessions/{id}/export?format=jsonl"),
        format!("/api/sessions/{id}/export?format=bundle"),
        format!("/api/sessions/{id}/verify"),
    ] {
        let (s, _, body) = p.raw("GET", &path, aud, None).await;
        assert_eq!(s, 200, "{path}: {}", text(&body));
        if path.contains("verify") {
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["ok"], true, "{v}");
        }
        if path.contains("jsonl") {
            let lines = text(&body);
            assert!(
                lines.lines().count() >= 3
                    && lines
                        .lines()
                        .all(|l| serde_json::from_str::<Value>(l).is_ok())
            );
        }
    }
    let v = p.get(AUDITOR, "/api/verify").await;
    assert_eq!(v["ok"], true, "{v}");
    // Refused reads (wrong role) are not reads.
    let (s, _) = p
        .call(
            "GET",
            &format!("/api/sessions/{id}"),
            Some(p.token(OPERATOR)),
            None,
        )
        .await;
    assert_eq!(s, 403);

    let notes: Vec<String> = p
        .events(JOURNAL)
        .await
        .into_iter()
        .filter(|e| e["topic"] == "audit")
        .filter_map(|e| e["text"].as_str().map(String::from))
        .collect();
    let expect = [
        "read the record of",
        "read events from seq 0",
        "exported (jsonl)",
        "exported (bundle)",
        "verified session",
        "verified the whole store",
    ];
    for what in expect {
        assert!(
            notes.iter().any(|n| n.contains(what)
                && n.contains(AUDITOR)
                && (what.contains("whole") || n.contains(&id))),
            "no audit note for {what:?}: {notes:#?}"
        );
    }
    assert!(
        notes.iter().all(|n| n.starts_with("auditor \"aud-1\"")),
        "{notes:#?}"
    );
    p.stop().await;
}

fn proctor_cli(args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_proctor"));
    c.args(args)
        .env_remove("PROCTOR_DATA")
        .env_remove("PROCTOR_CONFIG")
        .env_remove("PROCTOR_SERVER")
        .env_remove("PROCTOR_TOKEN_FILE")
        .stdin(std::process::Stdio::null());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_works_against_a_remote_proctor() {
    let p = Proctor::start("").await;
    let url = p.url("");
    let tok = |name: &str| {
        let path = p.dir.path().join(format!("{name}.token"));
        std::fs::write(&path, format!("{}\n", p.token(name))).unwrap();
        path.to_string_lossy().into_owned()
    };
    let (auditor, approver, operator) = (tok(AUDITOR), tok(APPROVER), tok(OPERATOR));
    let run = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = proctor_cli(&args).output().await.expect("proctor runs");
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();

    // approvals list / approve with the approver's token while psql waits.
    let psql = p.psql(AGENT_A, SECRET_A, "delete from t");
    let hold = p.wait_for_hold("delete from t").await;
    let id = hold["id"].as_str().unwrap();
    let (ok, out, err) = run(s(&[
        "approvals",
        "list",
        "--server",
        &url,
        "--token-file",
        &approver,
    ]))
    .await;
    assert!(ok, "{err}");
    assert!(
        out.contains(id) && out.contains("pg-hold-unqualified-dml"),
        "{out}"
    );
    let (ok, _, err) = run(s(&[
        "approvals",
        "list",
        "--server",
        &url,
        "--token-file",
        &auditor,
    ]))
    .await;
    assert!(
        !ok && err.contains("403"),
        "an auditor token cannot list approvals: {err}"
    );
    let (ok, _, err) = run(s(&[
        "approvals",
        "approve",
        id,
        "--as",
        "someone",
        "--server",
        &url,
        "--token-file",
        &approver,
    ]))
    .await;
    assert!(!ok && err.contains("--as"), "{err}");
    let (ok, out, err) = run(s(&[
        "approvals",
        "approve",
        id,
        "--reason",
        "cli ok",
        "--server",
        &url,
        "--token-file",
        &approver,
    ]))
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("approved"), "{out}");
    let done = psql.wait_with_output().await.unwrap();
    assert!(done.status.success(), "{}", text(&done.stderr));

    // deny
    let psql = p.psql(AGENT_A, SECRET_A, "delete from t2");
    let id = p.wait_for_hold("delete from t2").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (ok, _, err) = run(s(&[
        "approvals",
        "deny",
        &id,
        "--reason",
        "cli says no",
        "--server",
        &url,
        "--token-file",
        &approver,
    ]))
    .await;
    assert!(ok, "{err}");
    let done = psql.wait_with_output().await.unwrap();
    assert!(!done.status.success() && text(&done.stderr).contains("cli says no"));

    // kill a live session with the operator's token
    let known = p.live_of(AGENT_B).await;
    let live = p.connect(AGENT_B, SECRET_B).await;
    let live_id = p.wait_new_live(AGENT_B, &known).await;
    let (ok, out, err) = run(s(&[
        "kill",
        &live_id,
        "--reason",
        "cli kill",
        "--server",
        &url,
        "--token-file",
        &operator,
    ]))
    .await;
    assert!(ok, "{err}");
    assert!(out.contains(&live_id), "{out}");
    assert!(live.simple_query("select 1").await.is_err());
    p.wait_sealed(&live_id).await;

    // sessions list / show with the auditor's token
    let (ok, out, err) = run(s(&[
        "sessions",
        "list",
        "--agent",
        AGENT_B,
        "--outcome",
        "killed",
        "--json",
        "--server",
        &url,
        "--token-file",
        &auditor,
    ]))
    .await;
    assert!(ok, "{err}");
    let list: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(list.len(), 1, "{out}");
    assert_eq!(list[0]["id"], live_id.as_str());
    let (ok, out, err) = run(s(&[
        "sessions",
        "list",
        "--since",
        "1h",
        "--server",
        &url,
        "--token-file",
        &auditor,
    ]))
    .await;
    assert!(ok, "{err}");
    assert!(out.lines().count() >= 4, "{out}");
    let (ok, out, err) = run(s(&[
        "sessions",
        "show",
        &live_id[..13],
        "--server",
        &url,
        "--token-file",
        &auditor,
    ]))
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("killed") && out.contains("cli kill"), "{out}");
    let (ok, _, err) = run(s(&[
        "sessions",
        "show",
        &live_id,
        "--server",
        &url,
        "--token-file",
        &operator,
    ]))
    .await;
    assert!(!ok && err.contains("403"), "{err}");
    let started = Instant::now();
    let (ok, _, err) = run(s(&[
        "sessions",
        "list",
        "--server",
        "http://127.0.0.1:1",
        "--token-file",
        &auditor,
    ]))
    .await;
    assert!(!ok && err.contains("127.0.0.1:1"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_sends_keep_alives() {
    let p = Proctor::start("").await;
    let mut s = SseStream::open(&p, p.token(OPERATOR)).await;
    let started = Instant::now();
    let mut comment = None;
    while let Some(e) = s.next(Duration::from_secs(25)).await {
        if e.event == ":" {
            comment = Some(e);
            break;
        }
    }
    let comment = comment.expect("a keep-alive comment on an idle stream");
    assert_eq!(comment.data, "keep-alive");
    assert!(started.elapsed() <= proctor::api::events::KEEP_ALIVE + Duration::from_secs(3));
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_person_rule_over_http() {
    let rule = r#"
[[rule]]
name = "two-person-truncate"
action = "hold"
protocol = "postgres"
commands = ["TRUNCATE"]
min_approvals = 2
reason = "TRUNCATE needs two approvers"
"#;
    let p = Proctor::start_with("", Some(rule)).await;
    let psql = p.psql(AGENT_A, SECRET_A, "truncate t2");
    let hold = p.wait_for_hold("truncate t2").await;
    assert_eq!(hold["rule"], "two-person-truncate");
    assert_eq!(hold["min_approvals"], 2);
    let path = format!("/api/approvals/{}/approve", hold["id"].as_str().unwrap());
    let (s, v) = p.post(APPROVER, &path, json!({ "reason": "first" })).await;
    assert_eq!((s.as_u16(), &v["released"]), (200, &json!(false)), "{v}");
    let (s, v) = p.post(APPROVER, &path, json!({ "reason": "again" })).await;
    assert_eq!(s, 409, "the same approver twice is not two people: {v}");
    let list = p.get(APPROVER, "/api/approvals").await;
    assert_eq!(list[0]["approvals"], json!([APPROVER]), "{list}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(p.pg.psql("app", "select count(*) from t2").unwrap(), "5");
    let (s, v) = p
        .post(APPROVER_2, &path, json!({ "reason": "second" }))
        .await;
    assert_eq!((s.as_u16(), &v["released"]), (200, &json!(true)), "{v}");
    let out = tokio::time::timeout(Duration::from_secs(15), psql.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(p.pg.psql("app", "select count(*) from t2").unwrap(), "0");
    p.stop().await;
}
