//! The server side of SCRAM-SHA-256 that authenticates agents: client-first and client-final.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| proctor_postgres::fuzzing::scram(data));
