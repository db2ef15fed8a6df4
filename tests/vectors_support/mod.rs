//! Builds the format-3 test vectors of `src/recorder/FORMAT.md` ("Test vectors") from the real
//! recorder, a real TSA (`openssl ts -reply`, see `tsa_support`) and the real `proctor`
//! binary: a store written in two phases (so an earlier tree head exists to roll back to and
//! to prove consistency from), an honest crash snapshot with an unsigned tail, its recovery,
//! and bundles. `damage.rs` holds the edits. Run by `evidence_vectors` under
//! `PROCTOR_REGENERATE_VECTORS=1`; CI only checks the files this writes.
#![allow(dead_code)]

pub mod damage;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use proctor::clock::now_ns;
use proctor::export::bundle::TreeHeadJson;
use proctor::recorder::{Recorder, Store, WriterOptions, signing};
use proctor_gate::{Event, Outcome, OutputStream, Privilege, Protocol, SessionInfo};
use serde_json::Value;

use crate::evidence_support::{copy_dir, export_bundle, proctor};
use crate::tsa_support;

/// Session ids of the vector store: A (ssh) and B (postgres) sealed in phase 1, C (ssh) open.
pub struct Ids {
    pub a: String,
    pub b: String,
    pub c: String,
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("rt")
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

fn opts() -> WriterOptions {
    WriterOptions {
        checkpoint_every_events: 4,
        ..Default::default()
    }
}

/// A session's first records: start, exec, `outputs` lines; a pause longer than the store
/// checkpoint interval after the fifth line, so a store checkpoint signs the chain mid-way.
async fn begin(rec: &Recorder, key: [u8; 16], agent: &str, protocol: Protocol, day: usize) {
    rec.record(key, now_ns(), &start(agent, protocol))
        .await
        .expect("start");
    let exec = Event::Exec {
        channel: 0,
        command: format!("report --day {day}"),
    };
    rec.record(key, now_ns(), &exec).await.expect("exec");
    for n in 0..10 {
        rec.record(key, now_ns(), &output(&format!("line {n}\n")))
            .await
            .expect("output");
        if n == 4 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

async fn finish(rec: &Recorder, key: [u8; 16]) {
    let exit = Event::ExitStatus {
        channel: 0,
        status: 0,
    };
    rec.record(key, now_ns(), &exit).await.expect("exit");
    rec.seal(key, now_ns(), Outcome::Completed, "done")
        .await
        .expect("seal");
}

/// Phase 1: A and B, each in its own segment, sealed; the store closed.
fn phase_one(data: &Path) -> (String, String) {
    rt().block_on(async {
        let mut store = Store::open(data, opts()).expect("store");
        store.finish_recovery().await.expect("recovery");
        let rec = store.recorder.clone();
        let mut ids = Vec::new();
        for (i, (agent, protocol)) in [("agent-a", Protocol::Ssh), ("agent-b", Protocol::Postgres)]
            .into_iter()
            .enumerate()
        {
            let id = uuid::Uuid::now_v7();
            begin(&rec, *id.as_bytes(), agent, protocol, i).await;
            finish(&rec, *id.as_bytes()).await;
            rec.rotate().await.expect("rotate");
            ids.push(id.to_string());
        }
        store.close();
        (ids[0].clone(), ids[1].clone())
    })
}

/// Phase 2: C opens and records; after a store checkpoint signed it, two more lines, and a
/// copy of the files taken then (`crash`: what a kill -9 leaves, the tail unsigned); then a
/// journal entry and a clean close (which signs C where it stands, still open).
fn phase_two(data: &Path, crash: &Path) -> String {
    rt().block_on(async {
        let mut store = Store::open(data, opts()).expect("store");
        store.finish_recovery().await.expect("recovery");
        let rec = store.recorder.clone();
        let id = uuid::Uuid::now_v7();
        let key = *id.as_bytes();
        begin(&rec, key, "agent-c", Protocol::Ssh, 2).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        for n in 10..12 {
            rec.record(key, now_ns(), &output(&format!("line {n}\n")))
                .await
                .expect("output");
        }
        // Acknowledged means durable: the files now hold these records, unsigned.
        for part in ["segments", "ledger", "keys"] {
            copy_dir(&data.join(part), &crash.join(part));
        }
        rec.journal("audit", "test vectors: an auditor read the store")
            .await
            .expect("journal");
        store.close();
        id.to_string()
    })
}

/// Restarts proctor on a crash copy: recovery seals C `interrupted` from its last signature.
fn recover(data: &Path) {
    rt().block_on(async {
        let mut store = Store::open(data, opts()).expect("store");
        store.finish_recovery().await.expect("recovery");
        store.close();
    });
}

/// Proctor's timestamping task, against the test TSA, until a token covers the newest head.
fn timestamp(data: &Path, url: &str, ca: &Path) {
    use proctor::recorder::timestamp::{self, TimestampSettings, TsaSettings};
    let want = head(data).size;
    let s = TimestampSettings {
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
    };
    rt().block_on(async {
        let (stop, rx) = tokio::sync::watch::channel(false);
        let tasks = timestamp::client::start(data.to_path_buf(), s, rx).expect("start");
        for _ in 0..300 {
            let done = timestamp::list(data)
                .expect("list")
                .iter()
                .any(|(_, a)| a.as_ref().is_ok_and(|a| a.tree_head.size == want));
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = stop.send(true);
        for t in tasks {
            t.abort();
        }
    });
    let _ = std::fs::remove_file(timestamp::status_path(data));
}

pub fn head(data: &Path) -> proctor::recorder::ledger::TreeHead {
    proctor::recorder::consistency::read_ledger(data)
        .expect("ledger")
        .1
        .expect("a tree head")
}

pub fn write_json(path: &Path, v: &Value) {
    let mut text = serde_json::to_string_pretty(v).expect("json");
    text.push('\n');
    std::fs::write(path, text).expect("write json");
}

/// The evidence of a store only: segments, ledger (with attestations), public key.
pub fn evidence_copy(from: &Path, to: &Path) {
    for part in ["segments", "ledger", "keys"] {
        copy_dir(&from.join(part), &to.join(part));
    }
    let _ = std::fs::remove_file(to.join("keys/recorder.key"));
    let _ = std::fs::remove_file(proctor::recorder::timestamp::status_path(to));
}

/// `proctor ledger head --from M --json` (without the lag, which depends on the clock).
pub fn ledger_head_from(data: &Path, from: u64) -> Value {
    let out = proctor()
        .args([
            "ledger",
            "head",
            "--json",
            "--from",
            &from.to_string(),
            "--data",
        ])
        .arg(data)
        .output()
        .expect("ledger head");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v: Value = serde_json::from_slice(&out.stdout).expect("head json");
    if let Some(o) = v.as_object_mut() {
        o.remove("timestamps");
    }
    v
}

/// What the vectors are made from: `root/store` (untouched, with the private key), `crash`,
/// `recovered`, `phase1` (the store as phase 1 left it), the TSA certificates, the ids.
pub struct Made {
    pub ids: Ids,
    pub store: std::path::PathBuf,
    pub crash: std::path::PathBuf,
    pub phase1: std::path::PathBuf,
    pub phase1_head: proctor::recorder::ledger::TreeHead,
}

/// Writes every source store into `work`, and the TSA certificates into `testdata/tsa/`.
pub fn make(work: &Path, testdata: &Path) -> Made {
    let pki = tsa_support::make_pki(work, "vectors", true);
    let tsa = tsa_support::start_tsa(&pki);
    let store = work.join("store");
    let (a, b) = phase_one(&store);
    timestamp(&store, &tsa.url, &pki.ca);
    let phase1 = work.join("phase1");
    evidence_copy(&store, &phase1);
    let phase1_head = head(&store);
    let crash = work.join("crash");
    let c = phase_two(&store, &crash);
    timestamp(&store, &tsa.url, &pki.ca);
    drop(tsa);
    std::fs::create_dir_all(testdata.join("tsa")).expect("mkdir tsa");
    std::fs::copy(&pki.ca, testdata.join("tsa/ca.pem")).expect("ca");
    std::fs::copy(pki.dir.join("tsa.pem"), testdata.join("tsa/tsa.pem")).expect("tsa cert");
    std::fs::copy(
        signing::public_key_path(&store),
        testdata.join("recorder.pub"),
    )
    .expect("pub");
    Made {
        ids: Ids { a, b, c },
        store,
        crash,
        phase1,
        phase1_head,
    }
}

/// The recovered store (a restart on the crash copy) and a bundle of C from it.
pub fn make_recovered(made: &Made, work: &Path, out_store: &Path, out_bundle: &Path) {
    let data = work.join("recovered");
    copy_dir(&made.crash, &data);
    recover(&data);
    export_bundle(&data, &made.ids.c, out_bundle);
    evidence_copy(&data, out_store);
}

/// A tree head as `ledger head` prints it.
pub fn head_json(h: &proctor::recorder::ledger::TreeHead) -> Value {
    serde_json::to_value(TreeHeadJson::from_head(h)).expect("head json")
}
