//! The API's role boundaries (every role on every route), its error shape, its refusal to
//! modify recordings, and the OpenAPI document's completeness.

mod api_support;

use std::collections::BTreeSet;
use std::time::Duration;

use api_support::*;
use hyper::StatusCode;
use serde_json::{Value, json};

/// Who calls: no token, a wrong token, or a named token.
#[derive(Debug, Clone, Copy)]
enum Caller {
    Nobody,
    Forged,
    Token(&'static str),
}

const CALLERS: [Caller; 7] = [
    Caller::Nobody,
    Caller::Forged,
    Caller::Token(OPERATOR),
    Caller::Token(APPROVER),
    Caller::Token(AUDITOR),
    Caller::Token(BOT_A),
    Caller::Token(BOT_B),
];

/// Expected status per caller, in `CALLERS` order.
type Row = (&'static str, String, Option<Value>, [u16; 7]);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_on_every_route() {
    let p = Proctor::start("").await;

    // A finished session to read, a live one of each agent to annotate and kill, and two held
    // statements to approve and deny.
    let out = p
        .psql(AGENT_A, SECRET_A, "select count(*) from t")
        .wait_with_output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sealed = p.get(AUDITOR, "/api/sessions?agent=agent-a&limit=1").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    p.wait_sealed(&sealed).await;

    let known = p.live_of(AGENT_A).await;
    let live_a = p.connect(AGENT_A, SECRET_A).await;
    let live_a_id = p.wait_new_live(AGENT_A, &known).await;
    let known = p.live_of(AGENT_B).await;
    let kill_me = p.connect(AGENT_B, SECRET_B).await;
    let kill_id = p.wait_new_live(AGENT_B, &known).await;

    let held_a = p.connect(AGENT_A, SECRET_A).await;
    let approve_task = tokio::spawn(async move { held_a.execute("delete from t", &[]).await });
    let hold_a = p.wait_for_hold("delete from t").await;
    let held_b = p.connect(AGENT_B, SECRET_B).await;
    let deny_task = tokio::spawn(async move { held_b.execute("delete from t2", &[]).await });
    let hold_b = p.wait_for_hold("delete from t2").await;
    let (approve_id, deny_id) = (
        hold_a["id"].as_str().unwrap(),
        hold_b["id"].as_str().unwrap(),
    );

    //          nobody forged  op  appr  aud  bot-a bot-b
    let public = [200, 200, 200, 200, 200, 200, 200];
    let auditor = [401, 401, 403, 403, 200, 403, 403];
    let operator = [401, 401, 200, 403, 403, 403, 403];
    let approver = [401, 401, 403, 200, 403, 403, 403];
    let rows: Vec<Row> = vec![
        ("GET", "/api/health".into(), None, public),
        ("GET", "/api/openapi.json".into(), None, public),
        ("GET", "/api/sessions".into(), None, auditor),
        (
            "GET",
            "/api/sessions?agent=agent-a&open=false&since=1h&limit=5".into(),
            None,
            auditor,
        ),
        ("GET", format!("/api/sessions/{sealed}"), None, auditor),
        (
            "GET",
            format!("/api/sessions/{}", &sealed[..13]),
            None,
            auditor,
        ),
        (
            "GET",
            format!("/api/sessions/{sealed}/events?from=1&limit=3"),
            None,
            auditor,
        ),
        (
            "GET",
            format!("/api/sessions/{sealed}/verify"),
            None,
            auditor,
        ),
        (
            "GET",
            format!("/api/sessions/{sealed}/export?format=jsonl"),
            None,
            auditor,
        ),
        (
            "GET",
            format!("/api/sessions/{sealed}/export?format=asciicast"),
            None,
            auditor,
        ),
        (
            "GET",
            format!("/api/sessions/{sealed}/export?format=bundle"),
            None,
            auditor,
        ),
        ("GET", "/api/verify".into(), None, auditor),
        ("GET", "/api/live".into(), None, operator),
        ("GET", "/api/approvals".into(), None, approver),
        // Agent tokens only, and only for their own agent's live session.
        (
            "POST",
            format!("/api/sessions/{live_a_id}/annotations"),
            Some(json!({ "source": "planner", "text": "checking the row count first" })),
            [401, 401, 403, 403, 403, 201, 403],
        ),
        (
            "GET",
            "/api/events".into(),
            None,
            [401, 401, 200, 200, 200, 200, 200],
        ),
        // Decisions and the kill last: each succeeds once, for the one role allowed.
        (
            "POST",
            format!("/api/approvals/{approve_id}/approve"),
            Some(json!({ "reason": "looks right" })),
            approver,
        ),
        (
            "POST",
            format!("/api/approvals/{deny_id}/deny"),
            Some(json!({ "reason": "not today" })),
            approver,
        ),
        (
            "POST",
            format!("/api/sessions/{kill_id}/kill"),
            Some(json!({ "reason": "matrix test" })),
            operator,
        ),
    ];
    let mut failures = Vec::new();
    for (method, path, body, expected) in &rows {
        for (caller, want) in CALLERS.iter().zip(expected) {
            let token = match caller {
                Caller::Nobody => None,
                Caller::Forged => Some("prt_0000000000000000000000000000000f"),
                Caller::Token(name) => Some(p.token(name)),
            };
            let resp = p
                .send(
                    method,
                    path,
                    token,
                    body.as_ref().map(|b| b.to_string().into_bytes()),
                )
                .await;
            let status = resp.status().as_u16();
            let is_json = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|c| c.starts_with("application/json"));
            // Streams are dropped unread; everything else is read so errors can be checked.
            let text = if path.starts_with("/api/events") && status == 200 {
                String::new()
            } else {
                let b = http_body_util::BodyExt::collect(resp.into_body())
                    .await
                    .unwrap()
                    .to_bytes();
                String::from_utf8_lossy(&b).into_owned()
            };
            if status != *want {
                failures.push(format!(
                    "{method} {path} as {caller:?}: {status}, expected {want}: {text}"
                ));
                continue;
            }
            if status >= 400 {
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if !is_json || !v["error"].is_string() {
                    failures.push(format!(
                        "{method} {path} as {caller:?}: error is not JSON {{\"error\"}}: {text}"
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} role failures:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The decisions took effect: the approved delete ran, the denied one got the reason.
    let n = tokio::time::timeout(Duration::from_secs(10), approve_task)
        .await
        .unwrap()
        .unwrap()
        .expect("approved statement runs");
    assert_eq!(n, 5);
    let err = tokio::time::timeout(Duration::from_secs(10), deny_task)
        .await
        .unwrap()
        .unwrap()
        .expect_err("denied statement fails");
    let msg = err
        .as_db_error()
        .map(|e| e.message().to_string())
        .unwrap_or_else(|| err.to_string());
    assert!(msg.contains("not today") && msg.contains(APPROVER), "{msg}");
    // The kill ended the session, sealed `killed` with the operator's name.
    assert!(kill_me.simple_query("select 1").await.is_err());
    let m = p.wait_sealed(&kill_id).await;
    assert_eq!(m["outcome"], "killed", "{m}");
    assert!(m["end_reason"].as_str().unwrap().contains(OPERATOR), "{m}");
    // The annotation landed (bot-a's only), naming its token.
    let annotations: Vec<Value> = p
        .events(&live_a_id)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "annotation")
        .collect();
    let sources: BTreeSet<&str> = annotations
        .iter()
        .filter_map(|e| e["source"].as_str())
        .collect();
    assert_eq!(
        sources,
        BTreeSet::from(["bot-a/planner"]),
        "{annotations:?}"
    );
    drop(live_a);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_json_and_recordings_cannot_be_changed() {
    let p = Proctor::start("").await;
    let out = p
        .psql(AGENT_B, SECRET_B, "select 1")
        .wait_with_output()
        .await
        .unwrap();
    assert!(out.status.success());
    let id = p.get(AUDITOR, "/api/sessions?agent=agent-b").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = p.wait_sealed(&id).await;

    let json_error = |status: StatusCode, v: &Value, want: u16| {
        assert_eq!(status.as_u16(), want, "{v}");
        assert!(v["error"].is_string(), "{v}");
    };
    // No method modifies or deletes anything under the session routes, for any role.
    for path in [
        format!("/api/sessions/{id}"),
        format!("/api/sessions/{id}/events"),
        format!("/api/sessions/{id}/export"),
        "/api/sessions".into(),
        "/api/verify".into(),
    ] {
        for method in ["DELETE", "PUT", "PATCH", "POST"] {
            for who in [OPERATOR, APPROVER, AUDITOR, BOT_B] {
                let (s, v) = p
                    .call(method, &path, Some(p.token(who)), Some(json!({})))
                    .await;
                json_error(s, &v, 405);
            }
        }
    }
    let after = p.get(AUDITOR, &format!("/api/sessions/{id}")).await;
    assert_eq!(before["last_hash"], after["last_hash"]);
    assert_eq!(before["events"], after["events"]);

    let aud = Some(p.token(AUDITOR));
    let (s, v) = p.call("GET", "/api/nope", aud, None).await;
    json_error(s, &v, 404);
    let (s, v) = p
        .call(
            "GET",
            "/api/sessions/ffffffff-ffff-ffff-ffff-ffffffffffff",
            aud,
            None,
        )
        .await;
    json_error(s, &v, 404);
    let (s, v) = p.call("GET", "/api/sessions?agnet=typo", aud, None).await;
    json_error(s, &v, 400);
    let (s, v) = p.call("GET", "/api/sessions?limit=0", aud, None).await;
    json_error(s, &v, 400);
    let (s, v) = p
        .call("GET", "/api/sessions?since=yesterday-ish", aud, None)
        .await;
    json_error(s, &v, 400);
    let (s, v) = p
        .call(
            "GET",
            &format!("/api/sessions/{id}/events?from=-1"),
            aud,
            None,
        )
        .await;
    json_error(s, &v, 400);
    let (s, v) = p
        .call(
            "GET",
            &format!("/api/sessions/{id}/export?format=pdf"),
            aud,
            None,
        )
        .await;
    json_error(s, &v, 400);

    let op = Some(p.token(OPERATOR));
    let (status, _, body) = p
        .raw(
            "POST",
            &format!("/api/sessions/{id}/kill"),
            op,
            Some(b"{not json".to_vec()),
        )
        .await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let (s, v) = p
        .call(
            "POST",
            &format!("/api/sessions/{id}/kill"),
            op,
            Some(json!({ "reason": "" })),
        )
        .await;
    json_error(s, &v, 400);
    let (s, v) = p
        .call(
            "POST",
            &format!("/api/sessions/{id}/kill"),
            op,
            Some(json!({ "reason": "x" })),
        )
        .await;
    json_error(s, &v, 404);
    let huge = json!({ "text": "x".repeat(100 * 1024) });
    // The session's own agent token: the role passes, then the body is judged.
    let bot_b = Some(p.token(BOT_B));
    let (s, v) = p
        .call(
            "POST",
            &format!("/api/sessions/{id}/annotations"),
            bot_b,
            Some(huge),
        )
        .await;
    json_error(s, &v, 413);
    let (s, v) = p
        .call(
            "POST",
            &format!("/api/sessions/{id}/annotations"),
            bot_b,
            Some(json!({ "text": "late" })),
        )
        .await;
    json_error(s, &v, 409);
    let (s, v) = p
        .call(
            "POST",
            &format!("/api/sessions/{id}/annotations"),
            Some(p.token(BOT_A)),
            Some(json!({ "text": "not mine" })),
        )
        .await;
    json_error(s, &v, 403);
    let appr = Some(p.token(APPROVER));
    let (s, v) = p
        .call("POST", "/api/approvals/abc/approve", appr, Some(json!({})))
        .await;
    json_error(s, &v, 404);
    let (status, headers, _) = p.raw("GET", "/api/live", None, None).await;
    assert_eq!(status, 401);
    assert_eq!(headers.get("www-authenticate").unwrap(), "Bearer");
    let (status, _, _) = p
        .raw(
            "GET",
            "/api/live",
            Some(&format!("{} ", p.token(OPERATOR))),
            None,
        )
        .await;
    assert_eq!(
        status, 200,
        "surrounding whitespace in the header is tolerated"
    );

    let h = p.call("GET", "/api/health", None, None).await;
    assert_eq!(h.0, 200);
    assert_eq!(h.1["ok"], true);
    assert!(h.1["recorder_failure"].is_null());
    p.stop().await;
}

/// The document lists exactly the routes the router serves, with the same roles.
#[test]
fn openapi_describes_every_route_and_nothing_else() {
    let doc = proctor::api::openapi::document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let roles: BTreeSet<String> = op["x-roles"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_string())
                .collect();
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path}"
            );
            assert!(op["operationId"].is_string(), "{method} {path}");
            documented.insert((method.to_uppercase(), path.clone(), roles));
        }
    }
    let served: BTreeSet<(String, String, BTreeSet<String>)> = proctor::api::route_list()
        .into_iter()
        .map(|(m, p, access)| {
            let roles = match access {
                proctor::api::Access::Public => BTreeSet::new(),
                proctor::api::Access::AnyToken => ["operator", "approver", "auditor", "agent"]
                    .map(String::from)
                    .into(),
                proctor::api::Access::Roles(r) => {
                    r.iter().map(|r| r.as_str().to_string()).collect()
                }
            };
            (m.to_string(), p.to_string(), roles)
        })
        .collect();
    let missing: Vec<_> = served.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&served).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "served but not documented: {missing:?}\ndocumented but not served: {extra:?}"
    );
    // Every schema reference resolves.
    let text = doc.to_string();
    for part in text.split("\"#/components/schemas/").skip(1) {
        let name = &part[..part.find('"').unwrap()];
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling $ref {name}"
        );
    }
}

/// The served document is the same one, and each documented GET route answers (not 404) on a
/// running server: the router and the document agree from the outside too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_openapi_matches_and_routes_exist() {
    let p = Proctor::start("").await;
    let served = p.call("GET", "/api/openapi.json", None, None).await;
    assert_eq!(served.0, 200);
    assert_eq!(served.1, proctor::api::openapi::document());
    for (method, path, _) in proctor::api::route_list() {
        let concrete = path.replace("{id}", "00000000-0000-0000-0000-0000000000aa");
        let (s, v) = p
            .call(
                method,
                &concrete,
                None,
                (method == "POST").then(|| json!({})),
            )
            .await;
        // Without a token: 401 for protected routes, 200 for public ones; never "no route".
        assert!(s == 401 || s == 200, "{method} {path}: {s} {v}");
    }
    p.stop().await;
}
