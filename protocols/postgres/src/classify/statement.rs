//! Classifying one normalized statement (a cache key): parse it, walk it, and put together its
//! class, command, tables, effects and what it does to SQL-level prepared statements.

use proctor_gate::StatementClass;
use sqlparser::ast::{Query, SetExpr, Statement as Ast, Visit};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::kind::base_class;
use super::unparsed::{
    catalog_operators_plain, copy_options_as_booleans, cursor_move, maintenance, two_phase,
};
use super::walk::{Walk, effects_of, extra_tables};
use super::{Classified, SqlPrepared};
use crate::durability::Effects;

pub(super) fn unknown(command: String, note: String) -> Classified {
    Classified {
        class: StatementClass::Unknown,
        command,
        tables: Vec::new(),
        note: Some(note),
        prepared: None,
        effects: Effects::Lasting,
    }
}

/// The first keywords of a statement, upper-cased, for the `command` of an unparsed statement.
pub fn leading_words(sql: &str) -> String {
    let words: Vec<String> = sql
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .take(3)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let n = match words.first().map(String::as_str) {
        Some("CREATE")
            if words.get(1).is_some_and(|w| {
                w == "OR"
                    || w == "UNIQUE"
                    || w == "MATERIALIZED"
                    || w == "TEMP"
                    || w == "TEMPORARY"
                    || w == "UNLOGGED"
            }) =>
        {
            3
        }
        Some(
            "CREATE" | "ALTER" | "DROP" | "COMMENT" | "REFRESH" | "SECURITY" | "REASSIGN"
            | "PREPARE" | "COMMIT" | "ROLLBACK" | "START",
        ) => 2,
        _ => 1,
    };
    words.into_iter().take(n).collect::<Vec<_>>().join(" ")
}

pub(super) fn classify_key(key: &str) -> Classified {
    let words = leading_words(key);
    if let Some(c) = two_phase(key) {
        return c;
    }
    // A parser bug must not take the session down with it: a panic is just "not parsed".
    let parse =
        |sql: &str| std::panic::catch_unwind(|| Parser::parse_sql(&PostgreSqlDialect {}, sql));
    let mut parsed = parse(key);
    if matches!(parsed, Ok(Err(_)))
        && let Some(alt) = copy_options_as_booleans(key)
        && let Ok(Ok(ast)) = parse(&alt)
    {
        parsed = Ok(Ok(ast));
    }
    if matches!(parsed, Ok(Err(_)))
        && let Some(alt) = catalog_operators_plain(key)
        && let Ok(Ok(ast)) = parse(&alt)
    {
        parsed = Ok(Ok(ast));
    }
    if matches!(parsed, Ok(Err(_)))
        && let Some(c) = maintenance(key)
    {
        return c;
    }
    if matches!(parsed, Ok(Err(_)))
        && let Some(c) = cursor_move(key)
    {
        return c;
    }
    let ast = match parsed {
        Ok(Ok(ast)) => ast,
        Ok(Err(e)) => return unknown(words, format!("not parsed: {e}")),
        Err(_) => return unknown(words, "the SQL parser failed".into()),
    };
    let [stmt] = ast.as_slice() else {
        return unknown(words, format!("parsed into {} statements", ast.len()));
    };
    let mut walk = Walk::default();
    let _ = stmt.visit(&mut walk);
    let base = base_class(stmt, &words);
    let mut class = base;
    // EXPLAIN without ANALYZE runs nothing; with ANALYZE, base_class judged the inner statement.
    // Except its EXECUTE's arguments: the server evaluates them to plan with their values, so
    // `EXPLAIN EXECUTE p(pg_advisory_lock(1))` takes the lock and they count as run.
    let explain = matches!(stmt, Ast::Explain { statement, .. }
        if !matches!(statement.as_ref(), Ast::Execute { .. }));
    if !explain
        && let Some(c) = walk.escalation()
        && c.danger() > class.danger()
    {
        class = c;
    }
    let prepared = sql_prepared(stmt, walk.escalation());
    let effects = effects_of(stmt, &walk);
    let mut tables = walk.tables;
    extra_tables(stmt, &mut tables);
    tables.retain(|t| !walk.ctes.contains(t) && !walk.table_functions.contains(t));
    Classified {
        class,
        command: command_of(stmt, &words),
        tables,
        note: (class == StatementClass::Unknown).then(|| "statement kind not classified".into()),
        prepared,
        effects,
    }
}

/// PostgreSQL folds unquoted names to lower case.
pub(super) fn folded(ident: &sqlparser::ast::Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_ascii_lowercase()
    }
}

fn sql_prepared(stmt: &Ast, escalation: Option<StatementClass>) -> Option<SqlPrepared> {
    match stmt {
        Ast::Prepare {
            name, statement, ..
        } => {
            let body = statement.to_string();
            Some(SqlPrepared::Prepare {
                name: folded(name),
                command: command_of(statement, &leading_words(&body)),
                body,
            })
        }
        Ast::Execute {
            name: Some(name),
            immediate: false,
            into,
            using,
            ..
        } if into.is_empty() && using.is_empty() => match name.0.as_slice() {
            [part] => part.as_ident().map(|i| SqlPrepared::Execute {
                name: folded(i),
                args_class: escalation,
            }),
            _ => None,
        },
        Ast::Deallocate { name, .. } => Some(SqlPrepared::Deallocate(
            (name.quote_style.is_some() || !name.value.eq_ignore_ascii_case("all"))
                .then(|| folded(name)),
        )),
        Ast::Discard {
            object_type: sqlparser::ast::DiscardObject::ALL,
        } => Some(SqlPrepared::Deallocate(None)),
        Ast::Fetch { name, .. } => Some(SqlPrepared::Fetch {
            cursor: folded(name),
        }),
        _ => None,
    }
}

fn command_of(stmt: &Ast, words: &str) -> String {
    match stmt {
        Ast::Query(q) => query_command(q).to_string(),
        Ast::Vacuum(v) if v.full => "VACUUM FULL".to_string(),
        _ => words.to_string(),
    }
}

fn query_command(q: &Query) -> &'static str {
    match q.body.as_ref() {
        SetExpr::Insert(_) => "INSERT",
        SetExpr::Update(_) => "UPDATE",
        SetExpr::Delete(_) => "DELETE",
        SetExpr::Merge(_) => "MERGE",
        SetExpr::Values(_) => "VALUES",
        SetExpr::Table(_) => "TABLE",
        _ => "SELECT",
    }
}
