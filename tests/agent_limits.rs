//! Limits per agent (issue 18, items 9, 10, 11, 13) through a real `proctor serve` in front of a
//! real PostgreSQL, with real clients as agents: one agent cannot open more sessions than its
//! limit, queue more holds, make a hold huge with reasoning, flood alerts, grow proctor's memory
//! or index with table names, or send oversized statements; and while it tries, another agent's
//! round trip stays fast. Every refusal is a clear error to the agent and a record.

mod pg_support;

use std::time::{Duration, Instant};

use pg_support::*;
use serde_json::Value;

/// The flood tests measure how long *another* agent waits while one agent floods proctor. Run
/// side by side on 2 cores, each flood would also be measured against the other tests' floods,
/// so they take turns: what is measured is the stall one flood causes, as the issue states it.
static FLOODS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_flood_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    // A test that failed while holding the lock must not fail the others.
    FLOODS.lock().unwrap_or_else(|e| e.into_inner())
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A proctor whose configuration ends with `limits` (TOML appended to the generated file).
fn env_with(limits: &str, opts: Options) -> Env {
    let mut env = Env::start_with(opts);
    env.stop_proctor();
    let mut cfg = std::fs::read_to_string(&env.config).expect("config");
    cfg.push_str(limits);
    std::fs::write(&env.config, cfg).expect("config");
    env.start_proctor();
    env
}

async fn try_connect(
    env: &Env,
    agent: &str,
    secret: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) =
        tokio_postgres::connect(&env.conninfo(agent, secret), tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.code().code().to_string())
        .unwrap_or_default()
}

fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
}

/// Verdict records of `rule` in a session's export.
fn verdicts(env: &Env, session: &str, rule: &str) -> Vec<Value> {
    env.export(session)
        .into_iter()
        .filter(|r| r["kind"] == "verdict" && r["rule"] == rule)
        .collect()
}

/// p99 (and max) of `samples` in milliseconds.
fn p99_ms(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort();
    let i = ((samples.len() as f64) * 0.99).ceil() as usize;
    let p = samples[i.saturating_sub(1).min(samples.len() - 1)];
    let max = samples[samples.len() - 1];
    (p.as_secs_f64() * 1e3, max.as_secs_f64() * 1e3)
}

#[test]
fn sessions_per_agent_are_capped_at_admission_and_others_still_connect() {
    let env = env_with(
        "\n[limits]\nsessions_per_agent = 6\n",
        Options {
            max_connections: 40,
            ..Options::default()
        },
    );
    rt().block_on(async {
        // One agent tries 14 sessions at once: exactly its 6 open, the rest get 53300. (Under
        // the 16 pre-authentication slots one source has: past those, connections are dropped
        // at accept before any limit per agent is asked.)
        let tries: Vec<_> = (0..14).map(|_| try_connect(&env, AGENT, SECRET)).collect();
        let results = futures_util::future::join_all(tries).await;
        let mut open = Vec::new();
        let mut refused = Vec::new();
        for r in results {
            match r {
                Ok(c) => open.push(c),
                Err(e) => refused.push(e),
            }
        }
        assert_eq!(open.len(), 6, "refusals: {refused:?}");
        for e in &refused {
            assert_eq!(sqlstate(e), "53300", "{e:?}");
            let m = db_message(e);
            assert!(
                m.contains("too many sessions") && m.contains("sessions_per_agent"),
                "{m}"
            );
        }
        // Another agent is not affected.
        let other = try_connect(&env, BENCH, BENCH_SECRET)
            .await
            .expect("another agent connects while the first is at its limit");
        let rows = other.simple_query("select 1").await.expect("select 1");
        assert!(!rows.is_empty());
        // The open ones work; closing one frees a place.
        open[0]
            .simple_query("select 1")
            .await
            .expect("open session works");
        drop(open.remove(0));
        let mut again = None;
        for _ in 0..100 {
            match try_connect(&env, AGENT, SECRET).await {
                Ok(c) => {
                    again = Some(c);
                    break;
                }
                Err(e) => {
                    assert_eq!(sqlstate(&e), "53300", "{e:?}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        assert!(again.is_some(), "a closed session's place was never freed");
    });
    // Each refusal is a sealed, denied session whose verdict names the limit.
    let denied: Vec<Value> = env
        .store()
        .sessions()
        .into_iter()
        .filter(|s| s["agent"] == AGENT && s["outcome"] == "denied")
        .collect();
    assert!(denied.len() >= 8, "{} denied sessions", denied.len());
    let id = denied[0]["id"].as_str().expect("id");
    env.verify_session(id);
    let v = verdicts(&env, id, "overloaded");
    assert_eq!(v.len(), 1, "{:?}", env.export(id));
    assert!(v[0]["reason"].as_str().unwrap_or("").contains("limit 6"));
    // No throwaway role was created for a refused session: at most the 6 open ones remain.
    assert!(env.proctor_roles().len() <= 6, "{:?}", env.proctor_roles());
}

#[test]
fn pending_holds_per_agent_are_bounded_and_reasoning_kept_for_approvers_is_bounded() {
    let env = env_with(
        "\n[limits]\npending_holds_per_agent = 3\n",
        Options::default(),
    );
    let big = "r".repeat(1 << 20);
    rt().block_on(async {
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(std::sync::Arc::new(
                try_connect(&env, AGENT, SECRET).await.expect("connects"),
            ));
        }
        // Session 0 states 1 MiB of reasoning five times before its held statement.
        for i in 0..5 {
            clients[0]
                .simple_query(&format!("/* reason: {i}{big} */ select 1"))
                .await
                .expect("select");
        }
        let mut held = Vec::new();
        for (i, c) in clients.iter().take(3).enumerate() {
            let c = c.clone();
            let sql = format!("DELETE FROM t /* hold {i} */");
            held.push(tokio::spawn(async move { c.simple_query(&sql).await }));
        }
        assert!(
            eventually(T, || env.approvals().len() == 3),
            "{:?}",
            env.approvals()
        );
        // The fourth hold of the agent is denied at once, not queued.
        let started = Instant::now();
        let e = clients[3]
            .simple_query("DELETE FROM t /* hold 3 */")
            .await
            .expect_err("a fourth hold is denied");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(sqlstate(&e), "42501", "{e:?}");
        let m = db_message(&e);
        assert!(
            m.contains("pending_holds_per_agent") && m.contains("not queued"),
            "{m}"
        );
        // ... and that session stays usable.
        clients[3]
            .simple_query("select 1")
            .await
            .expect("session usable after the refusal");
        // Approvers see at most a bounded trace: cut texts say their size and digest.
        let approvals = env.approvals();
        assert_eq!(approvals.len(), 3);
        let first = approvals
            .iter()
            .find(|a| a.to_string().contains("hold 0"))
            .expect("hold 0");
        let size = first.to_string().len();
        assert!(size < 100 * 1024, "one hold is {size} bytes");
        let reasoning = first["reasoning"].as_array().expect("reasoning");
        assert!(!reasoning.is_empty());
        for r in reasoning {
            let r = r.as_str().unwrap_or("");
            assert!(
                r.contains("cut here") && r.contains("sha256") && r.contains("1048577 bytes"),
                "{}",
                &r[..r.len().min(200)]
            );
        }
        // Dropping the waiting queries and the clients ends the sessions (holds cancelled).
        for h in held {
            h.abort();
        }
        drop(clients);
    });
    // The refusal is recorded as a verdict of the fourth session.
    let sessions = env.store().sessions();
    let refused = sessions
        .iter()
        .filter_map(|s| s["id"].as_str())
        .find(|id| !verdicts(&env, id, "limit:pending-holds").is_empty());
    assert!(refused.is_some(), "no recorded pending-holds refusal");
}

/// A statement naming `n` distinct tables no agent has used (`prefix` keeps runs apart).
fn many_tables(prefix: &str, n: usize) -> String {
    let mut sql = String::from("SELECT 1 FROM ");
    for i in 0..n {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("{prefix}{i:06}"));
    }
    sql
}

/// Round trips of `select 1` on `client` until `done`, at least `min` of them.
async fn round_trips(
    client: &tokio_postgres::Client,
    done: &std::sync::atomic::AtomicBool,
    min: usize,
) -> Vec<Duration> {
    let mut samples = Vec::new();
    while !done.load(std::sync::atomic::Ordering::Acquire) || samples.len() < min {
        let t = Instant::now();
        client.simple_query("select 1").await.expect("select 1");
        samples.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    samples
}

#[test]
fn an_alert_storm_is_one_alert_and_does_not_stall_other_agents() {
    let _turn = one_flood_at_a_time();
    let env = Env::start();
    let done = std::sync::atomic::AtomicBool::new(false);
    let (samples, mut direct, flood_session) = rt().block_on(async {
        // The agent's baseline exists, so first uses are worth alerts.
        let warm = try_connect(&env, AGENT, SECRET).await.expect("connects");
        warm.simple_query("select * from t").await.expect("select");
        drop(warm);
        let other = try_connect(&env, BENCH, BENCH_SECRET)
            .await
            .expect("connects");
        other.simple_query("select 1").await.expect("warm up");
        let flood = try_connect(&env, AGENT, SECRET).await.expect("connects");
        let known = env.live_sessions(AGENT);
        let flooder = async {
            // 87,000 unknown tables in one ~1 MB statement, three times.
            for run in 0..3 {
                let sql = many_tables(&format!("u{run}_"), 87_000);
                assert!(sql.len() > 900_000);
                let e = flood.simple_query(&sql).await.expect_err("no such tables");
                assert_eq!(sqlstate(&e), "42P01", "{e:?}");
            }
            done.store(true, std::sync::atomic::Ordering::Release);
        };
        // The same round trip straight to PostgreSQL in the same run: the machine's own p99.
        let (straight, conn) =
            tokio_postgres::connect(&env.pg.admin_dsn("app"), tokio_postgres::NoTls)
                .await
                .expect("straight to PostgreSQL");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let (_, samples, direct) = tokio::join!(
            flooder,
            round_trips(&other, &done, 200),
            round_trips(&straight, &done, 200)
        );
        let id = known.last().cloned().unwrap_or_default();
        drop(flood);
        (samples, direct, id)
    });
    let mut samples = samples;
    let n = samples.len();
    let (p99, max) = p99_ms(&mut samples);
    let (dp99, _) = p99_ms(&mut direct);
    eprintln!(
        "alert storm: other agent's select 1: n={n} p99={p99:.1} ms max={max:.1} ms; \
         straight to PostgreSQL p99={dp99:.1} ms"
    );
    // 50 ms (issue 18), unless the machine itself is slower than that: on a shared machine the
    // direct path's own p99 in the same run is the yardstick (an 11.6 s stall before).
    assert!(
        p99 < 50.0_f64.max(5.0 * dp99),
        "p99 {p99:.1} ms (max {max:.1} ms) over {n} round trips; direct p99 {dp99:.1} ms"
    );
    // One alert per statement (at most: new tables, and the ones past the per-action limit).
    let s = env
        .store()
        .sealed_session(|s| s["agent"] == AGENT && s["id"] == flood_session.as_str());
    let records = env.export(s["id"].as_str().expect("id"));
    let alerts: Vec<&Value> = of_kind(&records, "alert")
        .into_iter()
        .filter(|a| a["rule"] == "monitor:first-use")
        .collect();
    assert!(
        !alerts.is_empty() && alerts.len() <= 6,
        "{} first-use alerts",
        alerts.len()
    );
    assert!(
        alerts
            .iter()
            .any(|a| a["message"].as_str().unwrap_or("").contains("(and ")),
        "{alerts:?}"
    );
    assert!(alerts.iter().all(|a| a.to_string().len() < 4096));
}

#[test]
fn long_unique_table_names_do_not_grow_memory_or_the_index() {
    let _turn = one_flood_at_a_time();
    let env = Env::start();
    let index = env.data.join("index");
    let pid = env.proctor_pid();
    let (rss0, index0) = rt().block_on(async {
        let warm = try_connect(&env, AGENT, SECRET).await.expect("connects");
        warm.simple_query("select * from t").await.expect("select");
        (rss_kib(pid), dir_bytes(&index))
    });
    let rss10 = rt().block_on(async {
        let c = try_connect(&env, AGENT, SECRET).await.expect("connects");
        let mut rss10 = 0;
        // 40 unique 4 MiB table names (the target answers 42P01 for each).
        for i in 0..40 {
            let name = format!("{i:02}{}", "n".repeat(4 << 20));
            let e = c
                .simple_query(&format!("SELECT 1 FROM \"{name}\""))
                .await
                .expect_err("no such table");
            assert_eq!(sqlstate(&e), "42P01", "{e:?}");
            if i == 9 {
                rss10 = rss_kib(pid);
            }
        }
        rss10
    });
    // Let the recorder's buffers settle before measuring.
    std::thread::sleep(Duration::from_secs(2));
    let (rss1, index1) = (rss_kib(pid), dir_bytes(&index));
    eprintln!(
        "40 x 4 MiB names: RSS {} -> {} (after 10) -> {} MiB, index {} -> {} KiB",
        rss0 / 1024,
        rss10 / 1024,
        rss1 / 1024,
        index0 / 1024,
        index1 / 1024
    );
    // Kept names would cost about 8 MiB each (240 MiB for the last 30); working memory for
    // one 4 MiB statement at a time is a plateau.
    assert!(
        rss1.saturating_sub(rss10) < 64 * 1024,
        "RSS grew from {rss10} KiB after 10 names to {rss1} KiB after 40"
    );
    assert!(
        rss1.saturating_sub(rss0) < 256 * 1024,
        "RSS grew from {rss0} KiB to {rss1} KiB"
    );
    assert!(
        index1.saturating_sub(index0) < 16 << 20,
        "index grew from {index0} to {index1} bytes"
    );
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_bytes(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

#[test]
fn oversized_statements_are_denied_recorded_and_the_session_stays_usable() {
    let env = env_with(
        "\n[limits]\nstatement_bytes = 1048576\n",
        Options::default(),
    );
    rt().block_on(async {
        let c = try_connect(&env, AGENT, SECRET).await.expect("connects");
        let fits = format!("select length('{}')", "f".repeat(1000 * 1000));
        c.simple_query(&fits)
            .await
            .expect("a statement under the limit runs");
        let big = format!("/* too big */ select length('{}')", "b".repeat(2 << 20));
        let e = c.simple_query(&big).await.expect_err("over the limit");
        // SQLSTATE 54000 (program_limit_exceeded), not a permission refusal.
        assert_eq!(sqlstate(&e), "54000", "{e:?}");
        let m = db_message(&e);
        assert!(
            m.contains("limit:statement-size") && m.contains("statement_bytes"),
            "{m}"
        );
        let rows = c.simple_query("select 1").await.expect("still usable");
        assert!(!rows.is_empty());
    });
    let s = env.store().sealed_session(|s| s["agent"] == AGENT);
    let id = s["id"].as_str().expect("id");
    env.verify_session(id);
    let v = verdicts(&env, id, "limit:statement-size");
    assert_eq!(v.len(), 1);
    // The refused statement (it never reached the target) is recorded cut: its first 64 KiB,
    // then a line with its full size and SHA-256, so nobody takes the start for the whole and
    // the agent's copy can be matched; one agent's oversized statements cost the shared
    // recorder little.
    let records = env.export(id);
    let (s, _) = statement_with_result(&records, "/* too big */").expect("statement recorded");
    let text = s["text"].as_str().expect("text");
    let big = format!("/* too big */ select length('{}')", "b".repeat(2 << 20));
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(big.as_bytes()));
    let (start, note) = text.rsplit_once('\n').expect("a cut line");
    assert!(
        start.len() == 64 * 1024 && big.starts_with(start),
        "{}",
        start.len()
    );
    assert!(
        note.contains(&format!("65536 of {} bytes recorded", big.len())) && note.contains(&digest),
        "{note}"
    );
}

#[test]
fn concurrent_huge_statements_do_not_stall_other_agents() {
    let _turn = one_flood_at_a_time();
    let env = env_with("\n[limits]\nsessions_per_agent = 8\n", Options::default());
    let done = std::sync::atomic::AtomicBool::new(false);
    let mut samples = rt().block_on(async {
        let other = try_connect(&env, BENCH, BENCH_SECRET)
            .await
            .expect("connects");
        other.simple_query("select 1").await.expect("warm up");
        let mut flooders = Vec::new();
        for _ in 0..4 {
            flooders.push(try_connect(&env, AGENT, SECRET).await.expect("connects"));
        }
        let flood = async {
            // Four sessions at once: a 12 MiB statement (under the limit, runs) and a 20 MiB
            // one (over it, denied), twice each.
            let runs = flooders.iter().map(|c| async move {
                for _ in 0..2 {
                    let fits = format!("select length('{}')", "a".repeat(12 << 20));
                    c.simple_query(&fits).await.expect("12 MiB statement runs");
                    let over = format!("select length('{}')", "b".repeat(20 << 20));
                    let e = c.simple_query(&over).await.expect_err("20 MiB is denied");
                    assert!(db_message(&e).contains("statement_bytes"), "{e:?}");
                }
            });
            futures_util::future::join_all(runs).await;
            done.store(true, std::sync::atomic::Ordering::Release);
        };
        let (_, samples) = tokio::join!(flood, round_trips(&other, &done, 100));
        samples
    });
    let n = samples.len();
    let (p99, max) = p99_ms(&mut samples);
    eprintln!(
        "4 x (12 + 20) MiB statements: other agent's select 1: n={n} p99={p99:.1} ms max={max:.1} ms"
    );
    // Judging runs outside the shared worker for large actions (9 s stalls before, debug
    // build); what remains is the relay's own reading of the text, which this does not change.
    assert!(
        max < 5000.0,
        "another agent stalled {max:.1} ms (p99 {p99:.1} ms)"
    );
}

#[test]
fn sessions_per_grant_are_capped_too() {
    let env = env_with("\n[limits]\nsessions_per_grant = 2\n", Options::default());
    rt().block_on(async {
        let _a = try_connect(&env, AGENT, SECRET).await.expect("first");
        let _b = try_connect(&env, AGENT, SECRET).await.expect("second");
        let Err(e) = try_connect(&env, AGENT, SECRET).await else {
            panic!("a third session under the grant must be refused");
        };
        assert_eq!(sqlstate(&e), "53300", "{e:?}");
        let m = db_message(&e);
        assert!(
            m.contains("grant \"e2e-appdb\" already has 2 open") && m.contains("max_sessions"),
            "{m}"
        );
        // Another grant (another agent) has its own count.
        let other = try_connect(&env, BENCH, BENCH_SECRET)
            .await
            .expect("other grant");
        other.simple_query("select 1").await.expect("select 1");
    });
}

/// `VmRSS` or `VmHWM` (peak) of a process, in MiB.
fn vm_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Issue 18, item 13: four concurrent 63 MB statements (over `statement_bytes`, under the
/// 64 MiB message limit) are each refused with SQLSTATE 54000 and recorded, while another
/// agent's `select 1` keeps going. Prints the figures (round trips through proctor, the same
/// round trip straight to PostgreSQL as the machine's own baseline, proctor's peak RSS); the
/// bounds are loose because the machine is shared.
#[test]
fn four_63_mb_statements_are_refused_with_54000_and_figures() {
    let _turn = one_flood_at_a_time();
    let env = env_with("\n[limits]\nsessions_per_agent = 8\n", Options::default());
    let pid = env.proctor_pid();
    let done = std::sync::atomic::AtomicBool::new(false);
    let segments = env.dir.path().join("data").join("segments");
    let stored_before = dir_bytes(&segments);
    let (mut through, mut direct, rss_before, rss_peak) = rt().block_on(async {
        let other = try_connect(&env, BENCH, BENCH_SECRET)
            .await
            .expect("connects");
        other.simple_query("select 1").await.expect("warm up");
        let (straight, conn) =
            tokio_postgres::connect(&env.pg.admin_dsn("app"), tokio_postgres::NoTls)
                .await
                .expect("straight to PostgreSQL");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut flooders = Vec::new();
        for _ in 0..4 {
            flooders.push(try_connect(&env, AGENT, SECRET).await.expect("connects"));
        }
        let rss_before = vm_mib(pid, "VmRSS");
        let peak = std::sync::Mutex::new(rss_before);
        let flood = async {
            let runs = flooders.iter().map(|c| async move {
                let huge = format!("select length('{}')", "x".repeat(63_000_000));
                let e = c.simple_query(&huge).await.expect_err("63 MB is refused");
                assert_eq!(sqlstate(&e), "54000", "{e:?}");
                c.simple_query("select 1")
                    .await
                    .expect("the session stays usable");
            });
            futures_util::future::join_all(runs).await;
            done.store(true, std::sync::atomic::Ordering::Release);
        };
        let sample_rss = async {
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                let now = vm_mib(pid, "VmRSS");
                {
                    let mut p = peak.lock().unwrap();
                    *p = p.max(now);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let (_, through, direct, _) = tokio::join!(
            flood,
            round_trips(&other, &done, 100),
            round_trips(&straight, &done, 100),
            sample_rss
        );
        let peak = *peak.lock().unwrap();
        (through, direct, rss_before, peak)
    });
    let (n, m) = (through.len(), direct.len());
    let (p99, max) = p99_ms(&mut through);
    let (dp99, dmax) = p99_ms(&mut direct);
    eprintln!(
        "4 x 63 MB statements: other agent's select 1 through proctor: n={n} p99={p99:.1} ms \
         max={max:.1} ms; straight to PostgreSQL: n={m} p99={dp99:.1} ms max={dmax:.1} ms; \
         proctor RSS {rss_before:.0} MiB before, peak {rss_peak:.0} MiB"
    );
    assert!(
        max < 5000.0,
        "another agent stalled {max:.1} ms (p99 {p99:.1} ms)"
    );
    // Each statement is held about three times while it is read and judged (the message, its
    // text, a redacted copy); recording them whole added a fourth and fifth copy (the encoded
    // record, the writer's batch): ~1.1-1.3 GiB then, ~0.7 GiB now (debug build).
    assert!(
        rss_peak - rss_before < 1024.0,
        "RSS grew from {rss_before:.0} to {rss_peak:.0} MiB"
    );
    // The refused statements are recorded cut (64 KiB and their size and digest each), so the
    // shared recorder wrote little: 252 MB before.
    let stored = dir_bytes(&segments).saturating_sub(stored_before);
    eprintln!(
        "segment files grew by {} KiB (they are preallocated 1 MiB ahead)",
        stored / 1024
    );
    assert!(stored < 16 << 20, "{stored} bytes recorded");
    let s = env.store().sealed_session(|s| s["agent"] == AGENT);
    let id = s["id"].as_str().expect("id");
    assert_eq!(verdicts(&env, id, "limit:statement-size").len(), 1);
}
