//! The named anchoring gap made visible (FORMAT.md, "Anchoring"): `verify --known-head` names,
//! per session and for the journal, the seq up to which an outside anchor pins the records.
//! Cutting exactly what it names as unanchored (with the ledger rolled back to the saved head)
//! goes unnoticed, as the format says it must; cutting one record more is detected. So the
//! boundary `verify` prints is the real one, not a guess.

mod evidence_support;

use std::path::Path;

use evidence_support::*;
use proctor::recorder::frame::JOURNAL_SESSION;
use proctor::recorder::ledger::{self, Entry};
use proctor::recorder::{Store, WriterOptions};

fn verify_json(data: &Path, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let out = proctor()
        .args(["verify", "--json", "--data"])
        .arg(data)
        .args(extra)
        .output()
        .expect("verify");
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code(), v)
}

/// Cuts the ledger after the tree head of `size` (the rollback to a saved head).
fn cut_ledger_to(data: &Path, size: u64) {
    let path = ledger::ledger_path(data);
    let scan = ledger::scan_ledger(&path).expect("scan");
    let mut end = None;
    for (i, (_, e)) in scan.entries.iter().enumerate() {
        if let Entry::TreeHead(h) = e
            && h.size == size
        {
            end = scan.entries.get(i + 1).map(|(off, _)| *off);
        }
    }
    let end = end.expect("entries after the saved head");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open ledger");
    f.set_len(end).expect("truncate ledger");
}

fn gap_of<'a>(v: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    v["anchoring"]["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .find(|g| g["session"] == id)
        .unwrap_or_else(|| panic!("{id} not named in {}", v["anchoring"]))
}

#[test]
fn verify_names_the_anchor_boundary_and_a_cut_beyond_it_is_the_named_gap() {
    let base = tempfile::tempdir().expect("tempdir");
    let data = base.path().join("store");
    // One sealed session, one left open when the store closed.
    let ids = make_store_open(&data, 2, 30, 1);
    let victim = ids[1].clone();
    let head = proctor()
        .args(["ledger", "head", "--json", "--data"])
        .arg(&data)
        .output()
        .expect("ledger head");
    assert!(head.status.success(), "{head:?}");
    let known = base.path().join("head.json");
    std::fs::write(&known, &head.stdout).expect("save head");
    let size = serde_json::from_slice::<serde_json::Value>(&head.stdout).expect("json")["size"]
        .as_u64()
        .expect("size");

    // A restart seals the open session (recovered, retention, end, seal, leaves, journal notes):
    // all of it after the saved head.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let mut s = Store::open(&data, WriterOptions::default()).expect("reopen");
        s.finish_recovery().await.expect("recovery");
        s.close();
    });

    let kh = known.to_str().expect("utf-8");
    let (code, v) = verify_json(&data, &["--known-head", kh]);
    assert_eq!(code, Some(0), "{v}");
    let a = &v["anchoring"];
    assert_eq!(a["sources"][0]["kind"], "known_head", "{a}");
    assert_eq!(a["anchored_leaves"], size, "{a}");
    assert!(a["ledger_leaves"].as_u64() > Some(size), "{a}");
    assert_eq!(a["sessions_anchored_whole"], 1, "the sealed session: {a}");
    let g = gap_of(&v, &victim).clone();
    let anchored = g["anchored_to_seq"].as_u64().expect("part of it anchored");
    assert!(g["unanchored_records"].as_u64() > Some(0), "{g}");
    let j = &a["journal"];
    let journal_anchored = j["anchored_to_seq"].as_u64().expect("journal anchored");
    assert!(j["unanchored_records"].as_u64() > Some(0), "{j}");
    // The text says the same.
    let (_, text) = verify_code(&data, &["--known-head", kh]);
    assert!(
        text.contains(&format!(
            "NOT ANCHORED session {victim}: anchored to seq {anchored} "
        )),
        "{text}"
    );
    assert!(text.contains("NOT ANCHORED the journal"), "{text}");

    // The rollback an attacker with the host's files makes: everything the summary named as
    // unanchored, with the ledger back at the saved head. Nothing can tell (the named gap).
    let cut = base.path().join("cut");
    copy_dir(&data, &cut);
    let k = key_of(&victim);
    remove_frames(&cut, |f| {
        (f.session == k && f.seq > anchored)
            || (f.session == JOURNAL_SESSION && f.seq > journal_anchored)
    });
    cut_ledger_to(&cut, size);
    let (code, v) = verify_json(&cut, &["--known-head", kh]);
    assert!(
        v["report"]["problems"]
            .as_array()
            .is_some_and(|p| p.is_empty()),
        "the cut past the anchor is undetectable by design: {v}"
    );
    assert_ne!(code, Some(1), "{v}");

    // One record more (the anchored one itself): the saved head pins it.
    let deeper = base.path().join("deeper");
    copy_dir(&data, &deeper);
    remove_frames(&deeper, |f| {
        (f.session == k && f.seq >= anchored)
            || (f.session == JOURNAL_SESSION && f.seq > journal_anchored)
    });
    cut_ledger_to(&deeper, size);
    let (code, v) = verify_json(&deeper, &["--known-head", kh]);
    assert_eq!(code, Some(1), "a cut into the anchored part is found: {v}");
}

/// Without any outside anchor, nothing is anchored and the text says so in one line.
#[test]
fn without_an_anchor_verify_says_nothing_is_anchored() {
    let base = tempfile::tempdir().expect("tempdir");
    let data = base.path().join("store");
    let ids = make_store(&data, 1, 5);
    let (code, v) = verify_json(&data, &[]);
    assert_eq!(code, Some(0), "{v}");
    let a = &v["anchoring"];
    assert_eq!(a["anchored_leaves"], 0);
    // Compact: one entry for the store, no per-chain list that would all say the same.
    assert_eq!(a["sessions"], serde_json::json!([]), "{a}");
    assert_eq!(a["journal"], serde_json::Value::Null, "{a}");
    let n = &a["nothing_anchored"];
    assert_eq!(n["sessions"], 1, "{a}");
    // (This store's journal holds no record: `make_store` journals nothing.)
    assert_eq!(n["journal"], false, "{a}");
    let records = v["report"]["records"].as_u64().expect("records");
    assert_eq!(
        n["records"].as_u64(),
        Some(records),
        "every record, none anchored: {v}"
    );
    assert!(!ids.is_empty());
    let (_, text) = verify_code(&data, &[]);
    assert!(text.contains("NOT ANCHORED outside the host"), "{text}");
}

/// A store holding only open sessions had nothing to cross-check once its ledger was deleted
/// or cut back to its header (it then read as a version-1 store): both are now `ledger`.
#[test]
fn a_deleted_or_emptied_ledger_is_a_finding_even_without_sealed_sessions() {
    let base = tempfile::tempdir().expect("tempdir");
    let data = base.path().join("store");
    make_store_open(&data, 1, 5, 1);
    let (code, v) = verify_json(&data, &[]);
    assert_ne!(code, Some(1), "intact: {v}");

    let deleted = base.path().join("deleted");
    copy_dir(&data, &deleted);
    std::fs::remove_file(ledger::ledger_path(&deleted)).expect("rm ledger");
    let emptied = base.path().join("emptied");
    copy_dir(&data, &emptied);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(ledger::ledger_path(&emptied))
        .expect("open ledger");
    f.set_len(16).expect("cut to the header");
    for d in [&deleted, &emptied] {
        let (code, v) = verify_json(d, &[]);
        assert_eq!(code, Some(1), "{v}");
        let kinds: Vec<&str> = v["report"]["problems"]
            .as_array()
            .expect("problems")
            .iter()
            .filter_map(|p| p["kind"].as_str())
            .collect();
        assert_eq!(kinds, ["ledger"], "{v}");
    }
}

/// The journal's ledger anchor follows the store checkpoints while only sessions are written:
/// before, a store checkpoint did not count toward the journal's own checkpoint, so with no
/// journal note the journal got no kind-6 leaf at all while sessions ran (34 s behind in a real
/// run, everything those store checkpoints alone signed cuttable unnoticed). And at idle
/// nothing is written: the journal's checkpoint does not start another store checkpoint.
#[test]
fn the_journal_anchor_keeps_up_while_only_sessions_are_written_and_rests_at_idle() {
    use bytes::Bytes;
    use proctor::clock::now_ns;
    use proctor_gate::{Event, OutputStream};
    use std::time::{Duration, Instant};

    let base = tempfile::tempdir().expect("tempdir");
    let data = base.path().join("store");
    let journal_leaves = |data: &Path| {
        ledger::scan_ledger(&ledger::ledger_path(data))
            .expect("scan")
            .entries
            .iter()
            .filter(|(_, e)| match e {
                Entry::Leaf { data, .. } => {
                    ledger::Leaf::decode(data).is_ok_and(|l| l.kind == ledger::LEAF_JOURNAL)
                }
                Entry::TreeHead(_) => false,
            })
            .count()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let opts = WriterOptions {
            checkpoint_every: Duration::from_millis(300),
            store_checkpoint_every: Duration::from_millis(50),
            ..Default::default()
        };
        let mut store = Store::open(&data, opts).expect("store opens");
        store.finish_recovery().await.expect("recovery");
        let key = *uuid::Uuid::now_v7().as_bytes();
        let rec = &store.recorder;
        rec.record(key, now_ns(), &session_start("a"))
            .await
            .expect("start");
        // Let recovery's own journal notes and their checkpoint settle first.
        tokio::time::sleep(Duration::from_millis(800)).await;
        let before = journal_leaves(&data);
        let t = Instant::now();
        let mut n = 0u64;
        while t.elapsed() < Duration::from_millis(2100) {
            rec.record(
                key,
                now_ns(),
                &Event::Output {
                    channel: 0,
                    stream: OutputStream::Stdout,
                    data: Bytes::from(format!("line {n}\n")),
                },
            )
            .await
            .expect("output");
            n += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let during = journal_leaves(&data) - before;
        // ~2.1 s of store checkpoints with a 300 ms journal cadence: several anchors (the old
        // code wrote none until the next journal note or shutdown).
        assert!(during >= 3, "journal anchors while sessions ran: {during}");
        // Idle: after the tail settles (the session's own checkpoint 300 ms after its last
        // record, the store checkpoint that lists it, the journal's checkpoint after that), no
        // more leaves. A checkpoint <-> store checkpoint loop would add one every ~350 ms and
        // never settle.
        let t = Instant::now();
        let mut last = journal_leaves(&data);
        let mut still_since = Instant::now();
        while still_since.elapsed() < Duration::from_millis(1200) {
            assert!(t.elapsed() < Duration::from_secs(20), "never idle: {last}");
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = journal_leaves(&data);
            if now != last {
                last = now;
                still_since = Instant::now();
            }
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(journal_leaves(&data), last, "the journal rests at idle");
        store.close();
    });
    let (code, v) = verify_json(&data, &[]);
    assert_eq!(code, Some(0), "{v}");
}
