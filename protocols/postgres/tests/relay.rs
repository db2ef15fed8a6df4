//! End-to-end tests: real clients -> proctor -> real PostgreSQL 15.

mod common;

use std::time::Duration;

use common::*;
use proctor_gate::{DenyCause, Event, Outcome, Resolution, StatementClass};
use proctor_postgres::PgFrontendConfig;
use sha2::{Digest, Sha256};

/// DataRow body for one text column, as PostgreSQL sends it.
fn text_row(v: &str) -> Vec<u8> {
    let mut b = vec![0, 1];
    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
    b.extend_from_slice(v.as_bytes());
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_simple_extended_binary_and_pipelined() {
    let f = Fixture::start(PgFrontendConfig::default()).await;
    let (client, conn) = f.connect().await;

    // Several statements in one simple Query.
    client
        .batch_execute(
            "/* reason: set up the test table */ CREATE TABLE items (id int primary key, name text, data bytea); \
             INSERT INTO items VALUES (1, 'one', '\\x0102'), (2, 'two', NULL); -- reason: seed\n\
             SELECT count(*) FROM items",
        )
        .await
        .unwrap();

    // Result digest over a known result, computed independently below.
    let rows = client
        .simple_query("SELECT g::text FROM generate_series(1,3) g")
        .await
        .unwrap();
    let data_rows = rows
        .iter()
        .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
        .count();
    assert_eq!(data_rows, 3);

    // Extended protocol with binary parameters and binary results.
    let stmt = client
        .prepare("SELECT id, name, data FROM items WHERE id = $1 AND name = $2")
        .await
        .unwrap();
    let row = client.query_one(&stmt, &[&1i32, &"one"]).await.unwrap();
    assert_eq!(row.get::<_, Vec<u8>>(2), vec![1u8, 2]);
    client
        .execute(
            "INSERT INTO items VALUES ($1, $2, $3)",
            &[&3i32, &"three", &vec![0xffu8, 0]],
        )
        .await
        .unwrap();

    // Pipelining: three queries in flight at once.
    let (a, b, c) = tokio::join!(
        client.query_one("SELECT $1::int4 + 1", &[&41i32]),
        client.query("SELECT name FROM items ORDER BY id", &[]),
        client.query_one("SELECT $1::text || '!'", &[&"hey"]),
    );
    assert_eq!(a.unwrap().get::<_, i32>(0), 42);
    assert_eq!(b.unwrap().len(), 3);
    assert_eq!(c.unwrap().get::<_, String>(0), "hey!");

    // Portal suspension: a cursor-style fetch of 2 rows at a time.
    {
        let mut client = client;
        let tx = client.transaction().await.unwrap();
        let portal = tx
            .bind("SELECT g FROM generate_series(1,5) g", &[])
            .await
            .unwrap();
        let first = tx.query_portal(&portal, 2).await.unwrap();
        assert_eq!(first.len(), 2);
        let rest = tx.query_portal(&portal, 10).await.unwrap();
        assert_eq!(rest.len(), 3);
        tx.commit().await.unwrap();
        drop(client);
    }
    let _ = conn.await;
    let g = f.wait_ended(0).await;
    assert_eq!(g.end().unwrap().0, Outcome::Completed);

    let stmts = g.statements();
    let create = stmts
        .iter()
        .find(|s| s.text.contains("CREATE TABLE items"))
        .unwrap();
    assert_eq!(create.class, StatementClass::Ddl);
    assert_eq!(create.reasoning.as_deref(), Some("set up the test table"));
    assert!(!create.extended);
    let insert = stmts
        .iter()
        .find(|s| s.text.starts_with("INSERT INTO items VALUES (1"))
        .unwrap();
    assert_eq!(insert.class, StatementClass::Write);
    assert_eq!(insert.tables, vec!["items".to_string()]);
    // The reason comment of the third statement sits before it.
    let count = stmts
        .iter()
        .find(|s| s.text.contains("SELECT count(*)"))
        .unwrap();
    assert_eq!(count.reasoning.as_deref(), Some("seed"));
    assert_eq!(count.id, insert.id + 1);

    // Binary parameters recorded as sent.
    let sel = stmts
        .iter()
        .find(|s| s.text.contains("WHERE id = $1 AND name = $2"))
        .unwrap();
    assert!(sel.extended);
    assert_eq!(sel.params.len(), 2);
    assert!(sel.params[0].binary);
    assert_eq!(
        sel.params[0].value.as_deref(),
        Some(&1i32.to_be_bytes()[..])
    );
    assert_eq!(sel.params[1].value.as_deref(), Some(&b"one"[..]));
    assert_eq!(sel.class, StatementClass::Read);

    let results = g.results();
    let series = stmts
        .iter()
        .find(|s| s.text == "SELECT g::text FROM generate_series(1,3) g")
        .unwrap();
    let r = results
        .iter()
        .find(|r| r.statement_id == series.id)
        .unwrap();
    let mut h = Sha256::new();
    for v in ["1", "2", "3"] {
        h.update(text_row(v));
    }
    let want: [u8; 32] = h.finalize().into();
    assert_eq!(r.digest, want);
    assert_eq!(r.rows, 3);
    assert_eq!(r.tag, "SELECT 3");
    assert_eq!(r.columns, vec!["g".to_string()]);
    assert_eq!(r.sample_rows[0], vec![Some("1".to_string())]);

    let r = results.iter().find(|r| r.statement_id == sel.id).unwrap();
    assert_eq!(r.rows, 1);
    assert_eq!(r.columns, vec!["id", "name", "data"]);
    // Binary results are sampled as hex.
    assert_eq!(
        r.sample_rows[0],
        vec![
            Some("00000001".into()),
            Some("6f6e65".into()),
            Some("0102".into())
        ]
    );
    let ins3 = stmts
        .iter()
        .find(|s| s.text.starts_with("INSERT INTO items VALUES ($1"))
        .unwrap();
    let r = results.iter().find(|r| r.statement_id == ins3.id).unwrap();
    assert_eq!((r.tag.as_str(), r.rows), ("INSERT 0 1", 1));

    // The suspended portal: one statement, a suspended result then the final one.
    let portal_stmt = stmts
        .iter()
        .find(|s| s.text.contains("generate_series(1,5)"))
        .unwrap();
    let parts: Vec<_> = results
        .iter()
        .filter(|r| r.statement_id == portal_stmt.id)
        .collect();
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert!(parts[0].suspended);
    assert_eq!(parts[0].rows, 2);
    assert!(!parts[1].suspended);
    assert_eq!(parts[1].rows, 3);

    // Startup parameters reached the core.
    let params = f.authority.opened_params.lock().unwrap()[0].clone();
    assert!(
        params
            .iter()
            .any(|(k, v)| k == "application_name" && v == "proctor-test")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_leaves_the_session_usable() {
    let f = Fixture::start(PgFrontendConfig::default()).await;
    // The table exists (created by the admin), so Parse succeeds and only proctor stands in the way.
    f.pg()
        .psql(
            TARGET,
            &format!(
                "CREATE TABLE forbidden_table (a int); ALTER TABLE forbidden_table OWNER TO {ROLE}"
            ),
        )
        .unwrap();
    let (client, conn) = f.connect().await;
    client
        .batch_execute("CREATE TABLE ok_table (a int); DROP TABLE forbidden_table")
        .await
        .expect_err("the whole message is refused when one part is denied");
    client
        .batch_execute("CREATE TABLE ok_table (a int)")
        .await
        .unwrap();

    // Simple query.
    let e = client
        .simple_query("SELECT * FROM forbidden_table")
        .await
        .unwrap_err();
    let (code, sev, msg) = db_error(&e);
    assert_eq!((code.as_str(), sev.as_str()), ("42501", "ERROR"));
    assert!(
        msg.contains("no_forbidden") && msg.contains("off limits"),
        "{msg}"
    );
    client.simple_query("SELECT 1").await.unwrap();

    // Extended, inside a transaction, then pipelined with allowed neighbours.
    let e = client
        .query("SELECT * FROM forbidden_table WHERE a = $1", &[&1i32])
        .await
        .unwrap_err();
    assert_eq!(db_error(&e).0, "42501");
    let (a, b, c) = tokio::join!(
        client.query_one("SELECT 1::int4", &[]),
        client.query("SELECT a FROM forbidden_table", &[]),
        client.query_one("SELECT 3::int4", &[]),
    );
    assert_eq!(a.unwrap().get::<_, i32>(0), 1);
    assert_eq!(db_error(&b.unwrap_err()).0, "42501");
    assert_eq!(c.unwrap().get::<_, i32>(0), 3);
    client
        .execute("INSERT INTO ok_table VALUES (1)", &[])
        .await
        .unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM ok_table", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);

    drop(client);
    let _ = conn.await;
    let g = f.wait_ended(0).await;
    let verdicts = g
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::Verdict(v) if v.verdict == proctor_gate::VerdictKind::Deny))
        .count();
    assert_eq!(verdicts, 4);
    // Denied statements never produced a result.
    let denied_ids: Vec<u64> = g
        .statements()
        .iter()
        .filter(|s| s.text.contains("forbidden_table"))
        .map(|s| s.id)
        .collect();
    assert!(
        g.results()
            .iter()
            .all(|r| !denied_ids.contains(&r.statement_id))
    );
    let exists = f
        .pg()
        .psql(
            TARGET,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'forbidden_table'",
        )
        .unwrap();
    assert_eq!(exists, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_approve_deny_timeout_cancel() {
    let mut f = Fixture::start(PgFrontendConfig::default()).await;
    let (notice_tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
    let (client, mut connection) = f
        .config(AGENT, AGENT_SECRET)
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(async move {
        use futures_util::StreamExt;
        let mut stream = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(m)) = stream.next().await {
            if let tokio_postgres::AsyncMessage::Notice(n) = m {
                let _ = notice_tx.send(n.message().to_string());
            }
        }
    });
    let client = std::sync::Arc::new(client);

    // Approve.
    let c = client.clone();
    let q = tokio::spawn(async move { c.simple_query("SELECT 'needs_approval' AS x").await });
    let hold = f.next_hold().await;
    let notice = tokio::time::timeout(Duration::from_secs(5), notices.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        notice.contains(&hold.approval_id) && notice.contains("ask_human"),
        "{notice}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!q.is_finished(), "a held statement must wait");
    hold.answer.send(Resolution::Allow).unwrap();
    let rows = q.await.unwrap().unwrap();
    assert!(
        matches!(&rows[1], tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("needs_approval"))
    );

    // Denied by the approver, extended protocol.
    let c = client.clone();
    let q =
        tokio::spawn(async move { c.query("SELECT $1::text AS needs_approval", &[&"x"]).await });
    let hold = f.next_hold().await;
    assert!(hold.statement.extended);
    hold.answer
        .send(Resolution::Deny {
            rule: "approval".into(),
            reason: "not during business hours".into(),
            cause: DenyCause::Approver,
        })
        .unwrap();
    let e = q.await.unwrap().unwrap_err();
    let (code, _, msg) = db_error(&e);
    assert_eq!(code, "42501");
    assert!(msg.contains("not during business hours"), "{msg}");
    client.simple_query("SELECT 1").await.unwrap();

    // Timeout.
    let c = client.clone();
    let q = tokio::spawn(async move { c.simple_query("SELECT 'needs_approval'").await });
    let hold = f.next_hold().await;
    hold.answer
        .send(Resolution::Deny {
            rule: "timeout".into(),
            reason: "nobody answered".into(),
            cause: DenyCause::Timeout,
        })
        .unwrap();
    assert_eq!(db_error(&q.await.unwrap().unwrap_err()).0, "57014");

    // Query cancel withdraws a held statement.
    let c = client.clone();
    let q =
        tokio::spawn(async move { c.simple_query("SELECT 'needs_approval', 'cancel me'").await });
    let hold = f.next_hold().await;
    client
        .cancel_token()
        .cancel_query(tokio_postgres::NoTls)
        .await
        .unwrap();
    assert_eq!(db_error(&q.await.unwrap().unwrap_err()).0, "57014");
    tokio::time::timeout(Duration::from_secs(5), async {
        while !hold.answer.is_closed() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the approval is withdrawn");
    client.simple_query("SELECT 2").await.unwrap();

    // Client disconnect while held cancels the approval.
    let c = client.clone();
    let q = tokio::spawn(async move { c.simple_query("SELECT 'needs_approval', 'bye'").await });
    let hold = f.next_hold().await;
    drop(client);
    q.abort();
    conn.abort();
    tokio::time::timeout(Duration::from_secs(5), async {
        while !hold.answer.is_closed() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the approval is cancelled when the client goes away");
    let g = f.wait_ended(0).await;
    let (outcome, reason) = g.end().unwrap();
    assert_eq!(outcome, Outcome::Completed);
    assert!(reason.contains("held"), "{reason}");
    assert_eq!(g.ends.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_cancel_and_target_restart() {
    let mut f = Fixture::start(PgFrontendConfig::default()).await;

    // Query cancel reaches the target backend through proctor's own key.
    let (client, conn) = f.connect().await;
    let token = client.cancel_token();
    let q = tokio::spawn(async move {
        let r = client.simple_query("SELECT pg_sleep(30)").await;
        (client, r)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let (client, r) = tokio::time::timeout(Duration::from_secs(10), q)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(db_error(&r.unwrap_err()).0, "57014");
    client.simple_query("SELECT 1").await.unwrap();

    // Kill mid-query.
    let q = tokio::spawn(async move { client.simple_query("SELECT pg_sleep(30)").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    f.authority.session(0).kill("operator says stop");
    let e = tokio::time::timeout(Duration::from_secs(10), q)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    let (code, sev, msg) = db_error(&e);
    assert_eq!((code.as_str(), sev.as_str()), ("57P01", "FATAL"));
    assert!(msg.contains("operator says stop"), "{msg}");
    let _ = conn.await;
    let g = f.wait_ended(0).await;
    assert_eq!(g.end().unwrap().0, Outcome::Killed);
    // The target backend is gone too.
    let mut gone = false;
    for _ in 0..100 {
        let n = f
            .pg()
            .psql(
                "postgres",
                &format!("SELECT count(*) FROM pg_stat_activity WHERE usename = '{ROLE}'"),
            )
            .unwrap();
        if n == "0" {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the target backend was not terminated");

    // Target restart mid-session.
    let (client, conn) = f.connect().await;
    client.simple_query("SELECT 1").await.unwrap();
    let mut pg = f.pg.take().unwrap();
    let pg = tokio::task::spawn_blocking(move || {
        pg.stop();
        pg
    })
    .await
    .unwrap();
    let e = client.simple_query("SELECT 1").await.unwrap_err();
    let code = db_error(&e).0;
    assert!(code == "57P01" || code == "08006" || e.is_closed(), "{e:?}");
    let _ = conn.await;
    let g = f.wait_ended(1).await;
    assert_eq!(g.end().unwrap().0, Outcome::TargetLost);
    let mut pg = pg;
    let pg = tokio::task::spawn_blocking(move || {
        pg.start_again().unwrap();
        pg
    })
    .await
    .unwrap();
    f.pg = Some(pg);
    let (client, _conn) = f.connect().await;
    client.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_failures_are_refused_and_recorded() {
    let f = Fixture::start(PgFrontendConfig::default()).await;
    let try_connect = |user: &str, pw: &str, db: &str| {
        let mut c = f.config(user, pw);
        c.dbname(db);
        async move { c.connect(tokio_postgres::NoTls).await.map(|_| ()) }
    };
    let e = try_connect(AGENT, "wrong", TARGET).await.unwrap_err();
    assert_eq!(db_error(&e).0, "28P01");
    let e2 = try_connect("mallory", "whatever", TARGET)
        .await
        .unwrap_err();
    // Unknown agents fail exactly like a wrong password.
    assert_eq!(db_error(&e2).0, "28P01");
    assert_eq!(
        db_error(&e).2.replace(AGENT, "X"),
        db_error(&e2).2.replace("mallory", "X")
    );
    let e = try_connect(OTHER_AGENT, OTHER_SECRET, TARGET)
        .await
        .unwrap_err();
    assert_eq!(db_error(&e).0, "28000");
    let e = try_connect(AGENT, AGENT_SECRET, "nosuchdb")
        .await
        .unwrap_err();
    assert_eq!(db_error(&e).0, "3D000");
    use proctor_gate::RefusalKind::*;
    assert_eq!(
        f.authority.refusal_kinds(),
        vec![BadCredential, UnknownAgent, NotGranted, UnknownTarget]
    );
    // No session was opened for any of them.
    assert_eq!(f.authority.session_count(), 0);

    // psql: cleartext/MD5 are never offered; a TLS-only listener refuses plain connections.
    let f2 = Fixture::with_pg(
        f.pg.unwrap(),
        PgFrontendConfig {
            require_tls: true,
            ..PgFrontendConfig::default()
        },
    )
    .await;
    let Err(e) = f2
        .config(AGENT, AGENT_SECRET)
        .connect(tokio_postgres::NoTls)
        .await
    else {
        panic!("a plain connection to a TLS-only listener must fail");
    };
    let (code, _, msg) = db_error(&e);
    assert_eq!(code, "28000");
    assert!(msg.contains("TLS"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_verify_full_with_psql() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let server = ca.issue(&["localhost"]);
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &ca.pem).unwrap();
    let f = Fixture::start(PgFrontendConfig {
        tls: Some(server_tls(&server)),
        require_tls: true,
        ..PgFrontendConfig::default()
    })
    .await;
    let conninfo = format!(
        "host=localhost port={} user={AGENT} password={AGENT_SECRET} dbname={TARGET} sslmode=verify-full sslrootcert={}",
        f.port,
        ca_path.display()
    );
    let out = tokio::task::spawn_blocking(move || {
        psql(
            &conninfo,
            &[
                "-A",
                "-t",
                "-c",
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                "-c",
                "SELECT 'over tls'",
            ],
        )
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Proctor -> target is plain here, the agent leg is TLS.
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "f\nover tls");

    // A client that pipelines bytes after SSLRequest is rejected before any handshake.
    let mut raw = RawClient::connect(f.port).await;
    let mut bytes = vec![0, 0, 0, 8, 4, 210, 22, 47];
    bytes.extend_from_slice(&typed(b'Q', b"SELECT 1\0"));
    raw.send(&bytes).await;
    let (code, msg) = raw.read_error().await.expect("an error");
    assert_eq!(code, "08P01");
    assert!(msg.contains("unencrypted data after SSL request"), "{msg}");
    assert!(raw.read().await.is_none());

    // GSSENCRequest is declined with 'N' and the client may go on.
    let mut raw = RawClient::connect(f.port).await;
    raw.send(&[0, 0, 0, 8, 4, 210, 22, 48]).await;
    let mut b = [0u8; 1];
    tokio::io::AsyncReadExt::read_exact(&mut raw.stream, &mut b)
        .await
        .unwrap();
    assert_eq!(b[0], b'N');
}

/// Statements the target skips after an error (the rest of a query string, or of a pipeline up
/// to Sync) were forwarded, so each gets an outcome: "not executed", never nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_skipped_after_an_error_are_recorded_as_not_executed() {
    use bytes::BytesMut;
    use postgres_protocol::message::frontend;
    let f = Fixture::start(PgFrontendConfig::default()).await;
    let mut raw = RawClient::login(f.port).await;
    let mut b = BytesMut::new();
    for sql in [
        "SELECT 'pipe_before'",
        "SELECT 1/0",
        "SELECT 'pipe_skipped_a'",
        "SELECT 'pipe_skipped_b'",
    ] {
        frontend::parse("", sql, [], &mut b).unwrap();
        frontend::bind(
            "",
            "",
            [],
            [] as [Option<&[u8]>; 0],
            |v: Option<&[u8]>, buf: &mut BytesMut| {
                buf.extend_from_slice(v.unwrap_or_default());
                Ok(postgres_protocol::IsNull::No)
            },
            [],
            &mut b,
        )
        .map_err(|_| ())
        .unwrap();
        frontend::execute("", 0, &mut b).unwrap();
    }
    frontend::sync(&mut b);
    frontend::query(
        "SELECT 'query_before'; SELECT 1/0; SELECT 'query_skipped'",
        &mut b,
    )
    .unwrap();
    raw.send(&b).await;
    let mut tags = Vec::new();
    let mut ready = 0;
    while ready < 2 {
        let (tag, _) = raw.read().await.unwrap();
        tags.push(tag);
        ready += usize::from(tag == b'Z');
    }
    assert_eq!(
        String::from_utf8(tags).unwrap(),
        "12DC1EZTDCEZ",
        "the pipeline: the first statement answered, the second parsed and failing at Bind (1/0 is folded when planned), ready; the query: one row, error, ready"
    );
    drop(raw);
    let g = f.wait_ended(0).await;
    let results = g.results();
    let outcome = |text: &str| {
        let s = g
            .statements()
            .into_iter()
            .find(|s| s.text == text)
            .unwrap_or_else(|| panic!("statement {text} recorded"));
        let r = results
            .iter()
            .find(|r| r.statement_id == s.id)
            .unwrap_or_else(|| panic!("an outcome for {text}"));
        r.error
            .as_ref()
            .map(|e| (e.severity.clone(), e.code.clone()))
    };
    assert_eq!(outcome("SELECT 'pipe_before'"), None);
    assert_eq!(outcome("SELECT 1/0").map(|e| e.1), Some("22012".into()));
    for skipped in [
        "SELECT 'pipe_skipped_a'",
        "SELECT 'pipe_skipped_b'",
        "SELECT 'query_skipped'",
    ] {
        assert_eq!(
            outcome(skipped),
            Some(("NOT EXECUTED".into(), String::new())),
            "{skipped}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_multi_statement_and_copy_both_ways() {
    let f = Fixture::start(PgFrontendConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    let mut data = String::new();
    for i in 0..2000 {
        data.push_str(&format!("{i},name {i}\n"));
    }
    std::fs::write(&input, &data).unwrap();
    let output = dir.path().join("out.csv");
    let conninfo = f.conninfo();
    let (i2, o2) = (input.clone(), output.clone());
    let out = tokio::task::spawn_blocking(move || {
        psql(
            &conninfo,
            &[
                "-c",
                "CREATE TABLE t (id int, name text); INSERT INTO t VALUES (-1, 'x'); DELETE FROM t",
                "-c",
                &format!("\\copy t from '{}' with (format csv)", i2.display()),
                "-c",
                &format!(
                    "\\copy (SELECT * FROM t ORDER BY id) to '{}' with (format csv)",
                    o2.display()
                ),
                "-c",
                "LISTEN ch; NOTIFY ch, 'hello'",
                "-c",
                "DO $$ BEGIN RAISE NOTICE 'from a DO block'; END $$",
            ],
        )
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("hello"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("from a DO block"));
    assert_eq!(std::fs::read_to_string(&output).unwrap(), data);

    let g = f.wait_ended(0).await;
    let stmts = g.statements();
    assert_eq!(stmts[0].command, "CREATE TABLE");
    assert_eq!(stmts[1].class, StatementClass::Write);
    assert_eq!(stmts[2].command, "DELETE");
    let do_block = stmts.iter().find(|s| s.text.starts_with("DO")).unwrap();
    assert_eq!(do_block.class, StatementClass::Unknown);
    let copies: Vec<_> = g
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Copy {
                statement_id,
                direction,
                bytes,
                digest,
            } => Some((statement_id, direction, bytes, digest)),
            _ => None,
        })
        .collect();
    assert_eq!(copies.len(), 2, "{copies:?}");
    let want: [u8; 32] = Sha256::digest(data.as_bytes()).into();
    for (_, _, bytes, digest) in &copies {
        assert_eq!(*bytes, data.len() as u64);
        assert_eq!(*digest, want);
    }
    let copy_in = stmts
        .iter()
        .find(|s| s.text.to_ascii_lowercase().contains("from stdin"))
        .unwrap();
    assert_eq!(copies[0].0, copy_in.id);
    assert_eq!(copies[0].1, proctor_gate::Direction::Upload);
    let r = g
        .results()
        .into_iter()
        .find(|r| r.statement_id == copy_in.id)
        .unwrap();
    assert_eq!((r.tag.as_str(), r.rows), ("COPY 2000", 2000));
    assert!(g.events().iter().any(|e| matches!(e,
        Event::TargetMessage { kind, text } if kind == "notification" && text.contains("hello"))));
    assert!(g.events().iter().any(|e| matches!(e,
        Event::TargetMessage { kind, text } if kind == "notice" && text.contains("from a DO block"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_init_and_select_only() {
    let f = Fixture::start(PgFrontendConfig::default()).await;
    let conninfo = f.conninfo();
    let out = tokio::task::spawn_blocking(move || {
        let init = std::process::Command::new("pgbench")
            .args(["-i", "-s", "1", "-q"])
            .arg(&conninfo)
            .output()
            .unwrap();
        let run = std::process::Command::new("pgbench")
            .args([
                "-S", "-T", "3", "-c", "4", "-j", "2", "-M", "prepared", "-n",
            ])
            .arg(&conninfo)
            .output()
            .unwrap();
        (init, run)
    })
    .await
    .unwrap();
    assert!(
        out.0.status.success(),
        "{}",
        String::from_utf8_lossy(&out.0.stderr)
    );
    assert!(
        out.1.status.success(),
        "{}",
        String::from_utf8_lossy(&out.1.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.1.stdout);
    let tps: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(tps > 100.0, "{stdout}");
    // Every transaction's statement was judged and recorded.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let total: usize = (0..f.authority.session_count())
        .map(|i| f.authority.session(i).statements().len())
        .sum();
    assert!(
        total as f64 >= tps * 2.5,
        "{total} statements for {tps} tps"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input() {
    let f = Fixture::start(PgFrontendConfig {
        max_message_bytes: 1 << 20,
        handshake_timeout: Duration::from_millis(800),
        ..PgFrontendConfig::default()
    })
    .await;

    // Garbage instead of a startup packet.
    let mut raw = RawClient::connect(f.port).await;
    raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(raw.read_error().await.is_some());
    // A silent client neither stalls the listener nor lives forever.
    let mut silent = RawClient::connect(f.port).await;
    let (client, conn) = f.connect().await;
    client.simple_query("SELECT 1").await.unwrap();
    assert!(
        silent.read().await.is_none(),
        "silent client closed after the timeout"
    );

    // Oversized message after login: 54000 and a clean close.
    let e = client
        .simple_query(&format!("SELECT '{}'", "x".repeat(2 << 20)))
        .await
        .unwrap_err();
    let code = db_error(&e).0;
    assert!(code == "54000" || e.is_closed(), "{e:?}");
    let _ = conn.await;
    let g = f.wait_ended(0).await;
    assert!(g.events().iter().any(|e| matches!(e,
        Event::ProtocolError { party: proctor_gate::Party::Agent, message } if message.contains("exceeds"))));

    // Unknown message type after login.
    let mut raw = RawClient::login(f.port).await;
    raw.send(&typed(b'?', b"junk")).await;
    let (code, _) = raw.read_error().await.unwrap();
    assert_eq!(code, "08P01");
    assert!(raw.read().await.is_none());

    // Malformed Bind (hostile parameter count).
    let mut raw = RawClient::login(f.port).await;
    raw.send(&typed(b'B', b"\0\0\0\0\x7f\xff")).await;
    let (code, _) = raw.read_error().await.unwrap();
    assert_eq!(code, "08P01");

    // Negative length.
    let mut raw = RawClient::login(f.port).await;
    raw.send(b"Q\xff\xff\xff\xf0").await;
    let (code, _) = raw.read_error().await.unwrap();
    assert_eq!(code, "08P01");

    // A FunctionCall of an OID proctor does not resolve (3000, which needs 3 arguments) is
    // judged `unknown`; this gate allows it, the server refuses it, and the session lives on.
    let mut raw = RawClient::login(f.port).await;
    raw.send(&typed(b'F', b"\0\0\x0b\xb8\0\0\0\0\0\0")).await;
    let (_, message) = raw.read_error().await.unwrap();
    assert!(message.contains("requires 3"), "{message}");
    raw.send(&typed(b'Q', b"SELECT 42\0")).await;
    let mut saw = false;
    while let Some((tag, body)) = raw.read().await {
        if tag == b'D' {
            saw = body.ends_with(b"42");
        }
        if tag == b'Z' && saw {
            break;
        }
    }
    assert!(saw);

    use proctor_gate::RefusalKind::ProtocolViolation;
    let kinds = f.authority.refusal_kinds();
    assert!(
        kinds.iter().filter(|k| **k == ProtocolViolation).count() >= 2,
        "{kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_interrupts_sessions() {
    let f = Fixture::start(PgFrontendConfig::default()).await;
    let (client, conn) = f.connect().await;
    client.simple_query("SELECT 1").await.unwrap();
    let (client2, conn2) = f.connect().await;
    let q = tokio::spawn(async move { client2.simple_query("SELECT pg_sleep(30)").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    f.shutdown.send(true).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .unwrap();
    let e = tokio::time::timeout(Duration::from_secs(5), q)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    let (code, sev, msg) = db_error(&e);
    assert_eq!(
        (code.as_str(), sev.as_str(), msg.as_str()),
        ("57P01", "FATAL", "proctor shutting down")
    );
    let _ = conn2.await;
    for i in 0..2 {
        let g = f.wait_ended(i).await;
        assert_eq!(
            g.end().unwrap(),
            (Outcome::Interrupted, "proctor shutting down".to_string())
        );
    }
    tokio::time::timeout(Duration::from_secs(15), f.server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    drop(client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_over_tls_verify_full() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let cert = ca.issue(&["127.0.0.1"]);
    let (crt, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
    std::fs::write(&crt, &cert.pem).unwrap();
    std::fs::write(&key, &cert.key_pem).unwrap();
    if proctor_harness::is_root() {
        // PostgreSQL runs as nobody and insists on a private key only it can read.
        let _ = std::process::Command::new("chown")
            .args(["-R", "nobody"])
            .arg(dir.path())
            .status();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let conf = vec![
        "ssl = on".to_string(),
        format!("ssl_cert_file = '{}'", crt.display()),
        format!("ssl_key_file = '{}'", key.display()),
    ];
    let pg = tokio::task::spawn_blocking(move || {
        let pg = proctor_harness::LocalPostgres::start(proctor_harness::PostgresOptions {
            extra_conf: conf,
            ..Default::default()
        })
        .expect("start postgres with TLS");
        pg.psql(
            "postgres",
            &format!("CREATE ROLE {ROLE} LOGIN PASSWORD '{ROLE_PASSWORD}'"),
        )
        .unwrap();
        pg.psql(
            "postgres",
            &format!("CREATE DATABASE {TARGET} OWNER {ROLE}"),
        )
        .unwrap();
        pg
    })
    .await
    .unwrap();
    let f = Fixture::with_target_tls(
        pg,
        PgFrontendConfig::default(),
        proctor_gate::TargetTls::VerifyFull {
            ca_pem: ca.pem.clone(),
        },
    )
    .await;
    let (client, _conn) = f.connect().await;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "proctor -> target must be TLS");

    // A target whose certificate does not chain to the configured CA is refused.
    let other = TestCa::new();
    let f2 = Fixture::with_target_tls(
        f.pg.unwrap(),
        PgFrontendConfig::default(),
        proctor_gate::TargetTls::VerifyFull { ca_pem: other.pem },
    )
    .await;
    let Err(e) = f2
        .config(AGENT, AGENT_SECRET)
        .connect(tokio_postgres::NoTls)
        .await
    else {
        panic!("an unverifiable target must not be used");
    };
    assert_eq!(db_error(&e).0, "08006");
    let g = f2.wait_ended(0).await;
    assert_eq!(g.end().unwrap().0, Outcome::TargetLost);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_errors_mid_pipeline() {
    let f = Fixture::start(PgFrontendConfig::default()).await;
    let (client, conn) = f.connect().await;
    let (a, b, c) = tokio::join!(
        client.query_one("SELECT 1::int4", &[]),
        client.query_one("SELECT 1 / $1::int4", &[&0i32]),
        client.query_one("SELECT 3::int4", &[]),
    );
    assert_eq!(a.unwrap().get::<_, i32>(0), 1);
    assert_eq!(db_error(&b.unwrap_err()).0, "22012");
    assert_eq!(c.unwrap().get::<_, i32>(0), 3);
    // In a transaction the error aborts it, as without proctor.
    client.batch_execute("BEGIN").await.unwrap();
    let e = client.simple_query("SELECT 1/0").await.unwrap_err();
    assert_eq!(db_error(&e).0, "22012");
    let e = client.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(db_error(&e).0, "25P02");
    client.batch_execute("ROLLBACK").await.unwrap();
    // A denied statement is refused where it stood; the failed one still reports its error.
    let (x, y) = tokio::join!(
        client.query_one("SELECT 1 / $1::int4", &[&0i32]),
        client.query("SELECT 'forbidden_table'", &[]),
    );
    assert_eq!(db_error(&x.unwrap_err()).0, "22012");
    assert_eq!(db_error(&y.unwrap_err()).0, "42501");
    client.simple_query("SELECT 1").await.unwrap();
    drop(client);
    let _ = conn.await;
    let g = f.wait_ended(0).await;
    let stmts = g.statements();
    let div = stmts
        .iter()
        .find(|s| s.text == "SELECT 1 / $1::int4")
        .unwrap();
    let r = g
        .results()
        .into_iter()
        .find(|r| r.statement_id == div.id)
        .unwrap();
    let err = r.error.unwrap();
    assert_eq!(
        (err.code.as_str(), err.severity.as_str()),
        ("22012", "ERROR")
    );
    assert!(err.message.contains("division by zero"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_copy_in_and_out() {
    use futures_util::{SinkExt, StreamExt};
    let f = Fixture::start(PgFrontendConfig::default()).await;
    let (client, conn) = f.connect().await;
    client
        .batch_execute("CREATE TABLE c (a int, b text)")
        .await
        .unwrap();
    let mut payload = Vec::new();
    for i in 0..500 {
        payload.extend_from_slice(format!("{i}\tvalue {i}\n").as_bytes());
    }
    let sink = client.copy_in("COPY c FROM STDIN").await.unwrap();
    futures_util::pin_mut!(sink);
    for chunk in payload.chunks(1000) {
        sink.send(bytes::Bytes::copy_from_slice(chunk))
            .await
            .unwrap();
    }
    assert_eq!(sink.finish().await.unwrap(), 500);
    // The Sync sent with the COPY and the one after CopyDone are answered once: the session's
    // ordering must still be right, including a denied statement right after.
    let e = client
        .query("SELECT 'forbidden_table'", &[])
        .await
        .unwrap_err();
    assert_eq!(db_error(&e).0, "42501");
    let n: i64 = client
        .query_one("SELECT count(*) FROM c", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 500);
    let stream = client
        .copy_out("COPY (SELECT * FROM c ORDER BY a) TO STDOUT")
        .await
        .unwrap();
    futures_util::pin_mut!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(out, payload);
    client.simple_query("SELECT 1").await.unwrap();
    drop(client);
    let _ = conn.await;
    let g = f.wait_ended(0).await;
    let want: [u8; 32] = Sha256::digest(&payload).into();
    let copies: Vec<_> = g
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Copy {
                direction,
                bytes,
                digest,
                statement_id,
            } => Some((direction, bytes, digest, statement_id)),
            _ => None,
        })
        .collect();
    assert_eq!(copies.len(), 2);
    assert!(
        copies
            .iter()
            .all(|c| c.1 == payload.len() as u64 && c.2 == want)
    );
    let stmts = g.statements();
    let copy_in = stmts
        .iter()
        .find(|s| s.text == "COPY c FROM STDIN")
        .unwrap();
    assert_eq!(copies[0].3, copy_in.id);
    let r = g
        .results()
        .into_iter()
        .find(|r| r.statement_id == copy_in.id)
        .unwrap();
    assert_eq!(r.tag, "COPY 500");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_extended_protocol_flush_describe_close() {
    use bytes::BytesMut;
    use postgres_protocol::message::frontend;
    let f = Fixture::start(PgFrontendConfig::default()).await;
    let mut raw = RawClient::login(f.port).await;
    let mut b = BytesMut::new();
    frontend::parse(
        "st",
        "SELECT g, g::text AS t FROM generate_series(1, $1::int4) g",
        [],
        &mut b,
    )
    .unwrap();
    frontend::describe(b'S', "st", &mut b).unwrap();
    frontend::bind(
        "po",
        "st",
        [0i16],
        [Some(&b"3"[..])],
        |v: Option<&[u8]>, buf: &mut BytesMut| {
            buf.extend_from_slice(v.unwrap_or_default());
            Ok(postgres_protocol::IsNull::No)
        },
        [1i16, 0],
        &mut b,
    )
    .map_err(|_| ())
    .unwrap();
    frontend::describe(b'P', "po", &mut b).unwrap();
    frontend::execute("po", 2, &mut b).unwrap();
    frontend::execute("po", 0, &mut b).unwrap();
    frontend::close(b'P', "po", &mut b).unwrap();
    frontend::close(b'S', "st", &mut b).unwrap();
    frontend::sync(&mut b);
    raw.send(&b).await;
    let mut tags = Vec::new();
    loop {
        let (tag, _) = raw.read().await.unwrap();
        tags.push(tag);
        if tag == b'Z' {
            break;
        }
    }
    assert_eq!(
        String::from_utf8(tags).unwrap(),
        "1tT2TDDsDC33Z",
        "ParseComplete, ParameterDescription, RowDescription, BindComplete, RowDescription, 2 rows, suspended, 1 row, complete, 2x CloseComplete, ready"
    );

    // Deny with Flush (no Sync yet): the error comes after the answers before it.
    let mut b = BytesMut::new();
    frontend::parse("", "SELECT 'forbidden_table'", [], &mut b).unwrap();
    frontend::bind(
        "",
        "",
        [],
        [] as [Option<&[u8]>; 0],
        |_: Option<&[u8]>, _: &mut BytesMut| Ok(postgres_protocol::IsNull::No),
        [],
        &mut b,
    )
    .map_err(|_| ())
    .unwrap();
    frontend::execute("", 0, &mut b).unwrap();
    frontend::parse("", "SELECT 'after the denial, skipped'", [], &mut b).unwrap();
    frontend::flush(&mut b);
    raw.send(&b).await;
    let mut tags = Vec::new();
    for _ in 0..3 {
        tags.push(raw.read().await.unwrap().0);
    }
    assert_eq!(String::from_utf8(tags).unwrap(), "12E");
    let mut b = BytesMut::new();
    frontend::sync(&mut b);
    frontend::query("SELECT 7", &mut b).unwrap();
    raw.send(&b).await;
    let mut tags = Vec::new();
    loop {
        let (tag, _) = raw.read().await.unwrap();
        tags.push(tag);
        if tag == b'Z' && tags.len() > 1 {
            break;
        }
    }
    assert_eq!(String::from_utf8(tags).unwrap(), "ZTDCZ");
    raw.send(&typed(b'X', b"")).await;
    assert!(raw.read().await.is_none());
    let g = f.wait_ended(0).await;
    assert_eq!(g.end().unwrap().0, Outcome::Completed);
    let stmts = g.statements();
    let st = stmts
        .iter()
        .find(|s| s.text.contains("generate_series"))
        .unwrap();
    assert_eq!(
        (st.statement_name.as_str(), st.portal.as_str()),
        ("st", "po")
    );
    assert_eq!(st.params[0].value.as_deref(), Some(&b"3"[..]));
    let parts: Vec<_> = g
        .results()
        .into_iter()
        .filter(|r| r.statement_id == st.id)
        .collect();
    assert_eq!(parts.len(), 2);
    assert!(parts[0].suspended && !parts[1].suspended);
    assert_eq!(parts[0].columns, vec!["g", "t"]);
    // Column 0 is binary (format 1), column 1 text.
    assert_eq!(
        parts[0].sample_rows[0],
        vec![Some("00000001".into()), Some("1".into())]
    );
    // The skipped Parse after the denial was never judged (it is not a statement) and the
    // denied one has no result.
    let denied = stmts
        .iter()
        .find(|s| s.text.contains("forbidden_table"))
        .unwrap();
    assert!(g.results().iter().all(|r| r.statement_id != denied.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_results_and_parameters() {
    let f = Fixture::start(PgFrontendConfig::default()).await;
    let (client, conn) = f.connect().await;
    // ~20 MB of rows, read slowly enough that proctor must apply backpressure.
    let rows = client
        .query(
            "SELECT repeat('x', 1000) FROM generate_series(1, 20000)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 20000);
    // A 5 MB binary parameter.
    let blob = vec![0xa5u8; 5 << 20];
    let n: i32 = client
        .query_one("SELECT length($1::bytea)", &[&blob])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 5 << 20);
    drop(client);
    let _ = conn.await;
    let g = f.wait_ended(0).await;
    let stmts = g.statements();
    let big = stmts
        .iter()
        .find(|s| s.text.contains("repeat('x', 1000)"))
        .unwrap();
    let r = g
        .results()
        .into_iter()
        .find(|r| r.statement_id == big.id)
        .unwrap();
    assert_eq!(r.rows, 20000);
    let mut h = Sha256::new();
    let row = text_row(&"x".repeat(1000));
    for _ in 0..20000 {
        h.update(&row);
    }
    let want: [u8; 32] = h.finalize().into();
    assert_eq!(r.digest, want);
    assert_eq!(r.sample_rows.len(), 5);
    let p = stmts
        .iter()
        .find(|s| s.text.contains("length($1::bytea)"))
        .unwrap();
    assert_eq!(p.params[0].value.as_ref().map(|v| v.len()), Some(5 << 20));
}
