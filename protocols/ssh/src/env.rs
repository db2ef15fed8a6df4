//! Which `SetEnv` variables reach the target. An environment variable can change what a
//! judged command does without changing its text (`BASH_ENV`, `LD_PRELOAD`, `PATH`,
//! `PROMPT_COMMAND`...), so only names on an allow-list are passed on; every other request is
//! refused to the client and recorded as refused. Patterns are sshd `AcceptEnv` style: `*`
//! matches any run of characters, `?` one character.

/// The names passed on when the configuration says nothing.
pub const DEFAULT_ACCEPT_ENV: &[&str] = &["LANG", "LC_*", "TERM", "TZ", "PROCTOR_REASON"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvAllowList {
    patterns: Vec<String>,
}

impl Default for EnvAllowList {
    fn default() -> Self {
        EnvAllowList::new(DEFAULT_ACCEPT_ENV.iter().map(|s| s.to_string()).collect())
    }
}

impl EnvAllowList {
    pub fn new(patterns: Vec<String>) -> Self {
        EnvAllowList { patterns }
    }

    /// Whether `name` may be set on the target. A name that is not a plain identifier
    /// (`=`, spaces, control characters, empty) never is, whatever the patterns say.
    pub fn allows(&self, name: &str) -> bool {
        let plain = !name.is_empty()
            && name.len() <= 256
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        plain
            && self
                .patterns
                .iter()
                .any(|p| glob(p.as_bytes(), name.as_bytes()))
    }
}

/// `*` and `?` wildcard match (iterative, with one backtrack point: linear in practice).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_locale_and_reason_only() {
        let a = EnvAllowList::default();
        for ok in ["LANG", "LC_ALL", "LC_CTYPE", "TERM", "TZ", "PROCTOR_REASON"] {
            assert!(a.allows(ok), "{ok}");
        }
        for no in [
            "BASH_ENV",
            "LD_PRELOAD",
            "PATH",
            "ENV",
            "PROMPT_COMMAND",
            "LANGUAGE",
            "TERMCAP",
            "PROCTOR_REASONX",
            "",
            "LC_A=B",
            "LC_ X",
        ] {
            assert!(!a.allows(no), "{no}");
        }
    }

    #[test]
    fn patterns_are_sshd_style() {
        let a = EnvAllowList::new(vec!["APP_*_MODE".into(), "X?".into(), "*".into()]);
        assert!(a.allows("ANYTHING"));
        let a = EnvAllowList::new(vec!["APP_*_MODE".into(), "X?".into()]);
        assert!(a.allows("APP_A_B_MODE"));
        assert!(a.allows("XY"));
        assert!(!a.allows("X"));
        assert!(!a.allows("APP_MODE"));
        assert!(!EnvAllowList::new(vec![]).allows("LANG"));
    }
}
