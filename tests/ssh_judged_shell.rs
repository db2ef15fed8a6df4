//! Judged shells through real OpenSSH in a pty, a real `proctor serve` with the shipped
//! policies and a real sshd (issue 13, item 2; issue 18, item 3). Under `shell = "judged"`
//! (the elevated default) each technique that made bash run another line than the judged one
//! is tried against a guarded directory on the target: it is still there afterwards, and the
//! recording has a verdict for every line. A `deny` grant gets no terminal, no shell and a
//! certificate without `permit-pty`; a `record-only` grant says on every verdict that it
//! could not be enforced, and raises an alert when a hold rule matches.

mod ssh_support;

use std::path::Path;
use std::process::Stdio;

use serde_json::Value;
use ssh_support::{AGENT, Env, Options, Pty, PtyWait, T, eventually, of_kind, str_field, text};

/// Waits for the pending approval of `line` (under `rule`) and denies it.
fn deny(env: &Env, pty: &Pty, line: &str, rule: &str) {
    let approval = env.wait_approval();
    assert_eq!(approval["detail"], line, "{approval}");
    assert_eq!(approval["rule"], rule, "{approval}");
    let id = str_field(&approval, "id");
    env.store()
        .ok(&["approvals", "deny", &id, "--reason", "judged shell test"]);
    assert!(
        eventually(T, || env.approvals().is_empty()),
        "{}",
        pty.output()
    );
    pty.quiet();
}

fn session_records(env: &Env) -> Vec<Value> {
    let s = env
        .store()
        .sealed_session(|s: &Value| s["agent"] == AGENT && s["target"] == "box");
    env.export(&str_field(&s, "id"))
}

fn guarded(env: &Env) -> (std::path::PathBuf, String) {
    let victim = env.dir.path().join("victim");
    std::fs::create_dir_all(victim.join("inner")).expect("victim");
    let v = victim.display().to_string();
    (victim, v)
}

fn still_there(victim: &Path, pty: &Pty) {
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        victim.exists(),
        "the guarded directory went: {}",
        pty.output()
    );
}

#[test]
fn every_technique_is_held_or_judged_as_it_runs() {
    let env = Env::start();
    let (victim, v) = guarded(&env);
    let rm = format!("rm -r {v}");
    let mut pty = env.terminal();
    pty.quiet();
    pty.type_in(b"echo ready-$((1+1))\r");
    assert!(pty.wait_for("ready-2", 1), "{}", pty.output());
    pty.quiet();

    // Ctrl-O (operate-and-get-next) is no key here: bell, dropped, nothing submitted.
    pty.type_in(format!("{rm}\x0f").as_bytes());
    pty.quiet();
    still_there(&victim, &pty);
    assert!(env.approvals().is_empty());
    pty.type_in(b"\x15");

    // Lines that change what later lines do are hidden: held, denied here.
    for (line, rule) in [
        ("alias ls='ls -l'", "ssh-hold-hidden"),
        ("PROMPT_COMMAND='id'", "ssh-hold-hidden"),
        ("trap 'id' DEBUG", "ssh-hold-hidden"),
        (
            &*format!("bind -x '\"\\C-u\": rm -r {v}'"),
            "ssh-hold-hidden",
        ),
        (
            &*format!("bind '\"\\C-u\": \"rm -r {v} #\"'"),
            "ssh-hold-hidden",
        ),
        ("fc -s", "ssh-hold-hidden"),
        ("stty -echo", "ssh-hold-hidden"),
    ] {
        pty.type_in(format!("{line}\r").as_bytes());
        deny(&env, &pty, line, rule);
    }
    // The rebound Ctrl-U would have typed the remove; here it clears proctor's line.
    pty.type_in(b"echo harmless\x15echo after-ctrl-u-$((2+3))\r");
    assert!(pty.wait_for("after-ctrl-u-5", 1), "{}", pty.output());
    pty.quiet();
    // No history expansion on the target: `^old^new` is an unknown command.
    pty.type_in(b"^ready^rm\r");
    assert!(pty.wait_for("command not found", 1), "{}", pty.output());
    pty.quiet();

    // A backquote left open: one command over two lines, judged whole.
    pty.type_in(format!("echo `{rm}\r").as_bytes());
    pty.quiet();
    assert!(
        env.approvals().is_empty(),
        "an open backquote is not a line yet"
    );
    pty.type_in(b"`\r");
    deny(
        &env,
        &pty,
        &format!("echo `{rm}\n`"),
        "ssh-hold-recursive-remove",
    );
    // An open quote: the same.
    pty.type_in(b"echo 'x\r");
    pty.type_in(format!("'; {rm}\r").as_bytes());
    deny(
        &env,
        &pty,
        &format!("echo 'x\n'; {rm}"),
        "ssh-hold-recursive-remove",
    );
    // A bracketed paste is text until Enter, then one command.
    pty.type_in(format!("\x1b[200~echo pasted\r{rm}\x1b[201~").as_bytes());
    pty.quiet();
    assert!(env.approvals().is_empty(), "a paste does not submit");
    pty.type_in(b"\r");
    deny(
        &env,
        &pty,
        &format!("echo pasted\n{rm}"),
        "ssh-hold-recursive-remove",
    );
    // A control character in a line: dropped with a bell, never sent.
    pty.type_in(format!("{rm}\x00\x16\r").as_bytes());
    deny(&env, &pty, &rm, "ssh-hold-recursive-remove");
    still_there(&victim, &pty);

    pty.type_in(b"exit\r");
    assert!(eventually(T, || pty.exited()), "{}", pty.output());
    still_there(&victim, &pty);

    let recs = session_records(&env);
    let lines: Vec<String> = of_kind(&recs, "command_line")
        .iter()
        .map(|r| str_field(r, "line"))
        .collect();
    let verdicts = of_kind(&recs, "verdict");
    // Every line that reached the target, and every held one, has a verdict.
    assert_eq!(
        verdicts
            .iter()
            .filter(|r| str_field(r, "subject").starts_with("line "))
            .count(),
        lines.len(),
        "{lines:?}"
    );
    for wanted in [
        "echo ready-$((1+1))",
        "PROMPT_COMMAND='id'",
        "trap 'id' DEBUG",
        "fc -s",
        "stty -echo",
        "^ready^rm",
        rm.as_str(),
        "exit",
    ] {
        assert!(lines.iter().any(|l| l == wanted), "{wanted}: {lines:?}");
    }
    assert!(!lines.iter().any(|l| l.contains('\x0f') || l.contains('\0')));
    assert!(
        of_kind(&recs, "annotation")
            .iter()
            .any(|a| str_field(a, "text").contains("were dropped"))
    );
    env.verify();
}

#[test]
fn a_deny_grant_has_no_terminal_no_shell_and_no_permit_pty() {
    let env = Env::start_with(Options {
        shell: Some("deny"),
        ..Options::default()
    });
    let out = env
        .ssh("box")
        .arg("-T")
        .stdin(Stdio::null())
        .output()
        .expect("ssh");
    assert_eq!(out.status.code(), Some(126), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("allows no interactive shell"),
        "{}",
        text(&out.stderr)
    );
    let out = env.exec("echo exec-still-works");
    assert!(text(&out.stdout).contains("exec-still-works"));
    // An interpreter reading the channel is a shell by another name: denied, not held.
    let made = env.dir.path().join("made-by-denied-bash");
    let mut child = env
        .ssh("box")
        .arg("bash")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        let _ = stdin.write_all(format!("touch {}\n", made.display()).as_bytes());
    }
    let out = child.wait_with_output().expect("ssh");
    assert_eq!(out.status.code(), Some(126), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("grant:shell-deny"),
        "{}",
        text(&out.stderr)
    );
    assert!(!made.exists());
    assert!(env.approvals().is_empty());

    // The shell's session: it ran no command.
    let s = env.store().sealed_session(|s: &Value| {
        s["agent"] == AGENT && s["target"] == "box" && s["commands"] == 0
    });
    let recs = env.export(&str_field(&s, "id"));
    assert!(
        of_kind(&recs, "channel_request")
            .iter()
            .any(|r| r["request"] == "shell" && r["accepted"] == false),
        "{recs:?}"
    );
    // The certificate does not allow a terminal on the target.
    let issued = of_kind(&recs, "credential_issued");
    assert!(!issued.is_empty(), "{recs:?}");
    for c in issued {
        let d = c.to_string();
        assert!(!d.contains("permit-pty"), "{d}");
        assert!(d.contains("source-address="), "{d}");
    }
    env.verify();
}

#[test]
fn a_record_only_shell_says_its_verdicts_are_not_enforced_and_alerts_on_holds() {
    let env = Env::start_with(Options {
        shell: Some("record-only"),
        ..Options::default()
    });
    let (victim, v) = guarded(&env);
    let rm = format!("rm -r {v}");
    let mut pty = env.terminal();
    pty.quiet();
    pty.type_in(b"echo ro-$((1+2))\r");
    assert!(pty.wait_for("ro-3", 1), "{}", pty.output());
    pty.quiet();
    pty.type_in(format!("{rm}\r").as_bytes());
    deny(&env, &pty, &rm, "ssh-hold-recursive-remove");
    pty.type_in(b"exit\r");
    assert!(eventually(T, || pty.exited()), "{}", pty.output());
    still_there(&victim, &pty);

    let recs = session_records(&env);
    let notes: Vec<String> = of_kind(&recs, "annotation")
        .iter()
        .map(|a| str_field(a, "text"))
        .filter(|t| t.contains("not enforced"))
        .collect();
    assert!(notes.len() >= 3, "one per verdict: {notes:?}");
    assert!(
        of_kind(&recs, "alert")
            .iter()
            .any(|a| a.to_string().contains("record-only")),
        "{recs:?}"
    );
    env.verify();
}

#[test]
fn a_target_without_bash_fails_closed_with_a_message() {
    // sshd's SetEnv replaces the session's PATH: the login's shell finds no bash.
    let env = Env::start_with(Options {
        sshd_extra: vec!["SetEnv PATH=/nonexistent".into()],
        ..Options::default()
    });
    let mut pty = env.terminal();
    assert!(
        pty.wait_for("this target has no bash; a judged shell needs one", 1),
        "{}",
        pty.output()
    );
    assert!(eventually(T, || pty.exited()), "{}", pty.output());
}

#[test]
fn ssh_box_bash_is_a_judged_shell_line_by_line() {
    let env = Env::start();
    let (victim, v) = guarded(&env);
    let mut child = env
        .ssh("box")
        .arg("bash")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(format!("echo one-$((0+1))\nrm -r {v}\necho two-$((1+1))\n").as_bytes())
            .expect("stdin");
    }
    let approval = env.wait_approval();
    assert_eq!(approval["detail"], format!("rm -r {v}"), "{approval}");
    let id = str_field(&approval, "id");
    env.store().ok(&[
        "approvals",
        "deny",
        &id,
        "--reason",
        "not from a piped shell",
    ]);
    let out = child.wait_with_output().expect("ssh");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("one-1") && stdout.contains("two-2"),
        "{stdout}"
    );
    assert!(victim.exists());
    let recs = session_records(&env);
    assert!(
        of_kind(&recs, "channel_open")
            .iter()
            .any(|r| r["channel_kind"] == "shell" && r["detail"] == "bash"),
        "{recs:?}"
    );
    let lines: Vec<String> = of_kind(&recs, "command_line")
        .iter()
        .map(|r| str_field(r, "line"))
        .collect();
    assert_eq!(
        lines,
        vec![
            "echo one-$((0+1))".to_string(),
            format!("rm -r {v}"),
            "echo two-$((1+1))".into()
        ]
    );
    env.verify();
}
