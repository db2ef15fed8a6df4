//! The tamper suite of issue 14 on the recording of a real OpenSSH client: an `ssh` exec
//! through a real `proctor serve` in front of a real sshd. Each mutation of the store and of
//! the session's bundle is named by its exact kind and first seq.

mod evidence_support;
mod ssh_support;

use ssh_support::{AGENT, Env, text};

#[test]
fn every_tamper_of_a_real_ssh_recording_is_named() {
    let mut env = Env::start();
    let out = env.exec("echo recorded; uname -s");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("recorded"));
    let s = env.store().sealed_session(|s| s["agent"] == AGENT);
    let id = s["id"].as_str().expect("id").to_string();
    env.stop_proctor();
    let work = tempfile::tempdir().expect("tempdir");
    evidence_support::bundle_tamper_suite(&env.data, &id, work.path());
    evidence_support::store_tamper_suite(&env.data, &id, work.path());
}
