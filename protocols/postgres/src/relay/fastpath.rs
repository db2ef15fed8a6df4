//! Fast-path FunctionCall ('F'): judged and recorded as the `SELECT fn(args)` it is.
//!
//! A FunctionCall names its function by OID only. Built-in functions have the same OID on
//! every PostgreSQL server (`pg_proc.dat`), so the large-object family, which is what libpq's
//! and the drivers' large-object APIs call this way, is resolved from the table below (each
//! entry checked against a real server by the `fastpath` test). Any other OID could be anything
//! the target defines, so it is not guessed at: it is judged `unknown` and shown by its OID.
//!
//! The message goes to the server unchanged; the server answers it with a
//! FunctionCallResponse (or an error) and ReadyForQuery, so like a simple Query it ends a block.

use std::sync::Arc;

use proctor_gate::{Action, Statement, StatementClass};

use super::machine::{Ask, Waiting};
use super::*;
use crate::classify;
use crate::frontend::{self, FunctionCall};
use crate::results::{Columns, ResultAcc};
use crate::wire::{Frame, Malformed};

/// Built-in functions reached by fast-path calls, by OID (fixed in PostgreSQL's
/// `pg_proc.dat`; the `fastpath` test checks each against the installed server).
const BUILTINS: &[(u32, &str)] = &[
    (715, "lo_create"),
    (764, "lo_import"),
    (765, "lo_export"),
    (767, "lo_import"),
    (952, "lo_open"),
    (953, "lo_close"),
    (954, "loread"),
    (955, "lowrite"),
    (956, "lo_lseek"),
    (957, "lo_creat"),
    (958, "lo_tell"),
    (964, "lo_unlink"),
    (1004, "lo_truncate"),
    (3170, "lo_lseek64"),
    (3171, "lo_tell64"),
    (3172, "lo_truncate64"),
    (3457, "lo_from_bytea"),
    (3458, "lo_get"),
    (3459, "lo_get"),
    (3460, "lo_put"),
];

/// The command recorded for a fast-path call (the server sends no command tag for one).
pub const FUNCTION_CALL_TAG: &str = "FUNCTION CALL";

/// The built-in function with this OID, if proctor knows it.
pub fn builtin_name(oid: u32) -> Option<&'static str> {
    BUILTINS
        .iter()
        .find(|(o, _)| *o == oid)
        .map(|(_, name)| *name)
}

/// Every OID proctor resolves, with its function name (for the test against a real server).
pub fn builtins() -> &'static [(u32, &'static str)] {
    BUILTINS
}

/// The statement a FunctionCall is judged and recorded as. Resolved:
/// `SELECT pg_catalog.lowrite($1, $2) -- fast-path FunctionCall, function OID 955`, classified
/// by the same classifier as that text sent as a query (the trailing comment is the record's
/// note that the call came by fast path). Unresolved: a comment naming the OID and the number
/// of arguments, class `unknown`.
pub fn statement(id: u64, call: &FunctionCall, ctx: classify::LexContext) -> Statement {
    let (text, class, command, tables) = match builtin_name(call.oid) {
        Some(name) => {
            let placeholders = (1..=call.args.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let text = format!(
                "SELECT pg_catalog.{name}({placeholders}) -- fast-path FunctionCall, function OID {}",
                call.oid
            );
            let judged = classify::classify_query(&text, ctx);
            match judged.as_slice() {
                [one] => (
                    text,
                    one.info.class,
                    one.info.command.clone(),
                    one.info.tables.clone(),
                ),
                // Cannot happen for the texts built above; never guessed if it did.
                _ => (
                    text,
                    StatementClass::Unknown,
                    FUNCTION_CALL_TAG.to_string(),
                    Vec::new(),
                ),
            }
        }
        None => (
            format!(
                "-- fast-path FunctionCall of function OID {} (not resolved by proctor) with {} \
                 argument(s)",
                call.oid,
                call.args.len()
            ),
            StatementClass::Unknown,
            FUNCTION_CALL_TAG.to_string(),
            Vec::new(),
        ),
    };
    Statement {
        id,
        text,
        params: call.args.clone(),
        statement_name: String::new(),
        portal: String::new(),
        extended: false,
        class,
        command,
        tables,
        reasoning: None,
        runs: None,
    }
}

/// A FunctionCallResponse body (`Int32 length, bytes`) as the body of the one-column DataRow
/// that `SELECT fn(args)` would have returned, so that both give the same result digest.
pub fn as_data_row(body: &[u8]) -> Vec<u8> {
    let mut row = Vec::with_capacity(body.len() + 2);
    row.extend_from_slice(&1i16.to_be_bytes());
    row.extend_from_slice(body);
    row
}

impl Core {
    pub(super) fn function_call(&mut self, frame: Frame) -> Result<(), End> {
        // In copy-in mode the server takes a FunctionCall as a broken COPY, not as a call, and
        // an Execute of this block not answered yet may have started one (its answers may wait
        // for a Sync, so waiting for them could wait forever). Either way proctor cannot say
        // what the server will do with the call; no client library sends one there.
        if self.copy_in {
            return Err(End::Agent(
                "08P01",
                "FunctionCall during COPY FROM STDIN".into(),
            ));
        }
        if self.expect.iter().any(|e| matches!(e, Expect::Execute(_))) {
            return Err(End::Agent(
                "08P01",
                "FunctionCall after an Execute that is not yet answered (send Sync first)".into(),
            ));
        }
        let call = frontend::function_call(&frame)
            .map_err(|e: Malformed| End::Agent("08P01", e.to_string()))?;
        let id = self.next_statement_id();
        let stmt = statement(id, &call, self.lex);
        let column = builtin_name(call.oid)
            .map(str::to_string)
            .unwrap_or_else(|| format!("oid {}", call.oid));
        let columns = Arc::new(Columns {
            names: vec![column],
            formats: vec![call.result_format],
        });
        self.ask(
            Ask::One,
            vec![Action::Statement(stmt)],
            Waiting::FunctionCall { frame, id, columns },
        );
        Ok(())
    }

    pub(super) fn function_call_verdict(
        &mut self,
        frame: Frame,
        id: u64,
        columns: Arc<Columns>,
        decision: Verdict,
    ) {
        match decision {
            Verdict::Allow => self.forward_function_call(&frame, id, columns),
            Verdict::Deny { rule, reason } => self.deny_message(&rule, &reason, true),
            Verdict::Held(hold) => {
                self.hold_notice(&hold);
                self.paused = Some(Paused {
                    hold,
                    cont: Cont::FunctionCall { frame, id, columns },
                });
            }
        }
    }

    pub(super) fn forward_function_call(&mut self, frame: &Frame, id: u64, columns: Arc<Columns>) {
        self.forward(frame);
        // The server answers with ReadyForQuery: a new block starts, unless it is skipping up
        // to a Sync after an error (it then skips this call too).
        if !self.server_skipping() {
            self.sync_point();
        }
        self.last_forwarded = id;
        let acc = ResultAcc::new(id, self.cfg.sample_rows, Some(columns));
        self.expect_reply(Expect::FunctionCall(Box::new(FunctionRun {
            id,
            acc: Some(acc),
        })));
    }

    /// FunctionCallResponse: the call's result, recorded at once (the ReadyForQuery that
    /// follows only ends the entry).
    pub(super) fn function_result(&mut self, body: &[u8]) {
        if let Some(Expect::FunctionCall(f)) = self.expect.front_mut()
            && let Some(mut acc) = f.acc.take()
        {
            acc.data_row(&as_data_row(body));
            self.events.push(Event::StatementResult(
                acc.complete(FUNCTION_CALL_TAG.to_string()),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proctor_gate::Param;

    fn call(oid: u32, n: usize) -> FunctionCall {
        FunctionCall {
            oid,
            args: (0..n)
                .map(|i| Param {
                    binary: true,
                    value: Some(Bytes::from(vec![i as u8])),
                })
                .collect(),
            result_format: 1,
        }
    }

    #[test]
    fn large_object_calls_are_classified_as_their_select() {
        use StatementClass::*;
        let ctx = classify::LexContext::default();
        for (oid, n, class) in [
            (955, 2, Write),
            (964, 1, Write),
            (957, 1, Write),
            (715, 1, Write),
            (1004, 2, Write),
            (3172, 2, Write),
            (952, 2, Write),
            (954, 2, Read),
            (953, 1, Read),
            (764, 1, Admin),
            (765, 2, Admin),
        ] {
            let s = statement(7, &call(oid, n), ctx);
            assert_eq!(s.class, class, "{}", s.text);
            assert_eq!(s.params.len(), n);
            assert!(
                s.text
                    .contains(&format!("fast-path FunctionCall, function OID {oid}"))
            );
            // The text judged is the text a query would be judged by.
            let q = classify::classify_query(&s.text, ctx);
            assert_eq!(q.len(), 1);
            assert_eq!(q[0].info.class, class);
        }
        let s = statement(8, &call(955, 2), ctx);
        assert!(s.text.starts_with("SELECT pg_catalog.lowrite($1, $2) -- "));
    }

    #[test]
    fn other_oids_are_unknown_and_shown_by_oid() {
        let s = statement(9, &call(1_234_567, 3), classify::LexContext::default());
        assert_eq!(s.class, StatementClass::Unknown);
        assert!(s.text.contains("function OID 1234567"), "{}", s.text);
        assert!(s.text.contains("3 argument(s)"));
        assert_eq!(s.params.len(), 3);
    }

    #[test]
    fn result_digest_matches_the_select_data_row() {
        let body = [0, 0, 0, 2, 0xab, 0xcd];
        assert_eq!(as_data_row(&body), vec![0, 1, 0, 0, 0, 2, 0xab, 0xcd]);
        let null = (-1i32).to_be_bytes();
        assert_eq!(as_data_row(&null), vec![0, 1, 0xff, 0xff, 0xff, 0xff]);
    }
}
