//! The class a statement's kind implies, before the walk raises it.

use proctor_gate::StatementClass;
use sqlparser::ast::{
    CopyTarget, LockTableMode, ObjectName, ObjectType, Set, SetExpr, Statement as Ast, Visit,
};

use super::statement::leading_words;
use super::walk::Walk;

fn is_role_variable(name: &ObjectName) -> bool {
    let n = name.to_string().to_ascii_lowercase();
    let last = n.rsplit('.').next().unwrap_or(&n).trim_matches('"');
    last == "role" || last == "session_authorization"
}

/// The class of a statement from its kind alone; the walk may raise it.
pub(super) fn base_class(stmt: &Ast, words: &str) -> StatementClass {
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
