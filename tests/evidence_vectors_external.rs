//! The kind-68 test vectors (FORMAT.md, "Test vectors", `src/recorder/testdata/v4/`): a store
//! written by the real recorder whose one session holds a body of 1 MiB stored out of line
//! (`blobs/SESSION/SHA256`), untouched and with its blob changed, cut and deleted, and bundles
//! of it, untouched and without the blob in `external_bodies`, each with the `verify --json`
//! result it must give. The outside verifier checks the same files (`check_vectors.py`).
//!
//! Regenerate with `PROCTOR_REGENERATE_VECTORS=1 cargo test -p proctor --test
//! evidence_vectors_external`.

mod evidence_support;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use evidence_support::*;
use proctor::recorder::{Store, WriterOptions, blobs};
use proctor_gate::{Event, Outcome, OutputStream};
use serde_json::{Value, json};

fn v4() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/recorder/testdata/v4")
}

/// The facts of a `verify --json` output (as `evidence_vectors.rs` keeps them).
fn normalize(v: &Value) -> Value {
    let r = v.get("report").unwrap_or(v);
    let problems: Vec<Value> = r["problems"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| json!({ "kind": p["kind"], "session": p["session"], "seq": p["seq"] }))
                .collect()
        })
        .unwrap_or_default();
    let mut out = json!({ "problems": problems });
    for field in [
        "verdict",
        "sessions",
        "sealed",
        "open",
        "tampered",
        "records",
        "ledger_leaves",
        "unsigned_tails",
    ] {
        let value = if field == "verdict" {
            &v[field]
        } else {
            &r[field]
        };
        if !value.is_null() {
            out[field] = value.clone();
        }
    }
    out
}

fn verify_json(args: &[&std::ffi::OsStr]) -> Value {
    let out = proctor()
        .arg("verify")
        .arg("--json")
        .arg("--pubkey")
        .arg(v4().join("recorder.pub"))
        .args(args)
        .output()
        .expect("verify runs");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The evidence of a store: segments, ledger, blobs and the public key (no private key, no
/// index, no lock).
fn evidence(from: &Path, to: &Path) {
    for part in ["segments", "ledger", "keys", "blobs"] {
        copy_dir(&from.join(part), &to.join(part));
    }
    let _ = std::fs::remove_file(to.join("keys/recorder.key"));
}

fn the_blob(store: &Path) -> PathBuf {
    let dir = store.join("blobs");
    let session = std::fs::read_dir(&dir)
        .expect("blobs")
        .next()
        .expect("a session dir")
        .expect("entry")
        .path();
    std::fs::read_dir(session)
        .expect("session blobs")
        .next()
        .expect("a blob")
        .expect("entry")
        .path()
}

fn write_json(path: &Path, v: &Value) {
    let mut s = serde_json::to_string_pretty(v).expect("json");
    s.push('\n');
    std::fs::write(path, s).expect("write json");
}

/// One session: start, a small output, a 1 MiB output (out of line, seq 2), a small output,
/// then sealed.
fn regenerate() {
    let root = v4();
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("stores")).expect("mkdir");
    std::fs::create_dir_all(root.join("bundles")).expect("mkdir");
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let id = rt.block_on(async {
        let mut store = Store::open(&data, WriterOptions::default()).expect("store opens");
        store.finish_recovery().await.expect("recovery");
        let rec = store.recorder.clone();
        let id = uuid::Uuid::now_v7();
        let key = *id.as_bytes();
        let out = |d: Vec<u8>| Event::Output {
            channel: 0,
            stream: OutputStream::Stdout,
            data: Bytes::from(d),
        };
        let now = proctor::clock::now_ns;
        rec.record(key, now(), &session_start("vector"))
            .await
            .expect("start");
        rec.record(key, now(), &out(b"before\n".to_vec()))
            .await
            .expect("small");
        // A repeating line compresses to little in git; the blob is 1 MiB + 9 body bytes.
        let big: Vec<u8> = b"0123456789abcdef".repeat(1 << 16);
        rec.record(key, now(), &out(big)).await.expect("large");
        rec.record(key, now(), &out(b"after\n".to_vec()))
            .await
            .expect("small");
        rec.seal(key, now(), Outcome::Completed, "done")
            .await
            .expect("seal");
        store.shutdown().await;
        id.hyphenated().to_string()
    });
    std::fs::copy(data.join("keys/recorder.pub"), root.join("recorder.pub")).expect("pub");
    let stores = root.join("stores");
    evidence(&data, &stores.join("untouched"));
    for (name, damage) in [
        ("blob-edited", 0u8),
        ("blob-cut", 1),
        ("blob-missing", 2),
        ("blob-longer", 3),
    ] {
        let d = stores.join(name);
        evidence(&data, &d);
        let blob = the_blob(&d);
        match damage {
            0 => rewrite(&blob, |b| b[1000] ^= 1),
            1 => rewrite(&blob, |b| b.truncate(b.len() - 1)),
            2 => std::fs::remove_file(&blob).expect("rm"),
            _ => rewrite(&blob, |b| b.push(b'\n')),
        }
    }
    let bundles = root.join("bundles");
    export_bundle(&data, &id, &bundles.join("untouched.bundle"));
    // Without its blob: `external_bodies` taken out of the manifest.
    let raw = std::fs::read(bundles.join("untouched.bundle")).expect("bundle");
    let first = raw.iter().position(|&b| b == b'\n').expect("magic") + 1;
    let second = first
        + raw[first..]
            .iter()
            .position(|&b| b == b'\n')
            .expect("manifest");
    let mut man: Value = serde_json::from_slice(&raw[first..second]).expect("manifest");
    man.as_object_mut()
        .expect("object")
        .remove("external_bodies")
        .expect("the manifest lists the blob");
    let mut stripped = raw[..first].to_vec();
    stripped.extend_from_slice(&serde_json::to_vec(&man).expect("json"));
    stripped.extend_from_slice(&raw[second..]);
    std::fs::write(bundles.join("blob-missing.bundle"), stripped).expect("write");

    for name in names(&stores) {
        let v = normalize(&verify_json(&[
            "--data".as_ref(),
            stores.join(&name).as_os_str(),
        ]));
        write_json(&stores.join(&name).join("expected.json"), &v);
    }
    for name in names(&bundles) {
        if let Some(stem) = name.strip_suffix(".bundle") {
            let v = normalize(&verify_json(&[
                "--bundle".as_ref(),
                bundles.join(&name).as_os_str(),
            ]));
            write_json(&bundles.join(format!("{stem}.expected.json")), &v);
        }
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{path:?}: {e}")))
        .unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// The kind of the one problem a vector must show (the blob's record is seq 2).
fn expected(name: &str) -> Option<(&'static str, u64)> {
    match name {
        "untouched" => None,
        "blob-edited" | "blob-longer" => Some(("edited", 2)),
        "blob-cut" => Some(("truncated", 2)),
        "blob-missing" => Some(("missing", 2)),
        other => panic!("unknown vector {other}"),
    }
}

fn check(name: &str, got: &Value) {
    let problems = got["problems"].as_array().expect("problems");
    match expected(name) {
        None => assert!(problems.is_empty(), "{name}: {got}"),
        Some((kind, seq)) => {
            assert_eq!(problems.len(), 1, "{name}: {got}");
            assert_eq!(problems[0]["kind"], kind, "{name}: {got}");
            assert_eq!(problems[0]["seq"], seq, "{name}: {got}");
        }
    }
}

#[test]
fn verify_gives_the_expected_result_on_the_kind_68_vectors() {
    if std::env::var_os("PROCTOR_REGENERATE_VECTORS").is_some() {
        regenerate();
    }
    let stores = v4().join("stores");
    let bundles = v4().join("bundles");
    let mut n = 0;
    for name in names(&stores) {
        // A copy: verify only reads, but the vectors stay untouched whatever happens.
        let work = tempfile::tempdir().expect("tempdir");
        copy_dir(&stores.join(&name), work.path());
        let got = normalize(&verify_json(&["--data".as_ref(), work.path().as_os_str()]));
        assert_eq!(
            got,
            read_json(&stores.join(&name).join("expected.json")),
            "store vector {name}"
        );
        check(&name, &got);
        n += 1;
    }
    // The blob is there, named by the kind-68 record at seq 2.
    let blob = the_blob(&stores.join("untouched"));
    let len = std::fs::metadata(&blob).expect("blob").len();
    assert!(len >= blobs::EXTERNAL_MIN_BYTES as u64, "{len}");
    for name in names(&bundles) {
        let Some(stem) = name.strip_suffix(".bundle") else {
            continue;
        };
        let got = normalize(&verify_json(&[
            "--bundle".as_ref(),
            bundles.join(&name).as_os_str(),
        ]));
        assert_eq!(
            got,
            read_json(&bundles.join(format!("{stem}.expected.json"))),
            "bundle vector {stem}"
        );
        check(stem, &got);
        n += 1;
    }
    assert_eq!(n, 7, "five stores and two bundles");
}
