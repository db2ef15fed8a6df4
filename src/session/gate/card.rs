//! What an approver reads of an action: its kind, its full text with every bound value, and
//! the note recorded beside a statement whose values are in binary format.

use std::sync::Arc;

use proctor_gate::{Action, Event};

/// A statement as an approver must see it to judge it: its text, the statement an EXECUTE
/// runs (the name alone says nothing), and every bound parameter value in full (`UPDATE
/// accounts SET owner = $1` says nothing without `$1`).
fn statement_detail(s: &proctor_gate::Statement, types: Option<&[u32]>) -> String {
    use std::fmt::Write;
    let mut out = s.text.clone();
    if out.is_empty() && s.extended {
        // An Execute of a portal proctor does not know (never bound, refused by the server,
        // or opened or closed by SQL) carries no text: the approver is told so rather than
        // shown an empty card. The name is the agent's: Debug quoting keeps it inert.
        let _ = write!(
            out,
            "-- Execute of portal {:?}: proctor does not know which statement it runs (never bound, refused by the server, or opened or closed by SQL)",
            s.portal
        );
    }
    if let Some(body) = &s.runs {
        let _ = write!(out, "\n-- runs the prepared statement: {body}");
    }
    for (i, p) in s.params.iter().enumerate() {
        let value = match &p.value {
            None => "NULL".to_string(),
            // Decoded by the type the server gives it, or its bytes with the type named.
            Some(v) if p.binary => match types.and_then(|t| t.get(i)) {
                Some(&oid) => proctor_postgres::params::show_binary(oid, v),
                None => format!("(binary) \\x{}", hex::encode(v)),
            },
            Some(v) => match std::str::from_utf8(v) {
                Ok(t) => format!("'{}'", t.replace('\'', "''")),
                // Shown as the bytes they are, never as U+FFFD: two different values must
                // not look the same.
                Err(_) => format!("(text, not UTF-8) \\x{}", hex::encode(v)),
            },
        };
        let _ = write!(out, "\n-- ${} = {value}", i + 1);
    }
    out
}

/// How an approver sees the action: its kind, text, class and tables.
#[cfg(test)]
fn describe(action: &Action) -> (String, String, String, Vec<String>) {
    describe_typed(action, None)
}

/// [`describe`], with the parameter types of a statement whose values are in binary format.
pub(super) fn describe_typed(
    action: &Action,
    types: Option<&[u32]>,
) -> (String, String, String, Vec<String>) {
    match action {
        Action::Statement(s) => (
            "statement".into(),
            statement_detail(s, types),
            s.class.as_str().into(),
            s.tables.clone(),
        ),
        Action::Exec { command, .. } => ("exec".into(), command.clone(), String::new(), vec![]),
        Action::CommandLine { line, .. } => ("line".into(), line.clone(), String::new(), vec![]),
        Action::Channel { kind, detail, .. } => (
            "channel".into(),
            if detail.is_empty() {
                kind.as_str().to_string()
            } else {
                format!("{} {detail}", kind.as_str())
            },
            String::new(),
            vec![],
        ),
        Action::SftpChange {
            op,
            path,
            target_path,
            ..
        } => {
            let detail = if target_path.is_empty() {
                format!("{op} {path}")
            } else {
                format!("{op} {path} -> {target_path}")
            };
            ("sftp".into(), detail, String::new(), vec![])
        }
    }
}

/// A proctor note recorded after a statement with values bound in binary format: each such
/// value as the server reads it (the statement's record keeps the bytes as sent). Read from
/// the recorded (redacted) statement: a sealed value is a marker, never decoded.
pub(super) fn binary_values_note(action: &Action, types: Option<&Arc<[u32]>>) -> Option<Event> {
    let (Action::Statement(s), Some(types)) = (action, types) else {
        return None;
    };
    let mut text = format!(
        "statement {}: values bound in binary format, as the server reads them",
        s.id
    );
    let mut any = false;
    for (i, p) in s.params.iter().enumerate() {
        if let (true, Some(v)) = (p.binary, &p.value) {
            any = true;
            let oid = types.get(i).copied().unwrap_or(0);
            let shown = proctor_postgres::params::show_binary(oid, v);
            text.push_str(&format!("\n${} = {shown}", i + 1));
        }
    }
    any.then(|| Event::Annotation {
        source: "proctor".into(),
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proctor_gate::{Param, Statement, StatementClass};

    /// Issue 18, item 5: the card shows bound values and what an EXECUTE runs, whole.
    #[test]
    fn an_approver_sees_parameters_and_the_prepared_statement() {
        let s = Statement {
            id: 1,
            text: "EXECUTE give($1, $2, $3)".into(),
            params: vec![
                Param {
                    binary: false,
                    value: Some(Bytes::from_static(b"o'brien")),
                },
                Param {
                    binary: true,
                    value: Some(Bytes::from_static(&[0, 1, 255])),
                },
                Param {
                    binary: false,
                    value: None,
                },
                // LATIN1 `\xfe` and `\xff` would both be U+FFFD if decoded lossily.
                Param {
                    binary: false,
                    value: Some(Bytes::from_static(&[b'x', 0xfe])),
                },
            ],
            statement_name: String::new(),
            portal: String::new(),
            extended: true,
            class: StatementClass::Write,
            command: "UPDATE".into(),
            tables: vec!["accounts".into()],
            reasoning: None,
            runs: Some("UPDATE accounts SET owner = $1".into()),
        };
        let (_, detail, class, _) = describe(&Action::Statement(s));
        assert_eq!(
            detail,
            "EXECUTE give($1, $2, $3)\n-- runs the prepared statement: UPDATE accounts SET owner = $1\n-- $1 = 'o''brien'\n-- $2 = (binary) \\x0001ff\n-- $3 = NULL\n-- $4 = (text, not UTF-8) \\x78fe"
        );
        assert_eq!(class, "write");
    }

    /// An Execute of a portal proctor does not know is held as unknown; its card says why
    /// instead of showing nothing, with the agent's portal name quoted inert.
    #[test]
    fn an_unknown_portal_is_named_on_the_card() {
        let s = Statement {
            id: 2,
            text: String::new(),
            params: Vec::new(),
            statement_name: String::new(),
            portal: "c\u{1b}[2K".into(),
            extended: true,
            class: StatementClass::Unknown,
            command: String::new(),
            tables: Vec::new(),
            reasoning: None,
            runs: None,
        };
        let (_, detail, class, _) = describe(&Action::Statement(s));
        assert!(
            detail.starts_with("-- Execute of portal \"c\\u{1b}[2K\": proctor does not know"),
            "{detail}"
        );
        assert!(!detail.contains('\u{1b}'));
        assert_eq!(class, "unknown");
    }
}
