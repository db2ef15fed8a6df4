//! Which locales proctor reads text under as the target's shell does.
//!
//! Proctor reads a command as UTF-8. Bash reads it in its locale's character set: under a
//! multi-byte set whose characters may end in an ASCII byte (BIG5, BIG5-HKSCS, GBK, GB18030,
//! SJIS...), a `\` (0x5c) or a backquote (0x60) after a lead byte is part of a character, not
//! a quote, so `echo "€\"; rm -r /x #"` is one `echo` to proctor and an `rm` to bash under
//! `zh_TW.BIG5`. Only UTF-8 locales and the single-byte `C`/`POSIX` split a line where proctor
//! does (UTF-8's multi-byte characters hold no ASCII byte).

/// The variables whose value sets the character set the shell reads a command in, and
/// `LOCPATH`, which says where a locale of any name is found.
pub const CHARSET_VARIABLES: &[&str] = &["LANG", "LC_ALL", "LC_CTYPE", "LOCPATH"];

/// Whether a locale value (`en_US.UTF-8`, `C.utf8`, `C`, `POSIX`, empty) makes the shell read
/// text as proctor reads it. A locale named without a character set (`zh_TW`) takes the
/// locale's default, which may be BIG5, so it does not; nor does a path.
pub fn reads_as_proctor(value: &str) -> bool {
    if matches!(value, "" | "C" | "POSIX") {
        return true;
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'@'))
    {
        return false;
    }
    let Some((_, rest)) = value.split_once('.') else {
        return false;
    };
    let codeset = rest.split('@').next().unwrap_or(rest);
    let plain: String = codeset
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    plain == "utf8"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_and_c_only() {
        for ok in [
            "",
            "C",
            "POSIX",
            "C.UTF-8",
            "C.utf8",
            "en_US.UTF-8",
            "de_DE.utf8@euro",
            "ja_JP.UTF8",
        ] {
            assert!(reads_as_proctor(ok), "{ok}");
        }
        for no in [
            "zh_TW.BIG5",
            "zh_TW",
            "zh_CN.GBK",
            "zh_CN.GB18030",
            "ja_JP.SJIS",
            "zh_HK.BIG5-HKSCS",
            "/tmp/x.utf8",
            "x.utf8 ",
            "en_US.UTF-8/../x",
            "c",
        ] {
            assert!(!reads_as_proctor(no), "{no}");
        }
    }
}
