//! Keys that make bash run a line without Enter are judged like Enter in a record-only shell
//! (issue 13, item 2; a judged shell drops them, see `ssh_judged_shell.rs`):
//! readline's Ctrl-O (operate-and-get-next) runs the line, so the line is held before it
//! reaches the target; Ctrl-X editing commands (edit-and-execute-command) are not passed on.
//! Real OpenSSH in a pty, a real `proctor serve` with the shipped policies, a real sshd; the
//! target's files are the ground truth.

mod ssh_support;

use std::process::Command;

use serde_json::Value;
use ssh_support::{AGENT, Env, Options, Pty, PtyWait, T, eventually, of_kind, str_field};

#[test]
fn ctrl_o_is_judged_like_enter_and_ctrl_x_is_not_passed_on() {
    let env = Env::start_with(Options {
        shell: Some("record-only"),
        ..Options::default()
    });
    let victim = env.dir.path().join("victim-ctrl-o");
    std::fs::create_dir_all(victim.join("inner")).expect("victim");
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
    pty.quiet();
    pty.type_in(b"echo ready-$((1+1))\r");
    assert!(pty.wait_for("ready-2", 1), "{}", pty.output());
    pty.quiet();

    // Ctrl-O instead of Enter: still held by ssh-hold-recursive-remove.
    let rm = format!("rm -r {}", victim.display());
    pty.type_in(format!("{rm}\x0f").as_bytes());
    let approval = env.wait_approval();
    assert_eq!(approval["detail"], rm.as_str(), "{approval}");
    assert!(victim.exists(), "nothing runs before a decision");
    let id = str_field(&approval, "id");
    env.store()
        .ok(&["approvals", "deny", &id, "--reason", "not via ctrl-o"]);
    assert!(pty.wait_for("denied", 1), "{}", pty.output());
    pty.quiet();
    // Ctrl-X Ctrl-E would open an editor and run what it returns: not passed on.
    pty.type_in(b"\x15echo x\x18\x05");
    assert!(
        pty.wait_for("Ctrl-X editing commands are not passed on", 1),
        "{}",
        pty.output()
    );
    pty.type_in(b"\x15echo after-$((3+4))\r");
    assert!(pty.wait_for("after-7", 1), "{}", pty.output());
    pty.quiet();
    pty.type_in(b"exit\r");
    assert!(eventually(T, || pty.exited()), "{}", pty.output());
    assert!(victim.exists(), "the denied remove never ran");

    let s = env
        .store()
        .sealed_session(|s: &Value| s["agent"] == AGENT && s["target"] == "box");
    let recs = env.export(&str_field(&s, "id"));
    let lines: Vec<String> = of_kind(&recs, "command_line")
        .iter()
        .map(|r| str_field(r, "line"))
        .collect();
    assert!(lines.contains(&rm), "{lines:?}");
    env.verify();
}
