//! Statement splitting and classification of SQL text in every lexing context.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| proctor_postgres::fuzzing::classifier(data));
