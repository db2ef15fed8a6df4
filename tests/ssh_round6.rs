//! SSH red team, round 6 (file transfer), through real OpenSSH, a real `proctor serve` with the
//! shipped policies (elevated grant) and a real sshd, the target's files as ground truth:
//!
//! - archive extraction is judged by where it lands: `tar x -C DIR` and `unzip -d DIR` into a
//!   scratch directory run (the members are there, the verdict is `allow`); the options that
//!   let members out of the destination (`tar -P`, `unzip -:`) and an extraction into a working
//!   directory the line does not set are held as `hidden`, and denied, nothing lands (not even
//!   the `../` member `unzip -:` would write above the destination). Before, every extraction
//!   was held, wherever it landed;
//! - rsync's receiving side writes what its options name: `rsync -M--log-file=GUARDED`
//!   appended rsync's log to a file a write guard covers, and `--link-dest`/`--temp-dir` were
//!   not judged as writes; now each is denied by the guard and the file is unchanged.

mod ssh_support;

use std::path::Path;
use std::process::{Command, Stdio};

use ssh_support::{AGENT, Env, Options, T, eventually, of_kind, str_field, text, wait_output};

/// Waits for the one pending approval of `command`, checks it is a hidden hold whose reason
/// says `why`, denies it.
fn deny_hidden(env: &Env, command: &str, why: &str) {
    let approval = env.wait_approval();
    assert_eq!(approval["rule"], "ssh-hold-hidden", "{approval}");
    assert_eq!(approval["detail"], command, "{approval}");
    assert!(str_field(&approval, "reason").contains(why), "{approval}");
    let id = str_field(&approval, "id");
    env.store()
        .ok(&["approvals", "deny", &id, "--reason", "round 6 test"]);
    assert!(eventually(T, || env.approvals().is_empty()));
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(out.status.success(), "{cmd:?}: {}", text(&out.stderr));
}

/// The verdicts recorded for exec `command` in the agent's sessions.
fn verdicts_for(env: &Env, command: &str) -> Vec<String> {
    let mut found = Vec::new();
    for s in env.store().sessions() {
        if s["agent"] != AGENT {
            continue;
        }
        let recs = env.export(&str_field(&s, "id"));
        if !recs
            .iter()
            .any(|r| r["kind"] == "exec" && r["command"] == command)
        {
            continue;
        }
        found.extend(of_kind(&recs, "verdict").iter().map(|v| {
            format!(
                "{} {}",
                str_field(v, "verdict"),
                v["rule"].as_str().unwrap_or("-")
            )
        }));
    }
    found
}

fn gone(path: &Path) {
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        !path.exists(),
        "{} was created on the target",
        path.display()
    );
}

#[test]
fn extraction_is_judged_by_where_it_lands() {
    let env = Env::start();
    let root = env.dir.path();
    // The archives, made locally: a directory and a file, named for this test so an
    // extraction into the login's home that was not held would be seen (and removed).
    let pkg = format!("proctor-extract-{}", std::process::id());
    let src = root.join("src");
    std::fs::create_dir_all(src.join(&pkg)).expect("src");
    std::fs::write(src.join(&pkg).join("one"), "one\n").expect("one");
    let tar = root.join("a.tar");
    run(Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&src)
        .arg(&pkg));
    let zip = root.join("a.zip");
    run(Command::new("zip")
        .arg("-qr")
        .arg(&zip)
        .arg(&pkg)
        .current_dir(&src));
    // A zip whose member climbs out of the destination: `../escaped`.
    let evil = root.join("evil.zip");
    run(Command::new("python3").arg("-c").arg(format!(
        "import zipfile\nwith zipfile.ZipFile('{}','w') as z: z.writestr('../escaped','x')",
        evil.display()
    )));

    // Into a scratch directory named on the line: judged there, and still held, because a
    // member may be a start-up file, hook or unit, which counts wherever it lands (an earlier
    // version let these run). Denied, nothing lands, and the verdict is recorded.
    let work = root.join("work");
    std::fs::create_dir_all(&work).expect("work");
    let (t, w, r) = (tar.display(), work.display(), root.display());
    let scratch = [
        (format!("tar xf {t} -C {w}"), work.join(&pkg)),
        (
            format!("mkdir -p {r}/w2 && cd {r}/w2 && tar -xf {t}"),
            root.join("w2").join(&pkg),
        ),
        (
            format!("unzip -o {} -d {w}/z", zip.display()),
            work.join("z").join(&pkg),
        ),
    ];
    for (command, path) in &scratch {
        let child = env.ssh("box").arg(command).spawn().expect("ssh");
        deny_hidden(&env, command, "named inside the archive");
        let out = wait_output(child, T);
        assert!(!out.status.success(), "{command} ran");
        gone(path);
        let v = verdicts_for(&env, command);
        assert!(
            v.iter().any(|v| v == "hold ssh-hold-hidden"),
            "{command}: {v:?}"
        );
    }

    // Held: members may leave the destination, or it is not known.
    let home = std::path::PathBuf::from(std::env::var("HOME").expect("HOME"));
    let in_home = home.join(&pkg);
    let held = [
        (format!("tar -xPf {t} -C {w}/p"), work.join("p"), "-P"),
        (
            format!("unzip -: {} -d {w}/e/inner", evil.display()),
            work.join("e/escaped"),
            "-:",
        ),
        (
            format!("tar --extract --file={t}"),
            in_home.clone(),
            "working directory",
        ),
    ];
    for (command, path, why) in &held {
        let child = env.ssh("box").arg(command).spawn().expect("ssh");
        deny_hidden(&env, command, why);
        let out = wait_output(child, T);
        assert!(!out.status.success(), "{command} ran");
        if path.exists() && path == &in_home {
            let _ = std::fs::remove_dir_all(path);
            panic!("{command} extracted into the login's home");
        }
        gone(path);
        let v = verdicts_for(&env, command);
        assert!(
            v.iter().any(|v| v == "hold ssh-hold-hidden"),
            "{command}: {v:?}"
        );
    }
    env.verify();
}

/// A write guard shaped like the shipped `/etc/shadow` one, on a scratch file.
const GUARD: &str = r#"
[[rule]]
name = "test-deny-guarded-write"
action = "deny"
protocol = "ssh"
# Anchored at the test's own temporary directory (its first dot), so that a tree written
# elsewhere below it (the scratch `work`) cannot hold a path the rule matches.
writes = '^/[^.]*\.tmp[^/]*/guarded/secret$'
reason = "the guarded file is never written"
"#;

#[test]
fn rsync_options_that_write_on_the_receiving_side_are_judged() {
    let env = Env::start_with(Options {
        extra_rules: Some(GUARD),
        ..Options::default()
    });
    let root = env.dir.path();
    let guarded = root.join("guarded");
    std::fs::create_dir_all(&guarded).expect("guarded");
    let secret = guarded.join("secret");
    std::fs::write(&secret, "original\n").expect("secret");
    let work = root.join("work");
    std::fs::create_dir_all(&work).expect("work");
    let src = root.join("upload");
    std::fs::write(&src, "upload\n").expect("upload");
    let dest = format!("box@127.0.0.1:{}/", work.display());
    let rsync = |opt: String| {
        let out = wait_output(
            Command::new("rsync")
                .args(["-e", &env.ssh_command_line()])
                .arg(&opt)
                .arg(&src)
                .arg(&dest)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("rsync"),
            T,
        );
        (out.status.success(), text(&out.stderr))
    };
    // A plain upload into the scratch directory runs.
    let (ok, err) = rsync("-t".into());
    assert!(ok, "{err}");
    assert!(work.join("upload").exists());
    let g = guarded.display();
    for opt in [
        format!("-M--log-file={}", secret.display()),
        format!("--link-dest={g}"),
        format!("--temp-dir={g}"),
        format!("-M--partial-dir={g}"),
    ] {
        let (ok, err) = rsync(opt.clone());
        assert!(!ok, "{opt} ran");
        assert!(err.contains("test-deny-guarded-write"), "{opt}: {err}");
        assert_eq!(
            std::fs::read_to_string(&secret).expect("secret"),
            "original\n",
            "{opt} changed the guarded file"
        );
        assert_eq!(
            std::fs::read_dir(&guarded).expect("guarded").count(),
            1,
            "{opt} wrote into the guarded directory"
        );
    }
    // Each refusal is in the record, with the command the target would have run.
    let mut denied = Vec::new();
    assert!(eventually(T, || {
        denied.clear();
        for s in env.store().sessions() {
            let recs = env.export(&str_field(&s, "id"));
            let deny = of_kind(&recs, "verdict")
                .iter()
                .any(|v| v["verdict"] == "deny" && v["rule"] == "test-deny-guarded-write");
            if deny {
                denied.extend(
                    of_kind(&recs, "exec")
                        .iter()
                        .map(|e| str_field(e, "command")),
                );
            }
        }
        denied.len() >= 4
    }));
    for part in ["--log-file=", "--link-dest", "--temp-dir", "--partial-dir"] {
        assert!(
            denied
                .iter()
                .any(|c| c.starts_with("rsync --server") && c.contains(part)),
            "{part}: {denied:?}"
        );
    }
    env.verify();
}
