//! How an agent logs in through proctor and which role its work runs as (issue 12, items 10, 13,
//! 14): TLS required by default, SCRAM-SHA-256-PLUS with `tls-server-end-point` channel binding,
//! one stable owner for what agents create across reconnects, and a prepared transaction that
//! neither blocks other agents nor keeps a role forever. Real `proctor serve`, real PostgreSQL,
//! real psql; the SCRAM edge cases through a raw wire client.

mod pg_support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use pg_support::*;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const JOURNAL: &str = "00000000-0000-0000-0000-000000000000";

fn tls_env() -> Env {
    Env::start_with(Options {
        tls: true,
        ..Options::default()
    })
}

/// libpq over TLS with the given extra settings.
fn tls_conninfo(env: &Env, agent: &str, secret: &str, extra: &str) -> String {
    format!(
        "host=localhost hostaddr=127.0.0.1 port={} user={agent} password={secret} dbname={TARGET} sslrootcert={} connect_timeout=10 {extra}",
        env.port,
        env.ca_pem.display()
    )
}

fn run_psql(env: &Env, conninfo: &str, args: &[&str]) -> (bool, String, String) {
    let child = env.psql_cmd(conninfo, args).spawn().expect("psql");
    let out = wait_output(child, T);
    (
        out.status.success(),
        text(&out.stdout).trim().to_string(),
        text(&out.stderr),
    )
}

#[test]
fn tls_is_required_by_default_and_libpq_gets_channel_binding() {
    let env = tls_env();
    // The config says nothing about require_tls: the default refuses plaintext.
    let (ok, _, err) = run_psql(&env, &env.conninfo(AGENT, SECRET), &["-c", "SELECT 1"]);
    assert!(!ok, "a plaintext agent was let in");
    assert!(err.contains("proctor requires TLS"), "{err}");

    // libpq insists on SCRAM-SHA-256-PLUS: it fails the login unless the server used it.
    for mode in ["sslmode=require", "sslmode=verify-full"] {
        let conninfo = tls_conninfo(
            &env,
            AGENT,
            SECRET,
            &format!("{mode} channel_binding=require"),
        );
        let (ok, out, err) = run_psql(&env, &conninfo, &["-c", "SELECT 'bound'"]);
        assert!(ok, "{mode}: {err}");
        assert_eq!(out, "bound", "{mode}");
    }
    // A wrong password still fails with binding.
    let conninfo = tls_conninfo(
        &env,
        AGENT,
        "wrong",
        "sslmode=require channel_binding=require",
    );
    let (ok, _, err) = run_psql(&env, &conninfo, &["-c", "SELECT 1"]);
    assert!(!ok);
    assert!(err.contains("password authentication failed"), "{err}");
    env.verify();
}

#[test]
fn serve_refuses_to_start_without_tls_unless_told_and_then_warns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = proctor_harness::free_port().expect("port");
    let policies = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let base = format!(
        "data_dir = {:?}\npolicies = [{:?}]\n[listen]\npostgres = \"127.0.0.1:{port}\"\n",
        dir.path().join("data").display().to_string(),
        policies.display().to_string()
    );
    let config = dir.path().join("proctor.toml");
    std::fs::write(&config, &base).expect("config");
    let child = Command::new(bin())
        .args(["serve", "--config"])
        .arg(&config)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("proctor");
    let out = wait_output(child, T);
    assert!(!out.status.success(), "proctor served plaintext by default");
    let err = text(&out.stderr);
    for key in [
        "postgres.require_tls",
        "postgres.tls_cert",
        "postgres.tls_key",
    ] {
        assert!(err.contains(key), "{key} not named: {err}");
    }

    // Told to accept plaintext, it starts, and says so as a warning.
    std::fs::write(&config, format!("{base}[postgres]\nrequire_tls = false\n")).expect("config");
    let log = dir.path().join("proctor.log");
    let mut serve = start_serve(&config, &log, port);
    serve.stop(Duration::from_secs(20));
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("WITHOUT TLS")),
        "{log}"
    );
}

/// The parts of a raw login the tests below need.
struct RawLogin {
    mechanisms: Vec<String>,
    /// The server's answer to the client-first message: `R` (continue) or `E`.
    first_answer: (u8, String),
    /// The answer to the client-final message, when the exchange got that far.
    final_answer: Option<(u8, String)>,
}

async fn read_msg<S: AsyncReadExt + Unpin>(s: &mut S, buf: &mut BytesMut) -> (u8, BytesMut) {
    loop {
        if buf.len() >= 5 {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if buf.len() > len {
                let tag = buf[0];
                buf.advance(5);
                return (tag, buf.split_to(len - 4));
            }
        }
        let n = tokio::time::timeout(T, s.read_buf(buf))
            .await
            .expect("server answers")
            .expect("read");
        assert!(n > 0, "server closed the connection");
    }
}

fn describe(tag: u8, body: &[u8]) -> String {
    if tag == b'E' {
        String::from_utf8_lossy(body).replace('\0', " ")
    } else {
        format!("{:?}", body.get(..4))
    }
}

/// Logs in over TLS by hand: `mechanism` and `binding` as the client chooses, however odd.
async fn raw_login(env: &Env, mechanism: &str, binding: ChannelBinding) -> RawLogin {
    let mut tcp = TcpStream::connect(("127.0.0.1", env.port))
        .await
        .expect("connect");
    let mut out = BytesMut::new();
    frontend::ssl_request(&mut out);
    tcp.write_all(&out).await.expect("write");
    let mut s = [0u8; 1];
    tcp.read_exact(&mut s).await.expect("SSL answer");
    assert_eq!(s[0], b'S');
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&env.ca_pem).expect("CA") {
        roots.add(c.expect("CA cert")).expect("add CA");
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS");
    out.clear();
    frontend::startup_message([("user", AGENT), ("database", TARGET)], &mut out).expect("startup");
    tls.write_all(&out).await.expect("write");
    let mut buf = BytesMut::new();
    let (tag, body) = read_msg(&mut tls, &mut buf).await;
    assert_eq!(tag, b'R');
    assert_eq!(&body[..4], &10i32.to_be_bytes(), "AuthenticationSASL");
    let mechanisms: Vec<String> = body[4..]
        .split(|b| *b == 0)
        .filter(|m| !m.is_empty())
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();

    let mut scram = ScramSha256::new(SECRET.as_bytes(), binding);
    out.clear();
    frontend::sasl_initial_response(mechanism, scram.message(), &mut out).expect("initial");
    tls.write_all(&out).await.expect("write");
    let (tag, body) = read_msg(&mut tls, &mut buf).await;
    let first_answer = (tag, describe(tag, &body));
    if tag != b'R' {
        return RawLogin {
            mechanisms,
            first_answer,
            final_answer: None,
        };
    }
    scram.update(&body[4..]).expect("server-first");
    out.clear();
    frontend::sasl_response(scram.message(), &mut out).expect("final");
    tls.write_all(&out).await.expect("write");
    let (tag, body) = read_msg(&mut tls, &mut buf).await;
    let final_answer = Some((tag, describe(tag, &body)));
    if tag == b'R' {
        assert_eq!(&body[..4], &12i32.to_be_bytes(), "AuthenticationSASLFinal");
        scram.finish(&body[4..]).expect("server signature");
    }
    RawLogin {
        mechanisms,
        first_answer,
        final_answer,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_binding_is_checked_and_downgrades_refused() {
    let env = tokio::task::spawn_blocking(tls_env).await.expect("env");
    let pem = std::fs::read(env.dir.path().join("server.pem")).expect("server.pem");
    let leaf = CertificateDer::pem_slice_iter(&pem)
        .next()
        .expect("a certificate")
        .expect("PEM");
    let ours = proctor_postgres::channel_binding::tls_server_end_point(&leaf).expect("binding");

    // The right binding: accepted, and the server proves it knows the verifier.
    let ok = raw_login(
        &env,
        "SCRAM-SHA-256-PLUS",
        ChannelBinding::tls_server_end_point(ours.clone()),
    )
    .await;
    assert_eq!(ok.mechanisms, ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]);
    assert_eq!(ok.first_answer.0, b'R');
    assert_eq!(ok.final_answer.as_ref().map(|a| a.0), Some(b'R'));

    // The hash of another certificate (what a man in the middle's client would send).
    let mut wrong = ours.clone();
    wrong[0] ^= 1;
    let bad = raw_login(
        &env,
        "SCRAM-SHA-256-PLUS",
        ChannelBinding::tls_server_end_point(wrong),
    )
    .await;
    let (tag, msg) = bad.final_answer.expect("final answer");
    assert_eq!(tag, b'E');
    assert!(msg.contains("channel binding check failed"), "{msg}");

    // 'y': the client can bind but was shown a list without PLUS. PLUS was offered, so the
    // list was tampered with: refused before any proof.
    let down = raw_login(&env, "SCRAM-SHA-256", ChannelBinding::unrequested()).await;
    assert_eq!(down.first_answer.0, b'E');
    assert!(
        down.first_answer.1.contains("does support channel binding"),
        "{}",
        down.first_answer.1
    );

    // Plain SCRAM from a client without binding support ('n') still works.
    let plain = raw_login(&env, "SCRAM-SHA-256", ChannelBinding::unsupported()).await;
    assert_eq!(plain.final_answer.map(|a| a.0), Some(b'R'));
    tokio::task::spawn_blocking(move || drop(env))
        .await
        .expect("stop");
}

/// Writes `script` to a file and runs it with `psql -f` as the routine agent (no holds on
/// DDL), password from the environment so that `\c` can reconnect with it. Whatever the
/// policy holds on the way (today `PREPARE TRANSACTION` is `unknown`, so held) is approved:
/// these tests are about logins and owners, not about the policy.
fn psql_script(env: &Env, script: &str) -> (bool, String, String) {
    let path = env
        .dir
        .path()
        .join(format!("script-{}.sql", rand::random::<u32>()));
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(script.as_bytes()))
        .expect("script");
    let conninfo = format!(
        "host=127.0.0.1 port={} user={BENCH} dbname={TARGET} sslmode=disable connect_timeout=10",
        env.port
    );
    let child = Command::new("psql")
        .arg(&conninfo)
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(&path)
        .env("PGPASSWORD", BENCH_SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql");
    let mut child = child;
    let deadline = Instant::now() + T;
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        for a in env.approvals() {
            if let Some(id) = a["id"].as_str() {
                let _ = env
                    .store()
                    .run(&["approvals", "approve", id, "--reason", "pg_login test"]);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = wait_output(child, Duration::from_secs(1));
    (
        out.status.success(),
        text(&out.stdout).trim().to_string(),
        text(&out.stderr),
    )
}

fn plain_env(target_conf: &[&str]) -> Env {
    Env::start_with(Options {
        target_conf: target_conf.iter().map(|s| s.to_string()).collect(),
        ..Options::default()
    })
}

#[test]
fn objects_keep_one_owner_across_reconnects() {
    let env = plain_env(&[]);
    // The session acts as the grant's role from its first statement.
    let (ok, out, err) = psql_script(
        &env,
        "SELECT current_user;\nCREATE TABLE made_here (id int);\n",
    );
    assert!(ok, "{err}");
    assert_eq!(out, "app_write");
    // The next connection (another throwaway role) owns it too, and may drop it.
    let (ok, _, err) = psql_script(
        &env,
        "ALTER TABLE made_here ADD COLUMN v text;\nDROP TABLE made_here;\n",
    );
    assert!(ok, "{err}");

    // psql's \c opens the new connection before it closes the old one: the old role still
    // exists, and its objects have not been reassigned yet. They need no reassigning.
    let (ok, out, err) = psql_script(
        &env,
        "CREATE TABLE across_c (id int);\n\\c\nSELECT tableowner FROM pg_tables WHERE tablename = 'across_c';\nDROP TABLE across_c;\n",
    );
    assert!(ok, "{err}");
    assert_eq!(out, "app_write");

    // RESET ROLE and DISCARD ALL return to the grant's role, not to the throwaway login role.
    let (ok, out, err) = psql_script(
        &env,
        "RESET ROLE;\nCREATE TABLE after_reset ();\nDISCARD ALL;\nSELECT current_user;\nSELECT tableowner FROM pg_tables WHERE tablename = 'after_reset';\nDROP TABLE after_reset;\n",
    );
    assert!(ok, "{err}");
    assert_eq!(out, "app_write\napp_write");

    // Every role is gone once the sessions end; the credential record says what it acts as.
    assert!(
        eventually(T, || env.proctor_roles().is_empty()),
        "{:?}",
        env.proctor_roles()
    );
    let s = env.store().sealed_session(|s| s["agent"] == BENCH);
    let records = env.export(s["id"].as_str().expect("id"));
    let issued = of_kind(&records, "credential_issued");
    assert!(
        issued
            .iter()
            .any(|r| r.to_string().contains("acts as app_write")),
        "{issued:?}"
    );
    env.verify();
}

#[test]
fn a_prepared_transaction_blocks_no_one_and_its_role_is_reaped_later() {
    let env = plain_env(&["max_prepared_transactions = 5"]);
    // With the stable owner, a prepared transaction holds nothing the role's drop needs.
    let (ok, _, err) = psql_script(
        &env,
        "BEGIN;\nCREATE TABLE in_2pc ();\nPREPARE TRANSACTION 'owned_by_grant';\n",
    );
    assert!(ok, "{err}");
    assert!(
        eventually(T, || env.proctor_roles().is_empty()),
        "{:?}",
        env.proctor_roles()
    );
    // Another session may finish it (same current user).
    let (ok, _, err) = psql_script(
        &env,
        "COMMIT PREPARED 'owned_by_grant';\nDROP TABLE in_2pc;\n",
    );
    assert!(ok, "{err}");

    // The throwaway role itself owns the table (the agent switched back to it): its drop waits
    // on the prepared transaction's lock.
    let (ok, _, err) = psql_script(
        &env,
        "SET ROLE NONE;\nBEGIN;\nCREATE TABLE stuck ();\nPREPARE TRANSACTION 'p';\n",
    );
    assert!(ok, "{err}");
    let started = Instant::now();
    let (ok, out, err) = psql_script(&env, "SELECT 'still served';\n");
    let took = started.elapsed();
    eprintln!("a new session while a role's drop is stuck: {took:?}");
    assert!(ok, "{err}");
    assert_eq!(out, "still served");
    assert!(took < Duration::from_secs(5), "a new session took {took:?}");

    // The stuck role stays, and each failed attempt is recorded.
    let stuck = {
        let mut roles = Vec::new();
        assert!(
            eventually(T, || {
                roles = env.proctor_roles();
                roles.len() == 1
            }),
            "{roles:?}"
        );
        roles.remove(0)
    };
    // The journal exists once something is written to it.
    let notes = |needle: &str| {
        let out = env.store().run(&["export", JOURNAL, "--format", "jsonl"]);
        text(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|r| r["topic"] == "reaper")
            .filter_map(|r| r["text"].as_str().map(str::to_string))
            .filter(|t| t.contains(&stuck) && t.contains(needle))
            .count()
    };
    assert!(
        eventually(T, || notes("could not drop role") >= 1),
        "no failed attempt of {stuck} journaled"
    );
    let sessions = env.store().sessions();
    let ended = sessions
        .iter()
        .filter(|s| s["agent"] == BENCH)
        .map(|s| env.export(s["id"].as_str().expect("id")))
        .find(|r| r.iter().any(|e| e.to_string().contains(&stuck)))
        .expect("the stuck role's session");
    assert!(
        ended
            .iter()
            .any(|e| e.to_string().contains("the reaper will retry")),
        "the session's record does not say its role is still owed"
    );

    // A superuser resolves the transaction; the next retry drops the role and says so.
    env.pg
        .psql("app", "ROLLBACK PREPARED 'p'")
        .expect("rollback prepared");
    assert!(
        eventually(Duration::from_secs(60), || env.proctor_roles().is_empty()),
        "{:?}",
        env.proctor_roles()
    );
    assert!(
        eventually(T, || notes("on retry") == 1),
        "the drop on retry is not journaled"
    );
    env.verify();
}
