//! The recording decoder `proctor verify` runs over files an attacker may have edited.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| proctor::fuzzing::recording_decoder(data));
