//! The test vectors of `src/recorder/FORMAT.md` ("Test vectors", under
//! `src/recorder/testdata/`): a format-3 store (store checkpoints, an attestation), an honest
//! crash with an unsigned tail and its recovery, tree heads with a consistency proof, and
//! bundles, untouched and with each kind of damage, with the `verify --json` result each must
//! give; and, under `v2/`, the version-2 vectors, which must keep verifying as they did.
//! `proctor verify` is checked against them here; an independent verifier can be checked
//! against the same files.
//!
//! Regenerate the current set (after a deliberate format change; needs `openssl`) with
//! `PROCTOR_REGENERATE_VECTORS=1 cargo test -p proctor --test evidence_vectors`. The `v2/`
//! set is frozen.

mod evidence_support;
mod tsa_support;
mod vectors_support;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use evidence_support::*;
use serde_json::{Value, json};
use vectors_support::damage::{self, trim_tail};
use vectors_support::{evidence_copy, head_json, ledger_head_from, write_json};

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/recorder/testdata")
}

/// The parts of the `verify --json` output that are facts about the evidence (not timings,
/// paths or wording).
fn normalize(v: &Value) -> Value {
    let r = if v.get("report").is_some() {
        &v["report"]
    } else {
        v
    };
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
    if let Some(t) = v.get("timestamps") {
        let sizes: Vec<Value> = t["tokens"]
            .as_array()
            .map(|ts| ts.iter().map(|x| x["tree_size"].clone()).collect())
            .unwrap_or_default();
        let kinds: Vec<Value> = t["problems"]
            .as_array()
            .map(|ps| ps.iter().map(|p| p["kind"].clone()).collect())
            .unwrap_or_default();
        out["timestamps"] = json!({
            "token_tree_sizes": sizes,
            "problems": kinds,
            "not_timestamped_since": t["not_timestamped"]["since_size"],
        });
    }
    out
}

fn run_verify(args: &[&std::ffi::OsStr]) -> Value {
    let out = proctor()
        .arg("verify")
        .arg("--json")
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

/// A set of vectors: its directory, and the key and TSA certificate they are checked with.
struct Set {
    root: PathBuf,
}

impl Set {
    /// `--pubkey`, and `--tsa-cert` when the set has TSA certificates.
    fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec!["--pubkey".into(), self.root.join("recorder.pub").into()];
        let ca = self.root.join("tsa/ca.pem");
        if ca.exists() {
            a.push("--tsa-cert".into());
            a.push(ca.into());
        }
        a
    }

    /// A store vector; `known-head.json` beside it is passed as `--known-head`.
    fn verify_store(&self, dir: &Path, known: Option<&Path>) -> Value {
        let mut a: Vec<OsString> = vec!["--data".into(), dir.into()];
        if let Some(k) = known.filter(|k| k.exists()) {
            a.push("--known-head".into());
            a.push(k.into());
        }
        a.extend(self.args());
        let refs: Vec<&std::ffi::OsStr> = a.iter().map(|x| x.as_os_str()).collect();
        normalize(&run_verify(&refs))
    }

    fn verify_bundle(&self, file: &Path) -> Value {
        let mut a: Vec<OsString> = vec!["--bundle".into(), file.into()];
        a.extend(self.args());
        let refs: Vec<&std::ffi::OsStr> = a.iter().map(|x| x.as_os_str()).collect();
        normalize(&run_verify(&refs))
    }
}

fn split_bundle(bytes: &[u8]) -> (Value, Vec<u8>) {
    let nl = bytes.iter().position(|&b| b == b'\n').expect("magic");
    let rest = &bytes[nl + 1..];
    let nl2 = rest.iter().position(|&b| b == b'\n').expect("manifest");
    (
        serde_json::from_slice(&rest[..nl2]).expect("json"),
        rest[nl2 + 1..].to_vec(),
    )
}

fn damaged_bundles(set: &Set, original: &Path, damages: Vec<damage::BundleDamage>) {
    let bytes = std::fs::read(original).expect("read");
    for (name, change) in damages {
        let (mut manifest, mut frames) = split_bundle(&bytes);
        change(&mut manifest, &mut frames);
        let mut out = format!("PROCTOR-BUNDLE 1\n{manifest}\n").into_bytes();
        out.extend_from_slice(&frames);
        let file = set.root.join(format!("bundles/{name}.bundle"));
        std::fs::write(&file, out).expect("write bundle");
    }
}

/// Rebuilds the current set from the real recorder, TSA and binary, then records each
/// vector's result.
fn regenerate(set: &Set) {
    let root = &set.root;
    for part in ["stores", "bundles", "heads", "tsa", "recorder.pub"] {
        let p = root.join(part);
        let _ = std::fs::remove_dir_all(&p);
        let _ = std::fs::remove_file(&p);
    }
    std::fs::create_dir_all(root.join("bundles")).expect("mkdir");
    std::fs::create_dir_all(root.join("heads")).expect("mkdir");
    let work = tempfile::tempdir().expect("tempdir");
    let made = vectors_support::make(work.path(), root);
    let ids = &made.ids;
    let stores = root.join("stores");
    let clean = stores.join("untouched");
    evidence_copy(&made.store, &clean);
    // The earlier head (end of phase 1): untouched extends it; the phase-1 store, against the
    // final head, is a rollback.
    let earlier = head_json(&made.phase1_head);
    write_json(&root.join("heads/earlier.json"), &earlier);
    let current = ledger_head_from(&clean, made.phase1_head.size);
    write_json(&root.join("heads/current.json"), &current);
    for (name, change) in damage::store_damages() {
        let d = stores.join(name);
        copy_dir(&clean, &d);
        change(&d, ids);
    }
    write_json(&clean.join("known-head.json"), &earlier);
    let rolled = stores.join("rolled-back");
    copy_dir(&made.phase1, &rolled);
    let mut final_head = current.clone();
    if let Some(o) = final_head.as_object_mut() {
        o.remove("consistency_from");
        o.remove("consistency_proof");
    }
    write_json(&rolled.join("known-head.json"), &final_head);
    let crashed = stores.join("crashed");
    evidence_copy(&made.crash, &crashed);
    trim_tail(&crashed);
    vectors_support::make_recovered(
        &made,
        work.path(),
        &stores.join("recovered"),
        &root.join("bundles/recovered.bundle"),
    );
    let untouched_bundle = root.join("bundles/untouched.bundle");
    export_bundle(&made.store, &ids.a, &untouched_bundle);
    damaged_bundles(
        set,
        &untouched_bundle,
        damage::bundle_damages(earlier, current["consistency_proof"].clone()),
    );
    damaged_bundles(
        set,
        &root.join("bundles/recovered.bundle"),
        damage::recovered_bundle_damages(),
    );
    for (dir, _) in store_vectors(set) {
        let got = set.verify_store(&dir, Some(&dir.join("known-head.json")));
        write_json(&dir.join("expected.json"), &got);
    }
    for file in bundle_vectors(set) {
        write_json(
            &file.with_extension("expected.json"),
            &set.verify_bundle(&file),
        );
    }
}

fn store_vectors(set: &Set) -> Vec<(PathBuf, String)> {
    let mut v: Vec<(PathBuf, String)> = std::fs::read_dir(set.root.join("stores"))
        .expect("stores")
        .map(|e| e.expect("entry").path())
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (p, name)
        })
        .collect();
    v.sort();
    v
}

fn bundle_vectors(set: &Set) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(set.root.join("bundles"))
        .expect("bundles")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "bundle"))
        .collect();
    v.sort();
    v
}

/// The kind each damaged vector must be reported as first (so a regeneration that went wrong
/// is not silently accepted).
fn expected_kind(name: &str) -> &'static str {
    match name {
        "edited" | "edited-crc" => "edited",
        "bad-signature" | "store-checkpoint-edited" | "recovered-store-checkpoint-forged" => {
            "bad_signature"
        }
        "missing" | "missing-where-store-checkpoint-signs" => "missing",
        "reordered" => "reordered",
        "duplicate" => "duplicate",
        "truncated" => "truncated",
        "back-dated" => "back_dated",
        "session-missing" | "open-session-missing" | "journal-deleted" => "session_missing",
        "journal-cut" => "truncated",
        "segment-missing" => "segment_missing",
        "ledger-leaf-removed" => "ledger",
        "metadata" => "metadata",
        "rolled-back" => "rolled_back",
        "token-over-another-head" => "timestamp",
        _ => "",
    }
}

fn check_kind(name: &str, v: &Value) {
    let kinds: Vec<&str> = v["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter_map(|p| p["kind"].as_str())
        .collect();
    match name {
        "untouched" => {
            assert!(kinds.is_empty(), "{name}: {v}");
            assert!(
                v["verdict"].is_null() || v["verdict"] == "ok",
                "{name}: {v}"
            );
            assert_eq!(v["unsigned_tails"], json!([]), "{name}: {v}");
        }
        "unsigned-tail" | "crashed" | "recovered" => {
            assert!(kinds.is_empty(), "{name}: {v}");
            // A bundle's report has no verdict; its tail says it.
            assert!(
                v["verdict"].is_null() || v["verdict"] == "unsigned_tail",
                "{name}: {v}"
            );
            assert!(
                v["unsigned_tails"]
                    .as_array()
                    .is_some_and(|t| !t.is_empty()),
                "{name}: {v}"
            );
        }
        _ => assert!(
            kinds.first() == Some(&expected_kind(name)),
            "{name}: expected {} first: {v}",
            expected_kind(name)
        ),
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{path:?}: {e}")))
        .unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// Checks every vector of a set; returns how many.
fn check_set(set: &Set) -> usize {
    let mut checked = 0;
    for (dir, name) in store_vectors(set) {
        // Verify reads only; a copy keeps the vectors untouched whatever happens.
        let work = tempfile::tempdir().expect("tempdir");
        copy_dir(&dir, work.path());
        let got = set.verify_store(work.path(), Some(&dir.join("known-head.json")));
        assert_eq!(
            got,
            read_json(&dir.join("expected.json")),
            "store vector {name}"
        );
        check_kind(&name, &got);
        checked += 1;
    }
    for file in bundle_vectors(set) {
        let name = file
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .into_owned();
        let got = set.verify_bundle(&file);
        assert_eq!(
            got,
            read_json(&file.with_extension("expected.json")),
            "bundle vector {name}"
        );
        check_kind(&name, &got);
        checked += 1;
    }
    checked
}

#[test]
fn verify_gives_the_expected_result_on_every_test_vector() {
    let current = Set { root: testdata() };
    if std::env::var_os("PROCTOR_REGENERATE_VECTORS").is_some() {
        regenerate(&current);
    }
    let n = check_set(&current);
    assert!(n >= 28, "{n} current vectors");
    // The version-2 vectors (no store checkpoints, no attestations) verify as they always did.
    let n = check_set(&Set {
        root: testdata().join("v2"),
    });
    assert!(n >= 20, "{n} version-2 vectors");
    tree_head_vectors_hold();
}

/// The tree heads: `ledger head --from M` on the untouched store prints exactly
/// `heads/current.json` (its consistency proof from `heads/earlier.json`), and the proof
/// checks as RFC 9162 section 2.1.4.2 describes.
fn tree_head_vectors_hold() {
    let root = testdata();
    let earlier = read_json(&root.join("heads/earlier.json"));
    let current = read_json(&root.join("heads/current.json"));
    let m = earlier["size"].as_u64().expect("size");
    let work = tempfile::tempdir().expect("tempdir");
    copy_dir(&root.join("stores/untouched"), work.path());
    assert_eq!(ledger_head_from(work.path(), m), current);
    let h32 = |v: &Value| -> [u8; 32] {
        let mut o = [0u8; 32];
        hex::decode_to_slice(v.as_str().expect("hex"), &mut o).expect("32 bytes");
        o
    };
    let proof: Vec<[u8; 32]> = current["consistency_proof"]
        .as_array()
        .expect("proof")
        .iter()
        .map(h32)
        .collect();
    assert!(proctor::recorder::consistency::verify_consistency(
        m,
        current["size"].as_u64().expect("size"),
        &h32(&earlier["root"]),
        &h32(&current["root"]),
        &proof,
    ));
}
