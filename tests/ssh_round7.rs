//! SSH red team, round 7, through real OpenSSH, a real `proctor serve` with the shipped
//! policies (elevated grant) and a real sshd, the target's files as ground truth:
//!
//! - a symbolic link *already on the target* that leads into a guarded directory: an SFTP put
//!   through it (a link to the directory, a link at the leaf, a dangling link naming a file
//!   still to be made), a rename into it and a setstat through it used to write the guarded
//!   file, because SFTP writes were judged by the path as written. Proctor now asks the
//!   target's own SFTP server (REALPATH on a channel of its own) where each path lands, records
//!   the answer and judges the change there as well; each is denied and the file unchanged.

mod ssh_support;

use std::path::Path;
use std::process::{Command, Stdio};

use ssh_support::{Env, Options, T, eventually, of_kind, str_field, text, wait_output};

const GUARD: &str = r#"
[[rule]]
name = "test-deny-guarded-write"
action = "deny"
protocol = "ssh"
# Anchored at the test's own temporary directory (its first dot), so that a tree written
# elsewhere below it (the scratch `work`) cannot hold a path the rule matches.
writes = '^/[^.]*\.tmp[^/]*/guarded(/.*)?$'
reason = "the guarded directory is never written"
"#;

/// Runs one `sftp -b` command as the agent; whether it succeeded, and its stderr.
fn sftp(env: &Env, command: &str) -> (bool, String) {
    let batch = env.dir.path().join("batch");
    std::fs::write(&batch, format!("{command}\n")).expect("batch");
    let mut c = Command::new("sftp");
    c.args(env.client_options(&env.key))
        .args(["-P", &env.port.to_string(), "-b"])
        .arg(&batch)
        .arg("box@127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = wait_output(c.spawn().expect("sftp"), T);
    (out.status.success(), text(&out.stderr))
}

fn unchanged(guarded: &Path, what: &str) {
    assert_eq!(
        std::fs::read_to_string(guarded.join("secret")).expect("secret"),
        "original\n",
        "{what} changed the guarded file"
    );
    let mut names: Vec<String> = std::fs::read_dir(guarded)
        .expect("guarded")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["secret".to_string()], "{what} wrote into it");
}

#[test]
fn sftp_writes_through_links_already_on_the_target_are_judged_where_they_land() {
    let env = Env::start_with(Options {
        extra_rules: Some(GUARD),
        ..Options::default()
    });
    let root = env.dir.path();
    let guarded = root.join("guarded");
    std::fs::create_dir_all(&guarded).expect("guarded");
    std::fs::write(guarded.join("secret"), "original\n").expect("secret");
    let work = root.join("work");
    std::fs::create_dir_all(work.join("x")).expect("work");
    // The links, made on the target before the session (the defect of round 6).
    std::os::unix::fs::symlink(&guarded, work.join("gl")).expect("dir link");
    std::os::unix::fs::symlink(guarded.join("secret"), work.join("leaf")).expect("leaf link");
    std::os::unix::fs::symlink(guarded.join("new"), work.join("dangling")).expect("dangling");
    let upload = root.join("upload");
    std::fs::write(&upload, "upload\n").expect("upload");
    let (u, w) = (upload.display(), work.display());

    // A put beside the links runs: resolution adds a question, not a hold.
    let (ok, err) = sftp(&env, &format!("put {u} {w}/plain"));
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read_to_string(work.join("plain")).expect("plain"),
        "upload\n"
    );
    // Removing a link removes the link, not what it names: it runs.
    std::os::unix::fs::symlink(guarded.join("secret"), work.join("spare")).expect("spare");
    let (ok, err) = sftp(&env, &format!("rm {w}/spare"));
    assert!(ok, "{err}");
    assert!(!work.join("spare").exists());

    for cmd in [
        format!("put {u} {w}/gl/secret"),
        format!("put {u} {w}/gl/other"),
        format!("put {u} {w}/leaf"),
        format!("put {u} {w}/dangling"),
        format!("put {u} {w}/x/../gl/secret"),
        format!("rename {w}/plain {w}/gl/moved"),
        format!("chmod 600 {w}/leaf"),
        format!("symlink /etc/hostname {w}/gl/made"),
        format!("mkdir {w}/gl/sub"),
    ] {
        let (ok, err) = sftp(&env, &cmd);
        assert!(!ok, "{cmd} ran: {err}");
        unchanged(&guarded, &cmd);
    }
    let mode = std::fs::metadata(guarded.join("secret")).expect("meta");
    assert_ne!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600,
        "chmod through the leaf link ran"
    );

    // The record: each resolution is noted, and the refusals name the resolved path.
    let mut notes = Vec::new();
    let mut denied = Vec::new();
    let guarded_secret = guarded.join("secret").display().to_string();
    assert!(eventually(T, || {
        notes.clear();
        denied.clear();
        for s in env.store().sessions() {
            let recs = env.export(&str_field(&s, "id"));
            notes.extend(
                of_kind(&recs, "annotation")
                    .iter()
                    .map(|r| str_field(r, "text"))
                    .filter(|t| t.contains("resolves on the target to")),
            );
            denied.extend(
                of_kind(&recs, "verdict")
                    .iter()
                    .filter(|v| v["verdict"] == "deny")
                    .map(|v| v.to_string()),
            );
        }
        denied.len() >= 9
    }));
    assert!(
        notes
            .iter()
            .any(|n| n.contains(&format!("{w}/leaf")) && n.contains(&guarded_secret)),
        "{notes:?}"
    );
    assert!(
        denied.iter().all(|d| d.contains("test-deny-guarded-write")),
        "{denied:?}"
    );
    env.verify();
}
