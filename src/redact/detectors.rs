//! Typed secret detectors. Each finds byte spans of one kind of secret in a text; the redactor
//! replaces the spans by markers. A detector reports only the secret itself, not its context:
//! for `PGPASSWORD=hunter2` the span is `hunter2`, so the record still says a password was set.
//!
//! Detectors read text, not protocols: the same `PASSWORD '...'` detector finds a password in a
//! SQL statement and in `psql -c "ALTER ROLE x PASSWORD '...'"` typed in a shell.

use std::sync::LazyLock;

use regex::Regex;

mod cards;
mod prefilter;
mod sql_password;

use self::cards::card_numbers;
pub use self::cards::{is_card_number, luhn};
pub use self::prefilter::Candidates;
use self::sql_password::sql_passwords;

/// A built-in detector. `name` is how configuration and policy files refer to it; `kind` is
/// what its markers say stood there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Builtin {
    /// `PASSWORD '...'` (also `E'...'` and dollar-quoted) as in CREATE/ALTER ROLE/USER.
    SqlPassword,
    /// `PGPASSWORD=...`, `DB_PASSWORD=...`, `password=...` in connection strings, `"password": "..."`.
    PasswordAssignment,
    /// `scheme://user:password@host`.
    UriPassword,
    /// `Authorization: <scheme> <credentials>` and `Proxy-Authorization:`.
    Authorization,
    /// `X-Api-Key:`, `Private-Token:` and similar headers.
    ApiKeyHeader,
    /// `Bearer <token>` anywhere (also `--oauth2-bearer <token>`).
    BearerToken,
    /// PEM/OpenSSH/PGP private key blocks.
    PrivateKey,
    /// AWS access key ids (`AKIA...`, `ASIA...`).
    AwsAccessKey,
    /// `aws_secret_access_key = ...` / `AWS_SECRET_ACCESS_KEY=...`.
    AwsSecretKey,
    /// Google API keys (`AIza...`).
    GcpApiKey,
    /// Google OAuth access tokens (`ya29....`).
    GcpAccessToken,
    /// Payment card numbers: known issuer prefix and length, Luhn-checked.
    CardNumber,
    /// US social security numbers in the dashed form (optional).
    UsSsn,
    /// UK national insurance numbers (optional).
    UkNino,
    /// E-mail addresses (optional).
    Email,
}

pub const ALL: &[Builtin] = &[
    Builtin::SqlPassword,
    Builtin::PasswordAssignment,
    Builtin::UriPassword,
    Builtin::Authorization,
    Builtin::ApiKeyHeader,
    Builtin::BearerToken,
    Builtin::PrivateKey,
    Builtin::AwsAccessKey,
    Builtin::AwsSecretKey,
    Builtin::GcpApiKey,
    Builtin::GcpAccessToken,
    Builtin::CardNumber,
    Builtin::UsSsn,
    Builtin::UkNino,
    Builtin::Email,
];

impl Builtin {
    pub fn name(self) -> &'static str {
        match self {
            Builtin::SqlPassword => "sql-password",
            Builtin::PasswordAssignment => "password-assignment",
            Builtin::UriPassword => "uri-password",
            Builtin::Authorization => "authorization",
            Builtin::ApiKeyHeader => "api-key-header",
            Builtin::BearerToken => "bearer-token",
            Builtin::PrivateKey => "private-key",
            Builtin::AwsAccessKey => "aws-access-key",
            Builtin::AwsSecretKey => "aws-secret-key",
            Builtin::GcpApiKey => "gcp-api-key",
            Builtin::GcpAccessToken => "gcp-access-token",
            Builtin::CardNumber => "card-number",
            Builtin::UsSsn => "us-ssn",
            Builtin::UkNino => "uk-nino",
            Builtin::Email => "email",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Builtin::SqlPassword | Builtin::PasswordAssignment | Builtin::UriPassword => "password",
            Builtin::Authorization => "authorization",
            Builtin::ApiKeyHeader => "api-key",
            Builtin::BearerToken => "bearer-token",
            Builtin::PrivateKey => "private-key",
            Builtin::AwsAccessKey => "aws-access-key",
            Builtin::AwsSecretKey => "aws-secret-key",
            Builtin::GcpApiKey => "gcp-api-key",
            Builtin::GcpAccessToken => "gcp-access-token",
            Builtin::CardNumber => "card-number",
            Builtin::UsSsn | Builtin::UkNino => "national-id",
            Builtin::Email => "email",
        }
    }

    /// Secrets are always looked for; personal data only where configured, since what counts
    /// as personal data (and what an auditor must still read) differs between deployments.
    pub fn on_by_default(self) -> bool {
        !matches!(self, Builtin::UsSsn | Builtin::UkNino | Builtin::Email)
    }

    pub fn parse(name: &str) -> Option<Builtin> {
        ALL.iter().copied().find(|b| b.name() == name)
    }

    /// Cheap test that the text may hold this kind of secret, so most texts skip the scan.
    fn may_match(self, text: &str) -> bool {
        let b = text.as_bytes();
        match self {
            Builtin::SqlPassword | Builtin::PasswordAssignment => contains_ci(&PASSWORD_WORDS, b),
            Builtin::UriPassword => memchr::memmem::find(b, b"://").is_some() && b.contains(&b'@'),
            Builtin::Authorization => contains_ci(&AUTHORIZATION_WORD, b),
            Builtin::ApiKeyHeader => contains_ci(&KEY_WORDS, b),
            Builtin::BearerToken => contains_ci(&BEARER_WORD, b),
            Builtin::PrivateKey => memchr::memmem::find(b, b"PRIVATE KEY").is_some(),
            Builtin::AwsAccessKey => memchr::memchr_iter(b'A', b)
                .any(|i| b.get(i + 1).is_some_and(u8::is_ascii_uppercase)),
            Builtin::AwsSecretKey => contains_ci(&SECRET_WORD, b),
            Builtin::GcpApiKey => memchr::memmem::find(b, b"AIza").is_some(),
            Builtin::GcpAccessToken => memchr::memmem::find(b, b"ya29.").is_some(),
            Builtin::CardNumber => digit_run_at_least(b, 4),
            Builtin::UsSsn => b.contains(&b'-') && digit_run_at_least(b, 3),
            Builtin::UkNino => digit_run_at_least(b, 2),
            Builtin::Email => b.contains(&b'@'),
        }
    }

    /// Appends the byte spans of every secret of this kind in `text`.
    pub fn find(self, text: &str, out: &mut Vec<(usize, usize)>) {
        if self.may_match(text) {
            self.search(text, out);
        }
    }

    /// [`Self::find`] for a text [`Candidates`] named this detector for: its own test was
    /// part of the prefilter's pass (or asked there), so only the search is left.
    pub fn find_candidate(self, text: &str, out: &mut Vec<(usize, usize)>) {
        self.search(text, out);
    }

    fn search(self, text: &str, out: &mut Vec<(usize, usize)>) {
        match self {
            Builtin::SqlPassword => sql_passwords(text, out),
            Builtin::CardNumber => card_numbers(text, out),
            Builtin::UsSsn => {
                for c in US_SSN.captures_iter(text) {
                    let (Some(all), Some(a), Some(g), Some(s)) =
                        (c.get(0), c.get(1), c.get(2), c.get(3))
                    else {
                        continue;
                    };
                    let (a, g, s) = (a.as_str(), g.as_str(), s.as_str());
                    // Never issued: area 000, 666 or 9xx, group 00, serial 0000.
                    if a == "000" || a == "666" || a.starts_with('9') || g == "00" || s == "0000" {
                        continue;
                    }
                    out.push((all.start(), all.end()));
                }
            }
            Builtin::PasswordAssignment => {
                for c in PASSWORD_ASSIGNMENT.captures_iter(text) {
                    let Some(v) = c.get(1) else { continue };
                    let (start, end) = unquote(text, v.start(), v.end());
                    let value = &text[start..end];
                    // Placeholders and function calls are not the secret itself.
                    let placeholder = value.starts_with('$')
                        && value[1..].bytes().all(|d| d.is_ascii_digit())
                        || value == "?"
                        || text[v.end()..].starts_with('(');
                    if !placeholder && start < end {
                        out.push((start, end));
                    }
                }
            }
            _ => {
                let re: &Regex = match self {
                    Builtin::UriPassword => &URI_PASSWORD,
                    Builtin::Authorization => &AUTHORIZATION,
                    Builtin::ApiKeyHeader => &API_KEY_HEADER,
                    Builtin::BearerToken => &BEARER,
                    Builtin::PrivateKey => &PRIVATE_KEY,
                    Builtin::AwsAccessKey => &AWS_ACCESS_KEY,
                    Builtin::AwsSecretKey => &AWS_SECRET_KEY,
                    Builtin::GcpApiKey => &GCP_API_KEY,
                    Builtin::GcpAccessToken => &GCP_ACCESS_TOKEN,
                    Builtin::UkNino => &UK_NINO,
                    Builtin::Email => &EMAIL,
                    _ => return,
                };
                find_regex(re, text, out);
            }
        }
    }
}

/// Spans of a regex's `secret` group, else its first group, else the whole match.
pub fn find_regex(re: &Regex, text: &str, out: &mut Vec<(usize, usize)>) {
    let secret_idx = re.capture_names().position(|n| n == Some("secret"));
    for c in re.captures_iter(text) {
        let m = secret_idx
            .and_then(|i| c.get(i))
            .or_else(|| {
                if re.captures_len() > 1 {
                    c.get(1)
                } else {
                    None
                }
            })
            .or_else(|| c.get(0));
        if let Some(m) = m
            && m.start() < m.end()
        {
            out.push((m.start(), m.end()));
        }
    }
}

/// The words `may_match` looks for, ASCII case-insensitive (`-u`: no Unicode case folding,
/// as `eq_ignore_ascii_case`). A regex of literals is searched by the regex crate's vectorised
/// prefilters, so neither bulk output nor a statement of megabytes built to hit a first letter
/// at every byte (`aaaa...` against `authorization`) costs a comparison per byte.
static PASSWORD_WORDS: LazyLock<regex::bytes::Regex> =
    LazyLock::new(|| literal_ci("passw|mysql_pwd"));
static AUTHORIZATION_WORD: LazyLock<regex::bytes::Regex> =
    LazyLock::new(|| literal_ci("authorization"));
static KEY_WORDS: LazyLock<regex::bytes::Regex> = LazyLock::new(|| literal_ci("key|token"));
static BEARER_WORD: LazyLock<regex::bytes::Regex> = LazyLock::new(|| literal_ci("bearer"));
static SECRET_WORD: LazyLock<regex::bytes::Regex> = LazyLock::new(|| literal_ci("secret"));
static DIGITS: [LazyLock<regex::bytes::Regex>; 3] = [
    LazyLock::new(|| literal_ci("[0-9]{2}")),
    LazyLock::new(|| literal_ci("[0-9]{3}")),
    LazyLock::new(|| literal_ci("[0-9]{4}")),
];

fn literal_ci(pattern: &str) -> regex::bytes::Regex {
    regex::bytes::Regex::new(&format!("(?i-u){pattern}")).expect("a valid pattern")
}

fn contains_ci(re: &regex::bytes::Regex, hay: &[u8]) -> bool {
    re.is_match(hay)
}

fn digit_run_at_least(b: &[u8], n: usize) -> bool {
    if (2..=4).contains(&n) {
        return DIGITS[n - 2].is_match(b);
    }
    // Bulk output (file transfers, binary streams) mostly has no digits in a 64-byte stretch;
    // the branch-free test of a whole stretch vectorizes, the byte loop does not.
    let mut run = 0;
    for chunk in b.chunks(64) {
        let any = chunk
            .iter()
            .fold(false, |acc, c| acc | (c.wrapping_sub(b'0') < 10));
        if !any {
            run = 0;
            continue;
        }
        for &c in chunk {
            if c.is_ascii_digit() {
                run += 1;
                if run >= n {
                    return true;
                }
            } else {
                run = 0;
            }
        }
    }
    false
}

/// Strips one level of matching quotes around a captured value.
fn unquote(text: &str, start: usize, end: usize) -> (usize, usize) {
    let v = &text.as_bytes()[start..end];
    if v.len() >= 2 && (v[0] == b'"' || v[0] == b'\'') && v[v.len() - 1] == v[0] {
        (start + 1, end - 1)
    } else if !v.is_empty() && (v[0] == b'"' || v[0] == b'\'') {
        (start + 1, end)
    } else {
        (start, end)
    }
}

fn re(p: &str) -> Regex {
    // The patterns are constants; a typo is caught by the unit tests.
    Regex::new(p).unwrap_or_else(|e| panic!("built-in detector pattern {p:?}: {e}"))
}

static PASSWORD_ASSIGNMENT: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"(?i)\b(?:[a-z0-9]+_)*(?:pgpassword|password|passwd|mysql_pwd)["']?\s*[:=]\s*("(?:[^"\\\n]|\\.)*"?|'[^'\n]*'?|[^\s"'&;,)]+)"#,
    )
});
static URI_PASSWORD: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b[a-z][a-z0-9+.\-]*://[^/\s:@]+:([^@\s/]+)@"));
static AUTHORIZATION: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"(?i)\b(?:proxy-)?authorization\s*:\s*(?:(?:basic|bearer|digest|token|negotiate|ntlm|aws4-hmac-sha256|apikey|hoba|mutual|vapid|scram-sha-256)\s+)?([^\r\n'"]+)"#,
    )
});
static API_KEY_HEADER: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"(?i)\b(?:x-api-key|api-key|x-auth-token|private-token|x-vault-token|x-goog-api-key)\s*:\s*([^\s'"]+)"#,
    )
});
static BEARER: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)(?:\bbearer\s+|--oauth2-bearer[=\s]+)([A-Za-z0-9\-._~+/]{8,}=*)"));
static PRIVATE_KEY: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?s)-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\z)",
    )
});
static AWS_ACCESS_KEY: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b"));
static AWS_SECRET_KEY: LazyLock<Regex> = LazyLock::new(|| {
    re(r#"(?i)\baws_?secret_?access_?key["']?\s*[:=]\s*["']?([A-Za-z0-9/+=]{40})"#)
});
static GCP_API_KEY: LazyLock<Regex> = LazyLock::new(|| re(r"\bAIza[0-9A-Za-z_\-]{35}"));
static GCP_ACCESS_TOKEN: LazyLock<Regex> = LazyLock::new(|| re(r"\bya29\.[0-9A-Za-z_\-]{20,}"));
static US_SSN: LazyLock<Regex> = LazyLock::new(|| re(r"\b(\d{3})-(\d{2})-(\d{4})\b"));
static UK_NINO: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"));
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    re(r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}\b")
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_runs_are_found_across_stretches() {
        let mut b = vec![b'x'; 200];
        assert!(!digit_run_at_least(&b, 4));
        b[62..66].copy_from_slice(b"1234");
        assert!(digit_run_at_least(&b, 4));
        assert!(!digit_run_at_least(&b, 5));
        assert!(digit_run_at_least(b"9", 1));
    }

    #[test]
    fn contains_ci_finds_any_case_at_any_position() {
        let p = &PASSWORD_WORDS;
        assert!(contains_ci(p, b"PassWord=1"));
        assert!(contains_ci(p, b"xx pASSw"));
        assert!(contains_ci(p, b"passw"));
        assert!(contains_ci(p, b"MYSQL_PWD=x"));
        assert!(!contains_ci(p, b"pass"));
        assert!(!contains_ci(p, b"p a s s w"));
        assert!(!contains_ci(&KEY_WORDS, b""));
        // ASCII folding only: the Kelvin sign is not a K.
        assert!(!contains_ci(&KEY_WORDS, "\u{212a}ey".as_bytes()));
        assert!(contains_ci(&KEY_WORDS, b"x-API-KEY"));
    }

    fn spans(b: Builtin, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        b.find(text, &mut out);
        out.iter().map(|&(s, e)| text[s..e].to_string()).collect()
    }

    #[test]
    fn every_pattern_compiles() {
        for b in ALL {
            let mut out = Vec::new();
            b.find(
                "password=x AKIA a@b.cd 4111 -----BEGIN PRIVATE KEY----- ya29. AIza bearer key",
                &mut out,
            );
        }
    }

    #[test]
    fn password_assignments() {
        let b = Builtin::PasswordAssignment;
        assert_eq!(spans(b, "PGPASSWORD=hunter2 psql -h db"), vec!["hunter2"]);
        assert_eq!(spans(b, "export DB_PASSWORD='a b c'"), vec!["a b c"]);
        assert_eq!(spans(b, "host=db password=xyz dbname=app"), vec!["xyz"]);
        assert_eq!(spans(b, r#"{"password": "p4ss"}"#), vec!["p4ss"]);
        assert_eq!(spans(b, "mysql --password=top"), vec!["top"]);
        assert!(spans(b, "update users set password = $1 where id = $2").is_empty());
        assert!(spans(b, "PWD=/home/x ls").is_empty());
    }

    #[test]
    fn headers_tokens_and_uris() {
        assert_eq!(
            spans(
                Builtin::Authorization,
                "curl -H 'Authorization: Basic dXNlcjpwYXNz' https://x"
            ),
            vec!["dXNlcjpwYXNz"]
        );
        assert_eq!(
            spans(
                Builtin::BearerToken,
                "curl -H \"X: Bearer eyJhbGciOi.J9.xyz\" x"
            ),
            vec!["eyJhbGciOi.J9.xyz"]
        );
        assert_eq!(
            spans(Builtin::ApiKeyHeader, "-H 'X-Api-Key: k-123'"),
            vec!["k-123"]
        );
        assert_eq!(
            spans(Builtin::UriPassword, "psql postgresql://app:s3cret@db/app"),
            vec!["s3cret"]
        );
    }

    #[test]
    fn keys() {
        let pem = "x\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaA==\n-----END OPENSSH PRIVATE KEY-----\ny";
        assert_eq!(
            spans(Builtin::PrivateKey, pem),
            vec![pem[2..pem.len() - 2].to_string()]
        );
        assert_eq!(
            spans(Builtin::PrivateKey, "-----BEGIN RSA PRIVATE KEY-----\nMIIE"),
            vec!["-----BEGIN RSA PRIVATE KEY-----\nMIIE"]
        );
        assert_eq!(
            spans(Builtin::AwsAccessKey, "id=AKIAIOSFODNN7EXAMPLE,"),
            vec!["AKIAIOSFODNN7EXAMPLE"]
        );
        assert_eq!(
            spans(
                Builtin::AwsSecretKey,
                "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
            ),
            vec!["wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"]
        );
        assert_eq!(
            spans(
                Builtin::GcpApiKey,
                "key=AIzaSyA-1234567890abcdefghijklmnopqrstu"
            ),
            vec!["AIzaSyA-1234567890abcdefghijklmnopqrstu"]
        );
        assert_eq!(
            spans(Builtin::GcpAccessToken, "ya29.a0AfH6SMBx-abcdefghijklmnop"),
            vec!["ya29.a0AfH6SMBx-abcdefghijklmnop"]
        );
    }

    #[test]
    fn personal_data() {
        assert_eq!(
            spans(Builtin::UsSsn, "ssn 123-45-6789."),
            vec!["123-45-6789"]
        );
        assert!(
            spans(
                Builtin::UsSsn,
                "000-12-3456 666-12-3456 900-12-3456 123-00-4567"
            )
            .is_empty()
        );
        assert_eq!(
            spans(Builtin::UkNino, "AB 12 34 56 C"),
            vec!["AB 12 34 56 C"]
        );
        assert_eq!(
            spans(Builtin::Email, "mail ann.lee+x@example.co.uk now"),
            vec!["ann.lee+x@example.co.uk"]
        );
        assert!(spans(Builtin::Email, "ssh deploy@web1").is_empty());
    }
}
