//! A PostgreSQL-faithful lexer just deep enough to split a query string into statements the way
//! the server will, find each statement's leading `reason:` comment, and build a cache key with
//! literals collapsed (or, for policy regexes and literal-dependent checks, the same text with
//! literals kept).
//!
//! Splitting must agree with the server: if proctor saw one harmless statement where the server
//! sees two, the second would run unjudged. So strings, quoted identifiers, dollar quotes and
//! nested comments follow PostgreSQL's rules, an unterminated one is an error (the caller treats
//! the whole text as unknown), `BEGIN ATOMIC ... END` bodies of `CREATE FUNCTION` are kept
//! whole as psql does, and so is anything inside parentheses: PostgreSQL's grammar has a `;`
//! inside parentheses only in a rule's action list (`CREATE RULE ... DO INSTEAD (a; b)`), and the
//! server parses the whole query string before running any of it, so a `;` inside parentheses
//! anywhere else makes the whole string a syntax error that runs nothing.
//!
//! Names are resolved as the server reads them: `U&"\0073et_config"` (with `UESCAPE`) becomes
//! the quoted identifier `"set_config"` in the key, so classification and policy see the name the
//! server will look up.

use crate::uescape;

/// One statement of a query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece<'a> {
    /// Original text of the statement, trimmed, without its terminating `;`.
    pub text: &'a str,
    /// The statement with comments removed, whitespace collapsed and every literal replaced by a
    /// placeholder of the same kind (`0`, `''`). Classification depends only on this.
    pub key: String,
    /// Text of a leading `/* reason: ... */` or `-- reason: ...` comment.
    pub reason: Option<String>,
    /// A backslash appears inside a string literal (its meaning depends on
    /// `standard_conforming_strings`).
    pub backslash_in_string: bool,
    /// Bytes outside ASCII appear somewhere.
    pub non_ascii: bool,
}

/// What [`Piece::key`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Literals collapsed to placeholders: the classification cache key.
    Key,
    /// Literals kept as written: what policy regexes and literal-dependent checks read.
    Literals,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LexError {
    #[error("unterminated quoted string")]
    UnterminatedString,
    #[error("unterminated quoted identifier")]
    UnterminatedIdent,
    #[error("unterminated dollar-quoted string")]
    UnterminatedDollar,
    #[error("unterminated comment")]
    UnterminatedComment,
    #[error("{0}")]
    Unicode(#[from] uescape::UescapeError),
    #[error("UESCAPE must be followed by a one-character string")]
    BadUescape,
    #[error("zero-length delimited identifier")]
    EmptyIdent,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_cont(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' | b'\x0b')
}

struct Builder<'a> {
    src: &'a str,
    mode: Mode,
    start: usize,
    key: String,
    reason: Option<String>,
    seen_token: bool,
    backslash_in_string: bool,
    non_ascii: bool,
    first_word_create: bool,
    words: u32,
    prev_begin: bool,
    atomic_depth: u32,
    paren_depth: i64,
}

impl<'a> Builder<'a> {
    fn new(src: &'a str, mode: Mode, start: usize) -> Self {
        Builder {
            src,
            mode,
            start,
            key: String::new(),
            reason: None,
            seen_token: false,
            backslash_in_string: false,
            non_ascii: false,
            first_word_create: false,
            words: 0,
            prev_begin: false,
            atomic_depth: 0,
            paren_depth: 0,
        }
    }

    /// A literal: its placeholder in the cache key, its own text otherwise.
    fn literal(&mut self, placeholder: &str, written: &str) {
        match self.mode {
            Mode::Key => self.token(placeholder),
            Mode::Literals => self.token(written),
        }
    }

    /// A quoted identifier as written (`"..."`, quotes doubled inside). In the literal-keeping
    /// text a name that needs no quotes (lower case letters, digits, `_`, `$`) is written bare,
    /// as the name the server resolves, so a regex for `set_config(` sees `"set_config"(` too.
    fn quoted_ident(&mut self, quoted: &str) {
        let inner = &quoted[1..quoted.len() - 1];
        let bare = self.mode == Mode::Literals
            && inner
                .bytes()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == b'_')
            && inner
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'$');
        self.token(if bare { inner } else { quoted });
    }

    /// Whether a `;` here ends the statement.
    fn at_top(&self) -> bool {
        self.atomic_depth == 0 && self.paren_depth <= 0
    }

    fn space(&mut self) {
        if !self.key.is_empty() && !self.key.ends_with(' ') {
            self.key.push(' ');
        }
    }

    fn token(&mut self, s: &str) {
        self.seen_token = true;
        self.key.push_str(s);
    }

    fn comment(&mut self, body: &str) {
        if self.seen_token || self.reason.is_some() {
            return;
        }
        let t = body.trim();
        // `get` rather than indexing: byte 7 may fall inside a multi-byte character.
        if let (Some(head), Some(rest)) = (t.get(..7), t.get(7..))
            && head.eq_ignore_ascii_case("reason:")
        {
            let r = rest.trim();
            if !r.is_empty() {
                self.reason = Some(r.to_string());
            }
        }
    }

    fn word(&mut self, w: &str) {
        self.words += 1;
        if self.words == 1 {
            self.first_word_create = w.eq_ignore_ascii_case("create");
        }
        if self.first_word_create {
            let opens = (self.prev_begin && w.eq_ignore_ascii_case("atomic"))
                || (self.atomic_depth > 0 && w.eq_ignore_ascii_case("case"));
            if opens {
                self.atomic_depth += 1;
            } else if self.atomic_depth > 0 && w.eq_ignore_ascii_case("end") {
                self.atomic_depth -= 1;
            }
            self.prev_begin = w.eq_ignore_ascii_case("begin");
        }
    }

    fn finish(mut self, end: usize, out: &mut Vec<Piece<'a>>) {
        if !self.seen_token {
            return;
        }
        while self.key.ends_with(' ') {
            self.key.pop();
        }
        out.push(Piece {
            text: self.src[self.start..end].trim(),
            key: self.key,
            reason: self.reason,
            backslash_in_string: self.backslash_in_string,
            non_ascii: self.non_ascii,
        });
    }
}

/// Splits `sql` into statements. Empty statements (only whitespace and comments) are dropped.
pub fn split(sql: &str) -> Result<Vec<Piece<'_>>, LexError> {
    split_mode(sql, Mode::Key)
}

/// [`split`], but each [`Piece::key`] keeps its literals as written (comments removed,
/// whitespace collapsed, Unicode-escaped names resolved): the text policy regexes read.
pub fn split_literals(sql: &str) -> Result<Vec<Piece<'_>>, LexError> {
    split_mode(sql, Mode::Literals)
}

fn split_mode(sql: &str, mode: Mode) -> Result<Vec<Piece<'_>>, LexError> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut cur = Builder::new(sql, mode, 0);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if is_space(c) {
            cur.space();
            i += 1;
        } else if c == b'-' && b.get(i + 1) == Some(&b'-') {
            let end = b[i..]
                .iter()
                .position(|&x| x == b'\n' || x == b'\r')
                .map_or(b.len(), |p| i + p);
            cur.comment(&sql[i + 2..end]);
            cur.space();
            i = end;
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            // Comments nest in PostgreSQL.
            let mut depth = 1;
            let mut j = i + 2;
            while depth > 0 {
                if j + 1 >= b.len() {
                    return Err(LexError::UnterminatedComment);
                }
                if b[j] == b'/' && b[j + 1] == b'*' {
                    depth += 1;
                    j += 2;
                } else if b[j] == b'*' && b[j + 1] == b'/' {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            cur.comment(&sql[i + 2..j - 2]);
            cur.space();
            i = j;
        } else if c == b'\'' {
            i = string(b, i, false, &mut cur)?;
        } else if c == b'"' {
            let end = quoted_ident(b, i)?;
            if sql[i..end].bytes().any(|x| x >= 0x80) {
                cur.non_ascii = true;
            }
            cur.quoted_ident(&sql[i..end]);
            i = end;
        } else if c == b'$' {
            if b.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
                // Positional parameter $n.
                let mut j = i + 1;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
                cur.token(&sql[i..j]);
                i = j;
            } else if let Some(tag_end) = dollar_tag(b, i) {
                let tag = &b[i..tag_end];
                let body_end = find(b, tag_end, tag).ok_or(LexError::UnterminatedDollar)?;
                if sql[tag_end..body_end].bytes().any(|x| x >= 0x80) {
                    cur.non_ascii = true;
                }
                cur.literal("''", &sql[i..body_end + tag.len()]);
                i = body_end + tag.len();
            } else {
                cur.token("$");
                i += 1;
            }
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            let end = number(b, i);
            if b.get(end).is_some_and(|&x| is_ident_cont(x)) {
                // Trailing junk (`0x1F`, `123abc`): how the server reads it depends on its
                // version, so keep it verbatim rather than guess.
                let mut j = end;
                while j < b.len() && is_ident_cont(b[j]) {
                    j += 1;
                }
                cur.token(&sql[i..j]);
                i = j;
            } else {
                cur.literal("0", &sql[i..end]);
                i = end;
            }
        } else if is_ident_start(c) {
            let mut j = i + 1;
            while j < b.len() && is_ident_cont(b[j]) {
                j += 1;
            }
            let w = &sql[i..j];
            if w.bytes().any(|x| x >= 0x80) {
                cur.non_ascii = true;
            }
            if b.get(j) == Some(&b'\'') {
                // Typed or prefixed literal: E'..' has backslash escapes; B, X, N, and any type
                // name ('date' '...') use the ordinary rules.
                let escaped = w.eq_ignore_ascii_case("e");
                cur.word(w);
                cur.token(w);
                i = string(b, j, escaped, &mut cur)?;
            } else if b.get(j) == Some(&b'&')
                && w.eq_ignore_ascii_case("u")
                && matches!(b.get(j + 1), Some(b'\'') | Some(b'"'))
            {
                i = unicode_escaped(sql, i, &mut cur)?;
            } else {
                cur.word(w);
                cur.token(w);
                i = j;
            }
        } else if c == b';' && cur.at_top() {
            let next = Builder::new(sql, mode, i + 1);
            std::mem::replace(&mut cur, next).finish(i, &mut out);
            i += 1;
        } else {
            if c >= 0x80 {
                cur.non_ascii = true;
            }
            match c {
                b'(' => cur.paren_depth += 1,
                b')' => cur.paren_depth -= 1,
                _ => {}
            }
            // ASCII punctuation and operators; a multi-byte character is handled as an
            // identifier above, so this never splits a UTF-8 sequence.
            let ch = &sql[i..i + 1];
            cur.token(ch);
            i += 1;
        }
    }
    cur.finish(b.len(), &mut out);
    Ok(out)
}

/// A quoted string starting at `b[i] == '\''`; returns the index after it. Writes `''` to the key.
fn string(b: &[u8], i: usize, escaped: bool, cur: &mut Builder<'_>) -> Result<usize, LexError> {
    let mut j = i + 1;
    loop {
        let Some(&c) = b.get(j) else {
            return Err(LexError::UnterminatedString);
        };
        if c >= 0x80 {
            cur.non_ascii = true;
        }
        if c == b'\\' {
            cur.backslash_in_string = true;
            if escaped {
                j += 2;
                continue;
            }
        }
        if c == b'\'' {
            if b.get(j + 1) == Some(&b'\'') {
                j += 2;
                continue;
            }
            // A prefix word (E, B, X, N, a type name) is already in the key.
            let src = cur.src;
            cur.literal("''", &src[i..j + 1]);
            return Ok(j + 1);
        }
        j += 1;
    }
}

/// Skips whitespace and comments from `i`; the index of the next token.
fn skip_blank(b: &[u8], mut i: usize) -> Result<usize, LexError> {
    loop {
        match b.get(i) {
            Some(&c) if is_space(c) => i += 1,
            Some(b'-') if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' && b[i] != b'\r' {
                    i += 1;
                }
            }
            Some(b'/') if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 1;
                i += 2;
                while depth > 0 {
                    if i + 1 >= b.len() {
                        return Err(LexError::UnterminatedComment);
                    }
                    if b[i] == b'/' && b[i + 1] == b'*' {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b[i + 1] == b'/' {
                        depth -= 1;
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
            }
            _ => return Ok(i),
        }
    }
}

/// A `U&'...'` string or `U&"..."` identifier starting at `i` (the `U`), with an optional
/// `UESCAPE 'c'` after it (PostgreSQL looks past whitespace and comments for it). An identifier
/// is decoded and written to the key as the plain quoted identifier the server resolves it to.
fn unicode_escaped(sql: &str, i: usize, cur: &mut Builder<'_>) -> Result<usize, LexError> {
    let b = sql.as_bytes();
    let quote = b[i + 2];
    let end = if quote == b'\'' {
        // Collapsed or written out by `string`; the escapes cannot end the literal early.
        let mut probe = Builder::new(sql, cur.mode, i);
        let end = string(b, i + 2, false, &mut probe)?;
        cur.non_ascii |= probe.non_ascii;
        end
    } else {
        quoted_ident(b, i + 2)?
    };
    // Optional UESCAPE 'c'.
    let mut escape = '\\';
    let mut after = end;
    let next = skip_blank(b, end)?;
    let word_end = (next..b.len())
        .find(|&k| !is_ident_cont(b[k]))
        .unwrap_or(b.len());
    if sql[next..word_end].eq_ignore_ascii_case("uescape") {
        let lit = skip_blank(b, word_end)?;
        if b.get(lit) != Some(&b'\'') {
            return Err(LexError::BadUescape);
        }
        let close = lit + 1 + sql[lit + 1..].chars().next().map_or(0, char::len_utf8);
        let c = sql[lit + 1..].chars().next().ok_or(LexError::BadUescape)?;
        if b.get(close) != Some(&b'\'') || c == '\'' || !uescape::valid_escape_char(c) {
            return Err(LexError::BadUescape);
        }
        escape = c;
        after = close + 1;
    }
    if quote == b'\'' {
        // Whatever the string says, it is a literal: the key does not depend on its value.
        cur.literal("U&''", &sql[i..after]);
    } else {
        let body = sql[i + 3..end - 1].replace("\"\"", "\"");
        let name = uescape::decode(&body, escape)?;
        if name.is_empty() {
            return Err(LexError::EmptyIdent);
        }
        let mut quoted = String::with_capacity(name.len() + 2);
        quoted.push('"');
        quoted.push_str(&name.replace('"', "\"\""));
        quoted.push('"');
        cur.quoted_ident(&quoted);
    }
    Ok(after)
}

fn quoted_ident(b: &[u8], i: usize) -> Result<usize, LexError> {
    let mut j = i + 1;
    loop {
        match b.get(j) {
            None => return Err(LexError::UnterminatedIdent),
            Some(b'"') if b.get(j + 1) == Some(&b'"') => j += 2,
            Some(b'"') => return Ok(j + 1),
            Some(_) => j += 1,
        }
    }
}

/// If a dollar-quote opening tag starts at `i`, the index just after it.
fn dollar_tag(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    if b.get(j) == Some(&b'$') {
        return Some(j + 1);
    }
    if !b.get(j).is_some_and(|&c| is_ident_start(c)) {
        return None;
    }
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] >= 0x80) {
        j += 1;
    }
    (b.get(j) == Some(&b'$')).then_some(j + 1)
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

fn number(b: &[u8], i: usize) -> usize {
    let mut j = i;
    while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'_') {
        j += 1;
    }
    if b.get(j) == Some(&b'.') && b.get(j + 1) != Some(&b'.') {
        j += 1;
        while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'_') {
            j += 1;
        }
    }
    if matches!(b.get(j), Some(b'e') | Some(b'E')) {
        let mut k = j + 1;
        if matches!(b.get(k), Some(b'+') | Some(b'-')) {
            k += 1;
        }
        if b.get(k).is_some_and(u8::is_ascii_digit) {
            while k < b.len() && b[k].is_ascii_digit() {
                k += 1;
            }
            j = k;
        }
    }
    j
}

#[cfg(test)]
mod tests;
