use super::*;

fn texts(sql: &str) -> Vec<&str> {
    split(sql).unwrap().into_iter().map(|p| p.text).collect()
}

#[test]
fn splits_like_the_server() {
    assert_eq!(texts("SELECT 1; SELECT 2;"), vec!["SELECT 1", "SELECT 2"]);
    assert_eq!(
        texts("select ';' ; select $$;$$"),
        vec!["select ';'", "select $$;$$"]
    );
    assert_eq!(
        texts("select $a$ $$; $a$;x"),
        vec!["select $a$ $$; $a$", "x"]
    );
    assert_eq!(
        texts("select \"a;b\" from t"),
        vec!["select \"a;b\" from t"]
    );
    assert_eq!(
        texts("/* a; /* b; */ c; */ select 1"),
        vec!["/* a; /* b; */ c; */ select 1"]
    );
    assert_eq!(texts("-- x;\nselect 1"), vec!["-- x;\nselect 1"]);
    assert_eq!(texts(" ; ;  "), Vec::<&str>::new());
    assert_eq!(
        texts("select E'\\';' ; select 2"),
        vec!["select E'\\';'", "select 2"]
    );
    assert_eq!(
        texts("select 'a\\'; select 2"),
        vec!["select 'a\\'", "select 2"]
    );
    assert_eq!(
        texts(
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 1 END; END; SELECT 3"
        ),
        vec![
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 1 END; END",
            "SELECT 3"
        ]
    );
    assert_eq!(texts("begin; end"), vec!["begin", "end"]);
}

#[test]
fn unterminated_is_an_error() {
    assert_eq!(split("select 'abc"), Err(LexError::UnterminatedString));
    assert_eq!(
        split("select $x$ abc $y$"),
        Err(LexError::UnterminatedDollar)
    );
    assert_eq!(
        split("/* /* */ select 1"),
        Err(LexError::UnterminatedComment)
    );
    assert_eq!(split("select \"abc"), Err(LexError::UnterminatedIdent));
    assert_eq!(split("select E'\\'"), Err(LexError::UnterminatedString));
}

#[test]
fn keys_collapse_literals_and_comments() {
    let a = split("SELECT abalance FROM pgbench_accounts WHERE aid = 4711;").unwrap();
    let b = split("/* hi */ SELECT  abalance\nFROM pgbench_accounts WHERE aid = 12").unwrap();
    assert_eq!(a[0].key, b[0].key);
    assert_eq!(
        a[0].key,
        "SELECT abalance FROM pgbench_accounts WHERE aid = 0"
    );
    let c = split("select x from t where s = 'it''s' and y = $1 and z = 1.5e3").unwrap();
    assert_eq!(
        c[0].key,
        "select x from t where s = '' and y = $1 and z = 0"
    );
    let d = split("select 0x1F, t1.c2 from t1").unwrap();
    assert_eq!(d[0].key, "select 0x1F, t1.c2 from t1");
}

#[test]
fn reasons() {
    let p = split("/* reason: check the backlog */ SELECT 1; -- reason: cleanup\nDELETE FROM t")
        .unwrap();
    assert_eq!(p[0].reason.as_deref(), Some("check the backlog"));
    assert_eq!(p[1].reason.as_deref(), Some("cleanup"));
    let q = split("SELECT 1 /* reason: late */").unwrap();
    assert_eq!(q[0].reason, None);
    let r = split("-- REASON:   spaced  \nselect 1").unwrap();
    assert_eq!(r[0].reason.as_deref(), Some("spaced"));
}

#[test]
fn never_panics_on_arbitrary_text() {
    let alphabet: Vec<char> = "ab;'\"$-/*\\eEuU&0123 .\néß€😀()".chars().collect();
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for _ in 0..20_000 {
        let mut s = String::new();
        for _ in 0..(x % 24) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.push(alphabet[(x % alphabet.len() as u64) as usize]);
        }
        let _ = split(&s);
        let _ = crate::classify::classify_query(&s, crate::classify::LexContext::default());
    }
    assert!(split("/* ééééé */ select 1").is_ok());
    assert!(split("-- é\nselect 1").is_ok());
}

#[test]
fn rule_actions_and_parentheses_stay_whole() {
    assert_eq!(
        texts(
            "CREATE RULE r AS ON DELETE TO t DO INSTEAD (INSERT INTO a VALUES (1); DELETE FROM copydml_test); SELECT 2"
        ),
        vec![
            "CREATE RULE r AS ON DELETE TO t DO INSTEAD (INSERT INTO a VALUES (1); DELETE FROM copydml_test)",
            "SELECT 2"
        ]
    );
    // Anywhere else a `;` inside parentheses is a syntax error for the whole string.
    assert_eq!(
        texts("select (1; delete from t)"),
        vec!["select (1; delete from t)"]
    );
    assert_eq!(
        texts("select 1); delete from t"),
        vec!["select 1)", "delete from t"]
    );
}

#[test]
fn unicode_escaped_names_resolve() {
    let k = |sql: &str| split(sql).unwrap().remove(0).key;
    assert_eq!(
        k("SELECT U&\"\\0073et_config\"('role', 'x', false)"),
        "SELECT \"set_config\"('', '', false)"
    );
    assert_eq!(
        k("select u&\"pg!005fterminate_backend\" /* c */ UESCAPE '!' (1)"),
        "select \"pg_terminate_backend\" (0)"
    );
    assert_eq!(
        k("select U&\"a\"\"b\\0022\" from t"),
        "select \"a\"\"b\"\"\" from t"
    );
    assert_eq!(k("select U&'\\0041' uescape '!' , 1"), "select U&'' , 0");
    let lit = |sql: &str| split_literals(sql).unwrap().remove(0).key;
    assert_eq!(
        lit("SELECT /* x */ U&\"\\0073et_config\"('role',\n E'a\\'b', $$c$$, 1.5)"),
        "SELECT set_config('role', E'a\\'b', $$c$$, 1.5)"
    );
    assert_eq!(
        lit("select U&'!0041' UESCAPE '!'"),
        "select U&'!0041' UESCAPE '!'"
    );
    assert_eq!(
        lit("select \"pg_catalog\".\"lo_export\"(1), \"Mixed\", \"a b\", \"x\"\"y\""),
        "select pg_catalog.lo_export(1), \"Mixed\", \"a b\", \"x\"\"y\""
    );
    for bad in [
        "select U&\"\\00\"",
        "select U&\"\"",
        "select U&\"x\" UESCAPE 'ab'",
        "select U&\"x\" UESCAPE '+'",
        "select U&\"x\" UESCAPE x",
    ] {
        assert!(split(bad).is_err(), "{bad}");
    }
    // Not a U& prefix: an identifier `u`, the operator `&` and a string.
    assert_eq!(k("select u & 'x'"), "select u & ''");
}

#[test]
fn flags() {
    let p = split("select 'a\\b', 'é'").unwrap();
    assert!(p[0].backslash_in_string);
    assert!(p[0].non_ascii);
}
