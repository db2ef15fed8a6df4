//! The agent's typed messages after startup (Query, Parse/Bind/Execute, Describe, Close,
//! COPY, FunctionCall) and the classification of their SQL.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| proctor_postgres::fuzzing::frontend(data));
