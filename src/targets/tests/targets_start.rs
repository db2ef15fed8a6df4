//! The launcher's targets are real: PostgreSQL answers SQL over scram-sha-256, sshd accepts a
//! certificate signed by a CA it trusts and refuses one that is not.

use std::process::Command;

use proctor_targets::{LocalPostgres, LocalSshd, PostgresOptions, SshdOptions, sshd::current_user};

#[test]
fn postgres_answers_sql_over_scram() {
    let pg = LocalPostgres::start(PostgresOptions::default()).expect("postgres starts");
    assert_eq!(pg.psql("postgres", "select 40 + 2").expect("query"), "42");
    let method = pg
        .psql("postgres", "show password_encryption")
        .expect("query");
    assert_eq!(method, "scram-sha-256");
    let bad = Command::new("psql")
        .arg(format!(
            "postgresql://{}:wrong@127.0.0.1:{}/postgres",
            pg.superuser, pg.port
        ))
        .args(["-X", "-c", "select 1"])
        .output()
        .expect("psql runs");
    assert!(!bad.status.success(), "a wrong password must be refused");
}

fn keygen(path: &std::path::Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen");
    assert!(ok.success());
}

#[test]
fn sshd_trusts_only_its_user_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca");
    let other_ca = dir.path().join("other_ca");
    let user = dir.path().join("user");
    keygen(&ca);
    keygen(&other_ca);
    keygen(&user);
    let ca_pub = std::fs::read_to_string(ca.with_extension("pub")).expect("ca pub");
    let sshd = LocalSshd::start(SshdOptions {
        trusted_user_ca_keys: vec![ca_pub.trim().to_string()],
        ..Default::default()
    })
    .expect("sshd starts");
    let login = current_user();
    let known = dir.path().join("known_hosts");
    std::fs::write(&known, sshd.known_hosts_line() + "\n").expect("known_hosts");
    let run = |signer: &std::path::Path| {
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-s"])
            .arg(signer)
            .args(["-I", "test", "-n", &login, "-V", "-1m:+5m"])
            .arg(user.with_extension("pub"))
            .status()
            .expect("sign");
        assert!(ok.success());
        Command::new("ssh")
            .args(["-i"])
            .arg(&user)
            .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known.display()))
            .args([
                "-p",
                &sshd.port.to_string(),
                "-l",
                &login,
                "127.0.0.1",
                "echo hello",
            ])
            .output()
            .expect("ssh runs")
    };
    let out = run(&ca);
    assert!(
        out.status.success(),
        "ssh with a trusted cert failed: {} / sshd: {}",
        String::from_utf8_lossy(&out.stderr),
        sshd.log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello");
    let out = run(&other_ca);
    assert!(
        !out.status.success(),
        "a cert from an untrusted CA must be refused"
    );
}
