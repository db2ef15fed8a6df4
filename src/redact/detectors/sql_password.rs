//! The `sql-password` detector: the literal after every `PASSWORD` keyword, read as SQL
//! reads it (quotes, `E'...'`, `U&'...'`, dollar quotes, comments in between).

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// Every `PASSWORD <literal>`: the literal's contents. Comments between the keyword and the
/// literal are skipped, so `PASSWORD /* x */ 'secret'` is found too.
pub(super) fn sql_passwords(text: &str, out: &mut Vec<(usize, usize)>) {
    let b = text.as_bytes();
    let mut i = 0;
    while i + 8 <= b.len() {
        let word = &b[i..i + 8];
        if !word.eq_ignore_ascii_case(b"password")
            || (i > 0 && is_ident(b[i - 1]))
            || b.get(i + 8).is_some_and(|&c| is_ident(c))
        {
            i += 1;
            continue;
        }
        let mut j = skip_space_and_comments(b, i + 8);
        if let Some((start, end, next)) = literal_at(b, j) {
            if start < end {
                out.push((start, end));
            }
            j = next;
        }
        i = j.max(i + 8);
    }
}

fn skip_space_and_comments(b: &[u8], mut j: usize) -> usize {
    loop {
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        if b[j..].starts_with(b"--") {
            while j < b.len() && b[j] != b'\n' {
                j += 1;
            }
        } else if b[j..].starts_with(b"/*") {
            let mut depth = 0usize;
            while j < b.len() {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
        } else {
            return j;
        }
    }
}

/// A string literal starting at `j`: (contents start, contents end, index after it). An
/// unterminated literal runs to the end of the text (a secret cut by a chunk boundary is
/// still a secret).
fn literal_at(b: &[u8], j: usize) -> Option<(usize, usize, usize)> {
    let c = *b.get(j)?;
    if c == b'\'' {
        return Some(quoted(b, j + 1, false));
    }
    if (c == b'E' || c == b'e') && b.get(j + 1) == Some(&b'\'') {
        return Some(quoted(b, j + 2, true));
    }
    if (c == b'U' || c == b'u') && b.get(j + 1) == Some(&b'&') && b.get(j + 2) == Some(&b'\'') {
        return Some(quoted(b, j + 3, false));
    }
    if c == b'$' {
        let mut tag_end = j + 1;
        while tag_end < b.len() && is_ident(b[tag_end]) {
            tag_end += 1;
        }
        // `$1` is a parameter, not a dollar quote.
        if b.get(tag_end) != Some(&b'$') || b.get(j + 1).is_some_and(|d| d.is_ascii_digit()) {
            return None;
        }
        let tag = &b[j..=tag_end];
        let start = tag_end + 1;
        return Some(match memchr::memmem::find(&b[start..], tag) {
            Some(p) => (start, start + p, start + p + tag.len()),
            None => (start, b.len(), b.len()),
        });
    }
    None
}

fn quoted(b: &[u8], start: usize, backslash: bool) -> (usize, usize, usize) {
    let mut k = start;
    while k < b.len() {
        match b[k] {
            b'\\' if backslash => k += 2,
            b'\'' if b.get(k + 1) == Some(&b'\'') => k += 2,
            b'\'' => return (start, k, k + 1),
            _ => k += 1,
        }
    }
    (start, b.len(), b.len())
}

#[cfg(test)]
mod tests {
    use super::super::Builtin;

    fn spans(b: Builtin, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        b.find(text, &mut out);
        out.iter().map(|&(s, e)| text[s..e].to_string()).collect()
    }

    #[test]
    fn sql_password_literals() {
        let b = Builtin::SqlPassword;
        assert_eq!(
            spans(b, "ALTER ROLE app PASSWORD 's3cr''et'"),
            vec!["s3cr''et"]
        );
        assert_eq!(
            spans(
                b,
                "create user x with encrypted password E'a\\'b' valid until 'x'"
            ),
            vec!["a\\'b"]
        );
        assert_eq!(
            spans(b, "alter role x password $pw$ hunter2 $pw$"),
            vec![" hunter2 "]
        );
        assert_eq!(spans(b, "alter role x password $$dollar$$"), vec!["dollar"]);
        assert_eq!(spans(b, "alter role x password /* c */ 'c1'"), vec!["c1"]);
        assert_eq!(
            spans(b, "psql -c \"ALTER USER bob PASSWORD 'pw1'\""),
            vec!["pw1"]
        );
        assert_eq!(
            spans(b, "alter role x password 'unterminated"),
            vec!["unterminated"]
        );
        assert!(spans(b, "alter role x password null").is_empty());
        assert!(spans(b, "set password_encryption = 'scram-sha-256'").is_empty());
    }
}
