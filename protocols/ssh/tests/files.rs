//! File transfer through proctor with the real clients: scp (SFTP mode) both ways, sftp
//! batch mode with a denied change, rsync over exec.

mod common;

use std::time::Duration;

use common::{Env, eventually};
use proctor_gate::{Event, SftpOp};
use sha2::{Digest, Sha256};

const T: Duration = Duration::from_secs(30);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn random_bytes(n: usize) -> Vec<u8> {
    use rand::Rng;
    let mut v = vec![0u8; n];
    rand::rng().fill_bytes(&mut v);
    v
}

fn sftp_ops(events: &[Event]) -> Vec<SftpOp> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Sftp(op) => Some(op.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scp_both_ways_with_digests() {
    let env = Env::start().await;
    let local = env.dir.path().join("up.bin");
    let content = random_bytes(3 * 1024 * 1024 + 17);
    std::fs::write(&local, &content).expect("write");
    let remote_dir = tempfile::tempdir().expect("remote dir");
    let remote = remote_dir.path().join("copy.bin");

    let up = tokio::process::Command::new("scp")
        .args(env.ssh_options())
        .args(["-P", &env.port.to_string()])
        .arg(&local)
        .arg(format!("web1@127.0.0.1:{}", remote.display()))
        .output()
        .await
        .expect("scp up");
    assert!(up.status.success(), "scp up: {}", text(&up.stderr));
    assert_eq!(std::fs::read(&remote).expect("remote"), content);

    let back = env.dir.path().join("down.bin");
    let down = tokio::process::Command::new("scp")
        .args(env.ssh_options())
        .args(["-P", &env.port.to_string()])
        .arg(format!("web1@127.0.0.1:{}", remote.display()))
        .arg(&back)
        .output()
        .await
        .expect("scp down");
    assert!(down.status.success(), "scp down: {}", text(&down.stderr));
    assert_eq!(std::fs::read(&back).expect("back"), content);

    let digest: [u8; 32] = Sha256::digest(&content).into();
    let path = remote.display().to_string();
    let up_gate = env.session(0);
    let down_gate = env.session(1);
    assert!(
        eventually(T, || up_gate.outcome().is_some()
            && down_gate.outcome().is_some())
        .await
    );
    let up_ops = sftp_ops(&up_gate.events());
    assert!(
        up_ops.iter().any(|o| o.op == "open"
            && o.path == path
            && o.detail.contains("write")
            && o.status == "ok"),
        "{up_ops:?}"
    );
    assert!(
        up_ops.iter().any(|o| o.op == "close"
            && o.path == path
            && o.bytes_written == content.len() as u64
            && o.digest_written == Some(digest)),
        "{up_ops:?}"
    );
    let down_ops = sftp_ops(&down_gate.events());
    assert!(
        down_ops.iter().any(|o| o.op == "close"
            && o.path == path
            && o.bytes_read == content.len() as u64
            && o.digest_read == Some(digest)),
        "{down_ops:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_batch_records_operations_and_denies_changes() {
    let env = Env::start().await;
    let remote_dir = tempfile::tempdir().expect("remote dir");
    let r = remote_dir.path().display().to_string();
    let local = env.dir.path().join("f.txt");
    std::fs::write(&local, b"sftp content\n").expect("write");
    let batch = env.dir.path().join("batch");
    std::fs::write(
        &batch,
        format!(
            "mkdir {r}/d\nput {l} {r}/d/a.txt\nrename {r}/d/a.txt {r}/d/b.txt\nls {r}/d\n-put {l} {r}/d/forbidden.txt\n-rm {r}/d/forbidden-not-there\ncopy {r}/d/b.txt {r}/d/c.txt\nrm {r}/d/c.txt\nrm {r}/d/b.txt\nrmdir {r}/d\n",
            l = local.display()
        ),
    )
    .expect("batch");
    let out = tokio::process::Command::new("sftp")
        .args(env.ssh_options())
        .args(["-P", &env.port.to_string(), "-b"])
        .arg(&batch)
        .arg("web1@127.0.0.1")
        .output()
        .await
        .expect("sftp");
    assert!(
        out.status.success(),
        "sftp: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("b.txt"), "{}", text(&out.stdout));
    assert!(!remote_dir.path().join("d").exists());
    assert!(!remote_dir.path().join("d/forbidden.txt").exists());

    let gate = env.session(0);
    assert!(eventually(T, || gate.outcome().is_some()).await);
    let ops = sftp_ops(&gate.events());
    let find = |op: &str, path: &str| {
        ops.iter()
            .find(|o| o.op == op && o.path == path)
            .cloned()
            .unwrap_or_else(|| panic!("no {op} {path} in {ops:?}"))
    };
    assert_eq!(find("mkdir", &format!("{r}/d")).status, "ok");
    let rename = find("rename", &format!("{r}/d/a.txt"));
    assert_eq!(rename.target_path, format!("{r}/d/b.txt"));
    assert_eq!(rename.status, "ok");
    let denied = find("open", &format!("{r}/d/forbidden.txt"));
    assert!(denied.status.starts_with("denied"), "{denied:?}");
    assert_eq!(find("remove", &format!("{r}/d/b.txt")).status, "ok");
    // `copy` is done by the target itself (copy-data): the bytes never cross proctor, so the
    // copy is an operation of its own, with both paths.
    let copy = find("copy-data", &format!("{r}/d/c.txt"));
    assert_eq!(copy.target_path, format!("{r}/d/b.txt"));
    assert_eq!(copy.status, "ok");
    assert_eq!(find("rmdir", &format!("{r}/d")).status, "ok");
    let close = find("close", &format!("{r}/d/a.txt"));
    assert_eq!(close.bytes_written, 13);
    // Changes were judged before they were forwarded.
    let verdicts = gate
        .events()
        .iter()
        .filter(|e| matches!(e, Event::Verdict(v) if v.subject.starts_with("sftp ")))
        .count();
    assert!(verdicts >= 5, "{verdicts}");
}

/// An SFTP path that is not UTF-8 would be judged, recorded and shown with U+FFFD where the
/// target writes the bytes themselves: the channel ends with the bytes in the record as `\xNN`,
/// and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_path_that_is_not_utf8_ends_the_channel() {
    let env = Env::start().await;
    let remote_dir = tempfile::tempdir().expect("remote dir");
    let r = remote_dir.path().display().to_string();
    let local = env.dir.path().join("f.txt");
    std::fs::write(&local, b"sftp content\n").expect("write");
    let batch = env.dir.path().join("batch");
    let mut script = format!("put {} {r}/x", local.display()).into_bytes();
    script.extend_from_slice(b"\xc0\xaf\xff\n");
    std::fs::write(&batch, script).expect("batch");
    let out = tokio::process::Command::new("sftp")
        .args(env.ssh_options())
        .args(["-P", &env.port.to_string(), "-b"])
        .arg(&batch)
        .arg("web1@127.0.0.1")
        .output()
        .await
        .expect("sftp");
    assert!(!out.status.success(), "sftp: {}", text(&out.stdout));
    assert_eq!(
        std::fs::read_dir(remote_dir.path()).unwrap().count(),
        0,
        "nothing was written on the target"
    );
    let gate = env.session(0);
    assert!(eventually(T, || gate.outcome().is_some()).await);
    let events = gate.events();
    assert!(
        events.iter().any(|e| matches!(e, Event::ProtocolError { message, .. }
            if message.contains(&format!("not UTF-8, so it cannot be recorded or shown exactly: {r}/x\\xc0\\xaf\\xff")))),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsync_over_exec() {
    let env = Env::start().await;
    let src = env.dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    let a = random_bytes(200_000);
    std::fs::write(src.join("a.bin"), &a).expect("a");
    std::fs::write(src.join("sub/b.txt"), b"bee\n").expect("b");
    let dst = tempfile::tempdir().expect("dst");
    let out = tokio::process::Command::new("rsync")
        .args(["-a", "-e", &env.ssh_command_line()])
        .arg(format!("{}/", src.display()))
        .arg(format!("web1@127.0.0.1:{}/", dst.path().display()))
        .output()
        .await
        .expect("rsync");
    assert!(out.status.success(), "rsync: {}", text(&out.stderr));
    assert_eq!(std::fs::read(dst.path().join("a.bin")).expect("a"), a);
    assert_eq!(
        std::fs::read(dst.path().join("sub/b.txt")).expect("b"),
        b"bee\n"
    );
    let gate = env.session(0);
    assert!(eventually(T, || gate.outcome().is_some()).await);
    assert!(gate.events().iter().any(
        |e| matches!(e, Event::Exec { command, .. } if command.starts_with("rsync --server"))
    ));
}
