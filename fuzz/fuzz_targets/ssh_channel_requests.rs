//! What proctor makes of agent requests: user names, command lines, SFTP refusals.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| proctor_ssh::fuzzing::channel_requests(data));
