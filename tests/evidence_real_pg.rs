//! The tamper suite of issue 14 on recordings of real clients: a psql session through a real
//! `proctor serve` in front of a real PostgreSQL. Each mutation of the store and of the
//! session's bundle is named by its exact kind and first seq.

mod evidence_support;
mod pg_support;

use pg_support::{AGENT, Env, text};

#[test]
fn every_tamper_of_a_real_psql_recording_is_named() {
    let mut env = Env::start();
    let out = env.psql(&[
        "-c",
        "SELECT count(*) FROM t; INSERT INTO t VALUES (100, 'hundred'); SELECT v FROM t WHERE id = 100",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = env.store().sealed_session(|s| s["agent"] == AGENT);
    let id = s["id"].as_str().expect("id").to_string();
    env.stop_proctor();
    let work = tempfile::tempdir().expect("tempdir");
    evidence_support::bundle_tamper_suite(&env.data, &id, work.path());
    evidence_support::store_tamper_suite(&env.data, &id, work.path());
}
