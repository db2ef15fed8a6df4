//! The relay's I/O-free model of the server's prepared statements and portals: any sequence
//! of changes, sync points, confirmations and refusals stays bounded and never waits forever.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| proctor_postgres::fuzzing::names(data));
