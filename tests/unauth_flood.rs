//! Unauthenticated peers cost nothing lasting (issue 18, items 6 and 12), against a real
//! proctor in front of a real PostgreSQL, with real clients on loopback source addresses
//! (127.0.0.x): refused logins become counts in a summary record of the store journal instead
//! of one sealed session each, a source past its refusal rate is closed at accept, idle
//! connections still logging in are bounded per source and timed out, and the HTTP API cuts
//! slow headers and bounds connections per source. Meanwhile a real agent still gets in.

mod api_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use api_support::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().expect("socket");
    // The port is chosen at connect, not at bind: a bind to port 0 searches the kernel's bind
    // table under a lock, which with thousands of sockets in TIME_WAIT was most of the flood's
    // CPU time (perf: inet_bhash2_conflict), spent in this client, not in proctor.
    bind_address_no_port(&s);
    s.bind(format!("{source}:0").parse().expect("source"))
        .expect("bind the source address");
    s.connect(to).await.expect("connect")
}

fn bind_address_no_port(s: &TcpSocket) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a c_int option value of the right size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "IP_BIND_ADDRESS_NO_PORT");
}

/// Whether the peer closes the connection within `within` (EOF or reset), without sending.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// A failed SCRAM login from `source` (real tokio-postgres client over our own socket).
async fn failed_login(to: SocketAddr, source: &str, user: &str, password: &str) {
    let stream = connect_from(source, to).await;
    let mut cfg = tokio_postgres::Config::new();
    cfg.user(user).password(password).dbname("appdb");
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        cfg.connect_raw(stream, tokio_postgres::NoTls),
    )
    .await
    .expect("a refused login ends quickly");
    assert!(r.is_err(), "{user} with a wrong secret must be refused");
}

/// The agent's round trip through proctor, from connect to the answer of `SELECT 1`.
async fn agent_round_trip(p: &Proctor) -> Duration {
    let t = Instant::now();
    let client = tokio::time::timeout(Duration::from_secs(5), p.connect(AGENT_A, SECRET_A))
        .await
        .expect("the agent logs in within 5 s");
    client.simple_query("SELECT 1").await.expect("SELECT 1");
    t.elapsed()
}

fn sessions(p: &Proctor) -> Vec<proctor::recorder::index::SessionMeta> {
    p.core().store.flush_index();
    let index = p.core().store.index();
    proctor::ops::list_sessions(index, &Default::default()).expect("sessions")
}

/// The `unauthenticated` summaries in the journal of a stopped proctor's store.
fn summaries(data: &std::path::Path) -> Vec<Value> {
    let _lock = proctor::recorder::lock_data_dir(data).expect("lock");
    let (index, _) = proctor::recorder::recover::index_for_reading(data).expect("index");
    let journal = proctor::ops::find_session(&index, JOURNAL).expect("journal");
    proctor::ops::events(data, &journal, 0, 1_000_000)
        .expect("journal records")
        .into_iter()
        .filter(|r| r["topic"] == "unauthenticated")
        .map(|r| serde_json::from_str(r["text"].as_str().expect("text")).expect("summary json"))
        .collect()
}

fn count(summary: &[Value], source: &str, kind: &str) -> u64 {
    summary
        .iter()
        .flat_map(|s| s["sources"].as_array().cloned().unwrap_or_default())
        .filter(|s| s["source"] == source)
        .map(|s| s["counts"][kind].as_u64().unwrap_or(0))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_logins_become_a_bounded_summary_not_sessions() {
    let mut p = Proctor::start("").await;
    let data = p.dir.path().join("data");
    // Another agent works throughout: its round trips are measured during the flood.
    let agent = p.connect(AGENT_B, SECRET_B).await;
    let before = sessions(&p).len();
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let probe = tokio::spawn(async move {
        let mut rtts = Vec::new();
        while !*stop_rx.borrow_and_update() {
            let t = Instant::now();
            agent
                .simple_query("SELECT 1")
                .await
                .expect("SELECT 1 during the flood");
            rtts.push(t.elapsed());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        rtts
    });
    let t0 = Instant::now();
    // The flood comes from outside proctor's runtime (its own thread and runtime, as a real
    // attacker is another process): its client work must not count as proctor's latency.
    let to = p.pg_addr;
    let flooder = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            // Rounds for at least 3 s, so the other agent's round trips are measured under load.
            let mut rounds = 0u64;
            while rounds == 0 || t0.elapsed() < Duration::from_secs(3) {
                rounds += 1;
                // Bare connects: nothing is said, nothing is recorded.
                for _ in 0..100 {
                    drop(connect_from("127.0.0.2", to).await);
                }
                // Failed SCRAM logins: a known agent with a wrong secret, and an unknown agent.
                for _ in 0..40 {
                    failed_login(to, "127.0.0.3", AGENT_A, "wrong secret").await;
                    failed_login(to, "127.0.0.4", "nobody\x1b]52;c;cm0gLXJmIH4=\x07", "x").await;
                }
                // Startup packets that are not PostgreSQL.
                for _ in 0..40 {
                    let mut s = connect_from("127.0.0.5", to).await;
                    let _ = s.write_all(b"\0\0\0\x10GET / HTTP/1.1\r\n").await;
                    assert!(closed_within(&mut s, Duration::from_secs(5)).await);
                }
            }
            rounds
        })
    });
    let rounds = tokio::task::spawn_blocking(move || flooder.join().expect("the flood runs"))
        .await
        .expect("join");
    let flood = t0.elapsed();
    let _ = stop_tx.send(true);
    let mut rtts = probe.await.expect("probe");
    rtts.sort();
    let p99 = rtts[(rtts.len() * 99 / 100).min(rtts.len() - 1)];
    let rtt = agent_round_trip(&p).await;
    eprintln!(
        "flood of {rounds} rounds of 100 connects + 120 refused logins took {flood:?}; another agent's SELECT 1 during it: {} round trips, p99 {p99:?}, max {:?}; a new login after it {rtt:?}",
        rtts.len(),
        rtts.last()
    );
    // Generous for a shared 2-core machine; the figure is printed above.
    assert!(p99 < Duration::from_millis(250), "{p99:?}");

    // No session for any of it: only the agents' own.
    let after = sessions(&p);
    assert_eq!(after.len(), before + 1, "{after:?}");
    assert!(
        after
            .iter()
            .all(|s| s.agent == AGENT_A || s.agent == AGENT_B),
        "{after:?}"
    );
    // The store outlives the stop (which writes the last summary), the directory this test.
    let kept = std::mem::replace(&mut p.dir, tempfile::tempdir().expect("tempdir"));
    p.stop().await;

    let s = summaries(&data);
    drop(kept);
    assert!(!s.is_empty() && s.len() <= 2, "{s:?}");
    let allowance = 20 + flood.as_secs() / 3 + 2;
    for (source, kind) in [
        ("127.0.0.3", "bad_credential"),
        ("127.0.0.4", "unknown_agent"),
        ("127.0.0.5", "protocol_violation"),
    ] {
        let refused = count(&s, source, kind);
        let dropped = count(&s, source, "dropped: too many refusals from the source");
        assert!(
            refused >= 20 && refused <= allowance,
            "{source}: {refused} {s:?}"
        );
        assert_eq!(
            refused + dropped,
            40 * rounds,
            "{source}: every attempt counted once {s:?}"
        );
    }
    assert_eq!(count(&s, "127.0.0.2", "protocol_violation"), 0);
    // Bounded, and inert: the escape in the user name is a token, never the byte.
    let text = serde_json::to_string(&s).expect("json");
    assert!(text.len() < 16 * 1024, "{} bytes", text.len());
    assert!(text.contains("\\\\x1b]52"), "{text}");
    assert!(!text.contains("\\u001b"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_startups_are_bounded_per_source_and_timed_out_while_an_agent_logs_in() {
    let p = Proctor::start("").await;
    let mut idle = Vec::new();
    let mut waiting = Vec::new();
    for i in 10..30 {
        let source = format!("127.0.0.{i}");
        for n in 0..18 {
            let s = connect_from(&source, p.pg_addr).await;
            // Past 16 startups of a source, a connection waits in a bounded line for a slot.
            if n >= 16 {
                waiting.push((source.clone(), n, s));
            } else {
                idle.push(s);
            }
        }
    }
    // Nobody gives a slot back: after half the handshake timeout each waiter is answered with
    // an error a client can show (as PostgreSQL answers "too many clients") and closed.
    let t = Instant::now();
    let mut dropped = 0;
    for (source, n, s) in waiting.iter_mut() {
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "{source} #{n} still open");
        let text = format!("{read:?} {}", String::from_utf8_lossy(&answer));
        assert!(
            answer.first() == Some(&b'E')
                && text.contains("53300")
                && text.contains("too many connections waiting to log in"),
            "{source} #{n}: {text:?}"
        );
        dropped += 1;
    }
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!((idle.len(), dropped), (320, 40));
    let rtt = agent_round_trip(&p).await;
    eprintln!("agent round trip beside 320 idle startups: {rtt:?}");
    assert!(rtt < Duration::from_secs(3), "{rtt:?}");
    // The handshake timeout (10 s) closes every idle startup.
    let t = Instant::now();
    for s in idle.iter_mut() {
        assert!(closed_within(s, Duration::from_secs(15)).await);
    }
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_past_the_startup_slots_wait_for_one_instead_of_failing() {
    let p = Proctor::start("").await;
    // Every startup slot of 127.0.0.1 is held by a stranger that says nothing.
    let mut idle = Vec::new();
    for _ in 0..16 {
        idle.push(connect_from("127.0.0.1", p.pg_addr).await);
    }
    // A pool warming up from the same address: its logins wait in line...
    let conninfo = p.conninfo(AGENT_A, SECRET_A);
    let logins: Vec<_> = (0..6)
        .map(|_| {
            let conninfo = conninfo.clone();
            tokio::spawn(async move {
                let (c, conn) = tokio::time::timeout(
                    Duration::from_secs(8),
                    tokio_postgres::connect(&conninfo, tokio_postgres::NoTls),
                )
                .await
                .expect("logged in within 8 s")?;
                tokio::spawn(conn);
                c.simple_query("SELECT 1").await.map(|_| ())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(800)).await;
    // ...and get the slots as the strangers go away.
    drop(idle);
    for l in logins {
        l.await
            .expect("join")
            .expect("SELECT 1 after waiting for a startup slot");
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_http_headers_are_cut_and_connections_are_bounded_per_source() {
    let p = Proctor::start("").await;
    // Headers trickled one line a second never finish: cut within the 10 s header timeout.
    let mut slow = connect_from("127.0.0.40", p.api).await;
    slow.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let t = Instant::now();
    let cut = loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if slow.write_all(b"X-Slow: yes\r\n").await.is_err() {
            break t.elapsed();
        }
        let mut b = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(10), slow.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break t.elapsed(),
            _ => {}
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "slow headers still open"
        );
    };
    eprintln!("slow headers cut after {cut:?}");
    assert!(
        cut >= Duration::from_secs(8) && cut < Duration::from_secs(15),
        "{cut:?}"
    );

    // A slow body is cut too: the request gets an error, not an open connection.
    let mut body = connect_from("127.0.0.41", p.api).await;
    let token = p.token(OPERATOR).to_string();
    body.write_all(
        format!(
            "POST /api/sessions/0000/kill HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"reason\""
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let t = Instant::now();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        let mut b = [0u8; 1024];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            match body.read(&mut b).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&b[..n]),
            }
        }
    })
    .await;
    eprintln!("slow body answered after {:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 4"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // One source holds at most 32 connections; the rest are closed at accept.
    let mut held = Vec::new();
    let mut closed = 0;
    for _ in 0..40 {
        let mut s = connect_from("127.0.0.42", p.api).await;
        if closed_within(&mut s, Duration::from_millis(150)).await {
            closed += 1;
        } else {
            held.push(s);
        }
    }
    assert_eq!((held.len(), closed), (32, 8));
    // Others are served meanwhile.
    let health = p.get(AUDITOR, "/api/health").await;
    assert_eq!(health["ok"], true, "{health}");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ambiguous_prefix_is_refused_listing_the_candidates() {
    let p = Proctor::start("").await;
    let a = p.connect(AGENT_A, SECRET_A).await;
    let b = p.connect(AGENT_B, SECRET_B).await;
    let mut live: Vec<String> = Vec::new();
    for agent in [AGENT_A, AGENT_B] {
        live.extend(p.live_of(agent).await);
    }
    assert_eq!(live.len(), 2, "{live:?}");
    // UUIDv7: sessions opened in the same minute share at least their first 8 characters.
    let common: String = live[0]
        .chars()
        .zip(live[1].chars())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x)
        .collect();
    assert!(common.len() >= 4, "{live:?}");
    let data = p.dir.path().join("data");
    let cli = |args: &[&str]| {
        let data = data.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_proctor"))
                .args(&args)
                .arg("--data")
                .arg(&data)
                .output()
                .await
                .expect("proctor CLI")
        }
    };
    for args in [
        vec!["kill", common.as_str(), "--reason", "test"],
        vec!["sessions", "show", common.as_str()],
        vec!["export", common.as_str(), "--format", "jsonl"],
    ] {
        let out = cli(&args).await;
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "{args:?} must fail: {err}");
        assert!(
            err.contains(&live[0]) && err.contains(&live[1]),
            "{args:?} names both candidates: {err}"
        );
    }
    // Nothing was killed.
    a.simple_query("SELECT 1").await.expect("a still live");
    b.simple_query("SELECT 1").await.expect("b still live");
    // Over the API too: 400 with the candidates.
    let (status, v) = p
        .post(
            OPERATOR,
            &format!("/api/sessions/{common}/kill"),
            serde_json::json!({ "reason": "test" }),
        )
        .await;
    assert_eq!(status.as_u16(), 400, "{v}");
    assert!(
        v.to_string().contains(&live[0]) && v.to_string().contains(&live[1]),
        "{v}"
    );
    // A unique prefix still works.
    let unique = &live[0][..common.len() + 1];
    let out = cli(&["kill", unique, "--reason", "test"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&live[0]));
    p.stop().await;
}
