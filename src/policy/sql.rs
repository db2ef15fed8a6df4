//! SQL facts the policy needs beyond the protocol's classification: normalized text for
//! regexes, and structural features such as DML that touches every row.

mod every_row;

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, OnceLock};

use proctor_postgres::{classify, sqllex};
use sqlparser::ast::{Statement, visit_statements};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// Statement texts whose normalized form is remembered (prepared statements and drivers with
/// bind parameters send the same text again and again; tokenizing it costs microseconds).
const CACHE_ENTRIES: usize = 4096;
const CACHE_MAX_TEXT: usize = 2048;

type NormCache = Mutex<HashMap<Box<str>, Arc<str>>>;

fn cache() -> &'static NormCache {
    static CACHE: OnceLock<NormCache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// [`normalize`], remembered by exact text for short texts.
pub fn normalize_cached(sql: &str) -> Arc<str> {
    if sql.len() > CACHE_MAX_TEXT {
        return normalize(sql).into();
    }
    let lock = || match cache().lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    if let Some(n) = lock().get(sql) {
        return n.clone();
    }
    let n: Arc<str> = normalize(sql).into();
    let mut c = lock();
    if c.len() >= CACHE_ENTRIES {
        // Crude but bounded: a workload with that many distinct texts gains little anyway.
        c.clear();
    }
    c.insert(sql.into(), n.clone());
    n
}

/// Comment-free text with runs of whitespace collapsed, so a regex cannot be dodged with
/// comments or line breaks, split and read by the PostgreSQL front end's own lexer: literals stay
/// exactly as written (quotes doubled inside, so a literal cannot pass for code), and names
/// written quoted or with Unicode escapes (`"set_config"`, `U&"\0073et_config"`) appear as the
/// name the server resolves them to, bare when it needs no quotes (`set_config`). Statements are joined with `; `. Text that does not lex
/// (an unterminated string...) falls back to the raw text, whitespace collapsed; the front end
/// classifies it `unknown`.
pub fn normalize(sql: &str) -> String {
    match sqllex::split_literals(sql) {
        Ok(pieces) => pieces
            .into_iter()
            .map(|p| p.key)
            .collect::<Vec<_>>()
            .join("; "),
        Err(_) => sql.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// Whether the text can hold DML that touches every row at all: each such statement needs one of
/// these keywords, which cannot be quoted or escaped. A cheap test before parsing.
pub fn dml_candidate(sql: &str) -> bool {
    // One search by the regex crate's literal prefilters: a statement of megabytes costs a scan
    // at memory speed, not a comparison of four words at every byte.
    static WORDS: OnceLock<regex::bytes::Regex> = OnceLock::new();
    WORDS
        .get_or_init(|| {
            regex::bytes::Regex::new("(?i-u)delete|update|merge|conflict").expect("a valid pattern")
        })
        .is_match(sql.as_bytes())
}

type RowCache = Mutex<HashMap<Box<str>, bool>>;

fn row_cache() -> &'static RowCache {
    static CACHE: OnceLock<RowCache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Whether any DELETE, UPDATE, MERGE or `INSERT ... ON CONFLICT DO UPDATE` in the text
/// (including inside CTEs, and run by `EXPLAIN ANALYZE` or `PREPARE`) may touch every row of its
/// table: no WHERE, or one that does not restrict the rows (see `every_row`). Judged on the
/// statements' classification keys (literals collapsed: which literal a condition compares with
/// does not change whether it restricts), so the answer is cached across literal values; a
/// statement with a pattern test (LIKE, SIMILAR TO, `~`) is also judged with its literals, since
/// the pattern decides whether the test matches every row.
/// Unparseable text answers `false`; such statements are class `unknown` and judged as such.
pub fn has_unqualified_dml(sql: &str) -> bool {
    has_unqualified_dml_with(sql, &[])
}

/// [`has_unqualified_dml`] for a statement run with these parameter values (`$1` first; `None`
/// for NULL or a value not known as text): a pattern test against a parameter is judged by
/// the value bound to it (`LIKE $1` with `'%'` is every row).
pub fn has_unqualified_dml_with(sql: &str, params: &[Option<String>]) -> bool {
    has_unqualified_dml_given(sql, || params.to_vec())
}

/// [`has_unqualified_dml_with`], asking for the parameter values only when a pattern test needs
/// them: most DML has none, and copying every bound value of each statement is wasted work.
pub fn has_unqualified_dml_given(sql: &str, params: impl FnOnce() -> Vec<Option<String>>) -> bool {
    let Ok(pieces) = sqllex::split(sql) else {
        return false;
    };
    let on_keys = pieces.iter().any(|p| {
        let lock = || match row_cache().lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(&v) = lock().get(p.key.as_str()) {
            return v;
        }
        let v = key_touches_every_row(&p.key);
        let mut c = lock();
        if c.len() >= CACHE_ENTRIES {
            c.clear();
        }
        c.insert(p.key.as_str().into(), v);
        v
    });
    // Which pattern a LIKE, SIMILAR TO or regex compares with decides whether it matches every
    // row (`owner LIKE '%'` does), and the keys hold no literals; so a DML statement with such a
    // test is judged again on its text with literals as written (not cached: that text varies).
    on_keys
        || pieces
            .iter()
            .any(|p| every_row::pattern_test_in_dml(&p.key))
            && sqllex::split_literals(sql).is_ok_and(|lit| {
                let params = params();
                lit.iter()
                    .any(|p| touches_every_row_in(&p.key, Some(&params)))
            })
}

/// The arguments of a SQL `EXECUTE name(args)` as the values its parameters take: a string
/// literal's text (through casts), `None` for anything else. Empty when `sql` is not one
/// EXECUTE.
pub fn execute_args(sql: &str) -> Vec<Option<String>> {
    let parsed = std::panic::catch_unwind(|| Parser::parse_sql(&PostgreSqlDialect {}, sql));
    let Ok(Ok(statements)) = parsed else {
        return Vec::new();
    };
    let [Statement::Execute { parameters, .. }] = statements.as_slice() else {
        return Vec::new();
    };
    parameters.iter().map(every_row::string_literal).collect()
}

fn key_touches_every_row(key: &str) -> bool {
    touches_every_row_in(key, None)
}

/// Whether a statement of `text` may touch every row; `literals`: the text holds its literals
/// as written (not placeholders), so literal patterns may be judged, and its parameters' values.
fn touches_every_row_in(text: &str, literals: Option<&[Option<String>]>) -> bool {
    let parsed = std::panic::catch_unwind(|| Parser::parse_sql(&PostgreSqlDialect {}, text));
    let Ok(Ok(statements)) = parsed else {
        return false;
    };
    // A plain EXPLAIN runs nothing; EXPLAIN ANALYZE (or ANALYSE) runs its statement.
    let runs = |s: &&Statement| classify::explain_runs(s);
    let statements: Vec<Statement> = statements.iter().filter(runs).cloned().collect();
    visit_statements(&statements, |s| {
        if every_row::touches_every_row(s, literals) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .is_break()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_keeps_literals_as_written() {
        assert_eq!(
            normalize("SELECT 'x''' || f() || '''y', \"a\"\"b\", E'it\\'s \\\\', N'n''n'"),
            "SELECT 'x''' || f() || '''y', \"a\"\"b\", E'it\\'s \\\\', N'n''n'"
        );
        assert_eq!(
            normalize("select 1;  select /* x */ $a$ -- $a$"),
            "select 1; select $a$ -- $a$"
        );
    }

    #[test]
    fn normalize_resolves_unicode_escaped_names() {
        assert_eq!(
            normalize("SELECT U&\"\\0073et_config\"('role', 'x', false)"),
            "SELECT set_config('role', 'x', false)"
        );
        assert_eq!(
            normalize("select U&\"pg!005fterminate_backend\" UESCAPE '!' (1)"),
            "select pg_terminate_backend (1)"
        );
    }

    #[test]
    fn normalize_strips_comments_and_space() {
        assert_eq!(
            normalize("ALTER /* hi */ SYSTEM\n  SET x = 1 -- tail"),
            "ALTER SYSTEM SET x = 1"
        );
    }

    #[test]
    fn unqualified_dml_is_found_even_in_ctes() {
        assert!(has_unqualified_dml("delete from t"));
        assert!(has_unqualified_dml("update t set a = 1"));
        assert!(!has_unqualified_dml("delete from t where id = 1"));
        assert!(has_unqualified_dml(
            "with d as (delete from t returning *) select * from d"
        ));
        assert!(!has_unqualified_dml("select 1"));
        assert!(has_unqualified_dml("delete from t where true"));
        assert!(has_unqualified_dml("update t set a = 1 where 1 = 1"));
        assert!(has_unqualified_dml("explain analyze delete from t"));
        assert!(!has_unqualified_dml("explain delete from t"));
        assert!(has_unqualified_dml("explain (analyse) delete from t"));
        assert!(has_unqualified_dml("delete from t where not (id is null)"));
        assert!(has_unqualified_dml("update t set a = 1 where not (a <> a)"));
        assert!(has_unqualified_dml(
            "delete from t where not (id is distinct from id)"
        ));
        assert!(!has_unqualified_dml(
            "delete from t where not (id is not null)"
        ));
        assert!(!has_unqualified_dml("delete from t where not (id = 5)"));
        assert!(has_unqualified_dml(
            "EXPLAIN (VERBOSE, ANALYSE on) UPDATE t SET a = 1"
        ));
        assert!(has_unqualified_dml("delete from t where a = 1 or true"));
    }

    #[test]
    fn patterns_that_match_every_string_are_every_row() {
        for every in [
            "delete from t where owner like '%'",
            "DELETE FROM t WHERE owner ILIKE '%%'",
            "delete from t where owner similar to '%'",
            "delete from t where owner ~ ''",
            "delete from t where owner ~* '.*'",
            "delete from t where owner ~ 'x|'",
            "delete from t where owner ~~ '%'",
            "update t set a = 1 where owner like '%'::text",
            "delete from t where not (owner not like '%')",
            "delete from t where not (owner !~ '')",
            "delete from t where owner like owner",
            "delete from t where owner ilike owner || '%'",
            "delete from t where owner like E'%'",
            "delete from t where owner like '%' escape ''",
            "delete from t where owner ilike '%%' escape '#'",
            "select 1; delete from t where id = 1; delete from t where owner like '%'",
        ] {
            assert!(has_unqualified_dml(every), "{every}");
        }
        for restricted in [
            "delete from t where owner like 'a%'",
            "delete from t where owner like '%' escape '%'",
            "delete from t where owner like '_%'",
            "delete from t where owner not like '%'",
            "delete from t where owner ~ '^a'",
            "delete from t where owner ~ 'a*$'",
            "delete from t where owner ~ '\\w*'",
            "delete from t where owner ~ '(?i)x*'",
            "delete from t where owner ~ 'a'",
            "delete from t where owner like $1",
            "select * from t where owner like '%'",
        ] {
            assert!(!has_unqualified_dml(restricted), "{restricted}");
        }
        let pct = [Some("%".to_string())];
        assert!(has_unqualified_dml_with(
            "delete from t where owner like $1",
            &pct
        ));
        assert!(has_unqualified_dml_with(
            "prepare p(text) as delete from t where owner ilike $1::text",
            &pct
        ));
        assert!(!has_unqualified_dml_with(
            "delete from t where owner like $1",
            &[Some("a%".into())]
        ));
        assert!(!has_unqualified_dml_with(
            "delete from t where owner like $2",
            &pct
        ));
        assert!(!has_unqualified_dml_with(
            "delete from t where owner like $1",
            &[None]
        ));
        assert_eq!(
            execute_args("EXECUTE p('%', 5, 'a'::text)"),
            vec![Some("%".to_string()), None, Some("a".to_string())]
        );
        assert!(execute_args("select 1").is_empty());
    }

    #[test]
    fn every_row_dml_counts_as_unqualified() {
        for sql in [
            "DELETE FROM accounts WHERE id = id",
            "delete from accounts a where a.id = A.ID",
            "DELETE FROM accounts WHERE true OR id = 5",
            "DELETE FROM accounts WHERE NOT false",
            "DELETE FROM accounts WHERE 'a' = 'a'",
            "DELETE FROM accounts WHERE coalesce(true)",
            "DELETE FROM accounts WHERE (1 = 1) AND (id = id)",
            "DELETE FROM accounts WHERE id IS NOT NULL",
            "DELETE FROM accounts WHERE NOT (id = 5 AND false)",
            "DELETE FROM accounts WHERE current_user = 'bob'",
            "DELETE FROM accounts USING other o WHERE o.flag",
            "DELETE FROM accounts WHERE EXISTS (SELECT 1 FROM other WHERE id = 1)",
            "UPDATE accounts SET balance = 0 WHERE (SELECT count(*) FROM other) > 0",
            "MERGE INTO accounts a USING other o ON true WHEN MATCHED THEN DELETE",
            "MERGE INTO accounts a USING other o ON o.id = 1 WHEN MATCHED THEN UPDATE SET balance = 0",
            "MERGE INTO accounts USING other ON accounts.id = accounts.id WHEN MATCHED THEN DELETE",
            "INSERT INTO accounts SELECT * FROM accounts ON CONFLICT (id) DO UPDATE SET balance = 0",
            "INSERT INTO accounts SELECT * FROM accounts ON CONFLICT (id) DO UPDATE SET balance = 0 WHERE excluded.balance > 0",
            "WITH d AS (DELETE FROM accounts WHERE 1 = 1 RETURNING *) SELECT count(*) FROM d",
            "PREPARE p AS DELETE FROM accounts WHERE true",
            "EXPLAIN ANALYZE MERGE INTO accounts USING other ON true WHEN MATCHED THEN DELETE",
            "COPY (DELETE FROM accounts RETURNING *) TO STDOUT",
            // A test of the target against itself (round 4).
            "DELETE FROM accounts WHERE coalesce(true, id = 1)",
            "DELETE FROM accounts WHERE CASE WHEN id = 1 THEN true ELSE true END",
            "DELETE FROM accounts WHERE id = id + 0",
            "DELETE FROM accounts WHERE lower(name) = lower(name)",
            "DELETE FROM accounts WHERE ctid = ctid",
            "DELETE FROM accounts a USING accounts b WHERE a.id = b.id",
            "DELETE FROM accounts a USING public.accounts b WHERE b.id = 1",
            "UPDATE accounts a SET balance = 0 FROM accounts b WHERE a.id = b.id",
            "MERGE INTO accounts a USING accounts b ON a.id = b.id WHEN MATCHED THEN DELETE",
            "DELETE FROM accounts WHERE id IN (SELECT id FROM accounts)",
            "DELETE FROM accounts WHERE EXISTS (SELECT 1 FROM accounts b WHERE b.id = accounts.id)",
            "WITH d AS (DELETE FROM accounts WHERE id = id RETURNING *) SELECT 1",
            "DELETE FROM accounts WHERE id IN (id, 5)",
            "DELETE FROM accounts WHERE id BETWEEN id - 1 AND id + 1",
            "DELETE FROM accounts WHERE id = ANY (SELECT id FROM accounts)",
            "DELETE FROM accounts WHERE id = (SELECT id)",
            "DELETE FROM accounts WHERE (id, name) = (id, name)",
        ] {
            assert!(has_unqualified_dml(sql), "{sql}");
            assert!(dml_candidate(sql), "{sql}");
        }
        for sql in [
            "DELETE FROM accounts WHERE id = 5",
            "DELETE FROM accounts WHERE id = $1",
            "DELETE FROM accounts a WHERE a.id IN (SELECT id FROM other)",
            "DELETE FROM accounts WHERE EXISTS (SELECT 1 FROM other o WHERE o.id = accounts.id)",
            "DELETE FROM accounts WHERE active",
            "DELETE FROM accounts WHERE NOT active OR id = 5",
            "DELETE FROM accounts WHERE id = 5 OR id = 6",
            "UPDATE accounts SET balance = 0 FROM other o WHERE accounts.id = o.id",
            "MERGE INTO accounts a USING other o ON a.id = o.id WHEN MATCHED THEN DELETE",
            "MERGE INTO accounts a USING other o ON true WHEN MATCHED AND a.id = 5 THEN DELETE",
            "MERGE INTO accounts a USING other o ON true WHEN NOT MATCHED THEN INSERT VALUES (1)",
            "INSERT INTO accounts VALUES (1, 0) ON CONFLICT (id) DO UPDATE SET balance = 0",
            "INSERT INTO accounts SELECT * FROM other ON CONFLICT (id) DO UPDATE SET balance = 0 WHERE accounts.balance < 0",
            "INSERT INTO accounts SELECT * FROM other ON CONFLICT DO NOTHING",
            "INSERT INTO accounts SELECT * FROM other",
            "UPDATE accounts SET active = false WHERE balance > credit_limit",
            "DELETE FROM accounts WHERE lower(name) = 'x'",
            "DELETE FROM accounts WHERE coalesce(active, false)",
            "DELETE FROM accounts a USING other o WHERE a.id = o.id",
            "DELETE FROM accounts WHERE id BETWEEN id AND 10",
        ] {
            assert!(!has_unqualified_dml(sql), "{sql}");
        }
        assert!(!dml_candidate(
            "SELECT abalance FROM pgbench_accounts WHERE aid = 1"
        ));
    }
}
