//! The real PostgreSQL relay between an agent and a hostile target, in memory, with decisions,
//! durability acks and a kill chosen by the input; checks what reached the target against
//! what was judged.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| proctor_postgres::fuzzing::relay(data));
