//! Statement classification with sqlparser, cached by normalized text.
//!
//! The rule throughout: when in doubt the class is `Unknown`, never `Read`. sqlparser is a
//! syntax parser, so the traps PostgreSQL allows inside a "query" (DML in CTEs, `SELECT INTO`,
//! row locks, side-effecting functions, `EXPLAIN ANALYZE <dml>`) are found by walking the tree.

mod cache;
mod context;
mod functions;
mod kind;
mod statement;
#[cfg(test)]
mod tests;
mod unparsed;
mod walk;

use std::sync::Arc;

use proctor_gate::StatementClass;

use crate::durability::Effects;
use crate::pg_settings;
use crate::sqllex::{self, Piece};

use cache::cached;
use statement::unknown;

pub use context::{LexContext, path_shadows, shadows_catalog};
pub use functions::builtin_names;
pub use kind::explain_runs;
pub use statement::leading_words;

/// What proctor knows about one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub class: StatementClass,
    /// `SELECT`, `DELETE`, `CREATE TABLE`... or the leading keywords when unparsed.
    pub command: String,
    pub tables: Vec<String>,
    /// Why the class is `Unknown`, when it is.
    pub note: Option<String>,
    /// What the statement does to the session's SQL-level prepared statements.
    pub prepared: Option<SqlPrepared>,
    /// What its effects can outlive (when its record must be durable: `durability`).
    pub effects: Effects,
}

/// `PREPARE`, `EXECUTE`, `DEALLOCATE` and `DISCARD ALL`. The relay tracks the names a session
/// prepared (once the server confirmed them), so `EXECUTE name` is judged as the statement it
/// runs instead of as `unknown` (pg_dump runs its per-object queries this way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlPrepared {
    /// `PREPARE name AS statement`: the class and tables of the `Classified` are the statement's;
    /// `command` is its command (`SELECT`, `DELETE`...), `body` its text as the parser read
    /// it (what policy features such as unqualified DML are computed from).
    Prepare {
        name: String,
        command: String,
        body: String,
    },
    /// `EXECUTE name (args)`: `args_class` is what the argument expressions alone raise the
    /// class to (a data-modifying function call, say).
    Execute {
        name: String,
        args_class: Option<StatementClass>,
    },
    /// `DEALLOCATE name`, or every name (`DEALLOCATE ALL`, `DISCARD ALL`) when `None`.
    Deallocate(Option<String>),
    /// `FETCH`/`MOVE` from `cursor` (as the server resolves the name). SQL cursors and protocol
    /// portals share one namespace, so this may run a portal a protocol Bind opened on any
    /// statement (`DELETE ... RETURNING` included): the relay judges it as that statement.
    Fetch { cursor: String },
}

/// One statement of a message, ready to become a `proctor_gate::Statement`.
#[derive(Debug, Clone)]
pub struct Judged {
    pub text: String,
    pub reasoning: Option<String>,
    pub info: Arc<Classified>,
}

/// Splits and classifies a simple-query string (one entry per statement; an empty string
/// gives one `Empty` entry, as the server answers it with one EmptyQueryResponse).
pub fn classify_query(sql: &str, ctx: LexContext) -> Vec<Judged> {
    // Lexing and parsing megabytes takes long enough to hold up every session that shares
    // this worker thread: for large text the runtime is told the call blocks, so those
    // sessions move to another thread meanwhile.
    const LARGE_TEXT: usize = 64 * 1024;
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if sql.len() > LARGE_TEXT && multi_thread {
        tokio::task::block_in_place(|| classify_query_now(sql, ctx))
    } else {
        classify_query_now(sql, ctx)
    }
}

fn classify_query_now(sql: &str, ctx: LexContext) -> Vec<Judged> {
    match sqllex::split(sql) {
        Ok(pieces) if pieces.is_empty() => vec![Judged {
            text: sql.trim().to_string(),
            reasoning: None,
            info: Arc::new(Classified {
                class: StatementClass::Empty,
                command: String::new(),
                tables: Vec::new(),
                note: None,
                prepared: None,
                effects: Effects::Lasting,
            }),
        }],
        Ok(pieces) => {
            let mut ctx = ctx;
            pieces
                .into_iter()
                .map(|p| {
                    let info = classify_piece(&p, ctx);
                    // What runs code (or what proctor cannot read) may change `search_path`
                    // for the statements after it (`set_config` in a function's body).
                    ctx.catalog_shadowed |= may_shadow_after(&info);
                    Judged {
                        text: p.text.to_string(),
                        reasoning: p.reason.clone(),
                        info,
                    }
                })
                .collect()
        }
        Err(e) => vec![Judged {
            text: sql.trim().to_string(),
            reasoning: None,
            info: Arc::new(unknown(leading_words(sql), format!("not lexed: {e}"))),
        }],
    }
}

/// Classifies the text of a Parse message: the extended protocol allows one statement only,
/// so more than one is itself suspicious and is judged by its most dangerous part.
pub fn classify_prepared(sql: &str, ctx: LexContext) -> Judged {
    let mut all = classify_query(sql, ctx);
    if all.len() == 1 {
        return all.remove(0);
    }
    let worst = all
        .iter()
        .max_by_key(|j| j.info.class.danger())
        .map(|j| j.info.clone())
        .unwrap_or_else(|| Arc::new(unknown(String::new(), "empty".into())));
    let mut tables: Vec<String> = Vec::new();
    for j in &all {
        for t in &j.info.tables {
            if !tables.contains(t) {
                tables.push(t.clone());
            }
        }
    }
    Judged {
        text: sql.trim().to_string(),
        reasoning: all.first().and_then(|j| j.reasoning.clone()),
        info: Arc::new(Classified {
            class: worst.class,
            command: worst.command.clone(),
            tables,
            note: Some("several statements in one Parse".into()),
            // The server refuses several statements in one Parse: nothing gets prepared.
            prepared: None,
            effects: Effects::Lasting,
        }),
    }
}

fn classify_piece(p: &Piece<'_>, ctx: LexContext) -> Arc<Classified> {
    let c = classify_piece_text(p, ctx);
    if ctx.catalog_shadowed {
        return shadowed(&c);
    }
    c
}

/// DDL that defines no code and attaches none beyond what its own text calls (a function in a
/// column default, CHECK or index expression makes the statement itself run code, so
/// [`may_shadow_after`] holds for it anyway): tables, sequences, schemas, indexes, and any DROP
/// or COMMENT.
fn attaches_no_code(command: &str) -> bool {
    const PLAIN: &[&str] = &[
        "CREATE TABLE",
        "CREATE TEMP TABLE",
        "CREATE TEMPORARY TABLE",
        "CREATE UNLOGGED TABLE",
        "CREATE SEQUENCE",
        "CREATE SCHEMA",
        "CREATE INDEX",
        "CREATE UNIQUE INDEX",
        "DROP",
        "COMMENT",
    ];
    let c = command.to_ascii_uppercase();
    PLAIN
        .iter()
        .any(|p| c == *p || c.strip_prefix(p).is_some_and(|rest| rest.starts_with(' ')))
}

/// `info` as judged under a `search_path` that may shadow built-ins: a query, DML or `PREPARE`
/// runs code (any function or operator in it may be a user's: see
/// `LexContext::catalog_shadowed`). The relay applies it again when a statement judged before
/// the path changed runs after (a Bind of an earlier Parse, `EXECUTE` of an earlier PREPARE).
pub fn shadowed(info: &Arc<Classified>) -> Arc<Classified> {
    let body_runs = matches!(info.prepared, Some(SqlPrepared::Prepare { .. }));
    // A query or DML judged `Lasting` (a prepared body is stored so) calls functions and
    // operators too: under such a path any of them may be a user's.
    let first = info.command.split(' ').next().unwrap_or("");
    let query_or_dml = matches!(
        first,
        "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "VALUES" | "TABLE" | "WITH"
    );
    if (matches!(info.effects, Effects::Transient | Effects::Transactional)
        || body_runs
        || query_or_dml)
        && info.effects != Effects::Code
    {
        let mut shadowed = Classified::clone(info);
        shadowed.effects = Effects::Code;
        return Arc::new(shadowed);
    }
    info.clone()
}

/// Whether the session's `search_path` may shadow built-ins once `info` has run, though its
/// text names no `search_path`: it runs code proctor cannot see into (a user's function may
/// call `set_config('search_path', 'public, pg_catalog', false)`, and PostgreSQL before 18
/// does not report `search_path` in ParameterStatus), `DO`/`CALL`, it is `unknown` (held;
/// once approved it may do anything), or it is DDL. Sticky for the session: proctor cannot tell when such a
/// path is undone.
pub fn may_shadow_after(info: &Classified) -> bool {
    let first = info.command.split(' ').next().unwrap_or("");
    // A PREPARE runs nothing: its EXECUTE is judged as the statement prepared.
    let prepares = matches!(info.prepared, Some(SqlPrepared::Prepare { .. }));
    (info.effects == Effects::Code && !prepares)
        || info.class == StatementClass::Unknown
        // DDL may define what a built-in's name resolves to (`CREATE FUNCTION
        // public.lower(integer)`, an operator, a cast) or code that later statements run
        // implicitly (a trigger, rule, policy, column default).
        || (info.class == StatementClass::Ddl && !attaches_no_code(&info.command))
        || first.eq_ignore_ascii_case("DO")
        || first.eq_ignore_ascii_case("CALL")
}

fn classify_piece_text(p: &Piece<'_>, ctx: LexContext) -> Arc<Classified> {
    if p.backslash_in_string && !ctx.standard_strings {
        return Arc::new(unknown(
            leading_words(&p.key),
            "backslash in a string with standard_conforming_strings off".into(),
        ));
    }
    if p.non_ascii && ctx.unsafe_encoding {
        return Arc::new(unknown(
            leading_words(&p.key),
            "non-ASCII text in a client encoding that can hide quotes".into(),
        ));
    }
    if p.non_ascii && ctx.converted_encoding {
        return Arc::new(unknown(
            leading_words(&p.key),
            "non-ASCII text in a client encoding other than UTF-8: the server converts it, \
             proctor cannot show exactly what the server reads"
                .into(),
        ));
    }
    if p.text.contains(char::REPLACEMENT_CHARACTER) {
        // Bytes that are not UTF-8 are read (and shown, and recorded) as U+FFFD.
        return Arc::new(unknown(
            leading_words(&p.key),
            "text that is not valid UTF-8 (shown as U+FFFD): proctor cannot show exactly what \
             the server reads"
                .into(),
        ));
    }
    let c = cached(&p.key);
    // `UPDATE pg_settings` and `PREPARE`: see below and `SqlPrepared::Prepare::body`.
    let prepare = matches!(c.prepared, Some(SqlPrepared::Prepare { .. }));
    if (prepare
        || (c.class == StatementClass::Dcl
            && c.tables.iter().any(|t| pg_settings::is_pg_settings(t))))
        && !p.backslash_in_string
    {
        // A PREPARE's body is what an approver is shown beside each EXECUTE of it: with its
        // literals (`WHERE id > 1000`), never the cache key's zeros.
        // `UPDATE pg_settings` is a SET, and which setting it sets is in its literals, which the
        // cache key erased: judge the text with its literals (still cached, by that text). Not
        // when a string holds a backslash: then sqlparser's reading of the literals is not
        // trusted to be the server's, and the statement stays `dcl`.
        if let Ok(pieces) = sqllex::split_literals(p.text)
            && let [one] = pieces.as_slice()
        {
            return cached(&one.key);
        }
    }
    c
}
