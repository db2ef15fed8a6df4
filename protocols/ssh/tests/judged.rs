//! A judged shell through real OpenSSH and a real sshd (issue 13, item 2): proctor is the
//! line discipline. The tricks that made bash run another line than the judged one (Ctrl-O,
//! aliases, `^old^new`, `fc -s`, key bindings, continuation lines, bracketed paste, control
//! characters) find no line editor, no history and no aliases on the target; every command
//! that runs is a judged command line. Ground truth: files on the target.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::pty::{Pty, PtyWait};
use common::{Env, eventually};
use proctor_gate::{Event, Outcome, ShellMode};

const T: Duration = Duration::from_secs(20);

async fn judged_env() -> Env {
    Env::start_with(|t| t.shell = ShellMode::Judged).await
}

fn shell(env: &Env) -> Pty {
    let mut cmd = Command::new("ssh");
    cmd.args(env.ssh_options()).args([
        "-tt",
        "-p",
        &env.port.to_string(),
        "-l",
        "web1",
        "127.0.0.1",
    ]);
    Pty::spawn(cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_judged_lines_reach_the_target_shell() {
    let env = judged_env().await;
    let victim = env.dir.path().join("victim");
    std::fs::create_dir_all(&victim).expect("victim");
    let v = victim.display().to_string();
    let mut pty = shell(&env);
    assert!(eventually(T, || !env.authority.sessions().is_empty()).await);
    let gate = env.session(0);
    pty.quiet().await;

    // Edited locally: the target sees the finished line only.
    pty.type_in(b"echo hellp\x7fo-$((40+2))\r");
    assert!(pty.wait_for("hello-42", 1).await, "{}", pty.output());
    pty.quiet().await;

    // Ctrl-O, Ctrl-X Ctrl-E, Ctrl-R, Ctrl-V are not line-editing keys here: bell, dropped.
    pty.type_in(format!("rm -r {v} # forbidden\x0f\x18\x05\x12\x16").as_bytes());
    pty.quiet().await;
    assert!(victim.exists(), "{}", pty.output());
    assert!(pty.output().contains('\x07'), "a bell for the dropped keys");
    pty.type_in(b"\x15echo after-ctrl-o-$((1+1))\r");
    assert!(pty.wait_for("after-ctrl-o-2", 1).await, "{}", pty.output());
    pty.quiet().await;

    // No aliases, no history expansion, no fc history, no readline bindings on the target.
    pty.type_in(b"alias zz='echo ALIASED'\r");
    pty.quiet().await;
    pty.type_in(b"zz\r");
    assert!(
        pty.wait_for("zz: command not found", 1).await,
        "{}",
        pty.output()
    );
    pty.quiet().await;
    pty.type_in(b"echo one\r");
    pty.quiet().await;
    pty.type_in(b"^one^two\r");
    pty.quiet().await;
    pty.type_in(b"fc -s\r");
    pty.quiet().await;
    pty.type_in(format!("bind -x '\"\\C-u\": rm -r {v}'\r").as_bytes());
    pty.quiet().await;
    pty.type_in(format!("bind '\"\\C-a\": \"rm -r {v} #\"'\r").as_bytes());
    pty.quiet().await;
    pty.type_in(b"x\x15\x01echo bound-$((2+2))\r");
    assert!(pty.wait_for("bound-4", 1).await, "{}", pty.output());
    pty.quiet().await;
    assert!(victim.exists(), "{}", pty.output());
    assert!(!pty.output().contains("\ntwo\r"), "{}", pty.output());

    // A backquote or a quote left open: continuation prompt, one judged command.
    pty.type_in(b"echo `printf back\r");
    pty.quiet().await;
    assert!(gate.command_lines().iter().all(|l| !l.contains("back")));
    pty.type_in(b"`-quote-$((3+3))\r");
    assert!(pty.wait_for("back-quote-6", 1).await, "{}", pty.output());
    pty.type_in(b"echo 'open\r");
    pty.type_in(b"quote'\r");
    assert!(pty.wait_for("open\r\nquote", 1).await, "{}", pty.output());
    pty.quiet().await;

    // A bracketed paste is text: its line breaks do not submit it.
    pty.type_in(format!("\x1b[200~rm -r {v}\recho pasted\x1b[201~").as_bytes());
    pty.quiet().await;
    assert!(victim.exists());
    assert!(gate.command_lines().iter().all(|l| !l.contains("pasted")));
    pty.type_in(b"\x15\x15\x03");
    pty.quiet().await;

    // Echo off on the target, a control character typed: dropped, never sent.
    pty.type_in(b"stty -echo\r");
    pty.quiet().await;
    pty.type_in(format!("rm -r {v}\x00\x1b[1;5C # forbidden\r").as_bytes());
    assert!(
        pty.wait_for("denied by policy", 1).await,
        "{}",
        pty.output()
    );
    pty.quiet().await;
    assert!(victim.exists());

    // Ctrl-C interrupts the running program (the pty's interrupt character).
    pty.type_in(b"sleep 30; echo not-$((1))-interrupted\r");
    tokio::time::sleep(Duration::from_millis(500)).await;
    pty.type_in(b"\x03");
    pty.type_in(b"echo after-$?\r");
    assert!(pty.wait_for("after-130", 1).await, "{}", pty.output());
    assert!(!pty.output().contains("not-1-interrupted"));
    pty.quiet().await;

    // Held, then approved: runs as judged.
    pty.type_in(b"echo needs_approval-$((2+3))\r");
    assert!(eventually(T, || !gate.pending_holds().is_empty()).await);
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
    assert!(victim.exists());
    let lines = gate.command_lines();
    assert_eq!(
        lines,
        vec![
            "echo hello-$((40+2))".to_string(),
            "echo after-ctrl-o-$((1+1))".into(),
            "alias zz='echo ALIASED'".into(),
            "zz".into(),
            "echo one".into(),
            "^one^two".into(),
            "fc -s".into(),
            format!("bind -x '\"\\C-u\": rm -r {v}'"),
            format!("bind '\"\\C-a\": \"rm -r {v} #\"'"),
            "echo bound-$((2+2))".into(),
            "echo `printf back\n`-quote-$((3+3))".into(),
            "echo 'open\nquote'".into(),
            "stty -echo".into(),
            format!("rm -r {v} # forbidden"),
            "sleep 30; echo not-$((1))-interrupted".into(),
            "echo after-$?".into(),
            "echo needs_approval-$((2+3))".into(),
            "exit".into(),
        ],
        "{}",
        pty.output()
    );
    // What was dropped is said in the record.
    assert!(gate.events().iter().any(|e| matches!(
        e,
        Event::Annotation { text, .. } if text.contains("were dropped")
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_terminal_whole_commands_are_judged() {
    let env = judged_env().await;
    let mut child = env
        .ssh("web1")
        .arg("-T")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh");
    let mut stdin = child.stdin.take().expect("stdin");
    use tokio::io::AsyncWriteExt;
    stdin
        .write_all(
            b"echo 'one\ntwo'\necho forbidden-x\nalias q='echo ALIAS'\nq\necho bad\x15\necho three",
        )
        .await
        .expect("write");
    drop(stdin);
    let out = tokio::time::timeout(T, child.wait_with_output())
        .await
        .expect("ends")
        .expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        stdout.contains("one\ntwo\n") && stdout.contains("three"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("forbidden-x") && !stdout.contains("ALIAS"),
        "{stdout}"
    );
    assert!(!stdout.contains("bad"), "{stdout}");
    assert!(stderr.contains("control character"), "{stderr}");
    let gate = env.session(0);
    assert!(eventually(T, || gate.outcome().is_some()).await);
    assert_eq!(
        gate.command_lines(),
        vec![
            "echo 'one\ntwo'",
            "echo forbidden-x",
            "alias q='echo ALIAS'",
            "q",
            "echo three"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_shell_is_refused_with_a_record() {
    let env = Env::start_with(|t| {
        t.shell = ShellMode::Deny;
        t.allow_pty = false;
    })
    .await;
    // A terminal is refused (OpenSSH then gives up on a forced one)...
    let out = env
        .ssh("web1")
        .arg("-tt")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("ssh");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(stderr.contains("PTY allocation request failed"), "{stderr}");
    // ...and so is a shell without one, with a message.
    let out = env
        .ssh("web1")
        .arg("-T")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("ssh");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(stderr.contains("allows no interactive shell"), "{stderr}");
    assert_eq!(out.status.code(), Some(126), "{stderr}");
    for n in 0..2 {
        let gate = env.session(n);
        assert!(eventually(T, || gate.outcome().is_some()).await);
        assert!(gate.events().iter().any(|e| matches!(
            e,
            Event::ChannelRequest { request, accepted: false, detail, .. }
                if request == "shell" && detail.contains("deny")
        )));
    }
    assert!(env.session(0).events().iter().any(|e| matches!(
        e,
        Event::ChannelRequest { request, accepted: false, .. } if request == "pty-req"
    )));
    // Commands still run.
    let out = env
        .ssh("web1")
        .arg("echo exec-ok")
        .output()
        .await
        .expect("ssh");
    assert!(String::from_utf8_lossy(&out.stdout).contains("exec-ok"));
}
