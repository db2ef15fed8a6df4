//! The walk of a parsed statement: the tables it touches and what its inside (nested DML, row
//! locks, `SELECT INTO`, functions and operators) adds to its kind and its effects.

use std::ops::ControlFlow;

use proctor_gate::StatementClass;
use sqlparser::ast::{
    BinaryOperator, CopySource, Expr, ObjectName, ObjectType, Query, Select, SetExpr,
    Statement as Ast, TableFactor, Visitor,
};

use super::functions::{builtin_without_sql, function_class, listed_function};
use super::statement::folded;
use crate::durability::Effects;
use crate::pg_settings::{self, resolved_name};

/// Tables sqlparser's visitor does not report as relations.
pub(super) fn extra_tables(stmt: &Ast, tables: &mut Vec<String>) {
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

/// What a statement's effects can outlive (see `durability`). Anything not recognised as a
/// plain query, plain DML, `BEGIN` or `SAVEPOINT` is lasting.
pub(super) fn effects_of(stmt: &Ast, walk: &Walk) -> Effects {
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
pub(super) struct Walk {
    pub(super) tables: Vec<String>,
    pub(super) ctes: Vec<String>,
    nested_dml: bool,
    select_into: bool,
    locks: bool,
    functions: Option<StatementClass>,
    /// Set-returning functions in FROM, which sqlparser reports as relations.
    pub(super) table_functions: Vec<String>,
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
    pub(super) fn escalation(&self) -> Option<StatementClass> {
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
