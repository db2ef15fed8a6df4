//! What a statement IS, checked on a real PostgreSQL through a real `proctor serve` (issue 12):
//! every-row DML in its disguises, names hidden by Unicode escapes, `UPDATE pg_settings` as the
//! `SET ROLE` it performs, admin statements and two-phase commit are held by the shipped
//! policies; each is denied here and the target's own state shows nothing ran, and the recording
//! holds the statement with its class and the rule that held it. A rule body with `;` inside its
//! parentheses is one statement, as the server reads it.

mod pg_support;

use pg_support::*;
use serde_json::Value;

/// Runs `args` in psql as `conninfo`, waits for the approval whose statement contains `needle`,
/// checks its class and rule, denies it, and returns psql's stdout (psql keeps going after the
/// error only if `args` say `ON_ERROR_STOP=0`).
fn held_then_denied(env: &Env, args: &[&str], needle: &str, class: &str, rule: &str) -> String {
    let child = env
        .psql_cmd(&env.conninfo(AGENT, SECRET), args)
        .spawn()
        .expect("psql");
    let a = env.wait_approval(needle);
    assert_eq!(a["class"], class, "{a}");
    assert_eq!(a["rule"], rule, "{a}");
    let id = a["id"].as_str().expect("approval id").to_string();
    env.store()
        .ok(&["approvals", "deny", &id, "--reason", "e2e says no"]);
    let out = wait_output(child, T);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("e2e says no"), "{needle}: {stderr}");
    text(&out.stdout)
}

/// The records of each session of `agent` (statement ids count per session).
fn sessions_records(env: &Env, agent: &str) -> Vec<Vec<Value>> {
    env.store()
        .sessions()
        .into_iter()
        .filter(|s| s["agent"] == agent)
        .filter_map(|s| s["id"].as_str().map(String::from))
        .map(|id| env.export(&id))
        .collect()
}

/// The recorded statement containing `needle` and the verdicts (verdict, rule) of it.
fn recorded(sessions: &[Vec<Value>], needle: &str) -> (Value, Vec<(String, String)>) {
    let is_it = |r: &Value| {
        r["kind"] == "statement" && r["text"].as_str().is_some_and(|t| t.contains(needle))
    };
    let records = sessions
        .iter()
        .find(|records| records.iter().any(is_it))
        .unwrap_or_else(|| panic!("{needle} not recorded"));
    let s = records
        .iter()
        .find(|r| is_it(r))
        .expect("statement")
        .clone();
    let subject = format!("statement {}", s["statement_id"]);
    let verdicts = records
        .iter()
        .filter(|r| r["kind"] == "verdict" && r["subject"] == subject)
        .map(|v| {
            (
                v["verdict"].as_str().unwrap_or("").to_string(),
                v["rule"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    (s, verdicts)
}

fn count(env: &Env, sql: &str) -> String {
    env.pg.psql("app", sql).expect("query the target")
}

#[test]
fn disguised_every_row_set_role_admin_and_two_phase_are_held() {
    let env = Env::start();
    let copy_file = env.dir.path().join("copied.csv");
    let copy_sql = format!("COPY t TO '{}'", copy_file.display());
    let held: Vec<(Vec<&str>, &str, &str, &str)> = vec![
        (
            vec![
                "-c",
                "MERGE INTO t USING (SELECT 1 AS k) s ON true WHEN MATCHED THEN DELETE",
            ],
            "MERGE INTO t",
            "write",
            "pg-hold-unqualified-dml",
        ),
        (
            vec!["-c", "DELETE FROM t WHERE id = id"],
            "WHERE id = id",
            "write",
            "pg-hold-unqualified-dml",
        ),
        (
            vec!["-c", "UPDATE t SET v = 'gone' WHERE true OR id = 1"],
            "WHERE true OR id = 1",
            "write",
            "pg-hold-unqualified-dml",
        ),
        (
            vec![
                "-c",
                "INSERT INTO t SELECT id, v FROM t ON CONFLICT (id) DO UPDATE SET v = 'gone'",
            ],
            "DO UPDATE SET v",
            "write",
            "pg-hold-unqualified-dml",
        ),
        // A pattern that matches every string restricts nothing (fifth round: each ran).
        (
            vec!["-c", "DELETE FROM t WHERE v LIKE '%'"],
            "WHERE v LIKE '%'",
            "write",
            "pg-hold-unqualified-dml",
        ),
        (
            vec!["-c", "UPDATE t SET v = 'gone' WHERE v SIMILAR TO '%'"],
            "SIMILAR TO '%'",
            "write",
            "pg-hold-unqualified-dml",
        ),
        (
            vec!["-c", "DELETE FROM t WHERE v ~ ''"],
            "WHERE v ~ ''",
            "write",
            "pg-hold-unqualified-dml",
        ),
        (
            vec!["-c", "LOCK TABLE t IN ACCESS EXCLUSIVE MODE"],
            "LOCK TABLE t",
            "admin",
            "pg-hold-admin",
        ),
        (vec!["-c", &copy_sql], "COPY t TO", "admin", "pg-hold-admin"),
        (
            vec!["-c", "SELECT pg_advisory_lock(42)"],
            "pg_advisory_lock",
            "admin",
            "pg-hold-admin",
        ),
        (
            vec![
                "-c",
                "BEGIN; INSERT INTO t VALUES (99, 'prepared'); PREPARE TRANSACTION 'p1'",
            ],
            "PREPARE TRANSACTION",
            "write",
            "pg-hold-two-phase",
        ),
    ];
    for (args, needle, class, rule) in &held {
        held_then_denied(&env, args, needle, class, rule);
    }
    // Who the session acts as, spelled two ways the server resolves to SET ROLE: held, and after
    // the denial the session is still its own just-in-time role.
    for (sql, needle, class, rule) in [
        (
            "UPDATE pg_settings SET setting = 'app_write' WHERE name = 'role'",
            "UPDATE pg_settings",
            "dcl",
            "pg-hold-dcl",
        ),
        (
            "SELECT U&\"\\0073et_config\"('role', 'app_write', false)",
            "0073et_config",
            "admin",
            "pg-hold-set-config-role",
        ),
    ] {
        let out = held_then_denied(
            &env,
            &[
                "-v",
                "ON_ERROR_STOP=0",
                "-c",
                sql,
                "-c",
                "SELECT current_user",
            ],
            needle,
            class,
            rule,
        );
        // Sessions act as the grant's role from login; the denied statement changed nothing.
        assert_eq!(out.trim(), "app_write", "{needle}: {out}");
    }

    // The target's own state: every row still there, none rewritten, nothing prepared, no file.
    assert_eq!(count(&env, "SELECT count(*) FROM t"), "5");
    assert_eq!(count(&env, "SELECT count(*) FROM t WHERE v = 'gone'"), "0");
    assert_eq!(count(&env, "SELECT count(*) FROM pg_prepared_xacts"), "0");
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        ),
        "0"
    );
    assert!(!copy_file.exists());

    // A SET of an ordinary setting through pg_settings passes and takes effect; a qualified
    // DELETE passes and runs.
    let out = env.psql(&[
        "-c",
        "UPDATE pg_settings SET setting = '1234' WHERE name = 'statement_timeout'",
        "-c",
        "SHOW statement_timeout",
        "-c",
        "DELETE FROM t WHERE id = 5",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("1234ms"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(count(&env, "SELECT count(*) FROM t"), "4");

    // The recording: each held statement with its class, held by its rule, and denied.
    let mut records = Vec::new();
    assert!(
        eventually(T, || {
            records = sessions_records(&env, AGENT);
            records
                .iter()
                .flatten()
                .any(|r| r["kind"] == "statement" && r["text"] == "DELETE FROM t WHERE id = 5")
        }),
        "the last session was not sealed"
    );
    let checks = held
        .iter()
        .map(|(_, needle, class, rule)| (*needle, *class, *rule))
        .chain([
            (
                "UPDATE pg_settings SET setting = 'app_write'",
                "dcl",
                "pg-hold-dcl",
            ),
            ("0073et_config", "admin", "pg-hold-set-config-role"),
        ]);
    for (needle, class, rule) in checks {
        let (s, verdicts) = recorded(&records, needle);
        assert_eq!(s["class"], class, "{s}");
        assert!(
            verdicts.contains(&("hold".to_string(), rule.to_string())),
            "{needle}: {verdicts:?}"
        );
    }
    let (s, verdicts) = recorded(&records, "setting = '1234'");
    assert_eq!(s["class"], "write", "{s}");
    assert!(verdicts.iter().all(|(v, _)| v == "allow"), "{verdicts:?}");
    env.verify();
}

#[test]
fn rule_bodies_are_one_statement_as_the_server_reads_them() {
    let env = Env::start();
    // The server parses a whole query string before running any of it: a `;` inside
    // parentheses outside a rule body fails the string, and the DELETE before it never runs.
    assert!(
        env.pg
            .psql("app", "DELETE FROM t WHERE id = 1; SELECT (2; SELECT 3)")
            .is_err()
    );
    assert_eq!(count(&env, "SELECT count(*) FROM t WHERE id = 1"), "1");

    // A rule with two actions, created through proctor by a routine agent (CREATE RULE is
    // `unknown`, held everywhere; approved here), then fired.
    let rule = "CREATE RULE rr AS ON INSERT TO rt DO INSTEAD (INSERT INTO rlog VALUES (new.id); INSERT INTO rlog VALUES (new.id + 100))";
    let child = env
        .psql_cmd(
            &env.conninfo(BENCH, BENCH_SECRET),
            &[
                "-c",
                "CREATE TABLE rt (id int); CREATE TABLE rlog (id int)",
                "-c",
                rule,
                "-c",
                "INSERT INTO rt VALUES (1)",
                "-c",
                "SELECT count(*) FROM rlog",
            ],
        )
        .spawn()
        .expect("psql");
    let a = env.wait_approval("CREATE RULE rr");
    assert_eq!(a["class"], "unknown", "{a}");
    let id = a["id"].as_str().expect("approval id").to_string();
    env.store().ok(&["approvals", "approve", &id]);
    let out = wait_output(child, T);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "2");

    let session = env.store().sealed_session(|s| s["agent"] == BENCH);
    let records = env.export(session["id"].as_str().expect("id"));
    let statements: Vec<&str> = of_kind(&records, "statement")
        .iter()
        .filter_map(|s| s["text"].as_str())
        .collect();
    assert_eq!(
        statements,
        vec![
            "CREATE TABLE rt (id int)",
            "CREATE TABLE rlog (id int)",
            rule,
            "INSERT INTO rt VALUES (1)",
            "SELECT count(*) FROM rlog"
        ]
    );
    let (s, result) = statement_with_result(&records, "CREATE RULE rr").expect("recorded");
    assert_eq!(s["command"], "CREATE RULE", "{s}");
    assert_eq!(result.expect("result")["tag"], "CREATE RULE");
    env.verify();
}

/// Statements that ran unheld in a red-team round: `EXPLAIN (ANALYSE)` (the server's other
/// spelling of ANALYZE) deleted every row as a `read`, and `ts_rewrite` ran SQL text hidden in
/// its argument (a `set_config('role', ...)` no regex could see), and a plain `EXPLAIN EXECUTE`
/// evaluated its arguments unjudged; `VACUUM ("full")` (a quoted option name) rewrote the table
/// as a plain VACUUM, and `WHERE NOT (id IS NULL)` deleted every row while `id IS NOT NULL` was
/// held. All are held now; after the denial the rows are all there,
/// the session still acts as the grant's role and holds no advisory lock.
#[test]
fn explain_analyse_and_sql_running_functions_are_held() {
    let env = Env::start();
    held_then_denied(
        &env,
        &["-c", "EXPLAIN (ANALYSE) DELETE FROM t"],
        "EXPLAIN (ANALYSE)",
        "write",
        "pg-hold-unqualified-dml",
    );
    // A quoted option name is still VACUUM FULL, which rewrites the table.
    held_then_denied(
        &env,
        &["-c", "VACUUM (\"full\") t"],
        "VACUUM (",
        "admin",
        "pg-hold-vacuum-full",
    );
    // `id IS NOT NULL` spelled with NOT is every row too.
    held_then_denied(
        &env,
        &["-c", "DELETE FROM t WHERE NOT (id IS NULL)"],
        "NOT (id IS NULL)",
        "write",
        "pg-hold-unqualified-dml",
    );
    let hidden = "SELECT ts_rewrite('a'::tsquery, 'SELECT set_' || 'config(''ro''||''le'', ''none'', false)::tsquery, ''b''::tsquery')";
    let out = held_then_denied(
        &env,
        &[
            "-v",
            "ON_ERROR_STOP=0",
            "-c",
            hidden,
            "-c",
            "SELECT current_user",
        ],
        "ts_rewrite",
        "unknown",
        "pg-hold-unknown",
    );
    assert_eq!(out.trim(), "app_write", "{out}");
    assert_eq!(count(&env, "SELECT count(*) FROM t"), "5");
    // A plain EXPLAIN EXECUTE evaluates the arguments: a session-level advisory lock there is
    // admin like anywhere else.
    let out = held_then_denied(
        &env,
        &[
            "-v",
            "ON_ERROR_STOP=0",
            "-c",
            "PREPARE p(text) AS SELECT $1",
            "-c",
            "EXPLAIN EXECUTE p(pg_advisory_lock(42)::text)",
            "-c",
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'",
        ],
        "EXPLAIN EXECUTE",
        "admin",
        "pg-hold-admin",
    );
    assert_eq!(out.trim().lines().last(), Some("0"), "{out}");

    // A plain EXPLAIN runs nothing and passes as a read; the rows stay.
    let out = env.psql(&["-c", "EXPLAIN (COSTS off) DELETE FROM t"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(count(&env, "SELECT count(*) FROM t"), "5");

    let mut records = Vec::new();
    assert!(
        eventually(T, || {
            records = sessions_records(&env, AGENT);
            records.iter().flatten().any(|r| {
                r["kind"] == "statement" && r["text"] == "EXPLAIN (COSTS off) DELETE FROM t"
            })
        }),
        "the last session was not sealed"
    );
    for (needle, class, rule) in [
        ("EXPLAIN (ANALYSE)", "write", "pg-hold-unqualified-dml"),
        ("NOT (id IS NULL)", "write", "pg-hold-unqualified-dml"),
        ("VACUUM (", "admin", "pg-hold-vacuum-full"),
        ("ts_rewrite", "unknown", "pg-hold-unknown"),
        ("EXPLAIN EXECUTE", "admin", "pg-hold-admin"),
    ] {
        let (s, verdicts) = recorded(&records, needle);
        assert_eq!(s["class"], class, "{s}");
        assert!(
            verdicts.contains(&("hold".to_string(), rule.to_string())),
            "{needle}: {verdicts:?}"
        );
    }
    let (s, _) = recorded(&records, "EXPLAIN (COSTS off)");
    assert_eq!(s["class"], "read", "{s}");
    env.verify();
}

/// A pattern passed as a parameter is judged by the value bound to it (fifth round: `EXECUTE
/// p('%')` of `PREPARE p(text) AS DELETE ... WHERE owner LIKE $1` ran `DELETE 5` unheld): the
/// SQL EXECUTE's literal argument and a real driver's Bind (tokio-postgres, binary text) are
/// each held and denied; a restricting value runs. The target keeps every row, and the record
/// holds each held statement with its hold.
#[test]
fn a_pattern_bound_as_a_parameter_is_judged_by_its_value() {
    let env = Env::start();
    held_then_denied(
        &env,
        &[
            "-c",
            "PREPARE pl(text) AS DELETE FROM t WHERE v LIKE $1",
            "-c",
            "EXECUTE pl('%')",
        ],
        "EXECUTE pl('%')",
        "write",
        "pg-hold-unqualified-dml",
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let conninfo = env.conninfo(AGENT, SECRET);
    let sql = "DELETE FROM t WHERE v LIKE $1";
    let task = runtime.spawn(async move {
        let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
            .await
            .expect("agent connects through proctor");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let all = client
            .execute(sql, &[&"%"])
            .await
            .map_err(|e| e.to_string());
        let none = client
            .execute(sql, &[&"no such row%"])
            .await
            .map_err(|e| e.to_string());
        (all, none)
    });
    let a = env.wait_approval(sql);
    assert_eq!(a["rule"], "pg-hold-unqualified-dml", "{a}");
    let id = a["id"].as_str().expect("approval id").to_string();
    env.store()
        .ok(&["approvals", "deny", &id, "--reason", "e2e says no"]);
    let (all, none) = runtime.block_on(task).expect("driver task");
    assert!(all.is_err(), "the every-row DELETE ran: {all:?}");
    assert_eq!(none, Ok(0), "the restricting DELETE");
    assert_eq!(count(&env, "SELECT count(*) FROM t"), "5");

    let mut records = Vec::new();
    assert!(
        eventually(T, || {
            records = sessions_records(&env, AGENT);
            let has = |n: &str| {
                records.iter().flatten().any(|r| {
                    r["kind"] == "statement" && r["text"].as_str().is_some_and(|t| t.contains(n))
                })
            };
            has("EXECUTE pl('%')") && has(sql)
        }),
        "the sessions were not recorded"
    );
    for needle in ["EXECUTE pl('%')", sql] {
        let (_, verdicts) = recorded(&records, needle);
        assert!(
            verdicts.contains(&("hold".to_string(), "pg-hold-unqualified-dml".to_string())),
            "{needle}: {verdicts:?}"
        );
    }
    env.verify();
}
