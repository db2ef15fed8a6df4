//! When a statement's record must be durable: before the statement is forwarded, or only before
//! any byte of its answer reaches the agent (issue 15).
//!
//! Proctor promises that nothing an agent sees escapes the record (no byte of an answer reaches
//! the agent before the record of the statement it answers is durable) and that nothing that
//! persists escapes the record (a statement whose effects can outlive the target connection is
//! forwarded only once its record is durable). A statement whose effects die with the target
//! connection if proctor dies first may therefore be forwarded at once, its fdatasync
//! overlapping the target's work. [`durability`] decides which, from the statement's analysis
//! and the transaction status the server last reported; anything it cannot prove harmless is
//! [`Durability::BeforeForward`].

use proctor_gate::StatementClass;

use crate::classify::Classified;

/// What a statement's effects can outlive, as read from its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effects {
    /// Changes nothing that outlives the connection: a query without data-modifying parts
    /// whose every function is on [`is_side_effect_free`]'s list (row locks of `FOR
    /// UPDATE/SHARE` end with the transaction or the connection); `BEGIN`/`START TRANSACTION`.
    Transient,
    /// `INSERT`/`UPDATE`/`DELETE`/`MERGE` (also inside a query's CTEs) and `SAVEPOINT`, with
    /// every function on the list: undone by PostgreSQL if the connection drops inside an
    /// explicit transaction block, committed at once outside one.
    Transactional,
    /// Anything else, or anything not understood.
    Lasting,
    /// Lasting, because it calls a function not known to be free of side effects or an
    /// operator proctor cannot name: code proctor cannot see into, which may also change the
    /// session's prepared statements and cursors by dynamic SQL (the relay forgets them).
    Code,
}

/// The transaction status as the server last reported it (ReadyForQuery), known only while
/// nothing forwarded since could have changed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    /// `I`: not in a transaction block (each statement commits on its own).
    Idle,
    /// `T`: in an explicit transaction block.
    InBlock,
    /// `E`: in a failed transaction block.
    Failed,
    /// A statement, Sync or Query forwarded earlier is not answered yet: the status it leaves
    /// is not the server's word yet.
    Unsettled,
}

impl TxStatus {
    /// From a ReadyForQuery status byte; anything else is `Unsettled`.
    pub fn from_ready(status: u8) -> TxStatus {
        match status {
            b'I' => TxStatus::Idle,
            b'T' => TxStatus::InBlock,
            b'E' => TxStatus::Failed,
            _ => TxStatus::Unsettled,
        }
    }
}

/// When the record of a statement must be durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Durable before the statement is forwarded (and, the writer acknowledging in order,
    /// everything recorded before it in the session too).
    BeforeForward,
    /// Forwarded at once; no byte the server sends after it reaches the agent before the
    /// record is durable.
    BeforeAnswer,
}

/// The rule. `runs_prepared`: the statement is an SQL `EXECUTE` judged as what it runs (its
/// arguments are not analysed for functions, so it waits).
pub fn durability(info: &Classified, runs_prepared: bool, tx: TxStatus) -> Durability {
    if runs_prepared || info.class == StatementClass::Unknown || info.prepared.is_some() {
        return Durability::BeforeForward;
    }
    match (info.effects, tx) {
        (Effects::Transient, _) => Durability::BeforeAnswer,
        (Effects::Transactional, TxStatus::InBlock) => Durability::BeforeAnswer,
        _ => Durability::BeforeForward,
    }
}

/// Functions known to change nothing outside the statement's own transaction and connection:
/// PostgreSQL built-ins that compute, aggregate, format or read the catalog. Matched on the
/// lower-cased name, unqualified or in `pg_catalog` only (see `classify`). Anything else
/// (`nextval`, `setval`, `pg_advisory_lock*`, `dblink*`, `lo_*`, `pg_notify`, `set_config`,
/// `pg_terminate_backend`, `pg_cancel_backend`, `pg_reload_conf`, user functions...) makes
/// the statement wait.
pub fn is_side_effect_free(name: &str) -> bool {
    SIDE_EFFECT_FREE.binary_search(&name).is_ok()
}

/// The names of [`is_side_effect_free`] (the core asks the target whether any of them is also
/// defined outside `pg_catalog`: see `classify::builtin_names`).
pub fn side_effect_free_names() -> &'static [&'static str] {
    SIDE_EFFECT_FREE
}

/// Sorted (a test checks): binary-searched.
const SIDE_EFFECT_FREE: &[&str] = &[
    "abs",
    "age",
    "array_agg",
    "array_length",
    "array_lower",
    "array_position",
    "array_to_string",
    "array_upper",
    "avg",
    "bool_and",
    "bool_or",
    "btrim",
    "cardinality",
    "ceil",
    "ceiling",
    "char_length",
    "character_length",
    "clock_timestamp",
    "coalesce",
    "col_description",
    "concat",
    "concat_ws",
    "count",
    "cume_dist",
    "current_database",
    "current_date",
    "current_schema",
    "current_schemas",
    "current_setting",
    "current_time",
    "current_timestamp",
    "current_user",
    "date_part",
    "date_trunc",
    "datemultirange",
    "daterange",
    "decode",
    "dense_rank",
    "div",
    "encode",
    "every",
    "exp",
    "first_value",
    "floor",
    "format",
    "format_type",
    "generate_series",
    "generate_subscripts",
    "greatest",
    "has_column_privilege",
    "has_database_privilege",
    "has_schema_privilege",
    "has_table_privilege",
    "initcap",
    "int4multirange",
    "int4range",
    "int8multirange",
    "int8range",
    "json_agg",
    "json_array_elements",
    "json_array_length",
    "json_build_array",
    "json_build_object",
    "json_extract_path",
    "json_extract_path_text",
    "json_object_agg",
    "jsonb_agg",
    "jsonb_array_elements",
    "jsonb_array_length",
    "jsonb_build_array",
    "jsonb_build_object",
    "jsonb_extract_path",
    "jsonb_extract_path_text",
    "jsonb_object_agg",
    "jsonb_set",
    "lag",
    "last_value",
    "lead",
    "least",
    "left",
    "length",
    "ln",
    "localtime",
    "localtimestamp",
    "log",
    "lower",
    "lpad",
    "ltrim",
    "make_date",
    "make_interval",
    "make_timestamp",
    "max",
    "md5",
    "min",
    "mod",
    "now",
    "nth_value",
    "ntile",
    "nullif",
    "nummultirange",
    "numrange",
    "obj_description",
    "octet_length",
    "percent_rank",
    "pg_backend_pid",
    "pg_encoding_to_char",
    "pg_get_constraintdef",
    "pg_get_expr",
    "pg_get_functiondef",
    "pg_get_indexdef",
    "pg_get_userbyid",
    "pg_get_viewdef",
    "pg_relation_size",
    "pg_size_pretty",
    "pg_table_is_visible",
    "pg_table_size",
    "pg_total_relation_size",
    "pg_typeof",
    "position",
    "power",
    "quote_ident",
    "quote_literal",
    "quote_nullable",
    "rank",
    "regexp_match",
    "regexp_matches",
    "regexp_replace",
    "regexp_split_to_array",
    "repeat",
    "replace",
    "reverse",
    "right",
    "round",
    "row_number",
    "row_to_json",
    "rpad",
    "rtrim",
    "session_user",
    "sha256",
    "sign",
    "split_part",
    "sqrt",
    "statement_timestamp",
    "string_agg",
    "strpos",
    "substr",
    "substring",
    "sum",
    "to_char",
    "to_date",
    "to_json",
    "to_jsonb",
    "to_number",
    "to_timestamp",
    "transaction_timestamp",
    "translate",
    "trim",
    "trunc",
    "tsmultirange",
    "tsrange",
    "tstzmultirange",
    "tstzrange",
    "unnest",
    "upper",
    "version",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{LexContext, classify_query};
    use Durability::*;

    fn rule(sql: &str, tx: TxStatus) -> Durability {
        let v = classify_query(sql, LexContext::default());
        assert_eq!(v.len(), 1, "{sql}");
        durability(&v[0].info, false, tx)
    }

    #[test]
    fn the_list_is_sorted() {
        assert!(SIDE_EFFECT_FREE.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn reads_overlap_in_any_status() {
        for tx in [TxStatus::Idle, TxStatus::InBlock, TxStatus::Unsettled] {
            for sql in [
                "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
                "SELECT count(*), max(x) FROM t JOIN u USING (id) WHERE lower(n) = 'a'",
                "SELECT * FROM t WHERE id = 1 FOR UPDATE",
                "SELECT * FROM t FOR SHARE SKIP LOCKED",
                "SELECT pg_catalog.now()",
                "SELECT * FROM generate_series(1, 10)",
                "WITH x AS (SELECT 1) SELECT * FROM x",
                "BEGIN",
                "START TRANSACTION ISOLATION LEVEL REPEATABLE READ",
            ] {
                assert_eq!(rule(sql, tx), BeforeAnswer, "{sql} {tx:?}");
            }
        }
    }

    #[test]
    fn side_effects_wait_even_in_a_read() {
        for tx in [TxStatus::Idle, TxStatus::InBlock] {
            for sql in [
                "SELECT nextval('s')",
                "SELECT setval('s', 5)",
                "SELECT pg_advisory_lock(1)",
                "SELECT pg_try_advisory_lock(1)",
                "SELECT pg_advisory_xact_lock(1)",
                "SELECT * FROM dblink('x', 'delete from t') AS r(a int)",
                "SELECT lo_unlink(5)",
                "SELECT lo_import('/etc/passwd')",
                "SELECT pg_notify('c', 'x')",
                "SELECT set_config('role', 'x', false)",
                "SELECT pg_terminate_backend(42)",
                "SELECT pg_cancel_backend(42)",
                "SELECT pg_reload_conf()",
                "SELECT my_function(1)",
                "SELECT public.count(x) FROM t",
                "SELECT a OPERATOR(public.===) b FROM t",
                "SELECT * INTO newt FROM t",
                "SELECT * FROM t WHERE x = (SELECT nextval('s'))",
            ] {
                assert_eq!(rule(sql, tx), BeforeForward, "{sql} {tx:?}");
            }
        }
    }

    #[test]
    fn dml_overlaps_only_inside_a_transaction_block() {
        for sql in [
            "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
            "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, 3, 4, CURRENT_TIMESTAMP)",
            "DELETE FROM t WHERE id = 3",
            "WITH d AS (DELETE FROM t RETURNING *) SELECT count(*) FROM d",
            "INSERT INTO t VALUES (1) ON CONFLICT (id) DO NOTHING",
            "SAVEPOINT a",
        ] {
            assert_eq!(rule(sql, TxStatus::InBlock), BeforeAnswer, "{sql}");
            // Autocommit commits it; an earlier statement not answered yet may have ended the
            // block; a failed block is not the server's word that this one runs in one.
            for tx in [TxStatus::Idle, TxStatus::Failed, TxStatus::Unsettled] {
                assert_eq!(rule(sql, tx), BeforeForward, "{sql} {tx:?}");
            }
        }
        for sql in [
            "INSERT INTO t VALUES (nextval('s'))",
            "UPDATE t SET x = my_function(x)",
            "DELETE FROM t WHERE id = (SELECT setval('s', 1))",
        ] {
            assert_eq!(rule(sql, TxStatus::InBlock), BeforeForward, "{sql}");
        }
    }

    #[test]
    fn everything_else_waits() {
        for tx in [TxStatus::Idle, TxStatus::InBlock] {
            for sql in [
                "COMMIT",
                "END",
                "COMMIT AND CHAIN",
                "ROLLBACK",
                "ROLLBACK TO SAVEPOINT a",
                "RELEASE SAVEPOINT a",
                "PREPARE TRANSACTION 'x'",
                "COMMIT PREPARED 'x'",
                "ROLLBACK PREPARED 'x'",
                "CREATE TABLE t (id int)",
                "DROP TABLE t",
                "TRUNCATE t",
                "GRANT SELECT ON t TO r",
                "SET search_path = x",
                "SET ROLE r",
                "NOTIFY c",
                "LISTEN c",
                "LOCK TABLE t IN ACCESS EXCLUSIVE MODE",
                "COPY t FROM STDIN",
                "COPY t TO STDOUT",
                "VACUUM t",
                "DO $$ BEGIN PERFORM 1; END $$",
                "CALL p()",
                "PREPARE p AS SELECT 1",
                "EXECUTE p",
                "DEALLOCATE p",
                "DECLARE c CURSOR FOR SELECT 1",
                "FETCH 10 FROM c",
                "EXPLAIN ANALYZE DELETE FROM t",
                "this is not sql",
                "",
            ] {
                assert_eq!(rule(sql, tx), BeforeForward, "{sql} {tx:?}");
            }
        }
    }

    #[test]
    fn an_execute_of_a_prepared_statement_waits() {
        let v = classify_query("SELECT 1", LexContext::default());
        assert_eq!(durability(&v[0].info, true, TxStatus::Idle), BeforeForward);
    }
}
