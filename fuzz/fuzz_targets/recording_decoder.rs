//! The recording decoder `proctor verify` runs over files an attacker may have edited: frames,
//! bodies, chain checks and ledger entries must never panic or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proctor::recorder::codec;
use proctor::recorder::ledger;
use proctor::recorder::segment::{Scanned, Scanner};
use proctor::recorder::verify::{ChainCheck, check_record};

fuzz_target!(|data: &[u8]| {
    let key = ed25519_key();
    let key_id = proctor::recorder::signing::key_id(&key);
    let mut chains: std::collections::HashMap<[u8; 16], ChainCheck> = Default::default();
    for item in Scanner::new(data, 0) {
        if let Scanned::Frame { record, .. } = item {
            let _ = codec::decode_body(record.header.kind, record.body);
            let c = chains.entry(record.header.session).or_default();
            let _ = check_record(c, &record, &key, &key_id);
        }
    }
    // The same bytes as a body of every kind, and as ledger entries.
    if let Some((&k, rest)) = data.split_first() {
        let _ = codec::decode_body(k, rest);
        let _ = ledger::Leaf::decode(rest);
        let _ = ledger::TreeHead::decode(rest);
    }
});

fn ed25519_key() -> ed25519_dalek::VerifyingKey {
    ed25519_dalek::VerifyingKey::from_bytes(&[
        215, 90, 152, 1, 130, 177, 10, 183, 213, 75, 254, 211, 201, 100, 7, 58, 14, 225, 114, 243, 218, 166, 35, 37,
        175, 2, 26, 104, 247, 7, 81, 26,
    ])
    .expect("RFC 8032 test key")
}
