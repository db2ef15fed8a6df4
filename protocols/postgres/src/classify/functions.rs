//! Lists of functions: those whose call changes something (by the class it implies), and the
//! built-ins that run no SQL of their own.

use proctor_gate::StatementClass;
use sqlparser::ast::ObjectName;

use super::statement::folded;
use crate::durability::is_side_effect_free;

/// Functions whose call changes something, by the class they imply. Matched on the last part
/// of the name, lower-cased, so `pg_catalog.` prefixes and quoting do not hide them.
pub(super) fn function_class(name: &str) -> Option<StatementClass> {
    use StatementClass::*;
    Some(match name {
        "nextval" | "setval" | "pg_notify" | "lo_create" | "lo_creat" | "lo_unlink" | "lo_put"
        | "lo_from_bytea" | "lo_open" | "lowrite" | "lo_write" | "lo_truncate" | "lo_truncate64"
        // Transaction-level advisory locks end with the transaction, like row locks.
        | "pg_advisory_xact_lock" | "pg_advisory_xact_lock_shared"
        | "pg_try_advisory_xact_lock" | "pg_try_advisory_xact_lock_shared" => Write,
        // Session-level advisory locks outlive the statement and the transaction.
        "pg_advisory_lock" | "pg_advisory_lock_shared" | "pg_try_advisory_lock"
        | "pg_try_advisory_lock_shared" => Admin,
        "pg_terminate_backend" | "pg_cancel_backend" | "pg_reload_conf" | "pg_rotate_logfile"
        | "pg_read_file" | "pg_read_binary_file" | "pg_ls_dir" | "pg_stat_file"
        | "pg_ls_logdir" | "pg_ls_waldir" | "pg_ls_tmpdir" | "pg_ls_archive_statusdir"
        | "lo_import" | "lo_export" | "pg_file_write" | "pg_file_rename" | "pg_file_unlink"
        | "pg_switch_wal" | "pg_create_restore_point" | "pg_start_backup" | "pg_stop_backup"
        | "pg_backup_start" | "pg_backup_stop" | "pg_create_physical_replication_slot"
        | "pg_create_logical_replication_slot" | "pg_drop_replication_slot"
        | "pg_copy_physical_replication_slot" | "pg_copy_logical_replication_slot"
        | "pg_logical_emit_message" | "pg_promote" | "pg_wal_replay_pause"
        | "pg_wal_replay_resume" | "pg_stat_reset" | "pg_stat_reset_shared"
        | "pg_stat_reset_single_table_counters" | "pg_stat_reset_single_function_counters"
        | "pg_stat_reset_slru" | "pg_stat_reset_replication_slot"
        | "pg_log_backend_memory_contexts" | "pg_import_system_collations"
        | "pg_replication_origin_create" | "pg_replication_origin_drop"
        | "pg_logical_slot_get_changes" | "pg_replication_slot_advance"
        // set_config can switch `role`; its arguments are literals the cache key erased.
        | "set_config" => Admin,
        // Run arbitrary SQL, possibly elsewhere.
        "dblink" | "dblink_exec" | "dblink_send_query" | "dblink_open" | "query_to_xml"
        | "query_to_xml_and_xmlschema" | "query_to_xmlschema" | "cursor_to_xml" | "ts_stat"
        // `ts_rewrite(query, 'SELECT ...')` runs its second argument as SQL (any function in
        // it: set_config('role', ...)); its three-tsquery form is caught too, which only holds
        // more. tablefunc's crosstab runs SQL text, connectby and xml2's xpath_table build it
        // from names they do not quote.
        | "ts_rewrite" | "connectby" | "xpath_table" => Unknown,
        n if n.starts_with("crosstab") => Unknown,
        // The rest of dblink opens, uses and closes connections from the server to anywhere.
        n if n.starts_with("dblink") => Admin,
        _ => return None,
    })
}

/// A function on the side-effect-free list, as the server would resolve the name: unqualified
/// or in `pg_catalog` (the name in another schema is anyone's function), folded as unquoted.
/// Built-ins with effects beyond the statement that run no SQL of their own, so cannot
/// PREPARE, DEALLOCATE or open cursors (see `relay::names::runs_code`): sequences, advisory
/// locks, notifications, sleeping, random values, large objects, signalling backends.
/// `set_config` is here too: the one setting that changes what names mean, `search_path`, is
/// caught by its text (`shadows_catalog`).
fn runs_no_sql(name: &str) -> bool {
    RUNS_NO_SQL.contains(&name)
}

/// Every name proctor takes as a built-in when called unqualified or in `pg_catalog`: a
/// function of the same name in another schema may be chosen over it by argument types
/// (`public.lower(integer)` is what `lower(5)` calls, whatever the `search_path`), so the core
/// asks the target at login whether any exists (`LexContext::catalog_shadowed`).
pub fn builtin_names() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = crate::durability::side_effect_free_names().to_vec();
    all.extend_from_slice(RUNS_NO_SQL);
    all
}

const RUNS_NO_SQL: &[&str] = &[
    "currval",
    "gen_random_uuid",
    "lastval",
    "lo_close",
    "lo_creat",
    "lo_create",
    "lo_export",
    "lo_from_bytea",
    "lo_get",
    "lo_import",
    "lo_lseek",
    "lo_lseek64",
    "lo_open",
    "lo_put",
    "lo_tell",
    "lo_tell64",
    "lo_truncate",
    "lo_truncate64",
    "lo_unlink",
    "loread",
    "lowrite",
    "nextval",
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_advisory_unlock",
    "pg_advisory_unlock_all",
    "pg_advisory_unlock_shared",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_cancel_backend",
    "pg_current_xact_id",
    "pg_notify",
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    "pg_terminate_backend",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
    "random",
    "set_config",
    "setseed",
    "setval",
    "txid_current",
];

/// A built-in of [`runs_no_sql`], named as `listed_function` names built-ins.
pub(super) fn builtin_without_sql(name: &ObjectName) -> bool {
    let parts: Vec<&sqlparser::ast::Ident> = name.0.iter().filter_map(|p| p.as_ident()).collect();
    if parts.len() != name.0.len() {
        return false;
    }
    match parts.as_slice() {
        [f] => runs_no_sql(&folded(f)),
        [schema, f] => folded(schema) == "pg_catalog" && runs_no_sql(&folded(f)),
        _ => false,
    }
}

pub(super) fn listed_function(name: &ObjectName) -> bool {
    let parts: Vec<&sqlparser::ast::Ident> = name.0.iter().filter_map(|p| p.as_ident()).collect();
    if parts.len() != name.0.len() {
        return false;
    }
    match parts.as_slice() {
        [f] => is_side_effect_free(&folded(f)),
        [schema, f] => folded(schema) == "pg_catalog" && is_side_effect_free(&folded(f)),
        _ => false,
    }
}
