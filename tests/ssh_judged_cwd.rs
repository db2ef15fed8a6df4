//! The approval card of a judged shell's line says where it runs (issue 18: the approver sees
//! the session settings that change what an action means). Through real OpenSSH in a pty, a
//! real `proctor serve` and a real sshd: after `cd`, a held relative `rm -r` shows the
//! directory the target's kernel gives for the shell, not one the agent printed, and the
//! recording holds each directory once, before the line it applies to.

mod ssh_support;

use serde_json::Value;
use ssh_support::{AGENT, Env, Pty, PtyWait, T, eventually, of_kind, str_field};

fn working_directory(approval: &Value) -> String {
    approval["settings"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "working directory"))
        .map(|s| str_field(s, "value"))
        .unwrap_or_else(|| panic!("no working directory on the card: {approval}"))
}

fn deny(env: &Env, pty: &Pty, approval: &Value) {
    let id = str_field(approval, "id");
    env.store()
        .ok(&["approvals", "deny", &id, "--reason", "cwd test"]);
    assert!(
        eventually(T, || env.approvals().is_empty()),
        "{}",
        pty.output()
    );
    pty.quiet();
}

#[test]
fn a_held_line_shows_the_directory_the_target_gives() {
    let env = Env::start();
    let first = env.dir.path().join("first dir");
    let second = env.dir.path().join("second");
    for d in [&first, &second] {
        std::fs::create_dir_all(d.join("victim/inner")).expect("victim");
    }
    let mut pty = env.terminal();
    pty.quiet();
    pty.type_in(format!("cd '{}'\r", first.display()).as_bytes());
    pty.quiet();
    // Output that looks like a directory report is only output.
    pty.type_in(b"echo '[proctor-pid-0:1]' /\r");
    pty.quiet();
    pty.type_in(b"rm -r victim\r");
    let approval = env.wait_approval();
    assert_eq!(approval["detail"], "rm -r victim", "{approval}");
    assert_eq!(
        working_directory(&approval),
        first.display().to_string(),
        "{approval} {}",
        pty.output()
    );
    deny(&env, &pty, &approval);

    pty.type_in(format!("cd {}\r", second.display()).as_bytes());
    pty.quiet();
    pty.type_in(b"rm -r victim\r");
    let approval = env.wait_approval();
    assert_eq!(working_directory(&approval), second.display().to_string());
    deny(&env, &pty, &approval);
    assert!(first.join("victim").exists() && second.join("victim").exists());

    // The directory adds to the judgement: any file written in a git hooks directory runs
    // later, and only the directory says this relative write lands there.
    let hooks = env.dir.path().join("repo/.git/hooks");
    std::fs::create_dir_all(&hooks).expect("hooks");
    pty.type_in(format!("cd {}\r", hooks.display()).as_bytes());
    pty.quiet();
    pty.type_in(b"echo 'rm -r ../../../first*' > foo\r");
    let approval = env.wait_approval();
    assert_eq!(approval["rule"], "ssh-hold-hidden", "{approval}");
    assert!(
        approval["reason"]
            .as_str()
            .is_some_and(|r| r.contains("into .git/hooks")),
        "{approval}"
    );
    assert_eq!(working_directory(&approval), hooks.display().to_string());
    deny(&env, &pty, &approval);
    assert!(!hooks.join("foo").exists());

    // A line typed while an earlier command still runs: where it runs is not known yet.
    pty.type_in(format!("sleep 1; cd {}\r", first.display()).as_bytes());
    pty.type_in(b"rm -r victim\r");
    let approval = env.wait_approval();
    assert_eq!(working_directory(&approval), "unknown", "{approval}");
    let note = approval["settings"][0]["note"].as_str().unwrap_or_default();
    assert!(note.contains("still running"), "{approval}");
    deny(&env, &pty, &approval);
    assert!(first.join("victim").exists());
    pty.type_in(b"exit\r");
    drop(pty);

    let s = env
        .store()
        .sealed_session(|s: &Value| s["agent"] == AGENT && s["target"] == "box");
    let recs = env.export(&str_field(&s, "id"));
    let notes: Vec<String> = of_kind(&recs, "annotation")
        .iter()
        .map(|r| str_field(r, "text"))
        .filter(|t| t.contains("working directory"))
        .collect();
    let home = notes.first().cloned().unwrap_or_default();
    assert!(home.contains("read from the target"), "{notes:?}");
    assert!(
        notes
            .iter()
            .any(|n| n.contains(&format!("{:?}", first.display().to_string())))
            && notes
                .iter()
                .any(|n| n.contains(&format!("{:?}", second.display().to_string()))),
        "{notes:?}"
    );
    env.verify();
}
