//! Which values of a statement belong to a sensitive column (`schema.table.column`): bound
//! parameters (INSERT column lists, `UPDATE ... SET col = $n`, `col = $n` comparisons),
//! literals written in the text at the same places, and the result columns that carry the
//! column (by name, or through an alias or function of it).
//!
//! The reading is deliberately generous: a column name is sensitive whenever one of the
//! statement's tables has it configured, whichever table the name actually resolves to. Sealing
//! a value that was not secret costs an auditor a reveal; missing one leaks it.

use std::collections::HashMap;
use std::ops::ControlFlow;

use sqlparser::ast::{
    AssignmentTarget, BinaryOperator, Expr, ObjectName, Query, SelectItem, SetExpr, Spanned,
    Statement as Ast, Value, Visit, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// A configured sensitive column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensitiveColumn {
    pub schema: String,
    pub table: String,
    pub column: String,
}

impl SensitiveColumn {
    /// `schema.table.column` (identifiers are compared lower-cased, unquoted).
    pub fn parse(spec: &str) -> Result<SensitiveColumn, String> {
        let parts: Vec<&str> = spec.split('.').collect();
        let ok = parts.len() == 3
            && parts.iter().all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
            });
        if !ok {
            return Err(format!("{spec:?}: expected schema.table.column"));
        }
        Ok(SensitiveColumn {
            schema: parts[0].to_ascii_lowercase(),
            table: parts[1].to_ascii_lowercase(),
            column: parts[2].to_ascii_lowercase(),
        })
    }

    pub fn field(&self) -> String {
        format!("{}.{}.{}", self.schema, self.table, self.column)
    }

    /// Whether a table as the statement names it (`t`, `s.t`, `"S"."T"`, `db.s.t`) may be this
    /// column's table. An unqualified name matches in any schema: the search path is the
    /// session's business, and over-sealing is the safe error.
    fn table_matches(&self, name: &str) -> bool {
        let parts: Vec<String> = name
            .split('.')
            .map(|p| p.trim_matches('"').to_ascii_lowercase())
            .collect();
        match parts.as_slice() {
            [] => false,
            [t] => *t == self.table,
            [.., s, t] => *t == self.table && *s == self.schema,
        }
    }
}

/// What of one statement must be sealed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatementColumns {
    /// 1-based parameter number -> field.
    pub params: Vec<(usize, String)>,
    /// Result column name (lower-cased) -> field.
    pub outputs: Vec<(String, String)>,
    /// Byte spans of literals in the text -> field.
    pub literals: Vec<(usize, usize, String)>,
}

impl StatementColumns {
    pub fn is_empty(&self) -> bool {
        self.params.is_empty() && self.outputs.is_empty() && self.literals.is_empty()
    }
}

/// The sensitive columns of the tables a statement touches; empty when none (the common
/// case, decided without parsing).
pub fn relevant<'a>(
    configured: &'a [SensitiveColumn],
    tables: &[String],
) -> Vec<&'a SensitiveColumn> {
    configured
        .iter()
        .filter(|c| tables.iter().any(|t| c.table_matches(t)))
        .collect()
}

fn last_part(name: &ObjectName) -> String {
    let s = name.to_string();
    s.rsplit('.')
        .next()
        .unwrap_or(&s)
        .trim_matches('"')
        .to_ascii_lowercase()
}

struct Cols<'a> {
    by_name: HashMap<String, &'a SensitiveColumn>,
}

impl<'a> Cols<'a> {
    fn of_ident(&self, e: &Expr) -> Option<&'a SensitiveColumn> {
        let name = match e {
            Expr::Identifier(i) => i.value.to_ascii_lowercase(),
            Expr::CompoundIdentifier(parts) => parts.last()?.value.to_ascii_lowercase(),
            Expr::Nested(inner) | Expr::Cast { expr: inner, .. } => return self.of_ident(inner),
            _ => return None,
        };
        self.by_name.get(&name).copied()
    }

    fn of_name(&self, n: &ObjectName) -> Option<&'a SensitiveColumn> {
        self.by_name.get(&last_part(n)).copied()
    }

    /// The first sensitive column referenced anywhere inside `e`.
    fn referenced(&self, e: &Expr) -> Option<&'a SensitiveColumn> {
        let mut found = None;
        let _ = sqlparser::ast::visit_expressions(e, |x| match self.of_ident(x) {
            Some(c) => {
                found = Some(c);
                ControlFlow::Break(())
            }
            None => ControlFlow::Continue(()),
        });
        found
    }
}

fn placeholder(e: &Expr) -> Option<usize> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Placeholder(p) => p.strip_prefix('$')?.parse().ok(),
            _ => None,
        },
        Expr::Nested(inner) | Expr::Cast { expr: inner, .. } => placeholder(inner),
        _ => None,
    }
}

/// Byte offset of a 1-based (line, column-in-characters) location.
fn offset(text: &str, line: u64, column: u64) -> Option<usize> {
    if line == 0 || column == 0 {
        return None;
    }
    let mut start = 0usize;
    for _ in 1..line {
        start += text[start..].find('\n')? + 1;
    }
    let rest = &text[start..];
    let col = (column - 1) as usize;
    match rest.char_indices().nth(col) {
        Some((i, _)) => Some(start + i),
        None if rest.chars().count() == col => Some(text.len()),
        None => None,
    }
}

struct Finder<'a, 'c> {
    text: &'a str,
    cols: &'c Cols<'c>,
    out: StatementColumns,
}

impl Finder<'_, '_> {
    /// Records the value `e` given to column `c`: a parameter, or every literal inside it.
    fn value_of(&mut self, c: &SensitiveColumn, e: &Expr) {
        if let Some(n) = placeholder(e) {
            self.out.params.push((n, c.field()));
            return;
        }
        let _ = sqlparser::ast::visit_expressions(e, |x| {
            if let Some(n) = placeholder(x) {
                self.out.params.push((n, c.field()));
            } else if let Expr::Value(v) = x
                && !matches!(v.value, Value::Null | Value::Boolean(_))
            {
                let span = x.span();
                if let (Some(s), Some(end)) = (
                    offset(self.text, span.start.line, span.start.column),
                    offset(self.text, span.end.line, span.end.column),
                ) && s < end
                {
                    self.out.literals.push((s, end, c.field()));
                }
            }
            ControlFlow::<()>::Continue(())
        });
    }

    fn projection(&mut self, items: &[SelectItem]) {
        for item in items {
            let (expr, alias) = match item {
                SelectItem::UnnamedExpr(e) => (e, None),
                SelectItem::ExprWithAlias { expr, alias } => {
                    (expr, Some(alias.value.to_ascii_lowercase()))
                }
                SelectItem::ExprWithAliases { expr, aliases } => {
                    (expr, aliases.first().map(|a| a.value.to_ascii_lowercase()))
                }
                _ => continue,
            };
            let Some(c) = self.cols.referenced(expr) else {
                continue;
            };
            let name = alias.unwrap_or_else(|| output_name(expr));
            self.out.outputs.push((name, c.field()));
        }
    }
}

/// The name PostgreSQL gives an unaliased result column.
fn output_name(e: &Expr) -> String {
    match e {
        Expr::Identifier(i) => i.value.to_ascii_lowercase(),
        Expr::CompoundIdentifier(p) => p
            .last()
            .map(|i| i.value.to_ascii_lowercase())
            .unwrap_or_default(),
        Expr::Function(f) => last_part(&f.name),
        Expr::Cast { expr, .. } | Expr::Nested(expr) => output_name(expr),
        _ => "?column?".into(),
    }
}

impl Visitor for Finder<'_, '_> {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        let mut bodies = vec![q.body.as_ref()];
        while let Some(b) = bodies.pop() {
            match b {
                SetExpr::Select(s) => self.projection(&s.projection),
                SetExpr::SetOperation { left, right, .. } => {
                    bodies.push(left);
                    bodies.push(right);
                }
                _ => {}
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, s: &Ast) -> ControlFlow<()> {
        match s {
            Ast::Insert(ins) => {
                let cols: Vec<Option<&SensitiveColumn>> =
                    ins.columns.iter().map(|c| self.cols.of_name(c)).collect();
                if let Some(src) = &ins.source
                    && let SetExpr::Values(values) = src.body.as_ref()
                {
                    for row in &values.rows {
                        for (i, e) in row.iter().enumerate() {
                            if let Some(Some(c)) = cols.get(i) {
                                self.value_of(c, e);
                            }
                        }
                    }
                }
                for a in &ins.assignments {
                    self.assignment(&a.target, &a.value);
                }
                if let Some(r) = &ins.returning {
                    self.projection(r);
                }
            }
            Ast::Update(u) => {
                for a in &u.assignments {
                    self.assignment(&a.target, &a.value);
                }
                if let Some(r) = &u.returning {
                    self.projection(r);
                }
            }
            Ast::Delete(d) => {
                if let Some(r) = &d.returning {
                    self.projection(r);
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        // `col = <value>` anywhere (WHERE, JOIN ... ON, CASE): the value is the column's.
        if let Expr::BinaryOp { left, op, right } = e
            && matches!(op, BinaryOperator::Eq | BinaryOperator::NotEq)
        {
            if let Some(c) = self.cols.of_ident(left) {
                self.value_of(c, right);
            } else if let Some(c) = self.cols.of_ident(right) {
                self.value_of(c, left);
            }
        }
        if let Expr::InList { expr, list, .. } = e
            && let Some(c) = self.cols.of_ident(expr)
        {
            for v in list {
                self.value_of(c, v);
            }
        }
        ControlFlow::Continue(())
    }
}

impl Finder<'_, '_> {
    fn assignment(&mut self, target: &AssignmentTarget, value: &Expr) {
        match target {
            AssignmentTarget::ColumnName(n) => {
                if let Some(c) = self.cols.of_name(n) {
                    self.value_of(c, value);
                }
            }
            AssignmentTarget::Tuple(names) => {
                if let Expr::Tuple(values) = value {
                    for (n, v) in names.iter().zip(values) {
                        if let Some(c) = self.cols.of_name(n) {
                            self.value_of(c, v);
                        }
                    }
                } else if let Some(c) = names.iter().find_map(|n| self.cols.of_name(n)) {
                    self.value_of(c, value);
                }
            }
        }
    }
}

/// What of `text` (one statement touching `relevant` columns' tables) must be sealed. Text
/// that does not parse still has its results sealed by column name.
pub fn analyze(text: &str, relevant: &[&SensitiveColumn]) -> StatementColumns {
    let cols = Cols {
        by_name: relevant.iter().map(|c| (c.column.clone(), *c)).collect(),
    };
    let mut finder = Finder {
        text,
        cols: &cols,
        out: StatementColumns::default(),
    };
    if let Ok(ast) = Parser::parse_sql(&PostgreSqlDialect {}, text) {
        let _ = ast.visit(&mut finder);
    }
    let mut out = finder.out;
    for c in relevant {
        if !out.outputs.iter().any(|(n, _)| *n == c.column) {
            out.outputs.push((c.column.clone(), c.field()));
        }
    }
    out.params.sort();
    out.params.dedup();
    out.literals.sort();
    out.literals.dedup_by(|a, b| a.0 < b.1 && b.0 < a.1);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<SensitiveColumn> {
        vec![
            SensitiveColumn::parse("public.customers.ssn").unwrap(),
            SensitiveColumn::parse("public.customers.card").unwrap(),
        ]
    }

    fn run(sql: &str, tables: &[&str]) -> StatementColumns {
        let c = cols();
        let tables: Vec<String> = tables.iter().map(|s| s.to_string()).collect();
        let r = relevant(&c, &tables);
        analyze(sql, &r)
    }

    #[test]
    fn parses_specs() {
        assert!(SensitiveColumn::parse("a.b").is_err());
        assert!(SensitiveColumn::parse("a.b.c d").is_err());
        assert_eq!(
            SensitiveColumn::parse("Public.T.C").unwrap().field(),
            "public.t.c"
        );
    }

    #[test]
    fn tables_match_by_name_and_schema() {
        let c = &cols()[0];
        assert!(c.table_matches("customers"));
        assert!(c.table_matches("public.customers"));
        assert!(c.table_matches("\"public\".\"Customers\""));
        assert!(!c.table_matches("other.customers"));
        assert!(!c.table_matches("orders"));
    }

    #[test]
    fn maps_parameters() {
        let r = run(
            "INSERT INTO customers (name, ssn, card) VALUES ($1, $2, $3)",
            &["customers"],
        );
        assert_eq!(
            r.params,
            vec![
                (2, "public.customers.ssn".into()),
                (3, "public.customers.card".into())
            ]
        );
        let r = run(
            "UPDATE public.customers SET ssn = $1 WHERE card = $2 AND id = $3",
            &["public.customers"],
        );
        assert_eq!(
            r.params,
            vec![
                (1, "public.customers.ssn".into()),
                (2, "public.customers.card".into())
            ]
        );
        let r = run(
            "SELECT id FROM customers WHERE ssn = $1::text",
            &["customers"],
        );
        assert_eq!(r.params, vec![(1, "public.customers.ssn".into())]);
    }

    #[test]
    fn finds_literals_in_text() {
        let sql = "insert into customers (ssn, name) values ('123-45-6789', 'ann')";
        let r = run(sql, &["customers"]);
        assert_eq!(r.literals.len(), 1);
        let (s, e, _) = &r.literals[0];
        assert_eq!(&sql[*s..*e], "'123-45-6789'");
        let sql = "select * from customers where ssn in ('1', '2') or card = 42";
        let r = run(sql, &["customers"]);
        let lits: Vec<&str> = r.literals.iter().map(|(s, e, _)| &sql[*s..*e]).collect();
        assert_eq!(lits, vec!["'1'", "'2'", "42"]);
        let sql = "update customers set ssn = 'é12' where id = 1";
        let r = run(sql, &["customers"]);
        assert_eq!(&sql[r.literals[0].0..r.literals[0].1], "'é12'");
    }

    #[test]
    fn outputs_follow_aliases_and_functions() {
        let r = run(
            "select upper(ssn), card as c, name from customers",
            &["customers"],
        );
        let names: Vec<&str> = r.outputs.iter().map(|(n, _)| n.as_str()).collect();
        assert!(
            names.contains(&"upper")
                && names.contains(&"c")
                && names.contains(&"ssn")
                && names.contains(&"card")
        );
        assert!(!names.contains(&"name"));
        assert!(run("select 1 from orders", &["orders"]).is_empty());
    }
}
