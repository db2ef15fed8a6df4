//! Bash runs code hidden in data: a variable's value is evaluated as arithmetic (and an array
//! subscript in it expanded, command substitutions included) in `$((x))`, and `sed`'s `e` flag
//! runs the text it made as a command. Before the shell reader knew either, both ran unheld
//! under an elevated grant. Real OpenSSH through a real `proctor serve` with the shipped
//! policies to a real sshd: each is held as `hidden` before the target channel opens, the file
//! its hidden command would create is not there once the hold is denied, and the recording has
//! the verdict and its reason.

mod ssh_support;

use std::path::Path;

use serde_json::Value;
use ssh_support::{Env, Options, T, of_kind, str_field, wait_output};

/// Runs `command` as an exec, denies its hold (which must be the hidden hold, its reason
/// containing `why`), and checks that nothing ran and that the record says why.
fn held_and_not_run(env: &Env, command: &str, made: &Path, why: &str) {
    let child = env.ssh("box").arg(command).spawn().expect("ssh");
    let approval = env.wait_approval();
    assert_eq!(approval["rule"], "ssh-hold-hidden", "{approval}");
    assert_eq!(approval["detail"], command, "{approval}");
    let id = str_field(&approval, "id");
    env.store()
        .ok(&["approvals", "deny", &id, "--reason", "data run as code"]);
    let out = wait_output(child, T);
    assert!(!out.status.success());
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        !made.exists(),
        "{} was created on the target",
        made.display()
    );

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
    assert_eq!(verdicts[0]["verdict"], "hold", "{recs:?}");
    assert!(str_field(verdicts[0], "reason").contains(why), "{recs:?}");
}

#[test]
fn code_hidden_in_values_and_sed_scripts_is_held_and_does_not_run() {
    let env = Env::start_with(Options::default());

    let made = env.dir.path().join("made-by-arithmetic");
    let command = format!("x='a[$(touch {})]'; echo $((x))", made.display());
    held_and_not_run(&env, &command, &made, "arithmetic evaluates the value of x");

    let made = env.dir.path().join("made-by-sed");
    let command = format!("echo x | sed 's|.*|touch {}|e'", made.display());
    held_and_not_run(&env, &command, &made, "sed script that runs commands");
}
