//! Retention: archive round trip (archive, verify the archive, online copy dropped, the store
//! still accounts for the session), early purge refused and recorded, legal hold honoured.

use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use proctor::clock::now_ns;
use proctor::recorder::frame::SessionKey;
use proctor::recorder::segment::{self, Scanned, Scanner};
use proctor::recorder::{Store, WriterOptions};
use proctor::retention;
use proctor_gate::{Event, Outcome, OutputStream, Privilege, Protocol, SessionInfo};

const DAY: i64 = 86_400_000_000_000;

async fn session(
    store: &Store,
    agent: &str,
    online_days: i64,
    total_days: i64,
) -> (String, SessionKey) {
    let id = uuid::Uuid::now_v7();
    let key = *id.as_bytes();
    let r = &store.recorder;
    r.record(
        key,
        now_ns(),
        &Event::SessionStart(SessionInfo {
            agent: agent.into(),
            target: "db".into(),
            protocol: Protocol::Ssh,
            login: "root".into(),
            privilege: Privilege::Elevated,
            client_addr: "127.0.0.1:1".into(),
            grant: "g".into(),
            proctor_version: "test".into(),
        }),
    )
    .await
    .expect("start");
    for i in 0..10 {
        r.record(
            key,
            now_ns(),
            &Event::Output {
                channel: 0,
                stream: OutputStream::Stdout,
                // The first is over 1 MiB: stored out of line (FORMAT.md, "External bodies"),
                // so archives carry a blob and retention must remove it.
                data: Bytes::from(if i == 0 {
                    format!("{agent} output {i}\n{}", "x".repeat(1 << 20))
                } else {
                    format!("{agent} output {i}\n")
                }),
            },
        )
        .await
        .expect("output");
    }
    let now = now_ns();
    r.record(
        key,
        now,
        &Event::Retention {
            online_until_ns: now + online_days * DAY,
            retain_until_ns: now + total_days * DAY,
            policy: "test".into(),
        },
    )
    .await
    .expect("retention");
    r.seal(key, now_ns(), Outcome::Completed, "done")
        .await
        .expect("seal");
    (id.to_string(), key)
}

fn frames_of(data: &Path, key: &SessionKey) -> usize {
    let mut n = 0;
    for s in segment::list_segments(data).expect("segments") {
        let buf = std::fs::read(segment::segment_path(data, s)).expect("read");
        for item in Scanner::new(&buf, segment::SEGMENT_HEADER_LEN as usize) {
            if let Scanned::Frame { record, .. } = item
                && record.header.session == *key
            {
                n += 1;
            }
        }
    }
    n
}

fn proctor(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_proctor"))
        .args(args)
        .output()
        .expect("proctor runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_purge_and_legal_hold() {
    let base = tempfile::tempdir().expect("tempdir");
    let data = base.path().join("store");
    let archive_dir = base.path().join("archive");
    let mut store = Store::open(&data, WriterOptions::default()).expect("open");
    store.finish_recovery().await.expect("recover");
    // Past its online period, still within total retention: archivable, not purgeable.
    let (old_id, old_key) = session(&store, "old", -1, 30).await;
    // Still online.
    let (fresh_id, fresh_key) = session(&store, "fresh", 30, 60).await;
    // Fully expired, but under legal hold.
    let (held_id, held_key) = session(&store, "held", -10, -1).await;
    // Fully expired.
    let (gone_id, gone_key) = session(&store, "gone", -10, -1).await;
    let days = std::time::Duration::from_secs(86_400);

    retention::legal_hold(&store, &held_id, "litigation 2026-17", false, "counsel")
        .await
        .expect("hold");
    assert!(
        store
            .index()
            .get(&held_key)
            .expect("index")
            .expect("meta")
            .legal_hold
            .is_some()
    );

    let report = retention::archive(&store, None, &archive_dir, 365 * days)
        .await
        .expect("archive");
    assert!(report.archived.contains(&old_id), "{report:?}");
    assert!(
        !report.archived.contains(&fresh_id),
        "a session still online is not archived"
    );
    assert!(report.manifest.is_some());
    assert_eq!(frames_of(&data, &old_key), 0, "the online copy is dropped");
    assert!(frames_of(&data, &fresh_key) > 0);

    // Early purge of a session within its retention: refused and recorded.
    let early = retention::purge(&store, Some(&fresh_id), 5 * 365 * days, "mallory")
        .await
        .expect("purge call");
    assert!(early.purged.is_empty());
    assert!(early.refused[0].1.contains("retained until"), "{early:?}");
    let held = retention::purge(&store, Some(&held_id), 5 * 365 * days, "mallory")
        .await
        .expect("purge call");
    assert!(held.refused[0].1.contains("legal hold"), "{held:?}");
    // Purge of everything expired: only `gone` goes (`held` is on hold).
    let purge = retention::purge(&store, None, 5 * 365 * days, "records-officer")
        .await
        .expect("purge");
    assert_eq!(purge.purged, vec![gone_id.clone()]);
    assert_eq!(frames_of(&data, &gone_key), 0);
    // Their bodies stored out of line went with their records; others' stayed.
    let blobs = |k: &SessionKey| proctor::recorder::blobs::session_dir(&data, k).exists();
    assert!(
        !blobs(&old_key) && !blobs(&gone_key),
        "archived and purged blobs removed"
    );
    assert!(blobs(&fresh_key), "a session still online keeps its blob");
    // `held` was archived too (its online period ended), but its ledger entry says archived,
    // never purged.
    assert!(report.archived.contains(&held_id));
    assert!(!purge.purged.contains(&held_id));
    store.close();

    let d = data.to_str().expect("utf8");
    let (ok, text) = proctor(&["verify", "--data", d]);
    assert!(
        ok,
        "the store still verifies and accounts for archived and purged sessions:\n{text}"
    );
    assert!(
        text.contains(&format!("session {old_id} was archived")),
        "{text}"
    );
    assert!(
        text.contains(&format!("session {gone_id} was purged")),
        "{text}"
    );
    let pubkey = proctor::recorder::signing::public_key_path(&data);
    let (ok, text) = proctor(&[
        "verify",
        "--archive",
        archive_dir.to_str().expect("utf8"),
        "--pubkey",
        pubkey.to_str().expect("utf8"),
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("OK: 3 sessions"), "{text}");
    // A damaged archive is caught.
    let bundle = archive_dir.join(format!("{old_id}.bundle.gz"));
    let mut b = std::fs::read(&bundle).expect("read");
    let n = b.len();
    b[n / 2] ^= 0x40;
    std::fs::write(&bundle, b).expect("write");
    let (ok, text) = proctor(&["verify", "--archive", archive_dir.to_str().expect("utf8")]);
    assert!(!ok, "{text}");
    assert!(text.contains(&old_id), "{text}");

    // The refusals were recorded in the store's journal.
    let mut found = 0;
    for s in segment::list_segments(&data).expect("segments") {
        let buf = std::fs::read(segment::segment_path(&data, s)).expect("read");
        for item in Scanner::new(&buf, segment::SEGMENT_HEADER_LEN as usize) {
            if let Scanned::Frame { record, .. } = item
                && let Ok(proctor::recorder::codec::Body::JournalNote { topic, .. }) =
                    proctor::recorder::codec::decode_body(record.header.kind, record.body)
                && (topic == "purge_refused" || topic == "legal_hold")
            {
                found += 1;
            }
        }
    }
    assert_eq!(
        found, 3,
        "two refused purges and one legal hold are in the journal"
    );
}
