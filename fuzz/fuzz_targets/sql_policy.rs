//! SQL facts the policy derives from statements.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| proctor::fuzzing::sql_policy(data));
