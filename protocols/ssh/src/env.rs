//! Which `SetEnv` variables reach the target. An environment variable can change what a
//! judged command does without changing its text (`BASH_ENV`, `LD_PRELOAD`, `PATH`,
//! `PROMPT_COMMAND`...), so only names on an allow-list are passed on; every other request is
//! refused to the client and recorded as refused. Patterns are sshd `AcceptEnv` style: `*`
//! matches any run of characters, `?` one character. A locale variable that would make the
//! target's shell read a command in another character set than proctor reads it (`LANG=zh_TW.BIG5`,
//! see [`proctor_gate::locale`]) is refused whatever the patterns say.

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

    /// Whether `name` may be set to `value` on the target. A name that is not a plain
    /// identifier (`=`, spaces, control characters, empty) never is, nor a locale that is not
    /// UTF-8 (or `C`), whatever the patterns say.
    pub fn allows(&self, name: &str, value: &str) -> bool {
        let plain = !name.is_empty()
            && name.len() <= 256
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        let charset_ok = !proctor_gate::locale::CHARSET_VARIABLES.contains(&name)
            || proctor_gate::locale::reads_as_proctor(value);
        plain
            && charset_ok
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
            assert!(a.allows(ok, "C.UTF-8"), "{ok}");
        }
        // A character set in which bash splits a line where proctor does not.
        for no in ["LANG", "LC_ALL", "LC_CTYPE"] {
            assert!(!a.allows(no, "zh_TW.BIG5"), "{no}");
            assert!(!a.allows(no, "zh_TW"), "{no}");
        }
        assert!(a.allows("LC_TIME", "zh_TW.BIG5"));
        let all = EnvAllowList::new(vec!["*".into()]);
        assert!(!all.allows("LOCPATH", "/tmp/loc"));
        assert!(!all.allows("LC_ALL", "ja_JP.SJIS"));
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
            assert!(!a.allows(no, "x"), "{no}");
        }
    }

    #[test]
    fn patterns_are_sshd_style() {
        let a = EnvAllowList::new(vec!["APP_*_MODE".into(), "X?".into(), "*".into()]);
        assert!(a.allows("ANYTHING", "x"));
        let a = EnvAllowList::new(vec!["APP_*_MODE".into(), "X?".into()]);
        assert!(a.allows("APP_A_B_MODE", "x"));
        assert!(a.allows("XY", "x"));
        assert!(!a.allows("X", "x"));
        assert!(!a.allows("APP_MODE", "x"));
        assert!(!EnvAllowList::new(vec![]).allows("LANG", "x"));
    }
}
