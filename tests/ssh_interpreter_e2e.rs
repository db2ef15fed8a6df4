//! An `exec` of a shell or interpreter that reads its commands from the channel is not an
//! unjudged shell (issue 13, item 1): real OpenSSH through a real `proctor serve` with the
//! shipped policies to a real sshd. `ssh box bash` with commands on stdin, `ssh -tt box bash
//! -i` with keystrokes, and `ssh box python3` are held as `hidden` before the target channel
//! opens; denied, nothing they were given runs (the file they would create is not there), and
//! the recording has the verdict and why. `bash -c 'literal'` is judged as its code and runs.
//! The grant is `record-only`: under a `judged` grant `ssh box bash` gets a judged shell
//! instead (`ssh_judged_shell.rs`).

mod ssh_support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;
use ssh_support::{
    Env, Options, Pty, PtyWait, T, eventually, of_kind, str_field, text, wait_output,
};

/// Waits for the one pending approval, checks it is the hidden hold of `command`, denies it.
fn deny_hidden_hold(env: &Env, command: &str) {
    let approval = env.wait_approval();
    assert_eq!(approval["rule"], "ssh-hold-hidden", "{approval}");
    assert_eq!(approval["detail"], command, "{approval}");
    let id = str_field(&approval, "id");
    env.store()
        .ok(&["approvals", "deny", &id, "--reason", "no unjudged shells"]);
}

/// The sealed session that ran `command`, its verdict record.
fn verdict_for(env: &Env, command: &str) -> Value {
    let s = env.store().sealed_session(|s| {
        s["agent"] == ssh_support::AGENT && s["sealed"] == Value::Bool(true) && {
            let id = str_field(s, "id");
            env.export(&id)
                .iter()
                .any(|r| r["kind"] == "exec" && r["command"] == command)
        }
    });
    let recs = env.export(&str_field(&s, "id"));
    let verdicts = of_kind(&recs, "verdict");
    assert_eq!(verdicts.len(), 1, "{recs:?}");
    verdicts[0].clone()
}

fn assert_not_created(path: &Path) {
    // Give a command that slipped through every chance to have run.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        !path.exists(),
        "{} was created on the target",
        path.display()
    );
}

#[test]
fn interpreters_reading_the_channel_are_held_and_nothing_runs_when_denied() {
    let env = Env::start_with(Options {
        shell: Some("record-only"),
        ..Options::default()
    });

    // `ssh box bash`, the commands on stdin.
    let made = env.dir.path().join("made-by-bash-stdin");
    let mut child = env
        .ssh("box")
        .arg("bash")
        .stdin(Stdio::piped())
        .spawn()
        .expect("ssh");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("touch {}\n", made.display()).as_bytes())
        .expect("write stdin");
    deny_hidden_hold(&env, "bash");
    let out = wait_output(child, T);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert_not_created(&made);
    let v = verdict_for(&env, "bash");
    assert_eq!(v["verdict"], "hold", "{v}");
    assert_eq!(v["rule"], "ssh-hold-hidden", "{v}");
    assert!(
        str_field(&v, "reason").contains("bash reads commands from the session"),
        "{v}"
    );

    // `ssh -tt box bash -i`, keystrokes on a terminal.
    let made = env.dir.path().join("made-by-bash-i");
    let mut cmd = Command::new("ssh");
    cmd.args(env.client_options(&env.key)).args([
        "-tt",
        "-p",
        &env.port.to_string(),
        "-l",
        "box",
        "127.0.0.1",
        "bash",
        "-i",
    ]);
    let mut pty = Pty::spawn(cmd);
    pty.type_in(format!("touch {}\r", made.display()).as_bytes());
    deny_hidden_hold(&env, "bash -i");
    assert!(pty.wait_for("denied", 1), "{}", pty.output());
    assert_not_created(&made);
    let v = verdict_for(&env, "bash -i");
    assert_eq!(v["rule"], "ssh-hold-hidden", "{v}");
    drop(pty);

    // `ssh box python3`, a program on stdin.
    let made = env.dir.path().join("made-by-python");
    let mut child = env
        .ssh("box")
        .arg("python3")
        .stdin(Stdio::piped())
        .spawn()
        .expect("ssh");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("open({:?}, 'w').close()\n", made.display().to_string()).as_bytes())
        .expect("write stdin");
    deny_hidden_hold(&env, "python3");
    let out = wait_output(child, T);
    assert!(!out.status.success());
    assert_not_created(&made);
    let v = verdict_for(&env, "python3");
    assert!(
        str_field(&v, "reason").contains("python3 reads code that proctor does not judge"),
        "{v}"
    );

    // A line typed in a shell that starts an interpreter is held the same way; denied, the
    // next line reaches the shell, not python (which would answer it with a SyntaxError).
    let mut cmd = Command::new("ssh");
    cmd.args(env.client_options(&env.key)).args([
        "-tt",
        "-p",
        &env.port.to_string(),
        "-l",
        "box",
        "127.0.0.1",
    ]);
    let mut pty = Pty::spawn(cmd);
    pty.type_in(b"echo ready-$((1+1))\r");
    assert!(pty.wait_for("ready-2", 1), "{}", pty.output());
    pty.type_in(b"python3\r");
    let approval = env.wait_approval();
    assert_eq!(approval["kind"], "line", "{approval}");
    assert_eq!(approval["detail"], "python3", "{approval}");
    assert_eq!(approval["rule"], "ssh-hold-hidden", "{approval}");
    let id = str_field(&approval, "id");
    env.store().ok(&[
        "approvals",
        "deny",
        &id,
        "--reason",
        "no unjudged interpreters",
    ]);
    assert!(pty.wait_for("denied", 1), "{}", pty.output());
    pty.type_in(b"echo after-$((2+2))\r");
    assert!(pty.wait_for("after-4", 1), "{}", pty.output());
    assert!(!pty.output().contains("SyntaxError"), "{}", pty.output());
    pty.type_in(b"exit\r");
    assert!(eventually(T, || pty.exited()), "{}", pty.output());
    drop(pty);

    // `bash -c` with a literal command is judged as that command: allowed, it runs.
    let made = env.dir.path().join("made-by-bash-c");
    let command = format!("bash -c 'touch {}'", made.display());
    let out = env.exec(&command);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(eventually(T, || made.exists()));
    let v = verdict_for(&env, &command);
    assert_eq!(v["verdict"], "allow", "{v}");
    assert!(env.approvals().is_empty());
    env.verify();
}
