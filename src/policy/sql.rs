//! SQL facts the policy needs beyond the protocol's classification: normalized text for
//! regexes, and structural features such as a DELETE or UPDATE without WHERE.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, OnceLock};

use sqlparser::ast::{Expr, Statement, visit_expressions, visit_statements};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

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
/// comments or line breaks. Falls back to the raw text when it does not tokenize.
pub fn normalize(sql: &str) -> String {
    let dialect = PostgreSqlDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize() else {
        return sql.split_whitespace().collect::<Vec<_>>().join(" ");
    };
    let mut out = String::with_capacity(sql.len());
    let mut pending_space = false;
    for t in tokens {
        match t {
            Token::Whitespace(Whitespace::SingleLineComment { .. })
            | Token::Whitespace(Whitespace::MultiLineComment(_))
            | Token::Whitespace(_) => pending_space = true,
            other => {
                if pending_space && !out.is_empty() {
                    out.push(' ');
                }
                pending_space = false;
                push_token(&mut out, &other);
            }
        }
    }
    out
}

/// Appends a token as SQL. sqlparser prints string literals and quoted identifiers with their
/// content unescaped (`'it''s'` as `'it's'`), which would let a literal pass for code in a
/// regex (`'x''' || f() || '''y'` printing as `'x'' || f() || ''y'`); quotes are doubled back.
fn push_token(out: &mut String, token: &Token) {
    let quoted = |out: &mut String, prefix: &str, q: char, s: &str| {
        out.push_str(prefix);
        out.push(q);
        for c in s.chars() {
            if c == q {
                out.push(q);
            }
            out.push(c);
        }
        out.push(q);
    };
    match token {
        Token::SingleQuotedString(s) => quoted(out, "", '\'', s),
        Token::NationalStringLiteral(s) => quoted(out, "N", '\'', s),
        Token::UnicodeStringLiteral(s) => quoted(out, "U&", '\'', s),
        Token::EscapedStringLiteral(s) => quoted(out, "E", '\'', &s.replace('\\', "\\\\")),
        Token::DoubleQuotedString(s) => quoted(out, "", '"', s),
        Token::Word(w) if w.quote_style == Some('"') => quoted(out, "", '"', &w.value),
        other => out.push_str(&other.to_string()),
    }
}

/// Whether any DELETE or UPDATE in the text (including inside CTEs) lacks a WHERE clause.
/// Unparseable text answers `false`; such statements are class `unknown` and judged as such.
pub fn has_unqualified_dml(sql: &str) -> bool {
    let Ok(statements) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else {
        return false;
    };
    // A plain EXPLAIN runs nothing; EXPLAIN ANALYZE runs its statement.
    let runs = |s: &&Statement| match s {
        Statement::Explain {
            analyze, options, ..
        } => {
            *analyze
                || options
                    .iter()
                    .flatten()
                    .any(|o| o.name.value.eq_ignore_ascii_case("analyze"))
        }
        _ => true,
    };
    let statements: Vec<Statement> = statements.iter().filter(runs).cloned().collect();
    let found = visit_statements(&statements, |s| match s {
        Statement::Delete(d) if d.selection.as_ref().is_none_or(constant) => ControlFlow::Break(()),
        Statement::Update(u) if u.selection.as_ref().is_none_or(constant) => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    });
    found.is_break()
}

/// A condition that names no column (`true`, `1 = 1`, `'a' = 'a'`) selects every row: it is no
/// qualification at all.
fn constant(e: &Expr) -> bool {
    visit_expressions(e, |x| match x {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_continue()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_keeps_quotes_inside_literals_escaped() {
        assert_eq!(
            normalize("SELECT 'x''' || f() || '''y', \"a\"\"b\", E'it\\'s \\\\', N'n''n'"),
            "SELECT 'x''' || f() || '''y', \"a\"\"b\", E'it''s \\\\', N'n''n'"
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
        assert!(!has_unqualified_dml("delete from t where a = 1 or true"));
    }
}
