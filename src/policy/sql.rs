//! SQL facts the policy needs beyond the protocol's classification: normalized text for
//! regexes, and structural features such as a DELETE or UPDATE without WHERE.

use std::ops::ControlFlow;

use sqlparser::ast::{Statement, visit_statements};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

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
                out.push_str(&other.to_string());
            }
        }
    }
    out
}

/// Whether any DELETE or UPDATE in the text (including inside CTEs) lacks a WHERE clause.
/// Unparseable text answers `false`; such statements are class `unknown` and judged as such.
pub fn has_unqualified_dml(sql: &str) -> bool {
    let Ok(statements) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else {
        return false;
    };
    let found = visit_statements(&statements, |s| match s {
        Statement::Delete(d) if d.selection.is_none() => ControlFlow::Break(()),
        Statement::Update(u) if u.selection.is_none() => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    });
    found.is_break()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
