//! End to end: secrets an agent sends through proctor, and values of a sensitive column it
//! reads, appear nowhere in the clear: not in any file under the data directory (segments,
//! ledger, index, quarantine, journal), not in exports without `--reveal`, not in the logs, not
//! in API responses or the live event stream. The recording still verifies without a key, and
//! `export --reveal --key` opens the sealed values and is itself recorded.
//!
//! A real PostgreSQL, the in-process proctor (`serve::start`), the real `psql` binary and
//! tokio-postgres (extended protocol, bound parameters).

#[path = "api_support/mod.rs"]
mod api_support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_support::{AGENT_A, APPROVER, AUDITOR, OPERATOR, Proctor, SECRET_A, SseStream};

const ROLE_PASSWORD: &str = "Pw-9f3kQz-role-secret";
const DOLLAR_PASSWORD: &str = "Dq-77hh-dollar-secret";
const SSN: &str = "zq-ssn-7731-clear";
const SSN_PARAM: &str = "zq-ssn-4402-param";
const BEARER: &str = "eyJhbGciOiJIUzI1NiJ9tokentail";
const CARD: &str = "4111111111111111";

fn secrets() -> [&'static str; 6] {
    [ROLE_PASSWORD, DOLLAR_PASSWORD, SSN, SSN_PARAM, BEARER, CARD]
}

#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn assert_clean(what: &str, bytes: &[u8]) {
    for s in secrets() {
        assert!(
            !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
            "{what} holds the clear value {s:?}"
        );
    }
}

fn proctor_cli(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_proctor"))
        .args(args)
        .output()
        .expect("proctor runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_clear_secret_anywhere() {
    let logs = LogBuf::default();
    let sink = logs.clone();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(proctor::redact::log_filter(
            tracing_subscriber::EnvFilter::new("debug"),
        ))
        .with_writer(move || sink.clone())
        .try_init();

    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("auditor.key");
    let public = proctor::redact::seal::generate_key_files(&key).unwrap();
    let extra = format!(
        "[redaction]\nauditor_key = {:?}\nsensitive_columns = [\"public.customers.ssn\"]\n",
        public.to_string_lossy()
    );
    let mut p = Proctor::start(&extra).await;
    p.pg.psql(
        "app",
        &format!(
            "CREATE TABLE customers (id int PRIMARY KEY, name text, ssn text);
             INSERT INTO customers VALUES (1, 'ann', '{SSN}'), (2, 'bob', '{SSN_PARAM}');
             GRANT SELECT ON customers TO app_write;"
        ),
    )
    .expect("customers table");
    let mut sse = SseStream::open(&p, p.token(OPERATOR)).await;

    // psql: a held ALTER ROLE with a password (approved), a
    // sensitive column read, a literal of it in a WHERE clause, a bearer token and a card number.
    let sql = format!("ALTER ROLE app_write PASSWORD '{ROLE_PASSWORD}';");
    let child = p.psql(AGENT_A, SECRET_A, &sql);
    let hold = p.wait_for_hold("ALTER ROLE").await;
    assert_clean("the approval queue (API)", hold.to_string().as_bytes());
    let id = hold["id"].as_str().expect("approval id").to_string();
    let (s, v) = p
        .post(
            APPROVER,
            &format!("/api/approvals/{id}/approve"),
            serde_json::json!({ "reason": "test" }),
        )
        .await;
    assert!(s.is_success(), "{s} {v}");
    // Sessions act as the grant's role, which may set its own password: the statement runs
    // (older targets refused it). Either way its secret must not show anywhere.
    let out = child.wait_with_output().await.unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ALTER ROLE")
            || String::from_utf8_lossy(&out.stderr).contains("permission denied"),
        "{out:?}"
    );

    let sql = format!(
        "SELECT id, name, ssn FROM customers ORDER BY id;
         SELECT name FROM customers WHERE ssn = '{SSN}';
         SELECT 'Authorization: Bearer {BEARER}' AS header, '{CARD}' AS card;"
    );
    let out = p
        .psql(AGENT_A, SECRET_A, &sql)
        .wait_with_output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(SSN),
        "the agent still sees its data: {out:?}"
    );

    // Extended protocol: the sensitive value as a bound parameter; a dollar-quoted password.
    let client = p.connect(AGENT_A, SECRET_A).await;
    let rows = client
        .query("SELECT name FROM customers WHERE ssn = $1", &[&SSN_PARAM])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let held = tokio::spawn({
        let text = format!("ALTER ROLE app_write PASSWORD $pw${DOLLAR_PASSWORD}$pw$");
        async move { client.simple_query(&text).await.map(|_| ()) }
    });
    let hold = p
        .wait_for_hold("ALTER ROLE app_write PASSWORD $pw$[REDACTED:password:")
        .await;
    assert_clean("the approval queue (API)", hold.to_string().as_bytes());
    let id = hold["id"].as_str().unwrap().to_string();
    let (s, _) = p
        .post(
            APPROVER,
            &format!("/api/approvals/{id}/deny"),
            serde_json::json!({ "reason": "no" }),
        )
        .await;
    assert!(s.is_success());
    assert!(held.await.unwrap().is_err(), "denied");

    // Every session the API lists, with its records and exports, as the auditor sees them.
    let deadline = Instant::now() + Duration::from_secs(20);
    let sessions = loop {
        let list = p.get(AUDITOR, "/api/sessions").await;
        let ids: Vec<String> = list
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["agent"] == AGENT_A)
            .filter_map(|s| s["id"].as_str().map(String::from))
            .collect();
        if ids.len() >= 3 || Instant::now() > deadline {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(sessions.len() >= 3, "{sessions:?}");
    let mut api_text = String::new();
    let mut recorded = String::new();
    for id in &sessions {
        let events = p.events(id).await;
        let text = serde_json::to_string(&events).unwrap();
        recorded.push_str(&text);
        api_text.push_str(&text);
        for format in ["jsonl", "asciicast", "bundle"] {
            let (_, v) = p
                .call(
                    "GET",
                    &format!("/api/sessions/{id}/export?format={format}"),
                    Some(p.token(AUDITOR)),
                    None,
                )
                .await;
            api_text.push_str(&v.to_string());
        }
        api_text.push_str(
            &p.get(AUDITOR, &format!("/api/sessions/{id}"))
                .await
                .to_string(),
        );
    }
    api_text.push_str(&p.get(APPROVER, "/api/approvals").await.to_string());
    while let Some(ev) = sse.next(Duration::from_millis(200)).await {
        api_text.push_str(&ev.data);
    }
    assert_clean("API responses and the event stream", api_text.as_bytes());
    // The recording says what stood there.
    assert!(
        recorded.contains("[REDACTED:password:21]"),
        "role password marker"
    );
    assert!(
        recorded.contains("[SEALED:v1:public.customers.ssn:"),
        "sealed column"
    );
    assert!(
        recorded.contains("[REDACTED:authorization:"),
        "authorization header"
    );
    assert!(
        recorded.contains("[SEALED:v1:card-number:"),
        "cards are sealed by 30-redaction.toml"
    );

    // The CLI against the running proctor (control socket): verification needs no key;
    // exports without --reveal are clean.
    let data = p.dir.path().join("data");
    let d = data.to_string_lossy().to_string();
    let (rc, out, err) = proctor_cli(&["verify", "--data", &d]);
    assert_eq!(rc, 0, "{out}{err}");
    for id in &sessions {
        for format in ["jsonl", "asciicast", "bundle"] {
            let (rc, out, err) = proctor_cli(&["export", id, "--data", &d, "--format", format]);
            assert_eq!(rc, 0, "{err}");
            assert_clean(&format!("export {id} --format {format}"), out.as_bytes());
        }
    }

    // The auditor's reveal opens the sealed values, and each reveal is recorded in the journal.
    let k = key.to_string_lossy().to_string();
    let mut revealed = String::new();
    for id in &sessions {
        let (rc, out, err) = proctor_cli(&["export", id, "--data", &d, "--reveal", "--key", &k]);
        assert_eq!(rc, 0, "{err}");
        assert!(err.contains("did not open"), "{err}");
        revealed.push_str(&out);
    }
    for clear in [SSN, SSN_PARAM, CARD] {
        assert!(revealed.contains(clear), "{clear} revealed");
    }
    let (rc, journal, _) = proctor_cli(&[
        "export",
        api_support::JOURNAL,
        "--data",
        &d,
        "--format",
        "jsonl",
    ]);
    assert_eq!(rc, 0);
    for id in &sessions {
        assert!(
            journal.contains(&format!("reveal: session {id}")),
            "the reveal of {id} is journaled: {journal}"
        );
    }
    assert_clean("the journal", journal.as_bytes());
    let (rc, _, err) = proctor_cli(&[
        "export",
        &sessions[0],
        "--data",
        &d,
        "--reveal",
        "--key",
        &public.to_string_lossy(),
    ]);
    assert_ne!(rc, 0, "a public key reveals nothing: {err}");

    // Keep the store: stopping the test proctor would otherwise delete its directory.
    let _kept = std::mem::replace(&mut p.dir, tempfile::tempdir().unwrap());
    p.stop().await;
    // Every byte under the data directory, after all of the above.
    let mut files = Vec::new();
    files_under(&data, &mut files);
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().contains("segments"))
    );
    for f in &files {
        let bytes = std::fs::read(f).unwrap_or_default();
        assert_clean(&f.display().to_string(), &bytes);
    }
    let logs = logs.0.lock().unwrap().clone();
    assert!(!logs.is_empty(), "logs were captured");
    let text = String::from_utf8_lossy(&logs);
    let leaking: Vec<&str> = text
        .lines()
        .filter(|l| secrets().iter().any(|s| l.contains(s)))
        .collect();
    assert!(
        leaking.is_empty(),
        "log lines with a clear value: {leaking:#?}"
    );
    assert_clean("the logs", &logs);
}
