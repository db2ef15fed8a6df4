//! The SSH channel's agent-to-target core: agent bytes, late verdicts and EOF; nothing reaches
//! the target that a verdict did not allow.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| proctor_ssh::fuzzing::upstream_core(data));
