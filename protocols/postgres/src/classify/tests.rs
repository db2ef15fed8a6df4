use super::*;
use StatementClass::*;

fn one(sql: &str) -> Arc<Classified> {
    let v = classify_query(sql, LexContext::default());
    assert_eq!(v.len(), 1, "{sql}");
    v[0].info.clone()
}

fn class(sql: &str) -> StatementClass {
    one(sql).class
}

#[test]
fn catalog_operators_before_any_are_read() {
    // psql's `\d t` and `pg_dump -t t` resolve a table pattern this way.
    let c = one(
        "SELECT c.oid FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace WHERE c.relkind OPERATOR(pg_catalog.=) ANY (array['r', 'S']) AND c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default",
    );
    assert_eq!(c.class, Read);
    assert!(c.tables.contains(&"pg_catalog.pg_class".to_string()));
    // Another schema's operator could be anyone's function: still unknown.
    assert_eq!(
        class("SELECT 1 WHERE 'a' OPERATOR(public.=) ANY (array['a'])"),
        Unknown
    );
    // A write stays a write.
    assert_eq!(
        class("DELETE FROM t WHERE k OPERATOR(pg_catalog.=) ANY (array[1, 2])"),
        Write
    );
}

#[test]
fn sql_level_prepared_statements_are_tracked() {
    let p = one(
        "PREPARE getColumnACLs(pg_catalog.oid) AS SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = $1",
    );
    assert_eq!(p.class, Read);
    assert_eq!(
        p.prepared,
        Some(SqlPrepared::Prepare {
            name: "getcolumnacls".into(),
            command: "SELECT".into(),
            body: "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = $1".into(),
        })
    );
    let w = one("PREPARE \"Wipe\" AS DELETE FROM t WHERE id = $1");
    assert_eq!(w.class, Write);
    assert_eq!(
        w.prepared,
        Some(SqlPrepared::Prepare {
            name: "Wipe".into(),
            command: "DELETE".into(),
            body: "DELETE FROM t WHERE id = $1".into(),
        })
    );
    let e = one("EXECUTE getColumnACLs('6100')");
    assert_eq!(
        e.class, Unknown,
        "judged by the relay, which knows what was prepared"
    );
    assert_eq!(
        e.prepared,
        Some(SqlPrepared::Execute {
            name: "getcolumnacls".into(),
            args_class: None
        })
    );
    assert_eq!(
        one("DEALLOCATE PREPARE \"Wipe\"").prepared,
        Some(SqlPrepared::Deallocate(Some("Wipe".into())))
    );
    assert_eq!(
        one("DEALLOCATE ALL").prepared,
        Some(SqlPrepared::Deallocate(None))
    );
    assert_eq!(
        one("DISCARD ALL").prepared,
        Some(SqlPrepared::Deallocate(None))
    );
    assert_eq!(one("DISCARD PLANS").prepared, None);
}

#[test]
fn pgbench_initialization_is_classified() {
    // What `pgbench -i` (PostgreSQL 15) sends: none of it may be `unknown`, or the
    // default policy holds it.
    for sql in [
        "drop table if exists pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers",
        "create table pgbench_history(tid int,bid int,aid    int,delta int,mtime timestamp,filler char(22))",
        "create table pgbench_tellers(tid int not null,bid int,tbalance int,filler char(84)) with (fillfactor=100)",
        "begin",
        "truncate table pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers",
        "copy pgbench_branches from stdin with (freeze on)",
        "copy pgbench_accounts from stdin",
        "commit",
        "vacuum analyze pgbench_branches",
        "alter table pgbench_branches add primary key (bid)",
        "select count(*) from pgbench_branches",
        "select o.n, p.partstrat, pg_catalog.count(i.inhparent) from pg_catalog.pg_class as c join pg_catalog.pg_namespace as n on (n.oid = c.relnamespace) cross join lateral (select pg_catalog.array_position(pg_catalog.current_schemas(true), n.nspname)) as o(n) left join pg_catalog.pg_partitioned_table as p on (p.partrelid = c.oid) left join pg_catalog.pg_inherits as i on (c.oid = i.inhparent) where c.relname = 'pgbench_accounts' and o.n is not null group by 1, 2 order by 1 asc limit 1",
    ] {
        let c = one(sql);
        assert_ne!(c.class, Unknown, "{sql}: {:?}", c.note);
    }
    assert_eq!(
        class("copy pgbench_branches from stdin with (freeze on)"),
        Write
    );
    let v = one("VACUUM (VERBOSE, PARALLEL 2) public.t1, \"T2\" (a, b)");
    assert_eq!(v.class, Admin);
    assert_eq!(v.tables, vec!["public.t1".to_string(), "T2".to_string()]);
    assert_eq!(one("analyze").class, Admin);
    assert_eq!(one("vacuum full freeze t").tables, vec!["t".to_string()]);
    // Anything beyond the grammar stays unknown.
    assert_eq!(class("vacuum t (a) u"), Unknown);
    assert_eq!(class("VACUUM ANALYZE t"), Admin);
    assert_eq!(class("analyze t where 1 = 1"), Unknown);
    assert_eq!(
        class("COPY t TO STDOUT WITH (HEADER off, FORMAT csv)"),
        Read
    );
    // The rewrite never turns a program or a file into something harmless.
    assert!(class("copy t from program 'sh -c id' with (freeze on)") >= Admin);
    assert!(class("copy t to '/tmp/x' with (header on)") >= Admin);
}

#[test]
fn plain_kinds() {
    assert_eq!(
        class("SELECT abalance FROM pgbench_accounts WHERE aid = 5"),
        Read
    );
    assert_eq!(class("select 1"), Read);
    assert_eq!(class("INSERT INTO t VALUES (1)"), Write);
    assert_eq!(class("update t set a = 1"), Write);
    assert_eq!(class("DELETE FROM t WHERE id = $1"), Write);
    assert_eq!(class("TRUNCATE t"), Write);
    assert_eq!(class("BEGIN"), Tcl);
    assert_eq!(class("commit"), Tcl);
    assert_eq!(class("SAVEPOINT a"), Tcl);
    assert_eq!(class("SET search_path = public"), Session);
    assert_eq!(class("SHOW server_version"), Session);
    assert_eq!(class("RESET ALL"), Session);
    assert_eq!(class("SET ROLE admin"), Dcl);
    assert!(matches!(class("SET role TO admin"), Dcl | Unknown));
    assert_eq!(class("SET role = admin"), Dcl);
    assert_eq!(class("SET SESSION AUTHORIZATION admin"), Dcl);
    assert_eq!(class("GRANT SELECT ON t TO x"), Dcl);
    assert_eq!(class("CREATE ROLE x LOGIN"), Dcl);
    assert_eq!(class("DROP ROLE x"), Dcl);
    assert_eq!(class("CREATE TABLE t (a int)"), Ddl);
    assert_eq!(class("DROP TABLE t"), Ddl);
    assert_eq!(class("ALTER TABLE t ADD COLUMN b int"), Ddl);
    assert_eq!(class("CREATE INDEX i ON t (a)"), Ddl);
    assert_eq!(class("VACUUM t"), Admin);
    assert_eq!(class("ANALYZE t"), Admin);
    assert_eq!(class("LOCK TABLE t"), Admin);
    assert_eq!(class("COPY t FROM STDIN"), Write);
    assert_eq!(class("COPY t TO STDOUT"), Read);
    assert_eq!(class("COPY (SELECT 1) TO STDOUT"), Read);
    assert_eq!(class("COPY t TO PROGRAM 'curl x'"), Admin);
    assert_eq!(class("COPY t FROM '/etc/passwd'"), Admin);
    assert_eq!(class("LISTEN ch"), Session);
    // Cursor positioning as drivers send it (psycopg scroll(), asyncpg Cursor.forward()).
    for sql in [
        "MOVE ABSOLUTE 10 FROM \"compat_ssc2\"",
        "MOVE FORWARD 10 __asyncpg_portal_f__",
        "MOVE RELATIVE -3 FROM \"c\"\"x y\"",
        "move backward all in c",
        "MOVE c",
        "FETCH c",
        "FETCH 5 c",
        "FETCH FORWARD FROM c",
        "FETCH ABSOLUTE 10 FROM c",
    ] {
        assert_eq!(class(sql), Read, "{sql}");
    }
    assert_eq!(cached("MOVE c").command, "MOVE");
    for sql in [
        "MOVE",
        "MOVE FORWARD",
        "MOVE ABSOLUTE FROM c",
        "MOVE 1 FROM c d",
        "MOVE FROM c(1)",
        "MOVE \"c",
        "MOVE \"c\"x",
    ] {
        assert_eq!(class(sql), Unknown, "{sql}");
    }
    assert_eq!(class("NOTIFY ch, 'x'"), Write);
    assert_eq!(class("EXPLAIN DELETE FROM t"), Read);
}

#[test]
fn traps() {
    assert_eq!(
        class("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d"),
        Write
    );
    assert_eq!(class("SELECT * INTO newt FROM t"), Ddl);
    assert_eq!(class("SELECT nextval('s')"), Write);
    assert_eq!(class("SELECT pg_terminate_backend(123)"), Admin);
    assert_eq!(
        class("select pg_catalog.set_config('role', 'x', false)"),
        Admin
    );
    assert_eq!(class("SELECT * FROM t FOR UPDATE"), Write);
    assert_eq!(class("EXPLAIN ANALYZE DELETE FROM t"), Write);
    assert_eq!(class("EXPLAIN (ANALYZE) DELETE FROM t"), Write);
    assert_eq!(
        class("SELECT * FROM dblink('x', 'DELETE FROM t') AS r(a int)"),
        Unknown
    );
    assert_eq!(class("SELECT lo_import('/etc/passwd')"), Admin);
    assert_eq!(class("SELECT (SELECT nextval('s'))"), Write);
    assert_eq!(class("SELECT * FROM pg_ls_dir('.') d"), Admin);
    assert_eq!(
        class("SELECT * FROM LATERAL pg_catalog.pg_ls_dir('.') x"),
        Admin
    );
    let g = one("SELECT * FROM t, generate_series(1,2) g");
    assert_eq!((g.class, g.tables.clone()), (Read, vec!["t".to_string()]));
    for sql in [
        "DO $$BEGIN DELETE FROM t; END$$",
        "ALTER SYSTEM SET work_mem = '1GB'",
        "CHECKPOINT",
        "REINDEX TABLE t",
        "CLUSTER t",
        "REFRESH MATERIALIZED VIEW v",
        "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO x",
        "REASSIGN OWNED BY a TO b",
        "CALL p()",
        "EXECUTE plan1",
        "select 'unterminated",
        "SELEKT 1",
    ] {
        assert_eq!(class(sql), Unknown, "{sql}");
    }
    assert_eq!(one("ALTER SYSTEM SET x = 1").command, "ALTER SYSTEM");
    assert_eq!(one("DO $$ begin end $$").command, "DO");
}

#[test]
fn multi_statement_and_tables() {
    let v = classify_query(
        "/* reason: look */ SELECT a FROM s.t1 JOIN t2 ON true; DELETE FROM t3 WHERE x = 1",
        LexContext::default(),
    );
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].info.class, Read);
    assert_eq!(v[0].info.tables, vec!["s.t1".to_string(), "t2".to_string()]);
    assert_eq!(v[0].reasoning.as_deref(), Some("look"));
    assert_eq!(v[1].info.class, Write);
    assert_eq!(v[1].info.command, "DELETE");
    assert_eq!(v[1].info.tables, vec!["t3".to_string()]);
    let w = one("WITH d AS (SELECT 1) SELECT * FROM d, real_t");
    assert_eq!(w.tables, vec!["real_t".to_string()]);
    assert_eq!(one("COPY t (a) FROM STDIN").tables, vec!["t".to_string()]);
    let e = classify_query("", LexContext::default());
    assert_eq!(e[0].info.class, Empty);
    let p = classify_prepared("SELECT 1; DROP TABLE x", LexContext::default());
    assert_eq!(p.info.class, Ddl);
}

#[test]
fn names_resolve_as_the_server_reads_them() {
    for sql in [
        "SELECT U&\"\\0073et_config\"('role', 'x', false)",
        "SELECT pg_catalog.U&\"!0073et_config\" UESCAPE '!' ('role', 'x', false)",
        "SELECT \"pg_terminate_backend\"(1)",
        "SELECT \"pg_catalog\".\"PG_TERMINATE_BACKEND\"(1)",
        "select LO_EXPORT(1, '/tmp/x')",
        "select u&\"lo\\005fexport\"(1, '/tmp/x')",
    ] {
        assert_eq!(class(sql), Admin, "{sql}");
    }
    assert_eq!(class("SET U&\"r\\006fle\" = admin"), Dcl);
    assert_eq!(class("SET \"role\" TO admin"), Dcl);
    // Tables as the server names them: unquoted folded, quoted verbatim.
    assert_eq!(
        one("SELECT * FROM Public.Accounts, \"Mixed\", U&\"acc\\006Funts2\"").tables,
        vec![
            "public.accounts".to_string(),
            "Mixed".to_string(),
            "accounts2".to_string()
        ]
    );
    assert_eq!(
        one("WITH X AS (SELECT 1) SELECT * FROM x").tables,
        Vec::<String>::new()
    );
}

#[test]
fn pg_settings_update_is_the_set_it_performs() {
    for sql in [
        "UPDATE pg_settings SET setting = 'admin' WHERE name = 'role'",
        "update PG_CATALOG.pg_settings s set setting = 'admin' where s.name = 'ROLE'",
        "UPDATE U&\"pg\\005fsettings\" SET setting = 'admin' WHERE name = 'session_authorization'",
        "UPDATE pg_settings SET setting = 'admin' WHERE name = E'role'",
        "UPDATE pg_settings SET setting = E'\\\\' WHERE name = 'work_mem'",
        "UPDATE pg_settings SET setting = 'admin' WHERE name LIKE 'rol%'",
        "UPDATE pg_settings SET setting = 'admin'",
        "UPDATE pg_settings SET setting = 'x' WHERE name IN ('work_mem', 'role')",
        "WITH u AS (UPDATE pg_settings SET setting = 'admin' WHERE name = 'role' RETURNING 1) SELECT 1",
    ] {
        assert_eq!(class(sql), Dcl, "{sql}");
    }
    for sql in [
        "UPDATE pg_settings SET setting = '64MB' WHERE name = 'work_mem'",
        "UPDATE pg_settings SET setting = 'x' WHERE name IN ('work_mem', 'jit')",
        "UPDATE pg_settings s SET setting = 'off' WHERE 'jit' = s.name",
    ] {
        assert_eq!(class(sql), Write, "{sql}");
    }
    // The same text shape with another literal is judged anew, not from the cache.
    assert_eq!(
        class("UPDATE pg_settings SET setting = 'a' WHERE name = 'statement_timeout'"),
        Write
    );
    assert_eq!(
        class("UPDATE pg_settings SET setting = 'a' WHERE name = 'role'"),
        Dcl
    );
}

#[test]
fn admin_things_are_admin() {
    assert_eq!(class("LOCK TABLE t IN ACCESS EXCLUSIVE MODE"), Admin);
    assert_eq!(class("LOCK t"), Admin);
    assert_eq!(class("LOCK TABLE t IN SHARE MODE NOWAIT"), Admin);
    assert_eq!(class("LOCK TABLE t IN EXCLUSIVE MODE"), Admin);
    assert_eq!(class("LOCK TABLE t IN ROW EXCLUSIVE MODE"), Write);
    assert_eq!(class("LOCK TABLE t IN ACCESS SHARE MODE"), Read);
    for sql in [
        "SELECT pg_advisory_lock(1)",
        "SELECT pg_try_advisory_lock_shared(1, 2)",
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT pg_read_binary_file('x')",
        "SELECT pg_stat_file('x')",
        "SELECT * FROM pg_ls_dir('.')",
        "SELECT lo_import('/etc/passwd')",
        "SELECT dblink_connect('c', 'host=x')",
        "SELECT dblink_disconnect('c')",
        "COPY t TO '/tmp/x'",
        "COPY t FROM PROGRAM 'id'",
    ] {
        assert_eq!(class(sql), Admin, "{sql}");
    }
    assert_eq!(class("SELECT pg_advisory_xact_lock(1)"), Write);
    assert_eq!(class("SELECT dblink_exec('c', 'DELETE FROM t')"), Unknown);
    assert_eq!(one("VACUUM FULL t").command, "VACUUM FULL");
    assert_eq!(one("VACUUM (FULL, ANALYZE) t").command, "VACUUM FULL");
    assert_eq!(one("VACUUM ANALYZE t").command, "VACUUM");
    assert_eq!(one("VACUUM (\"full\") t").command, "VACUUM FULL");
    assert_eq!(
        one("vacuum (verbose, \"full\" true) t").command,
        "VACUUM FULL"
    );
}

#[test]
fn explain_analyse_runs_its_statement() {
    // ANALYSE is the server's other spelling of ANALYZE: the statement runs.
    for sql in [
        "EXPLAIN (ANALYSE) DELETE FROM t",
        "explain (format json, analyse true) delete from t",
        "EXPLAIN (ANALYZE) DELETE FROM t",
    ] {
        assert_eq!(class(sql), Write, "{sql}");
    }
    assert_eq!(class("EXPLAIN (ANALYSE) CREATE TABLE x AS SELECT 1"), Ddl);
    assert_eq!(class("EXPLAIN (COSTS off) DELETE FROM t"), Read);
    // A plain EXPLAIN EXECUTE evaluates the arguments.
    assert_eq!(class("EXPLAIN EXECUTE p(pg_advisory_lock(1)::text)"), Admin);
    assert_eq!(
        class("EXPLAIN EXECUTE p(ts_rewrite('a', 'SELECT 1')::text)"),
        Unknown
    );
    assert_eq!(class("EXPLAIN EXECUTE p(1)"), Read);
}

#[test]
fn functions_that_run_sql_text_are_unknown() {
    for sql in [
        "SELECT ts_rewrite('a'::tsquery, 'SELECT x, y FROM aliases')",
        "SELECT pg_catalog.ts_rewrite('a'::tsquery, 'SEL' || 'ECT 1')",
        "SELECT * FROM crosstab('SELECT 1')",
        "SELECT * FROM connectby('t', 'id', 'parent', '1', 0)",
        "SELECT ts_stat('SELECT v FROM t')",
    ] {
        assert_eq!(class(sql), Unknown, "{sql}");
    }
}

#[test]
fn two_phase_commit_is_a_write_that_outlives_the_session() {
    for (sql, command) in [
        ("PREPARE TRANSACTION 'p1'", "PREPARE TRANSACTION"),
        ("prepare transaction 'x'", "PREPARE TRANSACTION"),
        ("COMMIT PREPARED 'p1'", "COMMIT PREPARED"),
        ("ROLLBACK /* c */ PREPARED 'p1'", "ROLLBACK PREPARED"),
    ] {
        let c = one(sql);
        assert_eq!((c.class, c.command.as_str()), (Write, command), "{sql}");
        assert_eq!(c.prepared, None);
    }
    assert_eq!(class("PREPARE TRANSACTION 'p' junk"), Unknown);
    assert_eq!(class("COMMIT PREPARED p"), Unknown);
}

#[test]
fn rule_bodies_are_one_statement() {
    let v = classify_query(
        "CREATE RULE r AS ON INSERT TO t DO INSTEAD (INSERT INTO a VALUES (1); DELETE FROM copydml_test); SELECT 1",
        LexContext::default(),
    );
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].info.command, "CREATE RULE");
    assert_eq!(v[1].info.class, Read);
}

#[test]
fn search_paths_that_shadow_built_ins() {
    for shadows in [
        "SET search_path = public, pg_catalog",
        "set search_path to \"public\",pg_catalog",
        "SELECT set_config('search_path', 'public, pg_catalog', false)",
        "SELECT pg_catalog.set_config('search_path', $1, false)",
        "SET search_path = pg_catalog; SET search_path = public, pg_catalog",
        "ALTER ROLE r SET search_path = x, pg_catalog",
    ] {
        assert!(shadows_catalog(shadows), "{shadows}");
    }
    for not in [
        "SET search_path = public",
        "SET search_path TO pg_catalog, public",
        "SELECT pg_catalog.set_config('search_path', '', false)",
        "SHOW search_path",
        "SELECT lower(x) FROM pg_catalog.pg_class",
    ] {
        assert!(!shadows_catalog(not), "{not}");
    }
    // Built-ins with effects but no SQL of their own are not code; a user's function is.
    let effects = |sql: &str| classify_query(sql, LexContext::default())[0].info.effects;
    assert_eq!(
        effects("SELECT nextval('s'), pg_advisory_lock(1)"),
        Effects::Lasting
    );
    assert_eq!(
        effects("SELECT pg_catalog.setval('s', 1)"),
        Effects::Lasting
    );
    assert_eq!(effects("SELECT my_fn()"), Effects::Code);
    // Range constructors are pure built-ins (asyncpg runs `int4range(1, 5)` between uses of
    // its named statements: counted as code, every name was forgotten and held).
    assert_ne!(effects("SELECT $1::text[], int4range(1, 5)"), Effects::Code);
    assert_eq!(effects("SELECT public.nextval('s')"), Effects::Code);
    assert_eq!(effects("SELECT a ### b FROM t"), Effects::Code);
    let shadowed = LexContext {
        catalog_shadowed: true,
        ..LexContext::default()
    };
    for sql in [
        "SELECT lower('x')",
        "DELETE FROM t WHERE id = 1",
        "PREPARE q AS SELECT 1",
    ] {
        assert_eq!(
            classify_query(sql, shadowed)[0].info.effects,
            Effects::Code,
            "{sql}"
        );
        assert_ne!(
            classify_query(sql, LexContext::default())[0].info.effects,
            Effects::Code
        );
    }
}

#[test]
fn session_context() {
    let off = LexContext {
        standard_strings: false,
        ..LexContext::default()
    };
    assert_eq!(classify_query("select 'a\\'", off)[0].info.class, Unknown);
    let mut sjis = LexContext::default();
    sjis.set_client_encoding("SJIS");
    assert_eq!(classify_query("select 'ｱ'", sjis)[0].info.class, Unknown);
    assert_eq!(classify_query("select 'a'", sjis)[0].info.class, Read);
    let mut latin1 = LexContext::default();
    latin1.set_client_encoding("LATIN1");
    assert_eq!(classify_query("select 'é'", latin1)[0].info.class, Unknown);
    assert_eq!(classify_query("select 'a'", latin1)[0].info.class, Read);
    assert_eq!(
        classify_query("select '\u{FFFD}'", LexContext::default())[0]
            .info
            .class,
        Unknown
    );
}

#[test]
fn code_shadows_the_catalog_for_the_statements_after_it() {
    // A user's function may set search_path (set_config in its body): the statements after it
    // in the same string may call a user's `lower`; the ones before it may not.
    let all = classify_query(
        "SELECT lower('x'); SELECT set_path(); SELECT lower('x'); DELETE FROM t WHERE id = 1",
        LexContext::default(),
    );
    let effects: Vec<Effects> = all.iter().map(|j| j.info.effects).collect();
    assert_eq!(
        effects,
        [
            Effects::Transient,
            Effects::Code,
            Effects::Code,
            Effects::Code
        ]
    );
    for (sql, after) in [
        ("SELECT set_path()", true),
        ("DO $$ BEGIN END $$", true),
        ("CALL p()", true),
        ("SELECT lower('x'), now(), nextval('s')", false),
        ("PREPARE q AS SELECT set_path()", false),
        ("SELECT 1", false),
        (
            "CREATE FUNCTION public.lower(integer) RETURNS text LANGUAGE sql AS 'SELECT 1'",
            true,
        ),
        (
            "CREATE TRIGGER t AFTER INSERT ON x FOR EACH ROW EXECUTE FUNCTION f()",
            true,
        ),
        (
            "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            true,
        ),
        ("ALTER TABLE t ALTER COLUMN v SET DEFAULT f()", true),
        ("CREATE TABLE t (v int)", false),
        ("CREATE TABLE t (v int DEFAULT f())", true),
        ("CREATE SEQUENCE s", false),
        ("DROP TABLE t", false),
    ] {
        let j = &classify_query(sql, LexContext::default())[0];
        assert_eq!(crate::classify::may_shadow_after(&j.info), after, "{sql}");
    }
    // A statement read before the path changed is judged as running code after it.
    let before = classify_query("SELECT lower('x')", LexContext::default())[0]
        .info
        .clone();
    assert_eq!(crate::classify::shadowed(&before).effects, Effects::Code);
    let set = classify_query("SET work_mem = '1MB'", LexContext::default())[0]
        .info
        .clone();
    assert_eq!(crate::classify::shadowed(&set).effects, set.effects);
}

#[test]
fn a_stated_path_shadows_only_with_pg_catalog_after_another_schema() {
    use crate::classify::path_shadows;
    assert!(path_shadows("public,pg_catalog"));
    assert!(path_shadows("\"$user\", public, pg_catalog"));
    assert!(!path_shadows("pg_catalog, public"));
    assert!(!path_shadows("\"$user\", public"));
    assert!(!path_shadows("audit"));
}
