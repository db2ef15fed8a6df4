//! The fuzz entry point of the name model.

use super::*;

/// Fuzz entry point: any sequence of changes, sync points, confirmations, refusals and
/// settlements keeps the model's promises: bounded, and a settled model never asks to wait.
pub(crate) fn fuzz(data: &[u8]) {
    use crate::classify::{LexContext, classify_prepared};
    const NAMES: [&str; 4] = ["", "a", "b", "c"];
    let judged = Arc::new(classify_prepared("SELECT 1", LexContext::default()));
    let mut n = Names::default();
    let mut keys: Vec<Key> = Vec::new();
    for op in data.chunks(2) {
        let (code, arg) = (op[0], op.get(1).copied().unwrap_or(0));
        let name = NAMES[usize::from(arg) % NAMES.len()];
        let pick = |keys: &Vec<Key>| keys.get(usize::from(arg) % keys.len().max(1)).copied();
        match code % 13 {
            0 => {
                let k = n.ticket();
                let p = Prepared {
                    judged: judged.clone(),
                    columns: None,
                    param_types: Arc::from([]),
                };
                n.push(k, Change::Statement(name.into(), p));
                keys.push(k);
            }
            1 => {
                let k = n.ticket();
                let portal = Portal {
                    statement: name.into(),
                    judged: None,
                    params: Vec::new(),
                    param_types: Arc::from([]),
                    result_formats: Vec::new(),
                    columns: None,
                    executed: None,
                };
                n.push(k, Change::Portal(name.into(), Box::new(portal)));
                keys.push(k);
            }
            2 => {
                let k = n.ticket();
                n.push(k, Change::CloseStatement(name.into()));
                keys.push(k);
            }
            3 => {
                let k = Key::Statement(u64::from(arg));
                n.push(k, Change::ForgetPortals);
                keys.push(k);
            }
            4 => n.sync_point(),
            5 | 6 => {
                if let Some(k) = pick(&keys) {
                    n.confirm(k);
                }
            }
            7 => {
                if let Some(k) = pick(&keys) {
                    n.discard(k);
                }
            }
            8 => n.settle_statements(u64::from(arg)),
            9 => n.settle_earlier_blocks(),
            10 => n.transaction_ended(),
            // The server's list of its statements (an introspection after code ran).
            11 => {
                let p = Prepared {
                    judged: judged.clone(),
                    columns: None,
                    param_types: Arc::from([]),
                };
                let known = n.forgotten_statement(name);
                n.learn_statements(vec![(name.into(), (arg & 1 == 0).then_some(p))]);
                assert!(!n.statements_stale());
                if known && n.is_settled() && arg & 1 == 0 && !name.is_empty() {
                    assert!(matches!(n.statement(name), Lookup::Known(_)));
                }
            }
            _ => {
                let _ = n.portal_mut(name);
                let _ = n.statement(name);
            }
        }
        assert!(n.pending.len() <= MAX_PENDING);
        if n.is_settled() {
            for name in NAMES {
                assert!(!matches!(n.statement(name), Lookup::Wait));
                assert!(!matches!(n.portal(name), Lookup::Wait));
            }
        }
    }
    // Once every earlier block is answered, nothing waits.
    n.sync_point();
    n.settle_earlier_blocks();
    for name in NAMES {
        assert!(!matches!(n.statement(name), Lookup::Wait));
        assert!(!matches!(n.portal(name), Lookup::Wait));
    }
}
