//! The session gate judges the clear action and records the redacted one; every event path
//! (start-up parameters, exec, shell lines, terminal chunks, annotations) is redacted before it
//! is hashed; sealed fields open with the auditor key; without a key, sealing falls back to
//! redaction. No network: an SSH session is admitted (its certificate is only signed) and
//! driven through the gate directly.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use proctor::config::Config;
use proctor::recorder::codec::Body;
use proctor::recorder::index::parse_session_id;
use proctor::redact::seal::{Opener, generate_key_files};
use proctor::session::CoreAuthority;
use proctor_gate::{
    Action, Authority, Decision, Event, Outcome, OutputStream, Protocol, SessionRequest,
};

const HOST_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILyL8YyxZ1scfkldC7tNPm1JJBDcKs+j3dQr3VvN9PEF";

fn setup(dir: &Path, redaction: &str) -> Config {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("10-test.toml"),
        r#"
[[rule]]
name = "deny-clear-line"
action = "deny"
protocol = "ssh"
line = 'hunter2'
reason = "the clear text reached policy"

[[redact]]
name = "github-tokens"
pattern = '\bgh[pousr]_[A-Za-z0-9]{36,255}\b'
kind = "github-token"

[[redact]]
name = "cards-sealed"
detector = "card-number"
action = "seal"
"#,
    )
    .unwrap();
    let config = format!(
        r#"data_dir = "{data}"
policies = ["{policies}"]

[redaction]
{redaction}

[[agents]]
name = "ops"

[[targets]]
name = "web"
kind = "ssh"
host = "127.0.0.1"
port = 22
host_keys = ["{HOST_KEY}"]

[[grants]]
name = "g"
agent = "ops"
target = "web"
privilege = "elevated"
logins = ["deploy"]
"#,
        data = dir.join("data").display(),
        policies = policies.display(),
    );
    let path = dir.join("proctor.toml");
    std::fs::write(&path, config).unwrap();
    Config::load(&path).unwrap()
}

/// Every event of a session as recorded.
fn recorded(data: &Path, id: &str) -> Vec<Event> {
    let key = parse_session_id(id).unwrap();
    let mut out = Vec::new();
    let (index, _) = proctor::recorder::recover::index_for_reading(data).unwrap();
    let meta = index.get(&key).unwrap().unwrap();
    proctor::recorder::reader::for_each_record(data, &meta, |r| {
        if let Ok(Body::Event(e)) = &r.body {
            out.push(e.clone());
        }
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    out
}

async fn open(
    core: &Arc<proctor::session::Core>,
    params: Vec<(String, String)>,
) -> proctor_gate::OpenSession {
    CoreAuthority::new(core.clone())
        .open(SessionRequest {
            protocol: Protocol::Ssh,
            agent: "ops".into(),
            target: "web".into(),
            login: Some("deploy".into()),
            client_addr: "127.0.0.1:5555".parse().unwrap(),
            params,
        })
        .await
        .expect("admitted")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_sees_clear_text_recording_holds_markers() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("auditor.key");
    let public = generate_key_files(&key).unwrap();
    let config = setup(
        dir.path(),
        &format!("auditor_key = {:?}", public.display().to_string()),
    );
    let data = config.data_dir.clone();
    let server = proctor::serve::start(config).await.unwrap();
    let core = server.core.clone();
    assert!(core.redactor().sealing());

    let s = open(
        &core,
        vec![(
            "PROCTOR_REASON".into(),
            "rotate PGPASSWORD=reason-secret".into(),
        )],
    )
    .await;
    let gate = s.gate.clone();
    // Policy matches `hunter2` in the clear line, so the deny proves it saw the clear text.
    let d = gate
        .decide(Action::CommandLine {
            channel: 0,
            line: "PGPASSWORD=hunter2 psql -h db -c 'select 1'".into(),
        })
        .await
        .unwrap();
    assert!(
        matches!(&d, Decision::Deny { rule, .. } if rule == "deny-clear-line"),
        "{d:?}"
    );
    let d = gate
        .decide(Action::Exec {
            channel: 1,
            command: "curl -H 'Authorization: Bearer abcdefgh12345678' https://api".into(),
        })
        .await
        .unwrap();
    assert!(matches!(d, Decision::Allow), "{d:?}");
    let key_block = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA-keyline-1\n";
    for (i, chunk) in [
        "cat ~/.ssh/id_ed25519\r\n",
        key_block,
        "c2VjcmV0LWtleWxpbmUtMg-keyline-2\n",
        "-----END OPENSSH PRIVATE KEY-----\n$ ",
        "card 4111 1111 1111 1111 on file\n",
    ]
    .iter()
    .enumerate()
    {
        gate.record(Event::Output {
            channel: 1,
            stream: if i == 0 {
                OutputStream::Stderr
            } else {
                OutputStream::Stdout
            },
            data: Bytes::from(chunk.to_string()),
        })
        .await
        .unwrap();
    }
    gate.record(Event::Input {
        channel: 1,
        data: Bytes::from_static(
            b"export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\r",
        ),
    })
    .await
    .unwrap();
    gate.record(Event::Annotation {
        source: "agent".into(),
        text: "using token ghp_0123456789abcdefghijklmnopqrstuvwxyzAB".into(),
    })
    .await
    .unwrap();
    gate.end(Outcome::Completed, "done").await.unwrap();
    let id = s.session_id.clone();
    server.stop().await;

    let events = recorded(&data, &id);
    let all = format!("{events:?}");
    for clear in [
        "hunter2",
        "reason-secret",
        "abcdefgh12345678",
        "keyline-1",
        "keyline-2",
        "4111 1111 1111 1111",
        "wJalrXUtnFEMI",
        "ghp_0123456789",
    ] {
        assert!(!all.contains(clear), "{clear} recorded in the clear: {all}");
    }
    assert!(
        all.contains("PGPASSWORD=[REDACTED:password:7] psql"),
        "{all}"
    );
    assert!(
        all.contains("Authorization: Bearer [REDACTED:authorization:16]"),
        "{all}"
    );
    assert!(all.contains("[REDACTED:github-token:42]"), "{all}");
    assert!(all.contains("[REDACTED:private-key:"), "{all}");
    assert!(all.contains("[SEALED:v1:card-number:"), "{all}");
    // The verdict names the rule that saw the clear line.
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Verdict(v) if v.rule == "deny-clear-line"))
    );

    // Sealed values open with the auditor's key, bound to this session.
    let opener = Opener::load(&key).unwrap();
    let (revealed, ok, bad) = opener.reveal_text(&id, &all);
    assert_eq!((ok, bad), (1, 0));
    assert!(revealed.contains("card 4111 1111 1111 1111 on file"));
    let (_, ok, bad) = opener.reveal_text("0190aaaa-0000-7000-8000-000000000000", &all);
    assert_eq!((ok, bad), (0, 1));

    // Verification needs no key.
    let (report, _) = proctor::ops::verify(&data, Some(&id), None, false).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_auditor_key_sealing_falls_back_to_redaction() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), "sensitive_columns = [\"public.customers.ssn\"]");
    let data = config.data_dir.clone();
    let server = proctor::serve::start(config).await.unwrap();
    let core = server.core.clone();
    assert!(!core.redactor().sealing());
    assert!(
        core.redactor()
            .notes
            .iter()
            .any(|n| n.contains("REDACTED instead of sealed")),
        "said at start-up: {:?}",
        core.redactor().notes
    );
    let s = open(&core, vec![]).await;
    s.gate
        .record(Event::Output {
            channel: 0,
            stream: OutputStream::Stdout,
            data: Bytes::from_static(b"5500 0000 0000 0004\n"),
        })
        .await
        .unwrap();
    s.gate.end(Outcome::Completed, "done").await.unwrap();
    let id = s.session_id.clone();
    server.stop().await;
    let all = format!("{:?}", recorded(&data, &id));
    assert!(!all.contains("5500 0000 0000 0004"), "{all}");
    assert!(all.contains("[REDACTED:card-number:19]"), "{all}");
    assert!(!all.contains("[SEALED:"), "{all}");
}

/// Issue 18, item 2: a private key with no END line would redact everything after it. The
/// approver would see `... [REDACTED:private-key]` while the hidden code ran, so such an
/// action is held whole, whatever the policy says; a secret that is only a value is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redaction_that_would_hide_code_holds_the_action() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), "");
    let server = proctor::serve::start(config).await.unwrap();
    let core = server.core.clone();
    let s = open(&core, vec![]).await;
    let hiding = [
        Action::CommandLine {
            channel: 0,
            line: "echo '-----BEGIN PRIVATE KEY-----' ; rm -rf /srv/data".into(),
        },
        Action::Exec {
            channel: 1,
            command: "true # -----BEGIN PRIVATE KEY-----\nrm -rf /srv/data".into(),
        },
    ];
    for action in hiding {
        let d = s.gate.decide(action.clone()).await.unwrap();
        match d {
            Decision::Held(hold) => {
                assert_eq!(hold.rule, "redaction-hides-text", "{action:?}");
                drop(hold);
            }
            other => panic!("{action:?}: {other:?}"),
        }
    }
    // A secret value alone is redacted in the record and the action judged as usual.
    let d = s
        .gate
        .decide(Action::CommandLine {
            channel: 0,
            line: "curl -H 'Authorization: Bearer abcdefgh12345678' https://api".into(),
        })
        .await
        .unwrap();
    assert!(matches!(d, Decision::Allow), "{d:?}");
    s.gate.end(Outcome::Completed, "done").await.unwrap();
    server.stop().await;
}
