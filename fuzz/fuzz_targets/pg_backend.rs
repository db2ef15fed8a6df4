//! Backend messages from a hostile target: results, errors, ParameterStatus, notifications,
//! COPY and authentication requests.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| proctor_postgres::fuzzing::backend(data));
