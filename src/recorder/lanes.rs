//! Large records commit on their own, after the small ones queued with them.
//!
//! Most large bodies no longer reach the writer at all: a session writes a body of 1 MiB or
//! more to a blob of its own and queues only a small record naming it (`blobs`). What still
//! arrives here large is the few kinds kept in the segment (metadata is derived from them, e.g.
//! a session_start or a verdict of megabytes), and this keeps them from holding up the rest.
//!
//! The writer acknowledges a batch with one fdatasync, so a record waits for everything written
//! in its batch. A record of megabytes (a statement of 16 MiB, a big bound parameter) costs its
//! write and fdatasync hundreds of milliseconds on a busy disk; in the same batch as other
//! sessions' small records it made every one of them wait that long, and with several such
//! records queued, several times over (issue 18: one agent cannot wear the bastion down).
//!
//! So the writer sets large commands aside as they arrive and commits each in a batch of its
//! own, after the batch of small records that came with it. A small record then waits for at
//! most the one large commit under way. Order within a session is kept: once a session has a
//! command set aside, its later commands are set aside behind it; commands that speak for
//! everything queued before them (barrier, rotate, ledger, shutdown) are set aside too while
//! anything is. Nothing in the file changes: each record is still one frame appended in the
//! order its chain was extended (FORMAT.md).

use std::collections::VecDeque;

use super::frame::SessionKey;
use super::writer::Command;

/// Bytes of record bodies from which a command is committed in a batch of its own.
pub const LARGE_RECORD_BYTES: usize = 1 << 20;

impl Command {
    /// Bytes of record bodies the command carries.
    fn body_bytes(&self) -> usize {
        match self {
            Command::Append { body, .. } => body.len(),
            Command::AppendMany { records, .. } => records.iter().map(|(_, _, b)| b.len()).sum(),
            Command::Seal { end_body, .. } => end_body.len(),
            _ => 0,
        }
    }

    /// The session whose chain the command extends, if it extends one.
    fn session(&self) -> Option<SessionKey> {
        match self {
            Command::Append { session, .. }
            | Command::AppendMany { session, .. }
            | Command::Seal { session, .. } => Some(*session),
            _ => None,
        }
    }
}

/// Commands set aside to be committed after the small records received with them.
#[derive(Default)]
pub struct Deferred {
    queue: VecDeque<Command>,
}

impl Deferred {
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Sets `cmd` aside if it must wait (it is large, or something it must follow is set
    /// aside); otherwise gives it back to be handled now.
    pub fn offer(&mut self, cmd: Command) -> Option<Command> {
        let wait = match (&cmd, cmd.session()) {
            (Command::Nudge, _) => false,
            (_, Some(session)) => {
                cmd.body_bytes() >= LARGE_RECORD_BYTES
                    || self.queue.iter().any(|c| c.session() == Some(session))
            }
            // A barrier, rotation, ledger request or shutdown speaks for everything queued
            // before it, so it waits behind whatever is set aside.
            (_, None) => !self.queue.is_empty(),
        };
        if wait {
            self.queue.push_back(cmd);
            None
        } else {
            Some(cmd)
        }
    }

    /// The commands for the next large batch: those set aside up to and including the first
    /// large one (the ones before it are barriers and the like, in arrival order).
    pub fn next_batch(&mut self) -> Vec<Command> {
        let mut out = Vec::new();
        while let Some(cmd) = self.queue.pop_front() {
            let large = cmd.body_bytes() >= LARGE_RECORD_BYTES;
            out.push(cmd);
            if large {
                break;
            }
        }
        out
    }

    /// Everything set aside, in order (when the writer stops).
    pub fn take_all(&mut self) -> Vec<Command> {
        self.queue.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use proctor_gate::{Event, Outcome, OutputStream};

    use super::super::codec::Body;
    use super::super::tests::start;
    use super::super::{Store, Urgency, WriterOptions, reader, verify};

    fn output(session: usize, n: u32, large: bool) -> Event {
        let mut text = format!("{session}:{n}\n");
        if large {
            text.push_str(&"x".repeat(super::LARGE_RECORD_BYTES + 1));
        }
        Event::Output {
            channel: 0,
            stream: OutputStream::Stdout,
            data: Bytes::from(text),
        }
    }

    /// Sessions mixing large records (set aside, committed alone) with small urgent and lazy
    /// ones, barriers and seals: every session's records are in the store in the order it
    /// sent them, nothing is lost, and the store verifies.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_records_set_aside_keep_each_sessions_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), WriterOptions::default()).expect("store");
        let per_session = 40u32;
        let mut tasks = Vec::new();
        let mut keys = Vec::new();
        for i in 0..6usize {
            let rec = store.recorder.clone();
            let key = *uuid::Uuid::now_v7().as_bytes();
            keys.push(key);
            tasks.push(tokio::spawn(async move {
                rec.record(key, crate::clock::now_ns(), &start(i))
                    .await
                    .expect("start");
                let mut lazy = Vec::new();
                for n in 0..per_session {
                    // Sessions 0-2 send a large record every fifth; 3-5 only small ones.
                    let large = i < 3 && n % 5 == 0;
                    let urgency = if n % 2 == 0 {
                        Urgency::Now
                    } else {
                        Urgency::Lazy
                    };
                    let ticket = rec
                        .append(key, crate::clock::now_ns(), &output(i, n, large), urgency)
                        .await
                        .expect("queued");
                    if urgency == Urgency::Now {
                        ticket.wait().await.expect("durable");
                    } else {
                        lazy.push(ticket);
                    }
                    if n % 13 == 0 {
                        rec.barrier().await.expect("barrier");
                    }
                }
                // The seal follows the lazy records still queued, set aside or not.
                rec.seal(key, crate::clock::now_ns(), Outcome::Completed, "done")
                    .await
                    .expect("sealed");
                for t in lazy {
                    t.wait().await.expect("lazy durable");
                }
            }));
        }
        let all = async {
            for t in tasks {
                t.await.expect("session task");
            }
        };
        tokio::time::timeout(Duration::from_secs(120), all)
            .await
            .expect("no session stalls");
        store.flush_index();
        for (i, key) in keys.iter().enumerate() {
            let meta = store.index().get(key).expect("index").expect("session");
            let seen: Vec<String> = reader::read_all(dir.path(), &meta)
                .expect("read")
                .into_iter()
                .filter_map(|(_, _, body)| match body {
                    Ok(Body::Event(Event::Output { data, .. })) => {
                        let text = String::from_utf8_lossy(&data).into_owned();
                        text.lines().next().map(str::to_string)
                    }
                    _ => None,
                })
                .collect();
            let sent: Vec<String> = (0..per_session).map(|n| format!("{i}:{n}")).collect();
            assert_eq!(seen, sent, "session {i} out of order");
        }
        store.shutdown().await;
        let report = verify::verify_store(
            dir.path(),
            &verify::VerifyOptions {
                key: store.key.verifying_key(),
                session: None,
                live: false,
            },
        )
        .expect("verify runs");
        assert!(report.ok(), "store does not verify: {:?}", report.problems);
        assert_eq!(report.sealed, 6);
    }
}
