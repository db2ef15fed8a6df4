//! The test vectors of `src/recorder/FORMAT.md` (under `src/recorder/testdata/`): a small
//! store and bundles, untouched and with each kind of damage, and the `verify --json` result
//! each must give. `proctor verify` is checked against them here; an independent verifier can
//! be checked against the same files.
//!
//! Regenerate (after a deliberate format change) with
//! `PROCTOR_REGENERATE_VECTORS=1 cargo test -p proctor --test evidence_vectors`.

mod evidence_support;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use evidence_support::*;
use proctor::clock::now_ns;
use proctor::recorder::frame::{self, FRAME_HEADER_LEN};
use proctor::recorder::{Store, WriterOptions, segment, signing};
use proctor_gate::{Event, Outcome, OutputStream, Privilege, Protocol, SessionInfo};
use serde_json::{Value, json};

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

fn verify_store_vector(dir: &Path, pubkey: &Path) -> Value {
    normalize(&run_verify(&[
        "--data".as_ref(),
        dir.as_os_str(),
        "--pubkey".as_ref(),
        pubkey.as_os_str(),
    ]))
}

fn verify_bundle_vector(file: &Path, pubkey: &Path) -> Value {
    normalize(&run_verify(&[
        "--bundle".as_ref(),
        file.as_os_str(),
        "--pubkey".as_ref(),
        pubkey.as_os_str(),
    ]))
}

fn start(agent: &str, protocol: Protocol) -> Event {
    Event::SessionStart(SessionInfo {
        agent: agent.into(),
        target: if protocol == Protocol::Ssh {
            "web-1"
        } else {
            "ledger-db"
        }
        .into(),
        protocol,
        login: "app".into(),
        privilege: Privilege::Elevated,
        client_addr: "192.0.2.10:40000".into(),
        grant: "vectors".into(),
        proctor_version: "vectors".into(),
    })
}

fn output(text: &str) -> Event {
    Event::Output {
        channel: 0,
        stream: OutputStream::Stdout,
        data: Bytes::from(text.to_string()),
    }
}

/// Three sessions, each in its own segment: A (ssh) and B (postgres) sealed, C (ssh) still
/// open. Checkpoints every 4 records. Returns the ids.
fn write_store(data: &Path) -> [String; 3] {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let opts = WriterOptions {
            checkpoint_every_events: 4,
            ..Default::default()
        };
        let mut store = Store::open(data, opts).expect("store");
        store.finish_recovery().await.expect("recovery");
        let rec = store.recorder.clone();
        let mut ids = Vec::new();
        for (i, (agent, protocol)) in [
            ("agent-a", Protocol::Ssh),
            ("agent-b", Protocol::Postgres),
            ("agent-c", Protocol::Ssh),
        ]
        .into_iter()
        .enumerate()
        {
            let id = uuid::Uuid::now_v7();
            let key = *id.as_bytes();
            rec.record(key, now_ns(), &start(agent, protocol))
                .await
                .expect("start");
            rec.record(
                key,
                now_ns(),
                &Event::Exec {
                    channel: 0,
                    command: format!("report --day {i}"),
                },
            )
            .await
            .expect("exec");
            for n in 0..10 {
                rec.record(key, now_ns(), &output(&format!("line {n}\n")))
                    .await
                    .expect("output");
            }
            if i < 2 {
                rec.record(
                    key,
                    now_ns(),
                    &Event::ExitStatus {
                        channel: 0,
                        status: 0,
                    },
                )
                .await
                .expect("exit");
                rec.seal(key, now_ns(), Outcome::Completed, "done")
                    .await
                    .expect("seal");
            }
            rec.rotate().await.expect("rotate");
            ids.push(id.to_string());
        }
        // A journal entry: the journal's checkpoint at close is anchored in the ledger.
        rec.journal("audit", "test vectors: an auditor read the store")
            .await
            .expect("journal");
        store.close();
        [ids[0].clone(), ids[1].clone(), ids[2].clone()]
    })
}

/// Deletes every frame of a session, in whichever segments it has them.
fn delete_session(d: &Path, id: &str) {
    let k = key_of(id);
    remove_frames(d, |f| f.session == k);
}

fn flip_body_byte(d: &Path, id: &str, seq: u64, recompute_crc: bool) {
    let f = find(&frames(d), id, seq);
    rewrite(&f.segment, |b| {
        b[f.offset + FRAME_HEADER_LEN + frame::RECORD_HEADER_LEN + 10] ^= 1;
        if recompute_crc {
            fix_crc(b, f.offset);
        }
    });
}

/// Each damaged store: its name and the change.
type Damage = (&'static str, Box<dyn Fn(&Path, &[String; 3])>);

fn store_damages() -> Vec<Damage> {
    vec![
        (
            "edited",
            Box::new(|d, ids| flip_body_byte(d, &ids[0], 5, true)),
        ),
        (
            "edited-crc",
            Box::new(|d, ids| flip_body_byte(d, &ids[0], 5, false)),
        ),
        (
            "bad-signature",
            Box::new(|d, ids| {
                flip_body_byte(d, &ids[0], 5, true);
                rechain(d, key_of(&ids[0]), None);
            }),
        ),
        (
            "missing",
            Box::new(|d, ids| {
                let f = find(&frames(d), &ids[0], 7);
                rewrite(&f.segment, |b| {
                    b.drain(f.offset..f.offset + f.len);
                });
            }),
        ),
        (
            "reordered",
            Box::new(|d, ids| {
                let all = frames(d);
                let (a, b) = (find(&all, &ids[0], 5), find(&all, &ids[0], 6));
                rewrite(&a.segment, |buf| {
                    let fb = buf[b.offset..b.offset + b.len].to_vec();
                    buf.drain(b.offset..b.offset + b.len);
                    buf.splice(a.offset..a.offset, fb);
                });
            }),
        ),
        (
            "duplicate",
            Box::new(|d, ids| {
                let f = find(&frames(d), &ids[0], 6);
                rewrite(&f.segment, |b| {
                    let copy = b[f.offset..f.offset + f.len].to_vec();
                    let at = f.offset + f.len;
                    b.splice(at..at, copy);
                });
            }),
        ),
        (
            "truncated",
            Box::new(|d, ids| {
                let k = key_of(&ids[0]);
                let mut tail: Vec<FrameAt> =
                    frames(d).into_iter().filter(|f| f.session == k).collect();
                tail.sort_by_key(|f| std::cmp::Reverse(f.seq));
                tail.truncate(2);
                rewrite(&tail[0].segment, |buf| {
                    for f in &tail {
                        buf.drain(f.offset..f.offset + f.len);
                    }
                });
            }),
        ),
        (
            "back-dated",
            Box::new(|d, ids| {
                let f = find(&frames(d), &ids[1], 0);
                rewrite(&f.segment, |b| {
                    let at = f.offset + FRAME_HEADER_LEN + 26;
                    let ts = i64::from_be_bytes(b[at..at + 8].try_into().expect("8"));
                    b[at..at + 8].copy_from_slice(&(ts - 3_600_000_000_000).to_be_bytes());
                    fix_crc(b, f.offset);
                });
                rechain(d, key_of(&ids[1]), None);
            }),
        ),
        (
            "session-missing",
            Box::new(|d, ids| delete_session(d, &ids[1])),
        ),
        (
            "open-session-missing",
            Box::new(|d, ids| delete_session(d, &ids[2])),
        ),
        (
            "segment-missing",
            Box::new(|d, _| {
                let last = *segment::list_segments(d)
                    .expect("segments")
                    .last()
                    .expect("last");
                let from = segment::segment_path(d, 2);
                rewrite(&from, |b| {
                    b[8..16].copy_from_slice(&(last + 1).to_be_bytes())
                });
                std::fs::rename(&from, segment::segment_path(d, last + 1)).expect("rename");
            }),
        ),
        (
            "unsigned-tail",
            Box::new(|d, ids| {
                forge_output(d, &ids[2], b"forged after the last checkpoint\n");
            }),
        ),
        (
            "journal-cut",
            Box::new(|d, _| {
                let journal = [0u8; 16];
                let last = frames(d)
                    .into_iter()
                    .filter(|f| f.session == journal)
                    .map(|f| f.seq)
                    .max()
                    .expect("journal records");
                remove_frames(d, |f| f.session == journal && f.seq == last);
            }),
        ),
        (
            "journal-deleted",
            Box::new(|d, _| remove_frames(d, |f| f.session == [0u8; 16])),
        ),
        (
            "ledger-leaf-removed",
            Box::new(|d, _| {
                let lp = proctor::recorder::ledger::ledger_path(d);
                rewrite(&lp, |b| {
                    let at = proctor::recorder::ledger::LEDGER_HEADER_LEN;
                    let len = u32::from_be_bytes(b[at..at + 4].try_into().expect("4")) as usize;
                    b.drain(at..at + 8 + len);
                });
            }),
        ),
    ]
}

/// Bundle edits: name, change to (manifest, frames).
type BundleDamage = (&'static str, Box<dyn Fn(&mut Value, &mut Vec<u8>)>);

fn bundle_frame(frames: &[u8], seq: u64) -> (usize, usize) {
    segment::Scanner::new(frames, 0)
        .find_map(|item| match item {
            segment::Scanned::Frame {
                offset,
                record,
                frame,
            } if record.header.seq == seq => Some((offset as usize, frame.len())),
            _ => None,
        })
        .expect("frame in bundle")
}

fn bundle_damages() -> Vec<BundleDamage> {
    vec![
        (
            "edited",
            Box::new(|_, f| {
                let (off, _) = bundle_frame(f, 5);
                f[off + FRAME_HEADER_LEN + frame::RECORD_HEADER_LEN + 10] ^= 1;
            }),
        ),
        (
            "missing",
            Box::new(|_, f| {
                let (off, len) = bundle_frame(f, 7);
                f.drain(off..off + len);
            }),
        ),
        (
            "truncated",
            Box::new(|_, f| {
                let (off, _) = bundle_frame(f, 13);
                f.truncate(off);
            }),
        ),
        (
            "back-dated",
            Box::new(|m, f| {
                let (off, _) = bundle_frame(f, 0);
                let at = off + FRAME_HEADER_LEN + 26;
                let ts = i64::from_be_bytes(f[at..at + 8].try_into().expect("8"));
                f[at..at + 8].copy_from_slice(&(ts - 3_600_000_000_000).to_be_bytes());
                fix_crc(f, off);
                let id = m["session"].as_str().expect("id").to_string();
                rechain_buffer(f, key_of(&id));
            }),
        ),
        (
            "metadata",
            Box::new(|m, _| {
                m["meta"]["agent"] = "someone-else".into();
                m["meta"]["privilege"] = "routine".into();
            }),
        ),
    ]
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

fn write_json(path: &Path, v: &Value) {
    let mut text = serde_json::to_string_pretty(v).expect("json");
    text.push('\n');
    std::fs::write(path, text).expect("write expected");
}

fn regenerate(root: &Path) {
    let _ = std::fs::remove_dir_all(root);
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("store");
    let ids = write_store(&data);
    std::fs::create_dir_all(root.join("bundles")).expect("mkdir");
    let pubkey = root.join("recorder.pub");
    std::fs::copy(signing::public_key_path(&data), &pubkey).expect("pub");
    let untouched_bundle = root.join("bundles/untouched.bundle");
    export_bundle(&data, &ids[0], &untouched_bundle);
    // The vectors hold evidence only: segments, ledger, public key.
    let clean = root.join("stores/untouched");
    for part in ["segments", "ledger"] {
        copy_dir(&data.join(part), &clean.join(part));
    }
    copy_dir(&data.join("keys"), &clean.join("keys"));
    std::fs::remove_file(clean.join("keys/recorder.key")).expect("private key out");
    write_json(
        &clean.join("expected.json"),
        &verify_store_vector(&clean, &pubkey),
    );
    for (name, damage) in store_damages() {
        let d = root.join("stores").join(name);
        copy_dir(&clean, &d);
        damage(&d, &ids);
        write_json(&d.join("expected.json"), &verify_store_vector(&d, &pubkey));
    }
    write_json(
        &root.join("bundles/untouched.expected.json"),
        &verify_bundle_vector(&untouched_bundle, &pubkey),
    );
    let original = std::fs::read(&untouched_bundle).expect("read");
    for (name, damage) in bundle_damages() {
        let (mut manifest, mut frames) = split_bundle(&original);
        damage(&mut manifest, &mut frames);
        let mut bytes = format!("PROCTOR-BUNDLE 1\n{manifest}\n").into_bytes();
        bytes.extend_from_slice(&frames);
        let file = root.join(format!("bundles/{name}.bundle"));
        std::fs::write(&file, bytes).expect("write bundle");
        write_json(
            &root.join(format!("bundles/{name}.expected.json")),
            &verify_bundle_vector(&file, &pubkey),
        );
    }
}

/// The kind each damaged vector must be reported as (so a regeneration that went wrong is not
/// silently accepted).
fn expected_kind(name: &str) -> &'static str {
    match name {
        "edited" | "edited-crc" => "edited",
        "bad-signature" => "bad_signature",
        "missing" => "missing",
        "reordered" => "reordered",
        "duplicate" => "duplicate",
        "truncated" => "truncated",
        "back-dated" => "back_dated",
        "session-missing" | "open-session-missing" | "journal-deleted" => "session_missing",
        "journal-cut" => "truncated",
        "segment-missing" => "segment_missing",
        "ledger-leaf-removed" => "ledger",
        "metadata" => "metadata",
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
        "untouched" => assert!(kinds.is_empty(), "{name}: {v}"),
        "unsigned-tail" => {
            assert!(kinds.is_empty(), "{name}: {v}");
            assert_eq!(v["verdict"], "unsigned_tail", "{name}: {v}");
        }
        _ => assert!(
            kinds.first() == Some(&expected_kind(name)),
            "{name}: expected {} first: {v}",
            expected_kind(name)
        ),
    }
}

#[test]
fn verify_gives_the_expected_result_on_every_test_vector() {
    let root = testdata();
    if std::env::var_os("PROCTOR_REGENERATE_VECTORS").is_some() {
        regenerate(&root);
    }
    let pubkey = root.join("recorder.pub");
    let mut checked = 0;
    let mut stores: Vec<PathBuf> = std::fs::read_dir(root.join("stores"))
        .expect("src/recorder/testdata/stores")
        .map(|e| e.expect("entry").path())
        .collect();
    stores.sort();
    for dir in stores {
        let name = dir
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        // Verify reads only; a copy keeps the vectors untouched whatever happens.
        let work = tempfile::tempdir().expect("tempdir");
        copy_dir(&dir, work.path());
        let got = verify_store_vector(work.path(), &pubkey);
        let want: Value = serde_json::from_slice(
            &std::fs::read(dir.join("expected.json")).expect("expected.json"),
        )
        .expect("expected json");
        assert_eq!(got, want, "store vector {name}");
        check_kind(&name, &got);
        checked += 1;
    }
    let mut bundles: Vec<PathBuf> = std::fs::read_dir(root.join("bundles"))
        .expect("bundles")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "bundle"))
        .collect();
    bundles.sort();
    for file in bundles {
        let name = file
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .into_owned();
        let got = verify_bundle_vector(&file, &pubkey);
        let want: Value = serde_json::from_slice(
            &std::fs::read(file.with_extension("expected.json")).expect("expected"),
        )
        .expect("expected json");
        assert_eq!(got, want, "bundle vector {name}");
        check_kind(&name, &got);
        checked += 1;
    }
    assert!(checked >= 20, "{checked} vectors");
}
