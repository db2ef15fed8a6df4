//! Tree heads timestamped outside the host (issue 14): proctor's timestamping task asks a real
//! TSA (`openssl ts -reply` behind an HTTP front end) for RFC 3161 tokens over the ledger's
//! signed tree heads, stores them, bundles carry them, and `verify --tsa-cert` checks them. A
//! token over another head, a token from a TSA that is not trusted, and an edited token each
//! fail with their own diagnosis; heads after the newest token are a named gap, not a failure.

mod evidence_support;
mod tsa_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use evidence_support::*;
use proctor::recorder::timestamp::{self, TimestampSettings, TsaSettings};
use tsa_support::*;

fn head_size(data: &Path) -> u64 {
    proctor::recorder::consistency::read_ledger(data)
        .expect("ledger")
        .1
        .expect("a tree head")
        .size
}

fn attestation_files(data: &Path) -> Vec<PathBuf> {
    timestamp::list(data)
        .expect("list")
        .into_iter()
        .map(|(p, _)| p)
        .collect()
}

fn settings(url: &str, ca: &Path) -> TimestampSettings {
    TimestampSettings {
        tsa: vec![TsaSettings {
            url: url.into(),
            ca_file: None,
            tsa_cert: Some(ca.to_path_buf()),
            policy: Some("1.2.3.4.1".into()),
        }],
        interval: Duration::ZERO,
        every_leaves: 1,
        max_backoff: Duration::from_secs(1),
        timeout: Duration::from_secs(10),
    }
}

/// Runs proctor's timestamping task on `data` until a token covers the newest tree head.
fn timestamp_now(data: &Path, s: TimestampSettings) {
    let want = head_size(data);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let (stop, rx) = tokio::sync::watch::channel(false);
        let tasks = timestamp::client::start(data.to_path_buf(), s, rx).expect("start");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let done = timestamp::list(data)
                .expect("list")
                .iter()
                .any(|(_, a)| a.as_ref().is_ok_and(|a| a.tree_head.size == want));
            if done {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no token for tree size {want}: {:?}",
                timestamp::read_status(data)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = stop.send(true);
        for t in tasks {
            t.abort();
        }
    });
}

/// Runs the timestamping task on `data` for `d`, whatever it does.
fn run_for(data: &Path, s: TimestampSettings, d: Duration) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let (stop, rx) = tokio::sync::watch::channel(false);
        let tasks = timestamp::client::start(data.to_path_buf(), s, rx).expect("start");
        tokio::time::sleep(d).await;
        let _ = stop.send(true);
        for t in tasks {
            t.abort();
        }
    });
}

fn verify_json(data: &Path, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let out = proctor()
        .arg("verify")
        .arg("--data")
        .arg(data)
        .arg("--pubkey")
        .arg(signing_pub(data))
        .args(extra)
        .arg("--json")
        .output()
        .expect("verify");
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), v)
}

fn verify_text(data: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let out = proctor()
        .arg("verify")
        .arg("--data")
        .arg(data)
        .arg("--pubkey")
        .arg(signing_pub(data))
        .args(extra)
        .output()
        .expect("verify");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn signing_pub(data: &Path) -> PathBuf {
    proctor::recorder::signing::public_key_path(data)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Rewrites the attestation file of tree size `size` with `f`.
fn edit_attestation(data: &Path, size: u64, f: impl FnOnce(&mut serde_json::Value)) {
    let path = attestation_files(data)
        .into_iter()
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{size:016}-")))
        })
        .expect("attestation of that size");
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    f(&mut v);
    std::fs::write(&path, serde_json::to_vec(&v).expect("json")).expect("write");
}

fn token_of(data: &Path, size: u64) -> String {
    let mut token = String::new();
    edit_attestation(data, size, |v| {
        token = v["token"].as_str().expect("token").to_string();
    });
    token
}

fn problems(v: &serde_json::Value) -> Vec<String> {
    v["report"]["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| format!("{}: {}", p["kind"], p["detail"]))
        .collect()
}

/// `openssl ts -verify` on the token of head `size`, over the message FORMAT.md defines
/// ("Attestations"), built from the attestation's `tree_head` JSON alone.
fn outside_check(data: &Path, size: u64, pki: &Pki, work: &Path) {
    use base64::Engine as _;
    let mut att = serde_json::Value::Null;
    edit_attestation(data, size, |v| att = v.clone());
    let th = &att["tree_head"];
    let hexf = |k: &str| hex::decode(th[k].as_str().expect(k)).expect("hex");
    let mut msg = Vec::new();
    msg.extend_from_slice(&th["size"].as_u64().expect("size").to_be_bytes());
    msg.extend_from_slice(&hexf("root"));
    msg.extend_from_slice(&th["ts_ns"].as_i64().expect("ts").to_be_bytes());
    msg.extend_from_slice(&hexf("key_id"));
    msg.extend_from_slice(&64u32.to_be_bytes());
    msg.extend_from_slice(&hexf("signature"));
    assert_eq!(msg.len(), 148);
    let (m, t) = (work.join("head.bin"), work.join("token.der"));
    std::fs::write(&m, &msg).expect("write");
    let der = base64::engine::general_purpose::STANDARD
        .decode(att["token"].as_str().expect("token"))
        .expect("b64");
    std::fs::write(&t, der).expect("write");
    let out = std::process::Command::new("openssl")
        .args([
            "ts",
            "-verify",
            "-token_in",
            "-in",
            s(&t),
            "-data",
            s(&m),
            "-CAfile",
        ])
        .arg(&pki.ca)
        .arg("-untrusted")
        .arg(pki.dir.join("tsa.pem"))
        .output()
        .expect("openssl");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("Verification: OK"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And refuses it over any other head.
    msg[0] ^= 1;
    std::fs::write(&m, &msg).expect("write");
    let out = std::process::Command::new("openssl")
        .args([
            "ts",
            "-verify",
            "-token_in",
            "-in",
            s(&t),
            "-data",
            s(&m),
            "-CAfile",
        ])
        .arg(&pki.ca)
        .arg("-untrusted")
        .arg(pki.dir.join("tsa.pem"))
        .output()
        .expect("openssl");
    assert!(!out.status.success(), "openssl accepted another message");
}

#[test]
fn tokens_are_stored_bundled_checked_and_tampering_is_named() {
    let base = tempfile::tempdir().expect("tempdir");
    let pki_a = make_pki(base.path(), "a", false);
    let pki_b = make_pki(base.path(), "b", true);
    let tsa_a = start_tsa(&pki_a);
    let tsa_b = start_tsa(&pki_b);
    let data = base.path().join("store");
    let ids = make_store(&data, 2, 5);
    let first = head_size(&data);
    timestamp_now(&data, settings(&tsa_a.url, &pki_a.ca));
    make_store(&data, 1, 3);
    let second = head_size(&data);
    assert!(second > first);
    timestamp_now(&data, settings(&tsa_a.url, &pki_a.ca));
    assert_eq!(
        attestation_files(&data).len(),
        2,
        "one token per head asked"
    );
    let ca_a = s(&pki_a.ca).to_string();
    let ca_b = s(&pki_b.ca).to_string();

    // Both tokens check out against TSA a's CA; every head is covered.
    let (code, v) = verify_json(&data, &["--tsa-cert", &ca_a]);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["verdict"], "ok");
    let tokens = v["timestamps"]["tokens"].as_array().expect("tokens");
    assert_eq!(tokens.len(), 2, "{v:#}");
    assert_eq!(tokens[1]["tree_size"], second);
    assert!(tokens[1]["gen_time_ns"].as_i64().expect("genTime") > 0);
    assert!(v["timestamps"]["not_timestamped"].is_null(), "{v:#}");
    let (code, text) = verify_text(&data, &["--tsa-cert", &ca_a]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!("TIMESTAMP tree size {second} ")),
        "{text}"
    );
    // The TSA's own certificate, pinned as it is, is trusted too.
    let tsa_cert = pki_a.dir.join("tsa.pem");
    let (code, v) = verify_json(&data, &["--tsa-cert", s(&tsa_cert)]);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["timestamps"]["tokens"].as_array().map(Vec::len), Some(2));

    // A restart asks nothing for heads already timestamped.
    let asked = tsa_a.requests.load(std::sync::atomic::Ordering::SeqCst);
    run_for(
        &data,
        settings(&tsa_a.url, &pki_a.ca),
        Duration::from_secs(2),
    );
    assert_eq!(
        tsa_a.requests.load(std::sync::atomic::Ordering::SeqCst),
        asked,
        "asked again after a restart"
    );

    // An outside verifier (OpenSSL) accepts the stored token over the bytes FORMAT.md names.
    outside_check(&data, second, &pki_a, base.path());

    // Without --tsa-cert the tokens are named as unchecked, and nothing fails.
    let (code, text) = verify_text(&data, &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("not checked: pass --tsa-cert"), "{text}");

    // A bundle carries the newest token under its head, and it checks out offline.
    let bundle = base.path().join("s0.bundle");
    export_bundle(&data, &ids[0], &bundle);
    let (manifest, _) =
        proctor::export::bundle::read_manifest(&std::fs::read(&bundle).expect("bundle"))
            .expect("manifest");
    assert_eq!(manifest.timestamps.len(), 1);
    assert_eq!(manifest.timestamps[0].attestation.tree_head.size, second);
    let out = proctor()
        .args([
            "verify",
            "--json",
            "--bundle",
            s(&bundle),
            "--tsa-cert",
            &ca_a,
        ])
        .output()
        .expect("verify bundle");
    let bv: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(out.status.code(), Some(0), "{bv:#}");
    assert_eq!(bv["timestamps"]["tokens"][0]["tree_size"], second);
    // The same bundle against another TSA's CA: not trusted.
    let out = proctor()
        .args(["verify", "--bundle", s(&bundle), "--tsa-cert", &ca_b])
        .output()
        .expect("verify bundle");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL timestamp:") && text.contains("does not chain to a trusted TSA"),
        "{text}"
    );

    // A token signed by another TSA (b) in the store: fails against a alone, passes with both.
    let other = base.path().join("other-tsa");
    copy_dir(&data, &other);
    make_store(&other, 1, 2);
    timestamp_now(&other, settings(&tsa_b.url, &pki_b.ca));
    let (code, v) = verify_json(&other, &["--tsa-cert", &ca_a]);
    assert_eq!(code, Some(1), "{v:#}");
    let p = problems(&v);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("\"timestamp\"") && p[0].contains("does not chain to a trusted TSA"),
        "{p:?}"
    );
    let (code, v) = verify_json(&other, &["--tsa-cert", &ca_a, "--tsa-cert", &ca_b]);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["timestamps"]["tokens"].as_array().map(Vec::len), Some(3));

    // A token over a different head: the first head's token filed under the second head.
    let swapped = base.path().join("swapped");
    copy_dir(&data, &swapped);
    let early = token_of(&swapped, first);
    edit_attestation(&swapped, second, |v| v["token"] = early.into());
    let (code, v) = verify_json(&swapped, &["--tsa-cert", &ca_a]);
    assert_eq!(code, Some(1), "{v:#}");
    let p = problems(&v);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("over another message"), "{p:?}");
    // ... and an attestation claiming a head this ledger never had.
    let forked = base.path().join("forked");
    copy_dir(&data, &forked);
    edit_attestation(&forked, second, |v| {
        v["tree_head"]["root"] = "00".repeat(32).into();
    });
    let (code, v) = verify_json(&forked, &["--tsa-cert", &ca_a]);
    assert_eq!(code, Some(1), "{v:#}");
    assert!(
        problems(&v)[0].contains("not signed by the recorder key"),
        "{v:#}"
    );

    // An edited token: one digit of its genTime changed.
    let edited = base.path().join("edited");
    copy_dir(&data, &edited);
    let gen_time = {
        let (_, v) = verify_json(&data, &["--tsa-cert", &ca_a]);
        v["timestamps"]["tokens"][1]["gen_time"]
            .as_str()
            .expect("gen_time")
            .to_string()
    };
    edit_attestation(&edited, second, |v| {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut der = b64
            .decode(v["token"].as_str().expect("token"))
            .expect("b64");
        let at = der
            .windows(gen_time.len())
            .position(|w| w == gen_time.as_bytes())
            .expect("genTime in the token");
        // The seconds' last digit.
        let d = &mut der[at + 13];
        *d = if *d == b'0' { b'1' } else { b'0' };
        v["token"] = b64.encode(&der).into();
    });
    let (code, v) = verify_json(&edited, &["--tsa-cert", &ca_a]);
    assert_eq!(code, Some(1), "{v:#}");
    let p = problems(&v);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("(edited)"), "{p:?}");

    // New heads after the newest token: a named gap, not a failure.
    make_store(&data, 1, 2);
    let third = head_size(&data);
    let (code, v) = verify_json(&data, &["--tsa-cert", &ca_a]);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["verdict"], "ok");
    assert_eq!(v["timestamps"]["not_timestamped"]["since_size"], second);
    assert_eq!(v["timestamps"]["not_timestamped"]["newest_size"], third);
    let (_, text) = verify_text(&data, &["--tsa-cert", &ca_a]);
    assert!(
        text.contains(&format!("NOT TIMESTAMPED since tree size {second}:")),
        "{text}"
    );
    assert!(tsa_a.requests.load(std::sync::atomic::Ordering::SeqCst) >= 2);
}
