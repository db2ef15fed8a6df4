//! The shell-line reader policy relies on: any line (agents type anything) must be read without
//! panicking, and reading it again must give the same facts.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    let a = proctor::policy::shell::analyze(&line);
    let b = proctor::policy::shell::analyze(&line);
    assert_eq!(a, b);
});
