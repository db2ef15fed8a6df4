//! The web console's server side: assets (or the "not built" page) on every path outside
//! `/api/`, and the text search (`q`) over statements that the console's search page uses.

mod api_support;

use api_support::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_is_served_beside_the_api() {
    let p = Proctor::start("").await;
    let (s, headers, body) = p.raw("GET", "/", None, None).await;
    assert_eq!(s, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = String::from_utf8_lossy(&body);
    if proctor::api::console::built() {
        assert!(page.contains("<div id=\"app\">"), "{page}");
        assert_eq!(headers["cache-control"], "no-cache");
        assert!(headers.contains_key("content-security-policy"));
        let script = page
            .split("src=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("a script in index.html");
        let (s, h, _) = p.raw("GET", script, None, None).await;
        assert_eq!(s, 200, "{script}");
        assert!(h["content-type"].to_str().unwrap().contains("javascript"));
        assert!(h["cache-control"].to_str().unwrap().contains("immutable"));
    } else {
        assert!(page.contains("console was not built"), "{page}");
        assert!(page.contains("npm --prefix src/api/console ci"), "{page}");
    }
    // The page's own routes load the page; unknown files and API routes stay 404.
    let (s, _, _) = p.raw("GET", "/sessions/abc", None, None).await;
    assert_eq!(s, 200);
    let (s, _, _) = p.raw("GET", "/assets/nope-123.js", None, None).await;
    assert_eq!(s, 404);
    let (s, v) = p.call("GET", "/api/nope", None, None).await;
    assert_eq!(s, 404);
    assert!(v["error"].is_string(), "{v}");
    let (s, _, _) = p.raw("POST", "/", None, Some(b"{}".to_vec())).await;
    assert_eq!(s, 405);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_search_finds_statements_across_sessions() {
    let p = Proctor::start("").await;
    for (agent, secret, sql) in [
        (AGENT_A, SECRET_A, "select 'Needle-In-A' as marker"),
        (AGENT_B, SECRET_B, "select 'needle-in-b' as marker"),
        (AGENT_B, SECRET_B, "select 'hay' as marker"),
    ] {
        let out = p.psql(agent, secret, sql).wait_with_output().await.unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let all = p.get(AUDITOR, "/api/sessions").await;
    for s in all.as_array().unwrap() {
        p.wait_sealed(s["id"].as_str().unwrap()).await;
    }

    let found = p.get(AUDITOR, "/api/sessions?q=NEEDLE-in").await;
    let found = found.as_array().unwrap();
    assert_eq!(
        found.len(),
        2,
        "case-insensitive, across sessions: {found:?}"
    );
    for s in found {
        let m = &s["matches"][0];
        assert_eq!(m["kind"], "statement");
        assert!(
            m["text"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("needle-in-"),
            "{m}"
        );
        assert!(m["seq"].is_u64() && m["ts_ns"].is_i64(), "{m}");
    }
    // Filters narrow the text search; limit bounds it.
    let b = p
        .get(AUDITOR, &format!("/api/sessions?q=needle&agent={AGENT_B}"))
        .await;
    assert_eq!(b.as_array().unwrap().len(), 1);
    assert_eq!(b[0]["agent"], AGENT_B);
    let one = p.get(AUDITOR, "/api/sessions?q=needle&limit=1").await;
    assert_eq!(one.as_array().unwrap().len(), 1);
    let none = p.get(AUDITOR, "/api/sessions?q=no-such-text").await;
    assert_eq!(none, Value::Array(vec![]));
    // Without q the answer is unchanged: no matches field.
    let plain = p.get(AUDITOR, "/api/sessions").await;
    assert!(plain[0].get("matches").is_none());

    let aud = Some(p.token(AUDITOR));
    let long = "x".repeat(300);
    let (s, v) = p
        .call("GET", &format!("/api/sessions?q={long}"), aud, None)
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, _) = p
        .call(
            "GET",
            "/api/sessions?q=needle",
            Some(p.token(OPERATOR)),
            None,
        )
        .await;
    assert_eq!(s, 403);

    // Searching the recordings' text is a read, and is journaled.
    let notes: Vec<String> = p
        .events(JOURNAL)
        .await
        .into_iter()
        .filter(|e| e["topic"] == "audit")
        .filter_map(|e| e["text"].as_str().map(String::from))
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("searched the text") && n.contains("\"NEEDLE-in\"")),
        "{notes:#?}"
    );
    p.stop().await;
}
