//! `proctor bench-recorder`: durable events per second through the real recorder, with many
//! sessions writing at once (each waits for its own event to be durable, as protocols do).
//! Also the load generator of the crash and disk-full tests (`--print-acks`).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Result;
use bytes::Bytes;
use proctor_gate::{Event, Outcome, OutputStream, Privilege, Protocol, SessionInfo};
use serde_json::json;

use crate::clock::now_ns;
use crate::recorder::{Store, WriterOptions};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[arg(long)]
    pub data: PathBuf,
    /// Concurrent sessions.
    #[arg(long, default_value_t = 8)]
    pub sessions: usize,
    /// Events per session.
    #[arg(long, default_value_t = 10_000)]
    pub events: u64,
    /// Payload bytes per event.
    #[arg(long, default_value_t = 200)]
    pub size: usize,
    /// Print `ack SESSION SEQ` to stdout after each durable event (for crash tests).
    #[arg(long)]
    pub print_acks: bool,
    /// Leave sessions open at the end (no seal), as a crash would.
    #[arg(long)]
    pub no_seal: bool,
}

pub async fn run(args: BenchArgs) -> Result<i32> {
    // A file-size limit (the disk-full test) must surface as a write error, not kill us.
    // SAFETY: setting a signal disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let mut store = Store::open(&args.data, WriterOptions::default())?;
    store.finish_recovery().await?;
    let store = Arc::new(store);
    let payload = Bytes::from(vec![b'x'; args.size]);
    let total = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let stdout = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let mut tasks = Vec::new();
    for i in 0..args.sessions {
        let rec = store.recorder.clone();
        let payload = payload.clone();
        let total = total.clone();
        let stdout = stdout.clone();
        let (events, print, no_seal) = (args.events, args.print_acks, args.no_seal);
        tasks.push(tokio::spawn(async move {
            let id = uuid::Uuid::now_v7();
            let key = *id.as_bytes();
            let start = Event::SessionStart(SessionInfo {
                agent: format!("bench-{i}"),
                target: "bench".into(),
                protocol: Protocol::Ssh,
                login: "bench".into(),
                privilege: Privilege::Elevated,
                client_addr: "127.0.0.1:1".into(),
                grant: "bench".into(),
                proctor_version: env!("CARGO_PKG_VERSION").into(),
            });
            rec.record(key, now_ns(), &start).await?;
            for seq in 1..=events {
                let ev = Event::Output {
                    channel: 0,
                    stream: OutputStream::Stdout,
                    data: payload.clone(),
                };
                rec.record(key, now_ns(), &ev).await?;
                total.fetch_add(1, Ordering::Relaxed);
                if print && let Ok(mut out) = stdout.lock() {
                    let _ = writeln!(out, "ack {id} {seq}");
                    let _ = out.flush();
                }
            }
            if !no_seal {
                rec.seal(key, now_ns(), Outcome::Completed, "bench done")
                    .await?;
            }
            Ok::<(), crate::recorder::RecorderError>(())
        }));
    }
    let mut failure = None;
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = Some(e.to_string()),
            Err(e) => failure = Some(e.to_string()),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let n = total.load(Ordering::Relaxed);
    let result = json!({
        "sessions": args.sessions,
        "events": n,
        "event_bytes": args.size,
        "seconds": secs,
        "events_per_second": n as f64 / secs,
        "failure": failure,
    });
    eprintln!("{result}");
    if let Some(f) = failure {
        eprintln!("proctor: recording failed: {f}");
        return Ok(3);
    }
    if let Ok(store) = Arc::try_unwrap(store) {
        store.close();
    }
    Ok(0)
}
