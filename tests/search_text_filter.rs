//! Issue 15: the text search keeps a trigram filter of each sealed session it has read to the
//! end and skips, from then on, the sessions that cannot match. The answers stay exactly those
//! of reading every session; only the reading goes.

use std::collections::BTreeSet;

use proctor::api::sessions::search_text;
use proctor::clock::now_ns;
use proctor::ops::{self, Filter};
use proctor::recorder::{Store, WriterOptions};
use proctor_gate::{Event, Outcome, Privilege, Protocol, SessionInfo};

fn start(i: usize) -> Event {
    Event::SessionStart(SessionInfo {
        agent: format!("agent-{i}"),
        target: "box".into(),
        protocol: Protocol::Ssh,
        login: "ops".into(),
        privilege: Privilege::Routine,
        client_addr: "127.0.0.1:5555".into(),
        grant: "g".into(),
        proctor_version: "test".into(),
    })
}

fn exec(text: String) -> Event {
    Event::Exec {
        channel: 0,
        command: text,
    }
}

/// (matching session ids, sessions read).
fn search(store: &Store, data: &std::path::Path, needle: &str) -> (BTreeSet<String>, usize) {
    store.flush_index();
    let index = store.index();
    let candidates = ops::list_sessions(index, &Filter::default()).expect("list");
    let s = search_text(index, data, candidates, needle, 500);
    assert_eq!(s.unread, 0);
    let ids = s.found.iter().map(|hit| hit.session.id.clone()).collect();
    (ids, s.scanned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_searches_answer_exactly_as_full_reads_and_read_only_what_may_match() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut store = Store::open(&data, WriterOptions::default()).expect("store opens");
    store.finish_recovery().await.expect("recovery");
    let rec = store.recorder.clone();

    // 30 sealed sessions, each with its own word (`Backup-Job-<i>` in mixed case), and one
    // left open that mentions every word.
    let mut ids = Vec::new();
    for i in 0..30 {
        let key = *uuid::Uuid::now_v7().as_bytes();
        rec.record(key, now_ns(), &start(i)).await.expect("start");
        for n in 0..20 {
            rec.record(key, now_ns(), &exec(format!("ls /srv/{n}")))
                .await
                .expect("exec");
        }
        rec.record(
            key,
            now_ns(),
            &exec(format!("tar czf Backup-Job-{i}.tgz /var")),
        )
        .await
        .expect("exec");
        rec.seal(key, now_ns(), Outcome::Completed, "done")
            .await
            .expect("seal");
        ids.push(uuid::Uuid::from_bytes(key).to_string());
    }
    let open = *uuid::Uuid::now_v7().as_bytes();
    rec.record(open, now_ns(), &start(99)).await.expect("start");
    let all: String = (0..30).map(|i| format!("backup-job-{i}x ")).collect();
    rec.record(open, now_ns(), &exec(all)).await.expect("exec");
    let open = uuid::Uuid::from_bytes(open).to_string();

    // First pass: nothing filtered yet, every session is read (and gets its filter).
    let (found, read) = search(&store, &data, "never-recorded-text");
    assert!(found.is_empty());
    assert_eq!(read, 31);
    // Now only the open session (never filtered) is read for text no sealed session has.
    let (found, read) = search(&store, &data, "never-recorded-text");
    assert!(found.is_empty());
    assert_eq!(read, 1, "sealed sessions that cannot match are not read");

    // Matches are the same as before any filter existed, case-insensitively.
    for i in [0, 7, 29] {
        let (found, read) = search(&store, &data, &format!("BACKUP-job-{i}.TGZ"));
        let want: BTreeSet<String> = [ids[i].clone()].into();
        assert_eq!(found, want);
        assert!(read <= 3, "read {read} sessions for one that matches");
        let (found, _) = search(&store, &data, &format!("backup-job-{i}x"));
        assert_eq!(found, [open.clone()].into());
    }
    let (found, _) = search(&store, &data, "backup-job-");
    assert_eq!(found.len(), 31, "every session has it");
    let (found, _) = search(&store, &data, "/srv/1");
    assert_eq!(found.len(), 30);
    // Shorter than a trigram: the filter cannot tell, every sealed session is read.
    let (found, read) = search(&store, &data, "zq");
    assert!(found.is_empty());
    assert_eq!(read, 31);
    store.close();
}
