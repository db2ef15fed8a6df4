//! A built-in's name resolved to someone's code without any `search_path` trick, found by the
//! PostgreSQL red team (round 4): PostgreSQL picks a function by its argument types, so with
//! `public.lower(integer)` defined (by anyone, in an earlier session), `SELECT lower(5)` calls
//! it, not the built-in `lower(text)` proctor takes as harmless. That function re-prepared `q`
//! as a `DELETE` by dynamic SQL, and the next `EXECUTE q` was judged and recorded as the `SELECT
//! 1` prepared before while the target ran the DELETE. The core now asks the target (on its
//! admin connection, when the session's role is made) whether such functions, operators or
//! casts exist; when they do, every query and DML of the session counts as running code.
//! Real proctor, real PostgreSQL, real psql; ground truth is the target's table.

mod api_support;

use api_support::*;

fn victims(p: &Proctor) -> String {
    p.pg.psql("app", "SELECT count(*) FROM victim")
        .expect("count on the target")
        .trim()
        .to_string()
}

const SWAP: &str = "PREPARE q AS SELECT 1; SELECT lower(5); EXECUTE q";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_built_in_overloaded_outside_pg_catalog_is_code() {
    let p = Proctor::start("").await;
    p.pg.psql(
        "app",
        "CREATE TABLE victim (id int); INSERT INTO victim SELECT generate_series(1, 5);
         GRANT ALL ON victim TO app_write;",
    )
    .expect("victim table");

    // No overload yet: the built-in lower(text) runs, `q` stays known and its EXECUTE is
    // judged as what was prepared: no hold.
    let out = p
        .psql(
            AGENT_A,
            SECRET_A,
            "PREPARE q AS SELECT 1; SELECT lower('X'); EXECUTE q",
        )
        .wait_with_output()
        .await
        .expect("psql");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(victims(&p), "5");

    p.pg.psql(
        "app",
        "CREATE FUNCTION public.lower(integer) RETURNS text LANGUAGE plpgsql AS $$
         BEGIN EXECUTE 'DEALLOCATE q'; EXECUTE 'PREPARE q AS DELETE FROM victim'; RETURN $1::text;
         END $$;
         GRANT EXECUTE ON FUNCTION public.lower(integer) TO PUBLIC;",
    )
    .expect("the overload");

    // Now `lower(5)` runs the overload, which swaps `q`: proctor no longer knows what `q` is,
    // so its EXECUTE is `unknown` and held; nothing was deleted.
    let child = p.psql(AGENT_A, SECRET_A, SWAP);
    let hold = p.wait_for_hold("EXECUTE q").await;
    assert_eq!(hold["class"], "unknown", "{hold}");
    assert_eq!(victims(&p), "5", "the swapped DELETE ran without a hold");
    drop(child);

    // The session's record says why: its credential notes the overloads.
    let session = hold["session_id"].as_str().expect("session id").to_string();
    let events = p.events(&session).await;
    let issued = events
        .iter()
        .find(|e| e["kind"] == "credential_issued")
        .expect("credential record");
    assert!(
        issued["detail"]
            .as_str()
            .is_some_and(|d| d.contains("built-in names may resolve to code")),
        "{issued}"
    );
    p.stop().await;
}
