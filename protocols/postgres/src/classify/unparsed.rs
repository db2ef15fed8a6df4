//! Statements sqlparser does not parse for PostgreSQL, read by their small exact grammar
//! (two-phase commit, VACUUM/ANALYZE, FETCH/MOVE) or rewritten for classification only (catalog
//! operators, COPY's on/off options). Anything else stays unparsed, so `unknown`.

use proctor_gate::StatementClass;

use super::{Classified, SqlPrepared};
use crate::durability::Effects;

/// `PREPARE TRANSACTION 'id'`, `COMMIT PREPARED 'id'`, `ROLLBACK PREPARED 'id'` (which sqlparser
/// does not parse). A prepared transaction outlives the session: it keeps its locks and its
/// changes until someone finishes it, so all three are writes (the defaults hold them).
pub(super) fn two_phase(key: &str) -> Option<Classified> {
    let words: Vec<&str> = key.split(' ').collect();
    let [a, b, id] = words.as_slice() else {
        return None;
    };
    let command = format!("{} {}", a.to_ascii_uppercase(), b.to_ascii_uppercase());
    if *id != "''"
        || !matches!(
            command.as_str(),
            "PREPARE TRANSACTION" | "COMMIT PREPARED" | "ROLLBACK PREPARED"
        )
    {
        return None;
    }
    Some(Classified {
        class: StatementClass::Write,
        command,
        tables: Vec::new(),
        note: None,
        prepared: None,
        effects: Effects::Lasting,
    })
}

/// `a OPERATOR(pg_catalog.=) ANY (...)`, as psql's `\d` and pg_dump's pattern queries write
/// it, which sqlparser parses only before a plain operand. For classification only, each
/// pg_catalog operator (only a superuser can define one) is written plainly; any other schema
/// or spelling leaves the statement unparsed, so `unknown`.
pub(super) fn catalog_operators_plain(key: &str) -> Option<String> {
    const OPEN: &str = "operator(pg_catalog.";
    let mut out = String::with_capacity(key.len());
    let mut rest = key;
    let mut replaced = false;
    loop {
        let Some(at) = rest.to_ascii_lowercase().find(OPEN) else {
            out.push_str(rest);
            break;
        };
        let after = &rest[at + OPEN.len()..];
        let len = after.find(')')?;
        let op = &after[..len];
        if op.is_empty() || !op.chars().all(|c| "+-*/<>=~!@#%^&|`?".contains(c)) {
            return None;
        }
        out.push_str(&rest[..at]);
        out.push(' ');
        out.push_str(op);
        out.push(' ');
        rest = &after[len + 1..];
        replaced = true;
    }
    replaced.then_some(out)
}

/// `VACUUM` and `ANALYZE`, which sqlparser does not parse for PostgreSQL (`pgbench -i` sends
/// `vacuum analyze pgbench_branches`). Their grammar is small: a command word, an optional
/// parenthesized option list or option keywords, then tables with optional column lists; no
/// expressions, strings or operators. Only text made of those pieces is accepted (class
/// `admin`, tables named); anything else stays unparsed and so `unknown`.
pub(super) fn maintenance(key: &str) -> Option<Classified> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || " _,.()\"$".contains(c);
    if !key.chars().all(allowed) {
        return None;
    }
    let trimmed = key.trim();
    let (word, mut rest) = trimmed.split_at(trimmed.find(' ').unwrap_or(trimmed.len()));
    let command = word.to_ascii_uppercase();
    if !matches!(command.as_str(), "VACUUM" | "ANALYZE" | "ANALYSE") {
        return None;
    }
    rest = rest.trim_start();
    // VACUUM FULL rewrites the table under an ACCESS EXCLUSIVE lock: its command says so, for
    // the policy (any mention of FULL among the options counts, whatever its value).
    let mut full = false;
    if let Some(inner) = rest.strip_prefix('(') {
        let close = inner.find(')')?;
        // An option name may be quoted: `VACUUM ("full") t` is VACUUM FULL to the server.
        full |= inner[..close]
            .split([' ', ','])
            .any(|w| w.trim_matches('"').eq_ignore_ascii_case("full"));
        rest = inner[close + 1..].trim_start();
    }
    loop {
        let w = rest.split([' ', ',', '(']).next().unwrap_or("");
        if ["FULL", "FREEZE", "VERBOSE", "ANALYZE", "ANALYSE"]
            .iter()
            .any(|k| w.eq_ignore_ascii_case(k))
        {
            full |= w.eq_ignore_ascii_case("full");
            rest = rest[w.len()..].trim_start();
        } else {
            break;
        }
    }
    let mut tables = Vec::new();
    let mut depth = 0usize;
    let mut current = String::new();
    for c in rest.chars().chain(std::iter::once(',')) {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.checked_sub(1)?,
            ',' if depth == 0 => {
                let name = current.trim();
                if name.contains(' ') {
                    return None;
                }
                if !name.is_empty() {
                    tables.push(if name.contains('"') {
                        name.replace('"', "")
                    } else {
                        name.to_ascii_lowercase()
                    });
                }
                current.clear();
            }
            c if depth == 0 => current.push(c),
            _ => {}
        }
    }
    if depth != 0 {
        return None;
    }
    let command = if full && command == "VACUUM" {
        "VACUUM FULL".to_string()
    } else {
        command
    };
    Some(Classified {
        class: StatementClass::Admin,
        command,
        tables,
        note: None,
        prepared: None,
        effects: Effects::Lasting,
    })
}

/// `FETCH` and `MOVE` in the forms sqlparser does not parse: `MOVE` at all, and either without
/// a direction or without `FROM`/`IN` (psycopg's `scroll()` sends `MOVE ABSOLUTE 10 FROM "c"`,
/// asyncpg's `Cursor.forward()` `MOVE FORWARD 10 c`). Both only read or position a cursor
/// whose query was judged at its `DECLARE`, so they are `read`; only text that is exactly
/// PostgreSQL's grammar (`FETCH|MOVE [direction] [FROM|IN] cursor`) is accepted.
pub(super) fn cursor_move(key: &str) -> Option<Classified> {
    let tokens = cursor_tokens(key)?;
    let (first, mut rest) = tokens.split_first()?;
    let command = first.to_ascii_uppercase();
    if command != "FETCH" && command != "MOVE" {
        return None;
    }
    // A count is an integer literal (the cache key spells every number `0`), maybe signed.
    let count = |r: &[String]| -> usize {
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        match r {
            [sign, n, ..] if (sign == "-" || sign == "+") && digits(n) => 2,
            [t, ..] if digits(t.strip_prefix(['-', '+']).unwrap_or(t)) => 1,
            _ => 0,
        }
    };
    let upper = |r: &[String]| r.first().map(|t| t.to_ascii_uppercase());
    match upper(rest).as_deref() {
        Some("NEXT" | "PRIOR" | "FIRST" | "LAST" | "ALL") => rest = &rest[1..],
        Some("ABSOLUTE" | "RELATIVE") => {
            let n = count(&rest[1..]);
            if n == 0 {
                return None;
            }
            rest = &rest[1 + n..];
        }
        Some("FORWARD" | "BACKWARD") => {
            rest = &rest[1..];
            if upper(rest).as_deref() == Some("ALL") {
                rest = &rest[1..];
            } else {
                rest = &rest[count(rest)..];
            }
        }
        _ => rest = &rest[count(rest)..],
    }
    if matches!(upper(rest).as_deref(), Some("FROM" | "IN")) {
        rest = &rest[1..];
    }
    let [name] = rest else {
        return None;
    };
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if !plain && !name.starts_with('"') {
        return None;
    }
    // As the server resolves the name: a quoted one exactly (`""` is one `"`), else folded.
    let cursor = match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => name.to_ascii_lowercase(),
    };
    Some(Classified {
        class: StatementClass::Read,
        command,
        tables: Vec::new(),
        note: None,
        prepared: Some(SqlPrepared::Fetch { cursor }),
        effects: Effects::Lasting,
    })
}

/// Whitespace-separated words, a double-quoted identifier (`""` inside) being one word.
fn cursor_tokens(key: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = key.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        if c == '"' {
            word.push(chars.next()?);
            loop {
                let c = chars.next()?;
                word.push(c);
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        word.push(chars.next()?);
                    } else {
                        break;
                    }
                }
            }
            if chars.peek().is_some_and(|c| !c.is_whitespace()) {
                return None;
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '"' {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        out.push(word);
    }
    Some(out)
}

/// PostgreSQL spells COPY's boolean options `on`/`off` too (`pgbench -i` sends
/// `copy ... from stdin with (freeze on)`), which sqlparser does not accept. For a COPY that did
/// not parse, the same text with `ON`/`OFF` words inside its trailing option list spelled
/// `TRUE`/`FALSE`: option values cannot change where the data goes, which is what the class
/// depends on.
pub(super) fn copy_options_as_booleans(key: &str) -> Option<String> {
    let trimmed = key.trim_start();
    if !trimmed.get(..4)?.eq_ignore_ascii_case("copy") {
        return None;
    }
    let open = key.rfind('(')?;
    let close = key.rfind(')')?;
    if close < open || !key[close + 1..].trim().is_empty() {
        return None;
    }
    let before = key[..open].trim_end();
    if !before
        .get(before.len().saturating_sub(4)..)?
        .eq_ignore_ascii_case("with")
    {
        return None;
    }
    let options: Vec<String> = key[open + 1..close]
        .split(',')
        .map(|opt| {
            opt.split_whitespace()
                .map(|w| {
                    if w.eq_ignore_ascii_case("on") {
                        "TRUE"
                    } else if w.eq_ignore_ascii_case("off") {
                        "FALSE"
                    } else {
                        w
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    Some(format!("{}({})", &key[..open], options.join(", ")))
}
