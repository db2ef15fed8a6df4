//! Approvers see the values that run (issue 18, item 5): parameters a driver binds in binary
//! format are shown decoded by the type the server gives them, on the approval card (`proctor
//! approvals list`) and in the record (a proctor note beside the statement, whose own record
//! keeps the bytes as sent). A type proctor does not decode stays hex, with its type named.
//! tokio-postgres is the real driver: it prepares (Parse without types, Describe), reads the
//! server's ParameterDescription and binds every value in binary.

mod pg_support;

use pg_support::*;
use serde_json::Value;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn binary_parameters_are_shown_and_recorded_as_the_values_they_are() {
    let env = Env::start();
    let conninfo = env.conninfo(AGENT, SECRET);
    let runtime = rt();
    let held = runtime.spawn(async move {
        let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
            .await
            .expect("agent connects through proctor");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        // No WHERE: held in an elevated session. `'x'::"char"` is a type proctor does not
        // decode; the text value carries an escape and a direction override.
        let sql = "UPDATE t SET v = concat($1::int4, $2::int8, $3::bool, $4::float8, $5::text, \
                   $6::bytea, $7::timestamptz, $8::int4[], $9::\"char\")";
        let text = "owner\u{1b}[2K\u{202e}'x";
        let r = client
            .execute(
                sql,
                &[
                    &42i32,
                    &-7i64,
                    &true,
                    &1.5f64,
                    &text,
                    &vec![0u8, 0xff],
                    &when,
                    &vec![1i32, 2, 3],
                    &b'x'.cast_signed(),
                ],
            )
            .await;
        r.map_err(|e| {
            e.as_db_error()
                .map(|d| d.code().code().to_string())
                .unwrap_or_default()
        })
    });
    let a = env.wait_approval("UPDATE t SET v = concat");
    let detail = a.to_string();
    for shown in [
        "$1 = 42 (int4, sent in binary)",
        "$2 = -7 (int8, sent in binary)",
        "$3 = true (bool, sent in binary)",
        "$4 = 1.5 (float8, sent in binary)",
        "$6 = '\\\\x00ff' (bytea, sent in binary)",
        "$7 = '2023-11-14 22:13:20+00' (timestamptz, sent in binary)",
        "$8 = ARRAY[1, 2, 3] (int4[], sent in binary)",
        "$9 = (binary, type OID 18, not decoded) \\\\x78",
    ] {
        assert!(
            detail.contains(shown),
            "{shown:?} not on the card: {detail}"
        );
    }
    // The CLI's own listing: the text value is there with its escape shown, not obeyed.
    let listing = env.store().ok(&["approvals", "list"]);
    assert!(
        listing.contains("$1 = 42 (int4, sent in binary)"),
        "{listing}"
    );
    assert!(listing.contains("$5 = 'owner"), "{listing}");
    assert!(
        !listing.contains('\u{1b}'),
        "a raw escape reached the terminal"
    );
    assert!(
        !listing.contains('\u{202e}'),
        "a raw override reached the terminal"
    );
    let id = a["id"].as_str().expect("approval id").to_string();
    env.store()
        .ok(&["approvals", "deny", &id, "--reason", "values seen"]);
    let result = runtime.block_on(held).expect("join");
    assert_eq!(result, Err("42501".to_string()));
    assert_eq!(
        env.pg
            .psql("app", "SELECT count(*) FROM t WHERE v LIKE '42%'")
            .expect("count"),
        "0",
        "nothing ran"
    );

    let s = env.store().sealed_session(|s| s["agent"] == AGENT);
    let sid = s["id"].as_str().expect("id");
    env.verify_session(sid);
    let records = env.export(sid);
    let statement = of_kind(&records, "statement")
        .into_iter()
        .find(|r| r["text"].as_str().is_some_and(|t| t.contains("concat")))
        .expect("the statement");
    // The bytes as sent stay the statement's record.
    assert_eq!(statement["params"][0]["binary_hex"], "0000002a");
    let note: Vec<&Value> = of_kind(&records, "annotation")
        .into_iter()
        .filter(|r| r.to_string().contains("values bound in binary format"))
        .collect();
    assert_eq!(note.len(), 1, "one note for the statement");
    let note = note[0].to_string();
    for shown in [
        "$1 = 42 (int4, sent in binary)",
        "$5 = 'owner",
        "$8 = ARRAY[1, 2, 3] (int4[], sent in binary)",
    ] {
        assert!(note.contains(shown), "{shown:?} not recorded: {note}");
    }
    assert!(note.contains("proctor"), "{note}");
}
