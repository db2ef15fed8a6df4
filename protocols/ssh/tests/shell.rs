//! An interactive shell through proctor, driven through a real pseudo-terminal: command
//! lines are rebuilt (edits, history recall), resizes reach the target, a denied line is
//! cleared, a held line runs after approval.

mod common;

use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::pty::{Pty, PtyWait, set_size};
use common::{Env, eventually};
use proctor_gate::{Event, Outcome};

const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_shell_lines_resize_deny_and_hold() {
    let env = Env::start().await;
    let mut cmd = Command::new("ssh");
    cmd.args(env.ssh_options()).args([
        "-tt",
        "-p",
        &env.port.to_string(),
        "-l",
        "web1",
        "127.0.0.1",
    ]);
    let mut pty = Pty::spawn(cmd);
    assert!(eventually(T, || !env.authority.sessions().is_empty()).await);
    let gate = env.session(0);
    pty.quiet().await;

    // A line typed with a correction.
    pty.type_in(b"echo hellp\x7fo-$((40+2))\r");
    assert!(pty.wait_for("hello-42", 1).await, "{}", pty.output());
    pty.quiet().await;

    // Resize, then look at it from the target.
    set_size(pty.master.as_raw_fd(), 100, 40);
    tokio::time::sleep(Duration::from_millis(300)).await;
    pty.type_in(b"stty size\r");
    assert!(pty.wait_for("40 100", 1).await, "{}", pty.output());
    pty.quiet().await;

    // History recall: the line comes from the screen, not the keystrokes.
    pty.type_in(b"\x1b[A");
    pty.quiet().await;
    pty.type_in(b"\r");
    assert!(pty.wait_for("40 100", 2).await, "{}", pty.output());
    pty.quiet().await;

    // A denied line is cleared on the target and explained.
    pty.type_in(b"echo forbidden-$((1+1))\r");
    assert!(
        pty.wait_for("denied by policy", 1).await,
        "{}",
        pty.output()
    );
    pty.quiet().await;
    pty.type_in(b"echo after-$((2+2))\r");
    assert!(pty.wait_for("after-4", 1).await, "{}", pty.output());
    assert!(!pty.output().contains("forbidden-2"), "{}", pty.output());
    pty.quiet().await;

    // A held line waits for its approval, then runs.
    pty.type_in(b"echo needs_approval-$((2+3))\r");
    assert!(eventually(T, || !gate.pending_holds().is_empty()).await);
    assert!(
        pty.wait_for("held for approval", 1).await,
        "{}",
        pty.output()
    );
    assert!(!pty.output().contains("needs_approval-5"));
    let id = gate.pending_holds().remove(0);
    gate.resolve(&id, true);
    assert!(
        pty.wait_for("needs_approval-5", 1).await,
        "{}",
        pty.output()
    );
    pty.quiet().await;

    pty.type_in(b"exit\r");
    assert!(
        eventually(T, || gate.outcome().is_some()).await,
        "{}",
        pty.output()
    );
    assert_eq!(gate.outcome(), Some(Outcome::Completed));

    let lines = gate.command_lines();
    assert_eq!(
        lines,
        vec![
            "echo hello-$((40+2))",
            "stty size",
            "stty size",
            "echo forbidden-$((1+1))",
            "echo after-$((2+2))",
            "echo needs_approval-$((2+3))",
            "exit",
        ],
        "{}",
        pty.output()
    );
    let events = gate.events();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Resize {
            cols: 100,
            rows: 40,
            ..
        }
    )));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ChannelRequest { request, .. } if request == "pty-req"))
    );
    assert!(events.iter().any(|e| matches!(e, Event::Input { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_without_a_terminal_judges_each_line() {
    let env = Env::start().await;
    let mut child = env
        .ssh("web1")
        .arg("-T")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("ssh");
    let mut stdin = child.stdin.take().expect("stdin");
    use tokio::io::AsyncWriteExt;
    stdin
        .write_all(b"echo one\necho forbidden-two\necho three\nexit\n")
        .await
        .expect("write");
    drop(stdin);
    let out = tokio::time::timeout(T, child.wait_with_output())
        .await
        .expect("ends")
        .expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout.contains("one") && stdout.contains("three"),
        "{stdout}"
    );
    assert!(!stdout.contains("forbidden-two"), "{stdout}");
    let gate = env.session(0);
    assert!(eventually(T, || gate.outcome().is_some()).await);
    assert_eq!(
        gate.command_lines(),
        vec!["echo one", "echo forbidden-two", "echo three", "exit"]
    );
}
