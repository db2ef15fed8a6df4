//! SQL facts the policy derives (normalization, unqualified DML) from statements agents send.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let sql = String::from_utf8_lossy(data);
    let _ = proctor::policy::sql::normalize(&sql);
    let _ = proctor::policy::sql::has_unqualified_dml(&sql);
});
