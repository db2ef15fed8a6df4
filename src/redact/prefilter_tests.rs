//! The shared prefilter (`detectors::Candidates`) finds exactly what each detector's own test
//! found before it: the same spans, so the same recorded text and the same `hides_code`
//! verdict, on ordinary texts, texts of every detector, and texts built against the
//! prefilter (one word over and over, case variants, near misses, a private key with no END).

use proctor_gate::{Action, Param, Statement};

use super::rules::{Matcher, Mode, RedactRule};
use super::*;

fn redactor() -> Redactor {
    let settings = RedactionSettings {
        detectors: vec!["us-ssn".into(), "uk-nino".into(), "email".into()],
        ..RedactionSettings::default()
    };
    let rule = RedactRule {
        name: "ticket".into(),
        matcher: Matcher::Pattern(Regex::new(r"TICKET-(?P<secret>\d{4})").expect("pattern")),
        kind: "ticket".into(),
        mode: Mode::Redact,
        source: "test:1".into(),
    };
    Redactor::build(&settings, &[rule]).expect("redactor")
}

fn corpus() -> Vec<String> {
    let key =
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----";
    let mut texts: Vec<String> = [
        "",
        "select 1",
        "ALTER ROLE app PASSWORD 's3cr''et'",
        "alter role x password $pw$ hunter2 $pw$; select 2",
        "PGPASSWORD=hunter2 psql -h db",
        "export DB_PASSWORD='a b c'",
        "update users set password = $1 where id = $2",
        "psql postgresql://app:s3cret@db/app",
        "curl -H 'Authorization: Basic dXNlcjpwYXNz' https://x",
        "curl -H \"X: Bearer eyJhbGciOi.J9.xyz\" x",
        "-H 'X-Api-Key: k-123' -H 'Private-Token: abc'",
        "id=AKIAIOSFODNN7EXAMPLE, aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "key=AIzaSyA-1234567890abcdefghijklmnopqrstu ya29.a0AfH6SMBx-abcdefghijklmnop",
        "card 4111 1111 1111 1111 ok, amex 378282246310005.",
        "ssn 123-45-6789. AB 12 34 56 C mail ann.lee+x@example.co.uk",
        "TICKET-1234 and ticket-1234",
        // Near misses and case variants the prefilter reads differently from the detectors.
        "private key: -----begin private key----- aiza AIZA YA29.x Ya29.abcdefghijklmnopqrstuvwx",
        "x-api-\u{212a}ey: kelvin and pa\u{17f}\u{17f}word=long-s",
        "already [REDACTED:password:7] and PGPASSWORD=[REDACTED:password:3]",
        // Issue 18 item 2: a key with no END line inside a comment, code after it.
        "ALTER TABLE ledger ADD COLUMN note text -- -----BEGIN PRIVATE KEY-----\n, DROP COLUMN balance",
        "echo ok # -----BEGIN RSA PRIVATE KEY-----\nrm -rf /victim",
        "select 1 /* -----BEGIN OPENSSH PRIVATE KEY----- */; drop table accounts",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    texts.push(format!("select '{key}' as k; select 2"));
    // One word over and over: the prefilter gives up and asks each detector (REPEATS).
    texts.push(format!(
        "{} PGPASSWORD=x {}",
        "key".repeat(2000),
        "ya29.abcdefghijklmnopqrstuvwxyz"
    ));
    texts.push(format!("{}Bearer abcdefghijkl", "tokenKEY".repeat(600)));
    texts.push(format!(
        "{} -----BEGIN PRIVATE KEY-----\nabc",
        "secret ".repeat(500)
    ));
    // Large texts with none of the words, or a secret at the very end.
    texts.push(format!("select length('{}')", "y".repeat(300_000)));
    texts.push(format!("{} password='tail'", "a".repeat(300_000)));
    texts.push(format!("{}4111111111111111", "9 ".repeat(100_000)));
    texts
}

fn spans(hits: &[Hit<'_>]) -> Vec<(usize, usize, String, Mode)> {
    hits.iter()
        .map(|h| (h.start, h.end, h.kind.to_string(), h.mode))
        .collect()
}

#[test]
fn the_prefilter_finds_what_each_detector_found() {
    let r = redactor();
    for text in corpus() {
        let (mut new, mut old) = (Vec::new(), Vec::new());
        r.find(&text, &mut new);
        r.find_each(&text, &mut old);
        let short = &text[..floor_char(&text, 120)];
        assert_eq!(spans(&new), spans(&old), "spans of {short:?}");
        assert_eq!(hides_in(&text, &new), hides_in(&text, &old), "{short:?}");
        let before = r.apply("s", &text, old).unwrap_or_else(|| text.clone());
        assert_eq!(r.text("s", &text), before, "recorded text of {short:?}");
    }
}

#[test]
fn a_key_without_end_in_a_comment_is_named_not_hidden() {
    let r = redactor();
    for text in [
        "ALTER TABLE ledger ADD COLUMN note text -- -----BEGIN PRIVATE KEY-----\n, DROP COLUMN balance",
        "echo ok # -----BEGIN RSA PRIVATE KEY-----\nrm -rf /victim",
    ] {
        // Redaction would swallow the code after the key, so the action is held whole
        // (`hides_code`), from the same single search `action_checked` makes.
        assert_eq!(r.hides_code(text).as_deref(), Some("private-key"), "{text}");
        let action = Action::CommandLine {
            channel: 0,
            line: text.into(),
        };
        let (redacted, hides) = r.action_checked(&mut SessionRedaction::new("s"), &action);
        assert_eq!(hides.as_deref(), Some("private-key"), "{text}");
        assert!(redacted.is_some(), "{text}");
    }
}

#[test]
fn action_checked_is_action_and_hides_code() {
    let r = redactor();
    for text in corpus() {
        let statement = Action::Statement(Statement {
            id: 1,
            text: text.clone(),
            params: vec![Param {
                binary: false,
                value: Some(Bytes::from(text.clone())),
            }],
            statement_name: String::new(),
            portal: String::new(),
            extended: true,
            class: proctor_gate::StatementClass::Unknown,
            command: String::new(),
            tables: Vec::new(),
            reasoning: Some(text.clone()),
            runs: None,
        });
        let exec = Action::Exec {
            channel: 1,
            command: text.clone(),
        };
        for action in [statement, exec] {
            let mut a = SessionRedaction::new("s");
            let mut b = SessionRedaction::new("s");
            let (redacted, hides) = r.action_checked(&mut a, &action);
            let short = &text[..floor_char(&text, 120)];
            assert_eq!(redacted, r.action(&mut b, &action), "{short:?}");
            assert_eq!(hides, r.hides_code(&text), "{short:?}");
        }
    }
}
