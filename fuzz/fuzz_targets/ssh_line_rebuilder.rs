//! The interactive command-line rebuilder (keystroke model and terminal emulator).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| proctor_ssh::fuzzing::line_rebuilder(data));
