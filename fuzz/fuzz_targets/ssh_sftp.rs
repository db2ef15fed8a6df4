//! SFTP framing, request decoding, change detection and reply tracking in the SSH relay.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| proctor_ssh::fuzzing::sftp(data));
