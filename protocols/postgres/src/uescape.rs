//! PostgreSQL's Unicode escapes (`U&"\0073et_config"`, `U&'...' UESCAPE '!'`), decoded exactly
//! as the server's `str_udeescape` does, so a name is judged as the server resolves it.
//! Anything the server would refuse is an error here too (the caller then treats the text as
//! unknown; the server rejects the whole query string before running any of it).

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UescapeError {
    #[error("invalid Unicode escape")]
    InvalidEscape,
    #[error("invalid Unicode escape value")]
    InvalidValue,
    #[error("invalid Unicode surrogate pair")]
    InvalidSurrogate,
    #[error("invalid Unicode escape character")]
    InvalidEscapeChar,
}

/// Whether `c` may be the escape character of a `UESCAPE` clause (PostgreSQL's
/// `check_uescapechar`: not a hex digit, `+`, a quote or whitespace).
pub fn valid_escape_char(c: char) -> bool {
    !(c.is_ascii_hexdigit() || matches!(c, '+' | '\'' | '"' | ' ' | '\t' | '\n' | '\r' | '\x0c'))
}

fn hex(s: &[char]) -> Option<u32> {
    s.iter()
        .try_fold(0u32, |acc, c| Some(acc * 16 + c.to_digit(16)?))
}

/// Decodes the body of a `U&` literal or identifier (quotes already undoubled) with `escape`.
pub fn decode(body: &str, escape: char) -> Result<String, UescapeError> {
    let s: Vec<char> = body.chars().collect();
    let mut out = String::with_capacity(body.len());
    let mut pair_first: Option<u32> = None;
    let mut i = 0;
    while i < s.len() {
        if s[i] != escape {
            if pair_first.is_some() {
                return Err(UescapeError::InvalidSurrogate);
            }
            out.push(s[i]);
            i += 1;
            continue;
        }
        let (value, len) = if s.get(i + 1) == Some(&escape) {
            if pair_first.is_some() {
                return Err(UescapeError::InvalidSurrogate);
            }
            out.push(escape);
            i += 2;
            continue;
        } else if let Some(v) = s.get(i + 1..i + 5).filter(|d| d.len() == 4).and_then(hex) {
            (v, 5)
        } else if s.get(i + 1) == Some(&'+')
            && let Some(v) = s.get(i + 2..i + 8).filter(|d| d.len() == 6).and_then(hex)
        {
            (v, 8)
        } else {
            return Err(UescapeError::InvalidEscape);
        };
        i += len;
        match (pair_first, value) {
            (Some(hi), 0xDC00..=0xDFFF) => {
                let c = 0x10000 + ((hi - 0xD800) << 10) + (value - 0xDC00);
                out.push(char::from_u32(c).ok_or(UescapeError::InvalidValue)?);
                pair_first = None;
            }
            (Some(_), _) => return Err(UescapeError::InvalidSurrogate),
            (None, 0xD800..=0xDBFF) => pair_first = Some(value),
            (None, 0xDC00..=0xDFFF) => return Err(UescapeError::InvalidSurrogate),
            (None, 0) => return Err(UescapeError::InvalidValue),
            (None, v) => out.push(char::from_u32(v).ok_or(UescapeError::InvalidValue)?),
        }
    }
    if pair_first.is_some() {
        return Err(UescapeError::InvalidSurrogate);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_like_the_server() {
        assert_eq!(decode("\\0073et_config", '\\').unwrap(), "set_config");
        assert_eq!(decode("d!0061t!+000061", '!').unwrap(), "data");
        assert_eq!(decode("a\\\\b", '\\').unwrap(), "a\\b");
        assert_eq!(decode("\\D83D\\DE00", '\\').unwrap(), "😀");
        assert_eq!(decode("plain", '\\').unwrap(), "plain");
        for bad in [
            "\\00",
            "\\0000",
            "\\D83D",
            "\\DE00",
            "\\D83Dx",
            "\\+11FFFF",
            "\\x",
        ] {
            assert!(decode(bad, '\\').is_err(), "{bad}");
        }
        assert!(valid_escape_char('!'));
        assert!(!valid_escape_char('a') && !valid_escape_char('+') && !valid_escape_char(' '));
    }
}
