//! Rule 4 through a real OpenSSH client and a real sshd: when proctor cannot record an action,
//! that action (and everything after it on the channel) never reaches the target, and what the
//! target answered does not reach the agent. Each test makes the gate fail to record one kind
//! of event and checks on the target's disk that a later command did not run.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{Env, eventually};
use proctor_gate::{Event, Party};
use tokio::io::AsyncWriteExt;

const T: Duration = Duration::from_secs(20);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The channel's end was recorded with its reason where recording still worked.
fn recorded_failure(events: &[Event]) -> bool {
    events.iter().any(|e| {
        matches!(e, Event::ProtocolError { party: Party::Proctor, message }
            if message.contains("recording failed"))
    })
}

/// An `env` request whose record fails ends the channel before its command is started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrecorded_env_request_stops_the_command() {
    let env = Env::start().await;
    env.fail_recording(|e| matches!(e, Event::Annotation { source, .. } if source == "agent"));
    let marker = env.dir.path().join("ran");
    let out = env
        .ssh("web1")
        .args(["-o", "SetEnv=PROCTOR_REASON=\"why not\""])
        .arg(format!("touch {}", marker.display()))
        .output()
        .await
        .expect("ssh");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("recording failed"),
        "{}",
        text(&out.stderr)
    );
    let gate = env.session(0);
    assert!(eventually(T, || gate.outcome().is_some()).await);
    assert!(
        !marker.exists(),
        "the command ran although its env was not recorded"
    );
    let events = gate.events();
    assert!(!events.iter().any(|e| matches!(e, Event::Exec { .. })));
    assert!(recorded_failure(&events), "{events:?}");
}

/// In a record-only shell, a line whose "not enforced" note cannot be recorded is not
/// submitted, and nothing typed after it reaches the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrecorded_shell_note_stops_the_line_and_what_follows() {
    let env = Env::start().await;
    env.fail_recording(
        |e| matches!(e, Event::Annotation { text, .. } if text.contains("not enforced")),
    );
    let first = env.dir.path().join("first");
    let second = env.dir.path().join("second");
    let mut child = env
        .ssh("web1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh");
    let mut stdin = child.stdin.take().expect("stdin");
    let script = format!("touch {}\ntouch {}\n", first.display(), second.display());
    stdin.write_all(script.as_bytes()).await.expect("write");
    drop(stdin);
    let out = tokio::time::timeout(T, child.wait_with_output())
        .await
        .expect("ssh ends")
        .expect("ssh");
    let gate = env.session(0);
    assert!(eventually(T, || gate.outcome().is_some()).await);
    assert!(!first.exists(), "{}", text(&out.stderr));
    assert!(!second.exists(), "{}", text(&out.stderr));
    assert!(recorded_failure(&gate.events()));
}

/// A refused SFTP change whose record fails ends the channel: the refusal's answer is not
/// sent as if all were well, and the next request (a mkdir) never reaches the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrecorded_sftp_refusal_ends_the_channel() {
    let env = Env::start().await;
    env.fail_recording(|e| matches!(e, Event::Sftp(op) if op.status.starts_with("denied")));
    let remote = tempfile::tempdir().expect("remote dir");
    let r = remote.path().display().to_string();
    let batch = env.dir.path().join("batch");
    std::fs::write(&batch, format!("-rm {r}/forbidden-x\n-mkdir {r}/after\n")).expect("batch");
    let out = tokio::process::Command::new("sftp")
        .args(env.ssh_options())
        .args(["-P", &env.port.to_string(), "-b"])
        .arg(&batch)
        .arg("web1@127.0.0.1")
        .kill_on_drop(true)
        .output()
        .await
        .expect("sftp");
    let gate = env.session(0);
    assert!(eventually(T, || gate.outcome().is_some()).await);
    assert!(
        !remote.path().join("after").exists(),
        "a request after the unrecorded refusal reached the target: {}",
        text(&out.stderr)
    );
    assert!(recorded_failure(&gate.events()));
}

/// An exit status proctor could not record is not passed on to the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrecorded_exit_status_is_not_passed_on() {
    let env = Env::start().await;
    env.fail_recording(|e| matches!(e, Event::ExitStatus { .. }));
    let out = env.ssh("web1").arg("exit 7").output().await.expect("ssh");
    assert_ne!(out.status.code(), Some(7), "{}", text(&out.stderr));
    let gate = env.session(0);
    assert!(eventually(T, || gate.outcome().is_some()).await);
    assert!(
        !gate
            .events()
            .iter()
            .any(|e| matches!(e, Event::ExitStatus { .. }))
    );
}

/// A verdict the gate cannot record ends the channel: the line is not run and the channel
/// does not carry on to the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_judgement_that_cannot_be_recorded_ends_the_channel() {
    let env = Env::start().await;
    env.fail_recording(|e| matches!(e, Event::CommandLine { line, .. } if line.contains("first")));
    let first = env.dir.path().join("first");
    let second = env.dir.path().join("second");
    let mut child = env
        .ssh("web1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh");
    let mut stdin = child.stdin.take().expect("stdin");
    let script = format!("touch {}\ntouch {}\n", first.display(), second.display());
    stdin.write_all(script.as_bytes()).await.expect("write");
    drop(stdin);
    let out = tokio::time::timeout(T, child.wait_with_output())
        .await
        .expect("ssh ends")
        .expect("ssh");
    let gate = env.session(0);
    assert!(eventually(T, || gate.outcome().is_some()).await);
    assert!(!first.exists(), "{}", text(&out.stderr));
    assert!(!second.exists(), "{}", text(&out.stderr));
    assert!(recorded_failure(&gate.events()));
}
