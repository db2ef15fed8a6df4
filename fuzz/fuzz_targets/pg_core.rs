//! The PostgreSQL relay's I/O-free core driven directly: pipelines, late approvals and
//! durability acks, recording failures, a model server answering in order; nothing runs on the
//! server that a verdict did not allow, no answer goes out before its record is durable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| proctor_postgres::fuzzing::core(data));
