//! The shell-line reader behind SSH policy.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| proctor::fuzzing::shell_reader(data));
