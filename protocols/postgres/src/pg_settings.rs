//! `UPDATE pg_settings SET setting = v WHERE name = 'n'` is `set_config('n', v, false)`: the
//! view's rewrite rule (`pg_settings_u`) turns every row the UPDATE matches into that call. It
//! is judged as the `SET` it performs: when it may set `role` or `session_authorization` it is a
//! privilege change (`dcl`), like `SET ROLE`.

use sqlparser::ast::{BinaryOperator, Expr, ObjectName, TableFactor, Update, Value};

/// PostgreSQL folds unquoted names to lower case; quoted ones are taken as written.
pub(crate) fn resolved_name(name: &ObjectName) -> String {
    name.0
        .iter()
        .map(|part| match part.as_ident() {
            Some(i) if i.quote_style.is_some() => i.value.clone(),
            Some(i) => i.value.to_ascii_lowercase(),
            None => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// A resolved table name that is the catalog view (unqualified names count: `pg_catalog` comes
/// first on the search path unless the session moved it, and the doubt only makes this stricter).
pub(crate) fn is_pg_settings(resolved: &str) -> bool {
    resolved == "pg_settings" || resolved == "pg_catalog.pg_settings"
}

/// The UPDATE's target, when it is `pg_settings`: the names its columns may be qualified by.
fn target(u: &Update) -> Option<Vec<String>> {
    let TableFactor::Table { name, alias, .. } = &u.table.relation else {
        return None;
    };
    let resolved = resolved_name(name);
    if !is_pg_settings(&resolved) {
        return None;
    }
    let mut names = vec!["pg_settings".to_string()];
    if let Some(a) = alias {
        names.push(if a.name.quote_style.is_some() {
            a.name.value.clone()
        } else {
            a.name.value.to_ascii_lowercase()
        });
    }
    Some(names)
}

/// Whether an UPDATE of `pg_settings` may set `role` or `session_authorization`. It may not only
/// when one of the WHERE's conjuncts names the settings by plain string literals (`name = 'x'`,
/// `name IN ('x', 'y')`), none of them a role setting. With literals erased (the cache key
/// spells every string `''`) the answer is always "it may".
pub(crate) fn update_may_set_role(u: &Update) -> Option<bool> {
    let qualifiers = target(u)?;
    let Some(selection) = &u.selection else {
        return Some(true);
    };
    let mut conjuncts = Vec::new();
    flatten_and(selection, &mut conjuncts);
    let safe = conjuncts.iter().any(|c| {
        named_settings(c, &qualifiers).is_some_and(|names| {
            !names.is_empty()
                && names.iter().all(|n| {
                    !n.is_empty()
                        && !n.eq_ignore_ascii_case("role")
                        && !n.eq_ignore_ascii_case("session_authorization")
                })
        })
    });
    Some(!safe)
}

fn flatten_and<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match e {
        Expr::Nested(inner) => flatten_and(inner, out),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            flatten_and(left, out);
            flatten_and(right, out);
        }
        other => out.push(other),
    }
}

fn is_name_column(e: &Expr, qualifiers: &[String]) -> bool {
    let folded = |i: &sqlparser::ast::Ident| {
        if i.quote_style.is_some() {
            i.value.clone()
        } else {
            i.value.to_ascii_lowercase()
        }
    };
    match e {
        Expr::Nested(inner) => is_name_column(inner, qualifiers),
        Expr::Identifier(i) => folded(i) == "name",
        Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [.., q, c] => folded(c) == "name" && qualifiers.contains(&folded(q)),
            _ => false,
        },
        _ => false,
    }
}

fn plain_literal(e: &Expr) -> Option<String> {
    match e {
        Expr::Nested(inner) => plain_literal(inner),
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// The settings a conjunct limits the rows to, when it names them by plain literals.
fn named_settings(c: &Expr, qualifiers: &[String]) -> Option<Vec<String>> {
    match c {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => {
            if is_name_column(left, qualifiers) {
                plain_literal(right).map(|s| vec![s])
            } else if is_name_column(right, qualifiers) {
                plain_literal(left).map(|s| vec![s])
            } else {
                None
            }
        }
        Expr::InList {
            expr,
            list,
            negated: false,
        } if is_name_column(expr, qualifiers) => list.iter().map(plain_literal).collect(),
        _ => None,
    }
}
