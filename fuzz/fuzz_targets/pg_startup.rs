//! Startup packets in the PostgreSQL front end: SSLRequest, GSSENCRequest, CancelRequest,
//! startup parameters and the filter of what is passed on to the target.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| proctor_postgres::fuzzing::startup(data));
