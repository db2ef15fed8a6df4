//! SSH red team, round 5, through real OpenSSH, a real `proctor serve` with the shipped
//! policies and a real sshd, with a guarded directory on the target as ground truth:
//!
//! - a loop or builtin that assigns a variable by naming it (`for PROMPT_COMMAND in 'rm -r
//!   /x'`, `read PROMPT_COMMAND < f`) is held like `PROMPT_COMMAND=…`: before, the loop was read
//!   as plain words and the `rm` ran before the next prompt, with no judged line for it;
//! - a locale in which bash reads a line otherwise than proctor (BIG5: the second byte of a
//!   character may be `\`) never reaches the target's shell: `SetEnv LC_ALL=zh_TW.BIG5` is
//!   refused and recorded as refused. Before, `echo "€\"; rm -r /x #"` (one `echo` in UTF-8)
//!   ran the `rm` under a target that has the locale.

mod ssh_support;

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use ssh_support::{
    AGENT, Env, Options, Pty, PtyWait, T, eventually, of_kind, str_field, text, wait_output,
};

fn guarded(env: &Env) -> (std::path::PathBuf, String) {
    let victim = env.dir.path().join("victim");
    std::fs::create_dir_all(victim.join("inner")).expect("victim");
    let v = victim.display().to_string();
    (victim, v)
}

fn still_there(victim: &Path, pty: &Pty) {
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        victim.exists(),
        "the guarded directory went: {}",
        pty.output()
    );
}

/// Waits for the pending approval of `line` and denies it; returns its reason.
fn deny(env: &Env, pty: &Pty, line: &str) -> String {
    let approval = env.wait_approval();
    assert_eq!(approval["detail"], line, "{approval}");
    assert_eq!(approval["rule"], "ssh-hold-hidden", "{approval}");
    let id = str_field(&approval, "id");
    env.store()
        .ok(&["approvals", "deny", &id, "--reason", "round 5 test"]);
    assert!(
        eventually(T, || env.approvals().is_empty()),
        "{}",
        pty.output()
    );
    pty.quiet();
    str_field(&approval, "reason")
}

#[test]
fn a_variable_assigned_by_a_loop_or_by_read_is_held_like_an_assignment() {
    let env = Env::start();
    let (victim, v) = guarded(&env);
    let cmd_file = env.dir.path().join("cmd.txt");
    std::fs::write(&cmd_file, format!("rm -r {v}\n")).expect("cmd file");
    let mut pty = env.terminal();
    pty.quiet();
    pty.type_in(b"echo ready-$((1+1))\r");
    assert!(pty.wait_for("ready-2", 1), "{}", pty.output());
    pty.quiet();

    let lines = [
        format!("for PROMPT_COMMAND in 'rm -r {v}'; do :; done"),
        format!("read -r PROMPT_COMMAND < {}", cmd_file.display()),
        format!("mapfile -t PROMPT_COMMAND < {}", cmd_file.display()),
        "printf -v PS1 '\\x24(id)'".to_string(),
    ];
    for line in &lines {
        pty.type_in(format!("{line}\r").as_bytes());
        let reason = deny(&env, &pty, line);
        assert!(
            reason.contains("changes what later commands run"),
            "{reason}"
        );
    }
    // The next prompt comes and goes: nothing ran before it.
    pty.type_in(b"echo after-$((2+3))\r");
    assert!(pty.wait_for("after-5", 1), "{}", pty.output());
    still_there(&victim, &pty);
    pty.type_in(b"exit\r");
    assert!(eventually(T, || pty.exited()), "{}", pty.output());

    // Every line has its held verdict in the record.
    let s = env
        .store()
        .sealed_session(|s: &Value| s["agent"] == AGENT && s["target"] == "box");
    let recs = env.export(&str_field(&s, "id"));
    let held: Vec<String> = of_kind(&recs, "command_line")
        .iter()
        .map(|r| str_field(r, "line"))
        .collect();
    for line in &lines {
        assert!(held.contains(line), "{line} not recorded: {held:?}");
    }
    let verdicts = of_kind(&recs, "verdict");
    assert!(
        verdicts.iter().filter(|r| r["verdict"] == "hold").count() >= lines.len(),
        "{verdicts:?}"
    );
    env.verify();
}

/// Compiles the BIG5 locale into `dir` (glibc's `localedef`, from the system's charmap and
/// locale sources): a target "with the locale" without touching the system's locales.
fn big5_locale(dir: &Path) {
    let out = Command::new("localedef")
        .args(["-f", "BIG5", "-i", "zh_TW"])
        .arg(dir.join("zh_TW.BIG5"))
        .output()
        .expect("localedef (glibc's locale compiler) is needed for this test");
    assert!(
        dir.join("zh_TW.BIG5").join("LC_CTYPE").exists(),
        "localedef made no BIG5 locale: {}",
        text(&out.stderr)
    );
}

#[test]
fn a_locale_bash_reads_otherwise_never_reaches_the_target() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let locales = tmp.path().join("locales");
    std::fs::create_dir_all(&locales).expect("locales");
    big5_locale(&locales);
    let env = Env::start_with(Options {
        // A target that accepts every variable and has a BIG5 locale.
        sshd_extra: vec![
            "AcceptEnv *".into(),
            format!("SetEnv LOCPATH={}", locales.display()),
        ],
        ..Options::default()
    });
    let (victim, v) = guarded(&env);
    // One `echo` to a UTF-8 reader; under BIG5 the backslash is the second byte of a
    // character, the quote closes, and `rm` runs.
    let command = format!("bash -c 'echo \"\u{20ac}\\\"; rm -r {v} #\"'");
    let child = env
        .ssh("box")
        .arg("-o")
        .arg("SetEnv=LC_ALL=zh_TW.BIG5 LANG=zh_TW.BIG5 LC_TIME=C.UTF-8")
        .arg(&command)
        .spawn()
        .expect("ssh");
    let out = wait_output(child, T);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("rm -r {v} #")),
        "{}",
        text(&out.stdout)
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(victim.exists(), "the guarded directory went");

    let s = env
        .store()
        .sealed_session(|s| s["agent"] == AGENT && s["target"] == "box");
    let recs = env.export(&str_field(&s, "id"));
    let env_reqs: Vec<(String, bool)> = of_kind(&recs, "channel_request")
        .iter()
        .filter(|r| r["request"] == "env")
        .map(|r| (str_field(r, "detail"), r["accepted"] == true))
        .collect();
    for name in ["LC_ALL", "LANG"] {
        let (detail, accepted) = env_reqs
            .iter()
            .find(|(d, _)| d.starts_with(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no env record for {name}: {env_reqs:?}"));
        assert!(!accepted && detail.contains("refused"), "{detail}");
    }
    assert!(
        env_reqs
            .iter()
            .any(|(d, a)| d.starts_with("LC_TIME=") && *a),
        "{env_reqs:?}"
    );
    env.verify();
}

/// A repository with more commits than a screen holds, so `git log` would page.
fn long_repository(dir: &Path) {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    };
    std::fs::create_dir_all(dir).expect("repo dir");
    git(&["init", "-q", "."]);
    for i in 0..80 {
        git(&[
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            &format!("commit-{i}"),
        ]);
    }
}

#[test]
fn a_pager_started_by_an_allowed_command_runs_no_command_typed_to_it() {
    let env = Env::start();
    let repo = env.dir.path().join("repo");
    long_repository(&repo);
    let made = env.dir.path().join("made-by-less");
    let mut pty = env.terminal();
    pty.quiet();
    pty.type_in(format!("cd {} && git log\r", repo.display()).as_bytes());
    // The pager is `cat`: the whole log is shown and the shell prompts again.
    assert!(pty.wait_for("commit-0", 1), "{}", pty.output());
    pty.quiet();
    // With `less` as the pager, this line was a shell command to it.
    let bang = format!("!touch {}", made.display());
    pty.type_in(format!("{bang}\r").as_bytes());
    assert!(pty.wait_for("command not found", 1), "{}", pty.output());
    pty.quiet();
    assert!(!made.exists(), "less ran the typed line");
    // Undoing the quiet settings is held.
    for line in [
        "unset LESSSECURE",
        "env -u GIT_PAGER git log",
        "GIT_PAGER=less git log",
    ] {
        pty.type_in(format!("{line}\r").as_bytes());
        deny(&env, &pty, line);
    }
    pty.type_in(b"exit\r");
    assert!(eventually(T, || pty.exited()), "{}", pty.output());
    assert!(!made.exists(), "less ran the typed line");

    let s = env
        .store()
        .sealed_session(|s: &Value| s["agent"] == AGENT && s["target"] == "box");
    let recs = env.export(&str_field(&s, "id"));
    let lines: Vec<String> = of_kind(&recs, "command_line")
        .iter()
        .map(|r| str_field(r, "line"))
        .collect();
    assert!(lines.contains(&bang), "{lines:?}");
    env.verify();
}
