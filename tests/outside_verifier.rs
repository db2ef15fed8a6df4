//! The outside verifier (`integration/verifier/verify.py`, written from `src/recorder/FORMAT.md`
//! alone, rule 6) agrees with the expected result of every test vector, and with `proctor
//! verify --json` on damage the vectors do not hold (`damage.py`: a flipped byte in the last
//! record of a segment, the last segment deleted, segments swapped, an old tree head replayed,
//! a cut frame header, an impossible length, a foreign record in a bundle, non-canonical
//! signatures, ...). A disagreement means FORMAT.md or `proctor verify` is wrong.
//!
//! Needs `python3` with `cryptography` (`integration/test.sh` installs `python3-cryptography`);
//! without them the tests say so and pass.

mod evidence_support;
mod tsa_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn verifier(file: &str) -> PathBuf {
    root().join("integration/verifier").join(file)
}

/// Whether python3 and its `cryptography` package are there; says why not when they are not.
fn python_ready() -> bool {
    match Command::new("python3")
        .args(["-c", "import cryptography"])
        .output()
    {
        Ok(o) if o.status.success() => true,
        Ok(_) => {
            eprintln!(
                "SKIPPED: python3 has no `cryptography` (apt-get install python3-cryptography)"
            );
            false
        }
        Err(_) => {
            eprintln!("SKIPPED: python3 is not installed");
            false
        }
    }
}

fn run(args: &[&Path], extra: &[&str]) -> Output {
    let mut cmd = Command::new("python3");
    cmd.args(args).args(extra);
    cmd.output().expect("python3 runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn outside_verifier_agrees_with_every_vector() {
    if !python_ready() {
        return;
    }
    let td = root().join("src/recorder/testdata");
    let out = run(&[&verifier("check_vectors.py"), &td], &[]);
    assert!(out.status.success(), "disagreements:\n{}", text(&out));
    assert!(text(&out).contains("0 disagreement(s)"), "{}", text(&out));
}

/// The comparison can fail: with the `edited` store's expected problems replaced by none, the
/// outside verifier's *edited* finding disagrees.
#[test]
fn outside_verifier_comparison_fails_on_a_flipped_expectation() {
    if !python_ready() {
        return;
    }
    let td = root().join("src/recorder/testdata");
    let out = run(
        &[&verifier("check_vectors.py"), &td],
        &["--flip", "stores/edited"],
    );
    assert!(
        !out.status.success(),
        "a flipped expectation passed:\n{}",
        text(&out)
    );
    let t = text(&out);
    assert!(
        t.lines()
            .any(|l| l.starts_with("stores/edited ") && l.contains("DISAGREE")),
        "{t}"
    );
    assert!(t.contains("1 disagreement(s)"), "{t}");
}

#[test]
fn outside_verifier_agrees_with_proctor_on_damage_outside_the_vectors() {
    if !python_ready() {
        return;
    }
    let td = root().join("src/recorder/testdata");
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = run(
        &[
            &verifier("damage.py"),
            Path::new(env!("CARGO_BIN_EXE_proctor")),
            &td.join("stores/untouched"),
            &td.join("bundles/untouched.bundle"),
            &out_dir.path().join("cases"),
        ],
        &[
            "--pubkey",
            td.join("recorder.pub").to_str().expect("utf-8 path"),
            "--tsa-cert",
            td.join("tsa/ca.pem").to_str().expect("utf-8 path"),
        ],
    );
    assert!(out.status.success(), "disagreements:\n{}", text(&out));
    assert!(text(&out).contains("0 disagreement(s)"), "{}", text(&out));
}

/// Second round (`damage2.py`): a foreign store's segment spliced in, a session moved under a
/// new id, a checkpoint by a key enrolled nowhere, a ledger leaf for no session, the journal
/// duplicated, zero-length and padding-only segments, the ledger deleted or cut to its header,
/// the named anchoring gap (with and without a saved head), reused and renamed tokens, a
/// bundle's head older than its token, a bundle without its key, other spellings of a bundle's
/// session id, an archive manifest listing a file twice. Both verifiers must agree on each,
/// anchoring summary included.
#[test]
fn outside_verifier_agrees_with_proctor_on_second_round_damage() {
    if !python_ready() {
        return;
    }
    let td = root().join("src/recorder/testdata");
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = run(
        &[
            &verifier("damage2.py"),
            Path::new(env!("CARGO_BIN_EXE_proctor")),
            &td.join("stores/untouched"),
            &td.join("bundles/untouched.bundle"),
            &td.join("v2/stores/untouched"),
            &out_dir.path().join("cases"),
        ],
        &[
            "--pubkey",
            td.join("recorder.pub").to_str().expect("utf-8 path"),
            "--tsa-cert",
            td.join("tsa/ca.pem").to_str().expect("utf-8 path"),
        ],
    );
    assert!(out.status.success(), "disagreements:\n{}", text(&out));
    assert!(text(&out).contains("0 disagreement(s)"), "{}", text(&out));
}

/// Third round (`damage3.py`), on a fresh store from the real recorder whose sessions A and B
/// each hold a blob of the same size (and C the same body as A): a blob swapped between A and
/// B, replaced by a symbolic link (to the same bytes), a directory or a FIFO, its session
/// directory renamed to upper case, A's records cut after its kind-68 record, the last ledger
/// leaf duplicated at the end, the last tree head re-signed (with the host's key) at a time
/// before the one before it, the key file swapped for another valid key (pinned or not); and
/// in A's bundle: a blob no record names, the blob listed twice (true bytes first or last), its
/// name in upper case, its base64 unpadded; a real token over the last head from the TSA
/// `--tsa-cert` trusts, and one with the same imprint from another TSA. Both verifiers must
/// agree on each, anchoring included.
#[test]
fn outside_verifier_agrees_with_proctor_on_third_round_damage() {
    if !python_ready() {
        return;
    }
    let base = tempfile::tempdir().expect("tempdir");
    let data = base.path().join("store");
    let ids = store_with_blobs(&data);
    let bundle = base.path().join("a.bundle");
    evidence_support::export_bundle(&data, &ids[0], &bundle);
    let td = root().join("src/recorder/testdata");
    // Two real TSAs (openssl ts): the one `--tsa-cert` trusts, and another.
    let trusted = tsa_support::make_pki(base.path(), "trusted", true);
    let other = tsa_support::make_pki(base.path(), "other", true);
    let out = run(
        &[
            &verifier("damage3.py"),
            Path::new(env!("CARGO_BIN_EXE_proctor")),
            &data,
            &bundle,
            &td.join("v2/recorder.pub"),
            &base.path().join("cases"),
        ],
        &[
            "--pubkey",
            data.join("keys/recorder.pub").to_str().expect("utf-8 path"),
            "--trusted-pki",
            trusted.dir.to_str().expect("utf-8 path"),
            "--other-pki",
            other.dir.to_str().expect("utf-8 path"),
        ],
    );
    assert!(out.status.success(), "disagreements:\n{}", text(&out));
    assert!(text(&out).contains("0 disagreement(s)"), "{}", text(&out));
}

/// Fourth round (`damage4.py`), on the vectors' untouched store and bundle: the JSON a verifier
/// reads (FORMAT.md "JSON": a key twice, known or not, at any depth; `format` as 1.0, "1",
/// true or past u32; counts and sizes negative, fractional, NaN or past u64; `meta` fields
/// missing or null; an attestation cut short, with a key twice or a `format` string; a known
/// head with a key twice or a fractional size), and cuts after each of the last records of the
/// last segment and after each of the ledger's last entries. Both verifiers must agree on each
/// (before this round verify.py took the last of two keys and read 1.0 and true as 1).
#[test]
fn outside_verifier_agrees_with_proctor_on_fourth_round_damage() {
    if !python_ready() {
        return;
    }
    let td = root().join("src/recorder/testdata");
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = run(
        &[
            &verifier("damage4.py"),
            Path::new(env!("CARGO_BIN_EXE_proctor")),
            &td.join("stores/untouched"),
            &td.join("bundles/untouched.bundle"),
            &td.join("heads/earlier.json"),
            &out_dir.path().join("cases"),
        ],
        &[
            "--pubkey",
            td.join("recorder.pub").to_str().expect("utf-8 path"),
            "--tsa-cert",
            td.join("tsa/ca.pem").to_str().expect("utf-8 path"),
        ],
    );
    let t = text(&out);
    assert!(out.status.success(), "disagreements:\n{t}");
    assert!(t.contains("0 disagreement(s)"), "{t}");
    // The JSON cases are refused by both (no report), not agreed on by accident.
    for case in [
        "bundle-format-twice-last-2",
        "bundle-unknown-key-twice",
        "known-head-size-twice",
    ] {
        let block = t
            .split("== ")
            .find(|b| b.starts_with(case))
            .unwrap_or_else(|| panic!("case {case} missing:\n{t}"));
        assert!(block.contains("\"exit\": 2"), "{case}: {block}");
    }
}

/// Sessions A (start, output, a 1 MiB output out of line at seq 2, output, sealed), B (start,
/// a 1 MiB output of other bytes at seq 1, sealed) and C (A's large body, sealed); the host's
/// key stays in `keys/`.
fn store_with_blobs(data: &Path) -> Vec<String> {
    use bytes::Bytes;
    use proctor::recorder::{Store, WriterOptions};
    use proctor_gate::{Event, Outcome, OutputStream};
    let out = |d: Vec<u8>| Event::Output {
        channel: 0,
        stream: OutputStream::Stdout,
        data: Bytes::from(d),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let mut store = Store::open(data, WriterOptions::default()).expect("store opens");
        store.finish_recovery().await.expect("recovery");
        let rec = store.recorder.clone();
        let now = proctor::clock::now_ns;
        let mut ids = Vec::new();
        for (agent, bodies) in [
            (
                "a",
                vec![b"x\n".to_vec(), vec![b'a'; 1 << 20], b"y\n".to_vec()],
            ),
            ("b", vec![vec![b'b'; 1 << 20]]),
            ("c", vec![vec![b'a'; 1 << 20]]),
        ] {
            let id = uuid::Uuid::now_v7();
            let key = *id.as_bytes();
            rec.record(key, now(), &evidence_support::session_start(agent))
                .await
                .expect("start");
            for b in bodies {
                rec.record(key, now(), &out(b)).await.expect("output");
            }
            rec.seal(key, now(), Outcome::Completed, "done")
                .await
                .expect("seal");
            ids.push(id.hyphenated().to_string());
        }
        store.shutdown().await;
        ids
    })
}
