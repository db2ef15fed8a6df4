//! An allowed write now, an unjudged command later. sshd's bash reads `~/.bashrc` even for
//! `ssh box true`, so planting a line there (or in `~/.profile`, `~/.ssh/rc`, a git hook, a
//! cron job...) ran a command that proctor had held, on the next harmless exec: the SSH red
//! team planted `rm -r` in `~/.bashrc` of an elevated grant's login and it ran on `ssh devbox
//! true`. And an archive writes wherever its members say. Real OpenSSH (`ssh`, `sftp`) through
//! a real `proctor serve` with the shipped policies to a real sshd: each write is held as
//! `hidden`, the file on the target is unchanged once the hold is denied, and the recording has
//! the verdict and its reason. (The start-up files live in the test's directory, not in the
//! login's real home: a file of such a name counts wherever it is.)

mod ssh_support;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use ssh_support::{Env, Options, T, of_kind, str_field, wait_output};

/// Waits for the hold of the exec `command`, checks it is the hidden hold with `why` in its
/// reason, and denies it.
fn deny_hidden_hold(env: &Env, child: Child, command: &str, why: &str) {
    let approval = env.wait_approval();
    assert_eq!(approval["rule"], "ssh-hold-hidden", "{approval}");
    assert_eq!(approval["detail"], command, "{approval}");
    let id = str_field(&approval, "id");
    env.store().ok(&[
        "approvals",
        "deny",
        &id,
        "--reason",
        "plants a later command",
    ]);
    let out = wait_output(child, T);
    assert!(!out.status.success(), "the held action succeeded");
    // The verdict is in the agent's session with its reason.
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
    assert!(
        verdicts
            .iter()
            .any(|v| v["verdict"] == "hold" && str_field(v, "reason").contains(why)),
        "no hold verdict with {why:?}: {recs:?}"
    );
}

#[test]
fn start_up_files_and_archives_are_held_and_left_unchanged() {
    let env = Env::start_with(Options::default());
    let home = env.dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let bashrc = home.join(".bashrc");
    let original = "# the login's bashrc\n";
    std::fs::write(&bashrc, original).expect("bashrc");

    // 1. A shell line that plants a command at the top of ~/.bashrc.
    let made = env.dir.path().join("made-by-bashrc");
    let command = format!("sed -i '1i touch {}' {}", made.display(), bashrc.display());
    let child = env.ssh("box").arg(&command).spawn().expect("ssh");
    deny_hidden_hold(&env, child, &command, "start-up file (.bashrc)");
    assert_eq!(
        std::fs::read_to_string(&bashrc).expect("bashrc"),
        original,
        "~/.bashrc was changed"
    );
    // The exec that would have run it: nothing was planted, so nothing runs.
    let out = env.exec("true");
    assert!(out.status.success());
    assert!(!made.exists());

    // 2. The same by SFTP: an upload onto ~/.profile.
    let profile = home.join(".profile");
    let local = env.dir.path().join("evil-profile");
    std::fs::write(&local, format!("touch {}\n", made.display())).expect("local");
    let batch = env.dir.path().join("batch");
    std::fs::write(
        &batch,
        format!("put {} {}\n", local.display(), profile.display()),
    )
    .expect("batch");
    let mut c = Command::new("sftp");
    c.args(env.client_options(&env.key))
        .args(["-P", &env.port.to_string(), "-b"])
        .arg(&batch)
        .arg("box@127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c.spawn().expect("sftp");
    let approval = env.wait_approval();
    assert_eq!(approval["rule"], "ssh-hold-hidden", "{approval}");
    // The approver is told why: the reason names the start-up file.
    assert!(
        approval.to_string().contains("start-up file (.profile)"),
        "{approval}"
    );
    env.store().ok(&[
        "approvals",
        "deny",
        &str_field(&approval, "id"),
        "--reason",
        "plants a later command",
    ]);
    let out = wait_output(child, T);
    assert!(!out.status.success(), "sftp put succeeded");
    assert!(!profile.exists(), "~/.profile was written by SFTP");

    // 3. An archive extracted into the home: its members name what lands.
    let src = env.dir.path().join("src");
    std::fs::create_dir_all(&src).expect("src");
    std::fs::write(src.join(".bash_login"), "touch x\n").expect("member");
    let tar = env.dir.path().join("a.tar");
    let st = Command::new("tar")
        .arg("cf")
        .arg(&tar)
        .arg("-C")
        .arg(&src)
        .arg(".bash_login")
        .status()
        .expect("tar");
    assert!(st.success());
    let command = format!("tar xf {} -C {}", tar.display(), home.display());
    let child = env.ssh("box").arg(&command).spawn().expect("ssh");
    deny_hidden_hold(
        &env,
        child,
        &command,
        "writes files named inside the archive",
    );
    assert!(
        !Path::new(&home.join(".bash_login")).exists(),
        "tar extracted"
    );
}

/// Without a terminal a judged shell reads its commands from a pipe, and the builtin `echo`'s
/// `/proc/self/fd/0` is that pipe: `echo 'touch x' > /proc/self/fd/0` put a line in the shell's
/// input that proctor never judged, and bash ran it (the red team ran a held `rm -r` so). The
/// write is held as hidden; once denied, nothing ran and the shell goes on with the next line.
#[test]
fn a_line_written_into_the_shells_own_input_is_held() {
    use std::io::Write;

    let env = Env::start_with(Options::default());
    let made = env.dir.path().join("made-by-injected-line");
    let line = format!("echo 'touch {}' > /proc/self/fd/0", made.display());
    let mut child = env
        .ssh("box")
        .arg("-T")
        .stdin(Stdio::piped())
        .spawn()
        .expect("ssh");
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "{line}").expect("write line");
    stdin.flush().expect("flush");
    let approval = env.wait_approval();
    assert_eq!(approval["rule"], "ssh-hold-hidden", "{approval}");
    assert_eq!(approval["detail"], line.as_str(), "{approval}");
    assert!(
        approval.to_string().contains("the shell's own input"),
        "{approval}"
    );
    env.store().ok(&[
        "approvals",
        "deny",
        &str_field(&approval, "id"),
        "--reason",
        "writes into the shell's input",
    ]);
    writeln!(stdin, "echo still-here").expect("write line");
    drop(stdin);
    let out = wait_output(child, T);
    assert!(
        ssh_support::text(&out.stdout).contains("still-here"),
        "{}",
        ssh_support::text(&out.stderr)
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!made.exists(), "the injected line ran");
}
