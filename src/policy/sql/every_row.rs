//! Whether a data-modifying statement may touch every row of its table ("unqualified DML").
//!
//! The rule is syntactic and errs towards "every row": a condition restricts only when it
//! references a column of the target table (outside any subquery, or qualified by the target's
//! name inside one) in a test that is not trivially true (`id = id`, `x IS NOT NULL`). `AND`
//! restricts when either side does, `OR` only when both do, `NOT` swaps the two. So `WHERE true`,
//! `1 = 1`, `x OR true`, `NOT false`, `coalesce(true)` and `WHERE other.col = 1` are every row.
//! Nor does a test that compares the target with itself ([`row_independent`]): `id = id + 0`, a
//! self-join's `a.id = b.id`, `id IN (SELECT id FROM accounts)`, `coalesce(true, id = 1)`.
//! A pattern test whose literal pattern matches every string restricts no more than
//! `IS NOT NULL` does: `LIKE '%'`, `ILIKE '%%'`, `SIMILAR TO '%'`, `~ ''`, `~ '.*'`
//! ([`pattern`]); so does one that matches a column against a pattern built from that same
//! column (`owner LIKE owner`).

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, MergeAction, MergeClauseKind, ObjectName, OnConflictAction, OnInsert,
    Query, SetExpr, Statement, TableFactor, TableObject, TableWithJoins, UnaryOperator,
    UpdateTableFromKind, Visit, Visitor,
};

/// The names a target table's columns may be qualified by (its name and alias, folded); the
/// table's own name (`table`); and the aliases of other copies of the same table joined in by
/// `USING`/`FROM`/a MERGE source (`copies`: `DELETE FROM accounts a USING accounts b WHERE a.id
/// = b.id` joins every row with itself).
///
/// The fourth: `Some` when the statement's literals are as written (not placeholders), so a
/// literal pattern may be judged, with the values of its parameters (`$1` is the first; `None`
/// for NULL or a value not known as text).
struct Target(
    Vec<String>,
    String,
    Vec<String>,
    Option<Vec<Option<String>>>,
);

fn fold(i: &sqlparser::ast::Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_ascii_lowercase()
    }
}

impl Target {
    fn of_name(name: &ObjectName, alias: Option<&sqlparser::ast::Ident>) -> Target {
        let mut names = Vec::new();
        let table = last_name(name);
        if !table.is_empty() {
            names.push(table.clone());
        }
        if let Some(a) = alias {
            names.push(fold(a));
        }
        Target(names, table, Vec::new(), None)
    }

    fn of_factor(f: &TableFactor) -> Target {
        match f {
            TableFactor::Table { name, alias, .. } => {
                Target::of_name(name, alias.as_ref().map(|a| &a.name))
            }
            _ => Target(Vec::new(), String::new(), Vec::new(), None),
        }
    }

    /// Notes the copies of the target table among `joined` (a copy without an alias is
    /// named as the target is, so its columns already count as the target's).
    fn with_copies<'a>(mut self, joined: impl IntoIterator<Item = &'a TableFactor>) -> Target {
        for f in joined {
            if let TableFactor::Table {
                name,
                alias: Some(a),
                ..
            } = f
                && !self.1.is_empty()
                && last_name(name) == self.1
            {
                self.2.push(fold(&a.name));
            }
        }
        self
    }

    fn literals(mut self, literals: Option<&[Option<String>]>) -> Target {
        self.3 = literals.map(<[_]>::to_vec);
        self
    }
}

fn last_name(name: &ObjectName) -> String {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(fold)
        .unwrap_or_default()
}

/// Every table factor of `tables`, joins included.
fn factors(tables: &[TableWithJoins]) -> impl Iterator<Item = &TableFactor> {
    tables
        .iter()
        .flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)))
}

/// Whether `s` (one statement, not its nested ones) may modify every row of its target;
/// `literals`: its literals are as written, not placeholders, and its parameters' values.
pub(super) fn touches_every_row(s: &Statement, literals: Option<&[Option<String>]>) -> bool {
    match s {
        Statement::Delete(d) => {
            let tables = match &d.from {
                sqlparser::ast::FromTable::WithFromKeyword(t)
                | sqlparser::ast::FromTable::WithoutKeyword(t) => t,
            };
            let target = tables
                .first()
                .map_or(Target(Vec::new(), String::new(), Vec::new(), None), |t| {
                    Target::of_factor(&t.relation)
                })
                .with_copies(factors(d.using.as_deref().unwrap_or_default()))
                .literals(literals);
            !d.selection.as_ref().is_some_and(|w| restricts(w, &target))
        }
        Statement::Update(u) => {
            let from = match &u.from {
                Some(UpdateTableFromKind::BeforeSet(t) | UpdateTableFromKind::AfterSet(t)) => {
                    t.as_slice()
                }
                None => &[],
            };
            let target = Target::of_factor(&u.table.relation)
                .with_copies(factors(from).chain(u.table.joins.iter().map(|j| &j.relation)))
                .literals(literals);
            !u.selection.as_ref().is_some_and(|w| restricts(w, &target))
        }
        Statement::Merge(m) => {
            let target = Target::of_factor(&m.table)
                .with_copies([&m.source])
                .literals(literals);
            let on = restricts(&m.on, &target);
            m.clauses.iter().any(|c| {
                let modifies = matches!(
                    c.action,
                    MergeAction::Update(_) | MergeAction::Delete { .. }
                );
                // Rows NOT MATCHED BY SOURCE are exactly those the ON condition does not pick.
                let on_counts = matches!(c.clause_kind, MergeClauseKind::Matched) && on;
                let kind_modifies_target = matches!(
                    c.clause_kind,
                    MergeClauseKind::Matched | MergeClauseKind::NotMatchedBySource
                );
                kind_modifies_target
                    && modifies
                    && !on_counts
                    && !c.predicate.as_ref().is_some_and(|p| restricts(p, &target))
            })
        }
        Statement::Insert(i) => {
            let Some(OnInsert::OnConflict(oc)) = &i.on else {
                return false;
            };
            let OnConflictAction::DoUpdate(du) = &oc.action else {
                return false;
            };
            let TableObject::TableName(name) = &i.table else {
                return true;
            };
            let target =
                Target::of_name(name, i.table_alias.as_ref().map(|a| &a.alias)).literals(literals);
            // Rows written out as VALUES each update at most the one row they conflict with;
            // a query as the source can propose every row of the table.
            let from_values = i
                .source
                .as_ref()
                .is_none_or(|q| q.with.is_none() && matches!(q.body.as_ref(), SetExpr::Values(_)));
            !from_values && !du.selection.as_ref().is_some_and(|w| restricts(w, &target))
        }
        _ => false,
    }
}

/// Whether the condition limits which target rows it selects.
fn restricts(e: &Expr, target: &Target) -> bool {
    polarity(e, target, false)
}

fn polarity(e: &Expr, target: &Target, negated: bool) -> bool {
    match e {
        Expr::Nested(inner) => polarity(inner, target, negated),
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => polarity(expr, target, !negated),
        Expr::BinaryOp { left, op, right }
            if matches!(op, BinaryOperator::And | BinaryOperator::Or) =>
        {
            let l = polarity(left, target, negated);
            let r = polarity(right, target, negated);
            // NOT (a AND b) is NOT a OR NOT b, and the reverse.
            if (*op == BinaryOperator::And) != negated {
                l || r
            } else {
                l && r
            }
        }
        // Under NOT, a leaf false for every row is what lets every row through:
        // `NOT (id IS NULL)` is `id IS NOT NULL`.
        leaf => {
            references_target(leaf, target)
                && !if negated {
                    trivially_false(leaf)
                        || target
                            .3
                            .as_deref()
                            .is_some_and(|p| pattern(leaf, p) == Some(true))
                } else {
                    trivially_true(leaf)
                        || target
                            .3
                            .as_deref()
                            .is_some_and(|p| pattern(leaf, p) == Some(false))
                }
                && !row_independent(leaf, target)
        }
    }
}

/// A test that references the target yet says nothing about which of its rows it picks, in
/// either polarity: it compares the target with a copy of itself (a self-join's alias, a
/// subquery over the target table: `id IN (SELECT id FROM accounts)`), compares an expression
/// of some columns with another of exactly those columns (`id = id + 0`,
/// `lower(name) = lower(name)`), or is not a comparison and holds a literal `true` that may
/// decide it (`coalesce(true, id = 1)`, `CASE WHEN id = 1 THEN true ELSE true END`).
fn row_independent(leaf: &Expr, target: &Target) -> bool {
    if reads_copy(leaf, target) {
        return true;
    }
    match leaf {
        Expr::BinaryOp { left, right, .. } => {
            let (l, r) = (columns(left, target), columns(right, target));
            !l.is_empty() && l == r
        }
        Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => {
            let (l, r) = (columns(a, target), columns(b, target));
            !l.is_empty() && l == r
        }
        // `id IN (id, 5)`, `id BETWEEN id - 1 AND id + 1` (each bound of the row alone).
        Expr::InList { expr, list, .. } => {
            let c = columns(expr, target);
            !c.is_empty() && list.iter().any(|x| columns(x, target) == c)
        }
        Expr::Between {
            expr, low, high, ..
        } => {
            let c = columns(expr, target);
            !c.is_empty() && columns(low, target) == c && columns(high, target) == c
        }
        // `owner LIKE owner`, `owner ILIKE owner || '%'`: a pattern made of the row itself.
        Expr::Like { expr, pattern, .. }
        | Expr::ILike { expr, pattern, .. }
        | Expr::SimilarTo { expr, pattern, .. } => {
            let c = columns(expr, target);
            !c.is_empty() && columns(pattern, target) == c
        }
        Expr::InSubquery { .. }
        | Expr::IsNull(_)
        | Expr::IsNotNull(_)
        | Expr::IsTrue(_)
        | Expr::IsFalse(_)
        | Expr::IsNotTrue(_)
        | Expr::IsNotFalse(_)
        | Expr::Identifier(_)
        | Expr::CompoundIdentifier(_) => false,
        other => holds_true(other),
    }
}

/// For a pattern test whose literal pattern matches every string (NULLs aside), whether the
/// test is negated (`NOT LIKE '%'` matches no row); `None` for any other leaf. LIKE, ILIKE
/// (and `~~`, `~~*`) and SIMILAR TO: a pattern of `%` only, with no ESCAPE clause or one whose
/// literal character is not `%` (`ESCAPE ''` turns escaping off). Regex
/// (`~`, `~*`): a pattern that matches the empty string and holds no anchor, escape or
/// embedded option (`^ $ \ (?`, `***`), so it matches at the start of any string.
/// A pattern passed as a parameter (`LIKE $1`) is judged by the value bound to it.
fn pattern(leaf: &Expr, params: &[Option<String>]) -> Option<bool> {
    let all_percent = |p: &Expr| {
        literal(p, params).is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b == b'%'))
    };
    let regex_all = |p: &Expr| literal(p, params).is_some_and(regex_matches_all);
    match leaf {
        Expr::Nested(inner) => pattern(inner, params),
        Expr::Like {
            negated,
            any: false,
            pattern: p,
            escape_char: e,
            ..
        }
        | Expr::ILike {
            negated,
            any: false,
            pattern: p,
            escape_char: e,
            ..
        }
        | Expr::SimilarTo {
            negated,
            pattern: p,
            escape_char: e,
            ..
        } if all_percent(p) && plain_escape(e.as_deref(), params) => Some(*negated),
        Expr::BinaryOp { op, right, .. } => match op {
            BinaryOperator::PGLikeMatch | BinaryOperator::PGILikeMatch if all_percent(right) => {
                Some(false)
            }
            BinaryOperator::PGNotLikeMatch | BinaryOperator::PGNotILikeMatch
                if all_percent(right) =>
            {
                Some(true)
            }
            BinaryOperator::PGRegexMatch | BinaryOperator::PGRegexIMatch if regex_all(right) => {
                Some(false)
            }
            BinaryOperator::PGRegexNotMatch | BinaryOperator::PGRegexNotIMatch
                if regex_all(right) =>
            {
                Some(true)
            }
            _ => None,
        },
        _ => None,
    }
}

/// Whether an ESCAPE clause leaves `%` a wildcard: none, or a literal other than `%`.
fn plain_escape(escape: Option<&Expr>, params: &[Option<String>]) -> bool {
    escape.is_none_or(|e| literal(e, params).is_some_and(|c| c != "%"))
}

/// The text of a string literal or of the parameter's value (through parentheses and casts).
fn literal<'a>(e: &'a Expr, params: &'a [Option<String>]) -> Option<&'a str> {
    match e {
        Expr::Nested(inner) => literal(inner, params),
        Expr::Cast { expr, .. } => literal(expr, params),
        Expr::Value(v) => match &v.value {
            sqlparser::ast::Value::SingleQuotedString(s)
            | sqlparser::ast::Value::EscapedStringLiteral(s) => Some(s),
            sqlparser::ast::Value::Placeholder(p) => p
                .strip_prefix('$')
                .and_then(|n| n.parse::<usize>().ok())
                .and_then(|n| params.get(n.checked_sub(1)?))
                .and_then(|v| v.as_deref()),
            _ => None,
        },
        _ => None,
    }
}

/// The text of a string literal (through parentheses and casts).
pub(super) fn string_literal(e: &Expr) -> Option<String> {
    literal(e, &[]).map(str::to_string)
}

/// Whether a PostgreSQL regex matches every string: without anchors, escapes or embedded
/// options, a pattern that can match the empty string matches at the start of any string.
/// Rust's regex syntax agrees with PostgreSQL's on what is left; a pattern it cannot compile
/// counts as not matching everything (the server's own errors stop such a statement).
fn regex_matches_all(p: &str) -> bool {
    !p.contains(['^', '$', '\\'])
        && !p.contains("(?")
        && !p.starts_with("***")
        && regex::Regex::new(p).is_ok_and(|r| r.is_match(""))
}

/// Whether a DML statement's key (literals as placeholders) holds a pattern test, whose
/// pattern decides whether it matches every row.
pub(super) fn pattern_test_in_dml(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["delete", "update", "merge", "conflict"]
        .iter()
        .any(|w| k.contains(w))
        && (k.contains("like") || k.contains("similar") || k.contains('~'))
}

/// A literal `true` anywhere in `e`.
fn holds_true(e: &Expr) -> bool {
    let mut found = false;
    let _ = sqlparser::ast::visit_expressions(e, |x| {
        if let Expr::Value(v) = x
            && matches!(v.value, sqlparser::ast::Value::Boolean(true))
        {
            found = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    found
}

/// Whether `e` reads a column of a copy of the target (a self-join's alias) or has a
/// subquery that reads the target table.
fn reads_copy(e: &Expr, target: &Target) -> bool {
    let mut found = false;
    let _ = sqlparser::ast::visit_relations(e, |r| {
        if !target.1.is_empty() && last_name(r) == target.1 {
            found = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    found
        || (!target.2.is_empty()
            && sqlparser::ast::visit_expressions(e, |x| match x {
                Expr::CompoundIdentifier(parts)
                    if parts
                        .len()
                        .checked_sub(2)
                        .and_then(|i| parts.get(i))
                        .is_some_and(|q| target.2.contains(&fold(q))) =>
                {
                    ControlFlow::Break(())
                }
                _ => ControlFlow::Continue(()),
            })
            .is_break())
}

/// The target's columns `e` reads outside subqueries, folded and sorted.
fn columns(e: &Expr, target: &Target) -> Vec<String> {
    let mut out = Vec::new();
    let _ = sqlparser::ast::visit_expressions(e, |x| {
        match x {
            Expr::Identifier(i) if !NILADIC.contains(&fold(i).as_str()) => out.push(fold(i)),
            Expr::CompoundIdentifier(parts) => {
                if let [.., q, c] = parts.as_slice()
                    && target.0.contains(&fold(q))
                {
                    out.push(fold(c));
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    out.sort();
    out.dedup();
    out
}

/// Tests false for every row whatever the column holds (NULLs aside): the mirror of
/// [`trivially_true`], for leaves under `NOT`.
fn trivially_false(e: &Expr) -> bool {
    match e {
        Expr::Nested(inner) => trivially_false(inner),
        Expr::BinaryOp { left, op, right } => {
            matches!(
                op,
                BinaryOperator::NotEq | BinaryOperator::Gt | BinaryOperator::Lt
            ) && same(left, right)
        }
        Expr::IsDistinctFrom(a, b) => same(a, b),
        Expr::IsNull(_) => true,
        Expr::IsFalse(inner) | Expr::IsNotTrue(inner) => trivially_true(inner),
        Expr::IsTrue(inner) | Expr::IsNotFalse(inner) => trivially_false(inner),
        _ => false,
    }
}

fn same(a: &Expr, b: &Expr) -> bool {
    fn strip(e: &Expr) -> &Expr {
        match e {
            Expr::Nested(i) => strip(i),
            other => other,
        }
    }
    strip(a)
        .to_string()
        .eq_ignore_ascii_case(&strip(b).to_string())
}

/// Tests true for every row whatever the column holds (NULLs aside).
fn trivially_true(e: &Expr) -> bool {
    match e {
        Expr::Nested(inner) => trivially_true(inner),
        Expr::BinaryOp { left, op, right } => {
            matches!(
                op,
                BinaryOperator::Eq | BinaryOperator::GtEq | BinaryOperator::LtEq
            ) && same(left, right)
        }
        Expr::IsNotDistinctFrom(a, b) => same(a, b),
        Expr::IsNotNull(_) => true,
        Expr::IsTrue(inner) | Expr::IsNotFalse(inner) => trivially_true(inner),
        _ => false,
    }
}

/// Words PostgreSQL reads as functions without parentheses; never columns.
const NILADIC: &[&str] = &[
    "current_user",
    "session_user",
    "user",
    "current_role",
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
    "current_catalog",
    "current_schema",
];

struct Refs<'a> {
    target: &'a Target,
    depth: u32,
    found: bool,
}

impl Visitor for Refs<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.depth = self.depth.saturating_sub(1);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        let hit = match e {
            // An unqualified name inside a subquery is most likely the subquery's own column.
            Expr::Identifier(i) => self.depth == 0 && !NILADIC.contains(&fold(i).as_str()),
            Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                [.., q, _] => self.target.0.contains(&fold(q)),
                _ => false,
            },
            _ => false,
        };
        if hit {
            self.found = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

fn references_target(e: &Expr, target: &Target) -> bool {
    let mut refs = Refs {
        target,
        depth: 0,
        found: false,
    };
    let _ = e.visit(&mut refs);
    refs.found
}
