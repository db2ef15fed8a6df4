//! Issue 13: in a judged shell, bash's own parser decides when a command is complete.
//! Proctor's reader takes a line ending in `&&` or `|` as complete, where bash reads on: sent
//! alone, it would have made the next line, judged on its own, part of a compound command
//! nobody judged. Through real OpenSSH in a pty, `proctor serve` with the shipped policies and
//! a real sshd: the line stays open (`> `), the compound is judged and held whole, the guarded
//! directory survives, and every command line in the record has a verdict. When bash's check
//! cannot be made, the command is held; once approved and sent, the target's own continuation
//! prompt is the backstop: proctor interrupts what bash would have joined to the next line.

mod ssh_support;

use serde_json::Value;
use ssh_support::{AGENT, Env, PtyWait, T, eventually, of_kind, str_field};

#[test]
fn a_command_bash_reads_on_is_judged_whole() {
    let env = Env::start();
    let victim = env.dir.path().join("victim");
    std::fs::create_dir_all(victim.join("inner")).expect("victim");
    let v = victim.display().to_string();
    let mut pty = env.terminal();
    pty.quiet();
    pty.type_in(b"echo ready-$((1+1))\r");
    assert!(pty.wait_for("ready-2", 1), "{}", pty.output());
    pty.quiet();

    // A trailing pipe: kept open, then judged and run as one command.
    pty.type_in(b"echo pipe-$((1+1)) |\r");
    assert!(pty.wait_for("\n> ", 1), "{}", pty.output());
    pty.quiet();
    pty.type_in(b"tr p q\r");
    assert!(pty.wait_for("qiqe-2", 1), "{}", pty.output());
    pty.quiet();

    // A trailing `&&` before a held command: the hold is for the whole compound.
    pty.type_in(b"echo first &&\r");
    assert!(pty.wait_for("\n> ", 2), "{}", pty.output());
    pty.quiet();
    assert!(
        env.approvals().is_empty(),
        "an open `&&` is not a command yet"
    );
    pty.type_in(format!("rm -r {v}\r").as_bytes());
    let approval = env.wait_approval();
    assert_eq!(
        approval["detail"],
        format!("echo first &&\nrm -r {v}"),
        "{approval}"
    );
    assert_eq!(approval["rule"], "ssh-hold-recursive-remove", "{approval}");
    let id = str_field(&approval, "id");
    env.store()
        .ok(&["approvals", "deny", &id, "--reason", "bash check test"]);
    assert!(eventually(T, || env.approvals().is_empty()));
    pty.quiet();

    // Bash was left waiting for nothing: the next line runs on its own.
    pty.type_in(b"echo after-$((3+4))\r");
    assert!(pty.wait_for("after-7", 1), "{}", pty.output());
    pty.quiet();
    assert!(victim.join("inner").exists(), "{}", pty.output());

    pty.type_in(b"exit\r");
    assert!(eventually(T, || pty.exited()), "{}", pty.output());
    assert!(victim.join("inner").exists());

    let s = env
        .store()
        .sealed_session(|s: &Value| s["agent"] == AGENT && s["target"] == "box");
    let recs = env.export(&str_field(&s, "id"));
    let lines: Vec<String> = of_kind(&recs, "command_line")
        .iter()
        .map(|r| str_field(r, "line"))
        .collect();
    let verdicts = of_kind(&recs, "verdict")
        .iter()
        .filter(|r| str_field(r, "subject").starts_with("line "))
        .count();
    assert_eq!(verdicts, lines.len(), "{lines:?}");
    for wanted in [
        "echo pipe-$((1+1)) |\ntr p q",
        &format!("echo first &&\nrm -r {v}"),
        "echo after-$((3+4))",
    ] {
        assert!(lines.iter().any(|l| l == wanted), "{wanted}: {lines:?}");
    }
    // No part of a compound was judged (or sent) on its own.
    for alone in ["echo pipe-$((1+1)) |", "tr p q", "echo first &&"] {
        assert!(!lines.iter().any(|l| l == alone), "{alone}: {lines:?}");
    }
    env.verify();
}

#[test]
fn an_unchecked_command_is_held_and_the_targets_prompt_is_the_backstop() {
    let env = Env::start();
    let mut pty = env.terminal();
    pty.quiet();
    pty.type_in(b"echo ready-$((1+1))\r");
    assert!(pty.wait_for("ready-2", 1), "{}", pty.output());
    pty.quiet();
    // More syntax errors than the check follows (bash drops each and parses on), then a line
    // bash reads on from: proctor's reader takes the paste as complete, bash's check gives up.
    let mut paste = b"\x1b[200~".to_vec();
    for _ in 0..17 {
        paste.extend_from_slice(b"echo )\r");
    }
    paste.extend_from_slice(b"false &&\x1b[201~\r");
    pty.type_in(&paste);
    let approval = env.wait_approval();
    assert!(
        str_field(&approval, "detail").ends_with("echo )\nfalse &&"),
        "{approval}"
    );
    let rule = str_field(&approval, "rule");
    assert!(
        rule == "shell-syntax-unchecked" || rule == "ssh-hold-hidden",
        "{approval}"
    );
    // A person lets it run: bash reads it as unfinished, prints its continuation prompt, and
    // proctor interrupts it instead of letting the next line complete it.
    let id = str_field(&approval, "id");
    env.store()
        .ok(&["approvals", "approve", &id, "--reason", "backstop test"]);
    assert!(
        pty.wait_for("read the command as unfinished", 1),
        "{}",
        pty.output()
    );
    pty.quiet();
    // Joined to `false &&`, this would print nothing.
    pty.type_in(b"echo ran-$((2+3))\r");
    assert!(pty.wait_for("ran-5", 1), "{}", pty.output());
    pty.quiet();
    assert!(!pty.output().contains("[proctor-ps"), "{}", pty.output());
    pty.type_in(b"exit\r");
    assert!(eventually(T, || pty.exited()), "{}", pty.output());

    let s = env
        .store()
        .sealed_session(|s: &Value| s["agent"] == AGENT && s["target"] == "box");
    let recs = env.export(&str_field(&s, "id"));
    let notes: Vec<String> = of_kind(&recs, "annotation")
        .iter()
        .map(|a| str_field(a, "text"))
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("target read the command as unfinished; discarded")),
        "{notes:?}"
    );
    let lines = of_kind(&recs, "command_line").len();
    let verdicts = of_kind(&recs, "verdict")
        .iter()
        .filter(|r| str_field(r, "subject").starts_with("line "))
        .count();
    assert_eq!(verdicts, lines);
    env.verify();
}
