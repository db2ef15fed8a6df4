//! Session facts that change how statement text must be read: the string and encoding
//! settings, and a `search_path` that may shadow built-ins.

/// Session facts that change how text must be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LexContext {
    /// `standard_conforming_strings` is on (the default since PostgreSQL 9.1).
    pub standard_strings: bool,
    /// The client encoding can hide `\` or `'` inside multi-byte characters (SJIS, BIG5, GBK,
    /// UHC, GB18030, JOHAB); then any non-ASCII text is not trusted to split correctly.
    pub unsafe_encoding: bool,
    /// The client encoding is not UTF-8 (nor SQL_ASCII, which the server takes as it is): the
    /// server converts non-ASCII bytes from it, while proctor reads them as UTF-8, so what
    /// proctor would show and record is not what the server reads.
    pub converted_encoding: bool,
    /// The session set a `search_path` that puts a schema before `pg_catalog`
    /// ([`shadows_catalog`]): an unqualified function or operator (`lower(x)`, `id = 1`) may
    /// then resolve to a user's own, which may do anything, so no query or DML is taken to
    /// run only built-ins. Also set when proctor cannot see the path (after code ran, from the
    /// startup packet), and when the target defines functions named like built-ins outside
    /// `pg_catalog` (`builtin_names`), which argument types can select whatever the path.
    pub catalog_shadowed: bool,
}

impl Default for LexContext {
    fn default() -> Self {
        LexContext {
            standard_strings: true,
            unsafe_encoding: false,
            converted_encoding: false,
            catalog_shadowed: false,
        }
    }
}

/// Whether `text` may set a `search_path` that puts another schema before `pg_catalog`
/// (`SET search_path = public, pg_catalog`, `set_config('search_path', $1, false)`): after
/// `search_path`, `pg_catalog` is named but not first, or the value is a parameter. PostgreSQL
/// searches `pg_catalog` first unless the path names it later, so a path without it (the
/// default `"$user", public`, pg_dump's `''`) shadows no built-in.
pub fn shadows_catalog(text: &str) -> bool {
    // Called for every Query and Parse: most never name the setting, so they are not copied.
    const NAME: &[u8] = b"search_path";
    if !text
        .as_bytes()
        .windows(NAME.len())
        .any(|w| w.eq_ignore_ascii_case(NAME))
    {
        return false;
    }
    let lower = text.to_ascii_lowercase();
    lower.match_indices("search_path").any(|(at, _)| {
        let rest = &lower[at + "search_path".len()..];
        let mut value = rest
            .trim_start_matches(|c: char| c.is_whitespace() || matches!(c, '=' | '\'' | '"' | ','));
        if let Some(v) = value.strip_prefix("to")
            && v.starts_with(char::is_whitespace)
        {
            value = v;
        }
        let value =
            value.trim_start_matches(|c: char| c.is_whitespace() || matches!(c, '\'' | '"'));
        // Only this assignment's own value: up to the end of the statement.
        let own = rest.split(';').next().unwrap_or(rest);
        value.starts_with('$') || (own.contains("pg_catalog") && !value.starts_with("pg_catalog"))
    })
}

/// Whether a `search_path` value (as the server or a startup packet states it, not SQL text)
/// names `pg_catalog` after another schema: PostgreSQL searches `pg_catalog` first unless the
/// path names it later.
pub fn path_shadows(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    let first = lower
        .split(',')
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches('"');
    lower.contains("pg_catalog") && first != "pg_catalog"
}

impl LexContext {
    pub fn set_client_encoding(&mut self, enc: &str) {
        let e = enc.to_ascii_uppercase().replace(['-', '_'], "");
        self.converted_encoding = !matches!(e.as_str(), "UTF8" | "UNICODE" | "SQLASCII");
        self.unsafe_encoding = matches!(
            e.as_str(),
            "SJIS"
                | "SHIFTJIS"
                | "SHIFTJIS2004"
                | "BIG5"
                | "GBK"
                | "UHC"
                | "GB18030"
                | "JOHAB"
                | "WIN932"
                | "WIN936"
                | "WIN949"
                | "WIN950"
                | "CP932"
                | "CP936"
                | "CP949"
                | "CP950"
        );
    }
}
