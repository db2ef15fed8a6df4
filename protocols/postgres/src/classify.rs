//! Statement classification with sqlparser, cached by normalized text.
//!
//! The rule throughout: when in doubt the class is `Unknown`, never `Read`. sqlparser is a
//! syntax parser, so the traps PostgreSQL allows inside a "query" (DML in CTEs, `SELECT INTO`,
//! row locks, side-effecting functions, `EXPLAIN ANALYZE <dml>`) are found by walking the tree.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, OnceLock};

use proctor_gate::StatementClass;
use sqlparser::ast::{
    BinaryOperator, CopySource, CopyTarget, Expr, LockTableMode, ObjectName, ObjectType, Query,
    Select, Set, SetExpr, Statement as Ast, TableFactor, Visit, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::durability::{Effects, is_side_effect_free};
use crate::pg_settings::{self, resolved_name};
use crate::sqllex::{self, Piece};

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

/// Session facts that change how text must be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LexContext {
    /// `standard_conforming_strings` is on (the default since PostgreSQL 9.1).
    pub standard_strings: bool,
    /// The client encoding can hide `\` or `'` inside multi-byte characters (SJIS, BIG5, GBK,
    /// UHC, GB18030, JOHAB); then any non-ASCII text is not trusted to split correctly.
    pub unsafe_encoding: bool,
    /// The client encoding is not UTF-8 (nor SQL_ASCII, which the server takes as it is): the
    /// server converts non-ASCII bytes from it, while proctor reads them as UTF-8, so what
    /// proctor would show and record is not what the server reads.
    pub converted_encoding: bool,
    /// The session set a `search_path` that puts a schema before `pg_catalog`
    /// ([`shadows_catalog`]): an unqualified function or operator (`lower(x)`, `id = 1`) may
    /// then resolve to a user's own, which may do anything, so no query or DML is taken to
    /// run only built-ins.
    pub catalog_shadowed: bool,
}

impl Default for LexContext {
    fn default() -> Self {
        LexContext {
            standard_strings: true,
            unsafe_encoding: false,
            converted_encoding: false,
            catalog_shadowed: false,
        }
    }
}

/// Whether `text` may set a `search_path` that puts another schema before `pg_catalog`
/// (`SET search_path = public, pg_catalog`, `set_config('search_path', $1, false)`): after
/// `search_path`, `pg_catalog` is named but not first, or the value is a parameter. PostgreSQL
/// searches `pg_catalog` first unless the path names it later, so a path without it (the
/// default `"$user", public`, pg_dump's `''`) shadows no built-in.
pub fn shadows_catalog(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.match_indices("search_path").any(|(at, _)| {
        let rest = &lower[at + "search_path".len()..];
        let mut value = rest
            .trim_start_matches(|c: char| c.is_whitespace() || matches!(c, '=' | '\'' | '"' | ','));
        if let Some(v) = value.strip_prefix("to")
            && v.starts_with(char::is_whitespace)
        {
            value = v;
        }
        let value =
            value.trim_start_matches(|c: char| c.is_whitespace() || matches!(c, '\'' | '"'));
        // Only this assignment's own value: up to the end of the statement.
        let own = rest.split(';').next().unwrap_or(rest);
        value.starts_with('$') || (own.contains("pg_catalog") && !value.starts_with("pg_catalog"))
    })
}

impl LexContext {
    pub fn set_client_encoding(&mut self, enc: &str) {
        let e = enc.to_ascii_uppercase().replace(['-', '_'], "");
        self.converted_encoding = !matches!(e.as_str(), "UTF8" | "UNICODE" | "SQLASCII");
        self.unsafe_encoding = matches!(
            e.as_str(),
            "SJIS"
                | "SHIFTJIS"
                | "SHIFTJIS2004"
                | "BIG5"
                | "GBK"
                | "UHC"
                | "GB18030"
                | "JOHAB"
                | "WIN932"
                | "WIN936"
                | "WIN949"
                | "WIN950"
                | "CP932"
                | "CP936"
                | "CP949"
                | "CP950"
        );
    }
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
        Ok(pieces) => pieces
            .into_iter()
            .map(|p| Judged {
                text: p.text.to_string(),
                reasoning: p.reason.clone(),
                info: classify_piece(&p, ctx),
            })
            .collect(),
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
    let body_runs = matches!(c.prepared, Some(SqlPrepared::Prepare { .. }));
    if ctx.catalog_shadowed
        && (matches!(c.effects, Effects::Transient | Effects::Transactional) || body_runs)
        && c.effects != Effects::Code
    {
        // Any function or operator may be a user's: see `LexContext::catalog_shadowed`.
        let mut shadowed = Classified::clone(&c);
        shadowed.effects = Effects::Code;
        return Arc::new(shadowed);
    }
    c
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

const CACHE_LIMIT: usize = 8192;
/// Longer keys are classified every time: caching them would let one agent keep gigabytes
/// (8192 distinct 4 MB statements), and re-parsing text that long costs little beside it.
const CACHE_MAX_KEY: usize = 4096;

fn cache() -> &'static Mutex<HashMap<String, Arc<Classified>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Classified>>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Classification of a normalized statement, computed once per distinct key.
fn cached(key: &str) -> Arc<Classified> {
    if key.len() > CACHE_MAX_KEY {
        return Arc::new(classify_key(key));
    }
    if let Ok(c) = cache().lock()
        && let Some(hit) = c.get(key)
    {
        return hit.clone();
    }
    let fresh = Arc::new(classify_key(key));
    if let Ok(mut c) = cache().lock() {
        if c.len() >= CACHE_LIMIT {
            // Crude but bounded: a workload with this many distinct shapes re-parses anyway.
            c.clear();
        }
        c.insert(key.to_string(), fresh.clone());
    }
    fresh
}

fn unknown(command: String, note: String) -> Classified {
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

fn classify_key(key: &str) -> Classified {
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
fn folded(ident: &sqlparser::ast::Ident) -> String {
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

/// `PREPARE TRANSACTION 'id'`, `COMMIT PREPARED 'id'`, `ROLLBACK PREPARED 'id'` (which sqlparser
/// does not parse). A prepared transaction outlives the session: it keeps its locks and its
/// changes until someone finishes it, so all three are writes (the defaults hold them).
fn two_phase(key: &str) -> Option<Classified> {
    let words: Vec<&str> = key.split(' ').collect();
    let [a, b, id] = words.as_slice() else {
        return None;
    };
    let command = format!("{} {}", a.to_ascii_uppercase(), b.to_ascii_uppercase());
    if *id != "''"
        || !matches!(
            command.as_str(),
            "PREPARE TRANSACTION" | "COMMIT PREPARED" | "ROLLBACK PREPARED"
        )
    {
        return None;
    }
    Some(Classified {
        class: StatementClass::Write,
        command,
        tables: Vec::new(),
        note: None,
        prepared: None,
        effects: Effects::Lasting,
    })
}

/// `a OPERATOR(pg_catalog.=) ANY (...)`, as psql's `\d` and pg_dump's pattern queries write
/// it, which sqlparser parses only before a plain operand. For classification only, each
/// pg_catalog operator (only a superuser can define one) is written plainly; any other schema
/// or spelling leaves the statement unparsed, so `unknown`.
fn catalog_operators_plain(key: &str) -> Option<String> {
    const OPEN: &str = "operator(pg_catalog.";
    let mut out = String::with_capacity(key.len());
    let mut rest = key;
    let mut replaced = false;
    loop {
        let Some(at) = rest.to_ascii_lowercase().find(OPEN) else {
            out.push_str(rest);
            break;
        };
        let after = &rest[at + OPEN.len()..];
        let len = after.find(')')?;
        let op = &after[..len];
        if op.is_empty() || !op.chars().all(|c| "+-*/<>=~!@#%^&|`?".contains(c)) {
            return None;
        }
        out.push_str(&rest[..at]);
        out.push(' ');
        out.push_str(op);
        out.push(' ');
        rest = &after[len + 1..];
        replaced = true;
    }
    replaced.then_some(out)
}

/// `VACUUM` and `ANALYZE`, which sqlparser does not parse for PostgreSQL (`pgbench -i` sends
/// `vacuum analyze pgbench_branches`). Their grammar is small: a command word, an optional
/// parenthesized option list or option keywords, then tables with optional column lists; no
/// expressions, strings or operators. Only text made of those pieces is accepted (class
/// `admin`, tables named); anything else stays unparsed and so `unknown`.
fn maintenance(key: &str) -> Option<Classified> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || " _,.()\"$".contains(c);
    if !key.chars().all(allowed) {
        return None;
    }
    let trimmed = key.trim();
    let (word, mut rest) = trimmed.split_at(trimmed.find(' ').unwrap_or(trimmed.len()));
    let command = word.to_ascii_uppercase();
    if !matches!(command.as_str(), "VACUUM" | "ANALYZE" | "ANALYSE") {
        return None;
    }
    rest = rest.trim_start();
    // VACUUM FULL rewrites the table under an ACCESS EXCLUSIVE lock: its command says so, for
    // the policy (any mention of FULL among the options counts, whatever its value).
    let mut full = false;
    if let Some(inner) = rest.strip_prefix('(') {
        let close = inner.find(')')?;
        // An option name may be quoted: `VACUUM ("full") t` is VACUUM FULL to the server.
        full |= inner[..close]
            .split([' ', ','])
            .any(|w| w.trim_matches('"').eq_ignore_ascii_case("full"));
        rest = inner[close + 1..].trim_start();
    }
    loop {
        let w = rest.split([' ', ',', '(']).next().unwrap_or("");
        if ["FULL", "FREEZE", "VERBOSE", "ANALYZE", "ANALYSE"]
            .iter()
            .any(|k| w.eq_ignore_ascii_case(k))
        {
            full |= w.eq_ignore_ascii_case("full");
            rest = rest[w.len()..].trim_start();
        } else {
            break;
        }
    }
    let mut tables = Vec::new();
    let mut depth = 0usize;
    let mut current = String::new();
    for c in rest.chars().chain(std::iter::once(',')) {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.checked_sub(1)?,
            ',' if depth == 0 => {
                let name = current.trim();
                if name.contains(' ') {
                    return None;
                }
                if !name.is_empty() {
                    tables.push(if name.contains('"') {
                        name.replace('"', "")
                    } else {
                        name.to_ascii_lowercase()
                    });
                }
                current.clear();
            }
            c if depth == 0 => current.push(c),
            _ => {}
        }
    }
    if depth != 0 {
        return None;
    }
    let command = if full && command == "VACUUM" {
        "VACUUM FULL".to_string()
    } else {
        command
    };
    Some(Classified {
        class: StatementClass::Admin,
        command,
        tables,
        note: None,
        prepared: None,
        effects: Effects::Lasting,
    })
}

/// `FETCH` and `MOVE` in the forms sqlparser does not parse: `MOVE` at all, and either without
/// a direction or without `FROM`/`IN` (psycopg's `scroll()` sends `MOVE ABSOLUTE 10 FROM "c"`,
/// asyncpg's `Cursor.forward()` `MOVE FORWARD 10 c`). Both only read or position a cursor
/// whose query was judged at its `DECLARE`, so they are `read`; only text that is exactly
/// PostgreSQL's grammar (`FETCH|MOVE [direction] [FROM|IN] cursor`) is accepted.
fn cursor_move(key: &str) -> Option<Classified> {
    let tokens = cursor_tokens(key)?;
    let (first, mut rest) = tokens.split_first()?;
    let command = first.to_ascii_uppercase();
    if command != "FETCH" && command != "MOVE" {
        return None;
    }
    // A count is an integer literal (the cache key spells every number `0`), maybe signed.
    let count = |r: &[String]| -> usize {
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        match r {
            [sign, n, ..] if (sign == "-" || sign == "+") && digits(n) => 2,
            [t, ..] if digits(t.strip_prefix(['-', '+']).unwrap_or(t)) => 1,
            _ => 0,
        }
    };
    let upper = |r: &[String]| r.first().map(|t| t.to_ascii_uppercase());
    match upper(rest).as_deref() {
        Some("NEXT" | "PRIOR" | "FIRST" | "LAST" | "ALL") => rest = &rest[1..],
        Some("ABSOLUTE" | "RELATIVE") => {
            let n = count(&rest[1..]);
            if n == 0 {
                return None;
            }
            rest = &rest[1 + n..];
        }
        Some("FORWARD" | "BACKWARD") => {
            rest = &rest[1..];
            if upper(rest).as_deref() == Some("ALL") {
                rest = &rest[1..];
            } else {
                rest = &rest[count(rest)..];
            }
        }
        _ => rest = &rest[count(rest)..],
    }
    if matches!(upper(rest).as_deref(), Some("FROM" | "IN")) {
        rest = &rest[1..];
    }
    let [name] = rest else {
        return None;
    };
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if !plain && !name.starts_with('"') {
        return None;
    }
    // As the server resolves the name: a quoted one exactly (`""` is one `"`), else folded.
    let cursor = match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => name.to_ascii_lowercase(),
    };
    Some(Classified {
        class: StatementClass::Read,
        command,
        tables: Vec::new(),
        note: None,
        prepared: Some(SqlPrepared::Fetch { cursor }),
        effects: Effects::Lasting,
    })
}

/// Whitespace-separated words, a double-quoted identifier (`""` inside) being one word.
fn cursor_tokens(key: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = key.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        if c == '"' {
            word.push(chars.next()?);
            loop {
                let c = chars.next()?;
                word.push(c);
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        word.push(chars.next()?);
                    } else {
                        break;
                    }
                }
            }
            if chars.peek().is_some_and(|c| !c.is_whitespace()) {
                return None;
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '"' {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        out.push(word);
    }
    Some(out)
}

/// PostgreSQL spells COPY's boolean options `on`/`off` too (`pgbench -i` sends
/// `copy ... from stdin with (freeze on)`), which sqlparser does not accept. For a COPY that did
/// not parse, the same text with `ON`/`OFF` words inside its trailing option list spelled
/// `TRUE`/`FALSE`: option values cannot change where the data goes, which is what the class
/// depends on.
fn copy_options_as_booleans(key: &str) -> Option<String> {
    let trimmed = key.trim_start();
    if !trimmed.get(..4)?.eq_ignore_ascii_case("copy") {
        return None;
    }
    let open = key.rfind('(')?;
    let close = key.rfind(')')?;
    if close < open || !key[close + 1..].trim().is_empty() {
        return None;
    }
    let before = key[..open].trim_end();
    if !before
        .get(before.len().saturating_sub(4)..)?
        .eq_ignore_ascii_case("with")
    {
        return None;
    }
    let options: Vec<String> = key[open + 1..close]
        .split(',')
        .map(|opt| {
            opt.split_whitespace()
                .map(|w| {
                    if w.eq_ignore_ascii_case("on") {
                        "TRUE"
                    } else if w.eq_ignore_ascii_case("off") {
                        "FALSE"
                    } else {
                        w
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    Some(format!("{}({})", &key[..open], options.join(", ")))
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

fn is_role_variable(name: &ObjectName) -> bool {
    let n = name.to_string().to_ascii_lowercase();
    let last = n.rsplit('.').next().unwrap_or(&n).trim_matches('"');
    last == "role" || last == "session_authorization"
}

/// The class of a statement from its kind alone; the walk may raise it.
fn base_class(stmt: &Ast, words: &str) -> StatementClass {
    use StatementClass::*;
    let first = words.split(' ').next().unwrap_or("");
    match stmt {
        Ast::Query(q) => match q.body.as_ref() {
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
                Write
            }
            _ => Read,
        },
        Ast::Insert(_) | Ast::Update(_) | Ast::Delete(_) | Ast::Merge(_) | Ast::Truncate(_) => {
            Write
        }
        Ast::Copy { to, target, .. } => match target {
            CopyTarget::Stdin | CopyTarget::Stdout => {
                if *to {
                    Read
                } else {
                    Write
                }
            }
            // Server-side files and programs run with the server's rights.
            CopyTarget::File { .. } | CopyTarget::Program { .. } => Admin,
        },
        Ast::Explain { statement, .. } => {
            if explain_runs(stmt) {
                // EXPLAIN ANALYZE runs the statement.
                let inner_words = leading_words(&statement.to_string());
                let mut walk = Walk::default();
                let _ = statement.visit(&mut walk);
                let mut c = base_class(statement, &inner_words);
                if let Some(e) = walk.escalation()
                    && e.danger() > c.danger()
                {
                    c = e;
                }
                c
            } else {
                Read
            }
        }
        Ast::ExplainTable { .. } => Read,
        Ast::StartTransaction { .. }
        | Ast::Commit { .. }
        | Ast::Rollback { .. }
        | Ast::Savepoint { .. }
        | Ast::ReleaseSavepoint { .. } => Tcl,
        Ast::Set(set) => match set {
            Set::SetRole { .. } | Set::SetSessionAuthorization(_) => Dcl,
            Set::SingleAssignment { variable, .. } if is_role_variable(variable) => Dcl,
            Set::ParenthesizedAssignments { variables, .. }
                if variables.iter().any(is_role_variable) =>
            {
                Dcl
            }
            Set::MultipleAssignments { assignments } => {
                if assignments.iter().any(|a| is_role_variable(&a.name)) {
                    Dcl
                } else {
                    Session
                }
            }
            _ => Session,
        },
        Ast::ShowVariable { .. }
        | Ast::ShowVariables { .. }
        | Ast::ShowStatus { .. }
        | Ast::ShowFunctions { .. }
        | Ast::ShowTables { .. }
        | Ast::ShowColumns { .. }
        | Ast::ShowCreate { .. }
        | Ast::ShowCollation { .. }
        | Ast::Reset(_)
        | Ast::Discard { .. }
        | Ast::Deallocate { .. }
        | Ast::LISTEN { .. }
        | Ast::UNLISTEN { .. } => Session,
        Ast::NOTIFY { .. } => Write,
        Ast::Prepare { statement, .. } => {
            let inner_words = leading_words(&statement.to_string());
            base_class(statement, &inner_words)
        }
        Ast::Declare { stmts } => {
            if stmts.iter().any(|d| d.for_query.is_some()) {
                Read
            } else {
                Unknown
            }
        }
        Ast::Fetch { .. } | Ast::Close { .. } => Read,
        // LOCK in the modes ordinary statements take (SELECT: ACCESS SHARE; SELECT FOR UPDATE:
        // ROW SHARE; DML: ROW EXCLUSIVE) is what those statements are; the stronger modes block
        // other sessions' writes or reads until the transaction ends, which is admin.
        Ast::Lock(lock) => match lock.lock_mode {
            Some(LockTableMode::AccessShare) => Read,
            Some(LockTableMode::RowShare | LockTableMode::RowExclusive) => Write,
            _ => Admin,
        },
        Ast::Vacuum(_)
        | Ast::Analyze(_)
        | Ast::LockTables { .. }
        | Ast::Kill { .. }
        | Ast::Load { .. } => Admin,
        Ast::Grant(_)
        | Ast::Revoke(_)
        | Ast::Deny(_)
        | Ast::CreateRole(_)
        | Ast::AlterRole { .. }
        | Ast::CreateUser(_)
        | Ast::AlterUser(_) => Dcl,
        Ast::Drop {
            object_type: ObjectType::Role | ObjectType::User,
            ..
        } => Dcl,
        // `EXECUTE name` runs a statement prepared earlier whose text proctor did not judge
        // here; `CALL` runs a procedure that may do anything.
        Ast::Execute { .. } | Ast::Call(_) => Unknown,
        _ => match first {
            "CREATE" | "ALTER" | "DROP" | "COMMENT" => {
                let second = words.split(' ').nth(1).unwrap_or("");
                if matches!(second, "ROLE" | "USER" | "GROUP") {
                    Dcl
                } else {
                    Ddl
                }
            }
            "GRANT" | "REVOKE" => Dcl,
            _ => Unknown,
        },
    }
}

/// Whether an `EXPLAIN` runs its statement: `ANALYZE` in either of the server's spellings
/// (`ANALYSE` is the same keyword to PostgreSQL), bare or as an option whatever its value (an
/// `ANALYZE off` judged as running only holds more). Any other statement runs, of course.
pub fn explain_runs(stmt: &Ast) -> bool {
    let is_analyze =
        |w: &str| w.eq_ignore_ascii_case("analyze") || w.eq_ignore_ascii_case("analyse");
    match stmt {
        Ast::Explain {
            analyze, options, ..
        } => *analyze || options.iter().flatten().any(|o| is_analyze(&o.name.value)),
        _ => true,
    }
}

/// Tables sqlparser's visitor does not report as relations.
fn extra_tables(stmt: &Ast, tables: &mut Vec<String>) {
    let mut add = |n: &ObjectName| {
        let s = resolved_name(n);
        if !tables.contains(&s) {
            tables.push(s);
        }
    };
    match stmt {
        Ast::Copy {
            source: CopySource::Table { table_name, .. },
            ..
        } => add(table_name),
        Ast::Drop {
            object_type: ObjectType::Table | ObjectType::View | ObjectType::MaterializedView,
            names,
            ..
        } => names.iter().for_each(add),
        _ => {}
    }
}

/// Functions whose call changes something, by the class they imply. Matched on the last part
/// of the name, lower-cased, so `pg_catalog.` prefixes and quoting do not hide them.
fn function_class(name: &str) -> Option<StatementClass> {
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
    const LIST: &[&str] = &[
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
    LIST.contains(&name)
}

/// A built-in of [`runs_no_sql`], named as `listed_function` names built-ins.
fn builtin_without_sql(name: &ObjectName) -> bool {
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

fn listed_function(name: &ObjectName) -> bool {
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

/// What a statement's effects can outlive (see `durability`). Anything not recognised as a
/// plain query, plain DML, `BEGIN` or `SAVEPOINT` is lasting.
fn effects_of(stmt: &Ast, walk: &Walk) -> Effects {
    if walk.code {
        return Effects::Code;
    }
    if walk.impure || walk.select_into || walk.settings_role || walk.functions.is_some() {
        return Effects::Lasting;
    }
    let dml = |q: &Query| {
        matches!(
            q.body.as_ref(),
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_)
        )
    };
    match stmt {
        Ast::Query(q) if dml(q) || walk.nested_dml => Effects::Transactional,
        Ast::Query(_) => Effects::Transient,
        Ast::Insert(_) | Ast::Update(_) | Ast::Delete(_) | Ast::Merge(_) => Effects::Transactional,
        Ast::StartTransaction { statements, .. } if statements.is_empty() => Effects::Transient,
        Ast::Savepoint { .. } => Effects::Transactional,
        _ => Effects::Lasting,
    }
}

#[derive(Default)]
struct Walk {
    tables: Vec<String>,
    ctes: Vec<String>,
    nested_dml: bool,
    select_into: bool,
    locks: bool,
    functions: Option<StatementClass>,
    /// Set-returning functions in FROM, which sqlparser reports as relations.
    table_functions: Vec<String>,
    /// An `UPDATE pg_settings` that may set `role` or `session_authorization`.
    settings_role: bool,
    /// A function not known to be free of side effects, or an operator proctor cannot name
    /// (any function may lie behind it).
    impure: bool,
    /// Of those, one that may run SQL of its own (a user's function, an operator proctor
    /// cannot name): not a built-in of [`runs_no_sql`].
    code: bool,
    depth: u32,
}

impl Walk {
    fn function(&mut self, name: &ObjectName) {
        // The last part as the server resolves it, lower-cased even when quoted: a quoted
        // `"SET_CONFIG"` is another function, but judging it as set_config only holds more.
        let last = name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(|i| i.value.to_ascii_lowercase())
            .unwrap_or_else(|| name.to_string().to_ascii_lowercase());
        if let Some(c) = function_class(&last)
            && self.functions.is_none_or(|cur| c.danger() > cur.danger())
        {
            self.functions = Some(c);
        }
        if !listed_function(name) {
            self.impure = true;
            self.code |= !builtin_without_sql(name);
        }
    }

    /// What the inside of a statement adds to its kind.
    fn escalation(&self) -> Option<StatementClass> {
        let mut c: Option<StatementClass> = None;
        let mut raise = |x: StatementClass| {
            if c.is_none_or(|cur| x.danger() > cur.danger()) {
                c = Some(x);
            }
        };
        if self.nested_dml || self.locks {
            raise(StatementClass::Write);
        }
        if self.select_into {
            raise(StatementClass::Ddl);
        }
        if self.settings_role {
            raise(StatementClass::Dcl);
        }
        if let Some(f) = self.functions {
            raise(f);
        }
        c
    }
}

impl Visitor for Walk {
    type Break = ();

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        let s = resolved_name(relation);
        if !self.tables.contains(&s) {
            self.tables.push(s);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.ctes.push(folded(&cte.alias.name));
            }
        }
        if !query.locks.is_empty() {
            self.locks = true;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        if select.into.is_some() {
            self.select_into = true;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, statement: &Ast) -> ControlFlow<()> {
        // The statement itself is depth 0; anything deeper is nested in a query.
        if self.depth > 0
            && matches!(
                statement,
                Ast::Insert(_) | Ast::Update(_) | Ast::Delete(_) | Ast::Merge(_)
            )
        {
            self.nested_dml = true;
        }
        if let Ast::Update(u) = statement
            && pg_settings::update_may_set_role(u) == Some(true)
        {
            self.settings_role = true;
        }
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, _statement: &Ast) -> ControlFlow<()> {
        self.depth = self.depth.saturating_sub(1);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::Function(f) => self.function(&f.name),
            Expr::BinaryOp {
                op: BinaryOperator::Custom(_) | BinaryOperator::PGCustomBinaryOperator(_),
                ..
            } => {
                self.impure = true;
                self.code = true;
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        match factor {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => {
                self.function(name);
                self.table_functions.push(resolved_name(name));
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
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
}
