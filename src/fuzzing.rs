//! Entry points for fuzzing: each takes arbitrary bytes and must never panic, hang or allocate
//! without bound. `fuzz/` drives them with libFuzzer (`cargo fuzz`); `tests/fuzz_smoke.rs` runs
//! them over the committed seed corpus plus mutations in every CI run.

use std::collections::HashMap;

use crate::recorder::codec;
use crate::recorder::ledger;
use crate::recorder::segment::{Scanned, Scanner};
use crate::recorder::verify::{ChainCheck, check_record};

/// The recording decoder `proctor verify` runs over files an attacker may have edited.
pub fn recording_decoder(data: &[u8]) {
    // RFC 8032 test key 1: any valid key will do, signatures are not expected to verify.
    let key = ed25519_dalek::VerifyingKey::from_bytes(&[
        215, 90, 152, 1, 130, 177, 10, 183, 213, 75, 254, 211, 201, 100, 7, 58, 14, 225, 114, 243,
        218, 166, 35, 37, 175, 2, 26, 104, 247, 7, 81, 26,
    ]);
    let Ok(key) = key else {
        return;
    };
    let key_id = crate::recorder::signing::key_id(&key);
    let mut chains: HashMap<[u8; 16], ChainCheck> = HashMap::new();
    for item in Scanner::new(data, 0) {
        if let Scanned::Frame { record, .. } = item {
            let _ = codec::decode_body(record.header.kind, record.body);
            let c = chains.entry(record.header.session).or_default();
            let _ = check_record(c, &record, &key, &key_id);
        }
    }
    if let Some((&k, rest)) = data.split_first() {
        let _ = codec::decode_body(k, rest);
        let _ = ledger::Leaf::decode(rest);
        let _ = ledger::TreeHead::decode(rest);
    }
}

/// The shell-line reader policy relies on; reading twice must give the same facts.
pub fn shell_reader(data: &[u8]) {
    let line = String::from_utf8_lossy(data);
    let a = crate::policy::shell::analyze(&line);
    let b = crate::policy::shell::analyze(&line);
    assert_eq!(a, b, "the shell reader is not deterministic");
}

/// SQL facts the policy derives from statements agents send.
pub fn sql_policy(data: &[u8]) {
    let sql = String::from_utf8_lossy(data);
    let _ = crate::policy::sql::normalize(&sql);
    let _ = crate::policy::sql::has_unqualified_dml(&sql);
}

/// A named fuzz entry point.
pub type Target = (&'static str, fn(&[u8]));

/// Every target by name, for runners.
pub const TARGETS: &[Target] = &[
    ("recording_decoder", recording_decoder),
    ("shell_reader", shell_reader),
    ("sql_policy", sql_policy),
];
