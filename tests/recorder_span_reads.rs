//! Issue 15: a session's records are read a chunk at a time (so a reader that stops early, like
//! the text search, reads only what it needs), and what a reader sees is exactly what a scan of
//! the whole span sees: across chunk boundaries, with records larger than a chunk, with other
//! sessions' records interleaved, and over damage in the middle of a span.

use std::ops::ControlFlow;
use std::path::Path;

use proctor::clock::now_ns;
use proctor::recorder::frame::SessionKey;
use proctor::recorder::index::SessionMeta;
use proctor::recorder::reader;
use proctor::recorder::segment::{self, Scanned, Scanner};
use proctor::recorder::{Store, WriterOptions};
use proctor_gate::{Event, Outcome, Privilege, Protocol, SessionInfo};

fn start(agent: &str) -> Event {
    Event::SessionStart(SessionInfo {
        agent: agent.into(),
        target: "box".into(),
        protocol: Protocol::Ssh,
        login: "ops".into(),
        privilege: Privilege::Routine,
        client_addr: "127.0.0.1:5555".into(),
        grant: "g".into(),
        proctor_version: "test".into(),
    })
}

/// An exec of about `len` bytes of text that does not compress (if the recorder compresses).
fn exec(n: usize, len: usize) -> Event {
    let mut x = n as u64 ^ 0x9e37_79b9_7f4a_7c15;
    let noise: String = (0..len / 16 + 1)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            format!("{x:016x}")
        })
        .collect();
    Event::Exec {
        channel: 0,
        command: format!("run {n} {}", &noise[..len]),
    }
}

/// (seq, frame bytes) of `meta`'s records, as the chunked reader gives them.
fn chunked(data: &Path, meta: &SessionMeta) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    reader::for_each_record(data, meta, |r| {
        assert!(r.body.is_ok(), "record {} decodes", r.header.seq);
        out.push((r.header.seq, r.frame.to_vec()));
        ControlFlow::Continue(())
    })
    .expect("read");
    out
}

/// The same, by reading each span whole and scanning it (the reference).
fn whole(data: &Path, meta: &SessionMeta) -> Vec<(u64, Vec<u8>)> {
    let key: SessionKey = *uuid::Uuid::parse_str(&meta.id).expect("id").as_bytes();
    let mut out = Vec::new();
    for span in &meta.spans {
        let buf =
            segment::read_range(data, span.segment, span.start, Some(span.end)).expect("span");
        for item in Scanner::new(&buf, 0) {
            if let Scanned::Frame { record, frame, .. } = item
                && record.header.session == key
            {
                out.push((record.header.seq, frame.to_vec()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_reads_see_exactly_what_a_whole_span_scan_sees() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut store = Store::open(&data, WriterOptions::default()).expect("store opens");
    store.finish_recovery().await.expect("recovery");
    let rec = store.recorder.clone();

    // Two sessions recording side by side, so each span holds the other's records too; a few
    // records are larger than a read chunk (256 KiB).
    let a = *uuid::Uuid::now_v7().as_bytes();
    let b = *uuid::Uuid::now_v7().as_bytes();
    rec.record(a, now_ns(), &start("a")).await.expect("start a");
    rec.record(b, now_ns(), &start("b")).await.expect("start b");
    for i in 0..3000 {
        let big = if i % 700 == 5 { 700 * 1024 } else { 300 };
        rec.record(a, now_ns(), &exec(i, big)).await.expect("a");
        rec.record(b, now_ns(), &exec(i, 200 + i % 50))
            .await
            .expect("b");
    }
    rec.seal(a, now_ns(), Outcome::Completed, "done")
        .await
        .expect("seal a");
    rec.seal(b, now_ns(), Outcome::Completed, "done")
        .await
        .expect("seal b");
    store.flush_index();
    let meta = |k: &SessionKey| store.index().get(k).expect("index").expect("indexed");
    let (ma, mb) = (meta(&a), meta(&b));
    assert!(ma.spans.iter().map(|s| s.end - s.start).sum::<u64>() > 4 * 1024 * 1024);
    let largest = chunked(&data, &ma).iter().map(|(_, f)| f.len()).max();
    assert!(
        largest > Some(256 * 1024),
        "some records are larger than a chunk: {largest:?}"
    );

    for m in [&ma, &mb] {
        let got = chunked(&data, m);
        assert_eq!(got.len() as u64, m.events, "every record of {}", m.id);
        assert!(
            got.windows(2).all(|w| w[1].0 == w[0].0 + 1),
            "in order, none twice"
        );
        assert!(
            got == whole(&data, m),
            "the same frames as a whole-span scan"
        );
    }

    // A reader that stops early stops at once.
    let mut seen = 0;
    reader::for_each_record(&data, &ma, |_| {
        seen += 1;
        if seen == 5 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .expect("read");
    assert_eq!(seen, 5);
    store.close();

    // Damage in the middle of a span (one byte of a record of `b`, inside `a`'s span): the
    // chunked reader goes on past it exactly as a whole-span scan does.
    let span = ma.spans[0];
    let at = {
        let buf =
            segment::read_range(&data, span.segment, span.start, Some(span.end)).expect("span");
        let mut found = None;
        let mut n = 0;
        for item in Scanner::new(&buf, 0) {
            if let Scanned::Frame { offset, record, .. } = item
                && record.header.session == b
            {
                n += 1;
                if n == 1500 {
                    found = Some(span.start + offset + 40);
                    break;
                }
            }
        }
        found.expect("a record of b in the middle of a's span")
    };
    let path = segment::segment_path(&data, span.segment);
    let mut bytes = std::fs::read(&path).expect("segment");
    bytes[at as usize] ^= 0xff;
    std::fs::write(&path, &bytes).expect("damaged");
    for m in [&ma, &mb] {
        assert!(
            chunked(&data, m) == whole(&data, m),
            "damage is read past identically"
        );
    }
    assert_eq!(
        chunked(&data, &ma).len() as u64,
        ma.events,
        "a lost nothing"
    );
    assert_eq!(
        chunked(&data, &mb).len() as u64,
        mb.events - 1,
        "b lost the damaged record"
    );
}
