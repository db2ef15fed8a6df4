//! Redaction rules as written in policy files: `[[redact]]` tables next to the `[[rule]]`
//! tables, loaded (and reloaded on SIGHUP, and checked by `proctor policy check`) with them.
//!
//! ```toml
//! [[redact]]                  # turn on a built-in detector, or change what it does
//! name = "cards-sealed"
//! detector = "card-number"
//! action = "seal"             # redact (default) | seal (to the auditors' key)
//!
//! [[redact]]                  # a detector of your own: a regex
//! name = "github-tokens"
//! pattern = '\bgh[pousr]_[A-Za-z0-9]{36,}\b'
//! kind = "github-token"       # what the marker says stood there (default: the name)
//! ```
//!
//! A pattern with a group named `secret` (or any group) redacts only that group, so the
//! context stays readable: `token=(?P<secret>\S+)`.

use regex::{Regex, RegexBuilder};
use serde::Deserialize;

use super::detectors::{self, Builtin};

/// What happens to a matched span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Replaced by `[REDACTED:<kind>:<length>]`; gone for everyone.
    Redact,
    /// Encrypted to the auditors' key: `[SEALED:v1:<kind>:<ciphertext>]`.
    Seal,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Redact => "redact",
            Mode::Seal => "seal",
        }
    }
}

/// A `[[redact]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactSpec {
    pub name: String,
    /// A built-in detector (see `detectors::ALL` names).
    #[serde(default)]
    pub detector: Option<String>,
    /// A regex of your own.
    #[serde(default)]
    pub pattern: Option<String>,
    /// For `pattern`: the marker's kind (letters, digits, `-`, `_`); the name when absent.
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub action: Option<Mode>,
    #[serde(default)]
    pub case_insensitive: bool,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone)]
pub enum Matcher {
    Builtin(Builtin),
    Pattern(Regex),
}

/// A compiled `[[redact]]` rule.
#[derive(Debug, Clone)]
pub struct RedactRule {
    pub name: String,
    pub matcher: Matcher,
    pub kind: String,
    pub mode: Mode,
    /// `file:line`, for messages.
    pub source: String,
}

fn valid_kind(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 40
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl RedactRule {
    pub fn compile(spec: RedactSpec, source: String) -> Result<RedactRule, String> {
        if spec.name.trim().is_empty() {
            return Err("name: a redaction rule needs a name".into());
        }
        let mode = spec.action.unwrap_or(Mode::Redact);
        let (matcher, kind) = match (&spec.detector, &spec.pattern) {
            (Some(d), None) => {
                let b = Builtin::parse(d).ok_or_else(|| {
                    format!(
                        "detector: {d:?}: expected one of {}",
                        detectors::ALL
                            .iter()
                            .map(|b| b.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?;
                if spec.kind.is_some() {
                    return Err("kind: a built-in detector names its own kind".into());
                }
                (Matcher::Builtin(b), b.kind().to_string())
            }
            (None, Some(p)) => {
                let re = RegexBuilder::new(p)
                    .case_insensitive(spec.case_insensitive)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| format!("pattern: {e}"))?;
                if re.is_match("") {
                    return Err(
                        "pattern: matches the empty string, which would redact nothing useful"
                            .into(),
                    );
                }
                let kind = spec.kind.clone().unwrap_or_else(|| spec.name.clone());
                if !valid_kind(&kind) {
                    return Err(format!(
                        "kind: {kind:?}: use letters, digits, '-', '_' (at most 40)"
                    ));
                }
                (Matcher::Pattern(re), kind)
            }
            (Some(_), Some(_)) => return Err("give either detector or pattern, not both".into()),
            (None, None) => return Err("give a built-in detector or a pattern".into()),
        };
        Ok(RedactRule {
            name: spec.name,
            matcher,
            kind,
            mode,
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(toml_text: &str) -> RedactSpec {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn compiles_builtins_and_patterns() {
        let r = RedactRule::compile(
            spec("name = \"c\"\ndetector = \"card-number\"\naction = \"seal\""),
            "f:1".into(),
        )
        .unwrap();
        assert_eq!((r.kind.as_str(), r.mode), ("card-number", Mode::Seal));
        let r = RedactRule::compile(
            spec("name = \"gh\"\npattern = 'gh[pousr]_[A-Za-z0-9]{36}'"),
            "f:1".into(),
        )
        .unwrap();
        assert_eq!((r.kind.as_str(), r.mode), ("gh", Mode::Redact));
        for bad in [
            "name = \"x\"",
            "name = \"x\"\ndetector = \"nope\"",
            "name = \"x\"\npattern = '('",
            "name = \"x\"\npattern = 'a*'",
            "name = \"x\"\npattern = 'a'\nkind = \"a b\"",
            "name = \"x\"\npattern = 'a'\ndetector = \"email\"",
        ] {
            assert!(
                RedactRule::compile(spec(bad), "f:1".into()).is_err(),
                "{bad}"
            );
        }
        assert!(
            toml::from_str::<RedactSpec>("name = \"x\"\npattern = 'a'\naction = \"drop\"").is_err()
        );
    }
}
