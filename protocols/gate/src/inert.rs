//! Agent-controlled text made inert for a person's terminal or a log line.
//!
//! Statement text, command lines, table names, reasoning, user names of refused connections:
//! an agent (or any peer) chooses every byte of them, and a terminal obeys some of those bytes.
//! `ESC [ 2K` erases a line, OSC 52 sets the clipboard, a newline forges a log line, U+202E
//! reverses what follows, U+200B hides a word boundary. Here every such character is *shown*
//! as a visible token instead: C0 controls as `\n`, `\t`, `\r` or `\xNN`, DEL as `\x7f`,
//! everything else as `<U+XXXX>`. Nothing is dropped and nothing is truncated, so what a
//! person reads is exactly what the agent sent, made visible.
//!
//! A caller may keep newline and tab as layout ([`Keep::Lines`]) for multi-line text such as
//! a statement or a script; a one-line field ([`Keep::Nothing`]) keeps no control at all.
//! Note the tokens are not an unambiguous encoding (an agent can type a literal `\x1b`):
//! they are for people; machine-readable outputs stay JSON.
//!
//! Three more things look like something they are not, so they are shown too:
//! - spaces other than U+0020 (no-break, en, em, thin, ideographic...): a person reads a word
//!   break where PostgreSQL reads a letter of one identifier, so `x<U+2002>WHERE<U+2002>id IS
//!   NULL` is an alias and the DELETE has no WHERE;
//! - letters of a script with Latin look-alikes (Cyrillic, Greek, Armenian, Cherokee, IPA...)
//!   inside a word that also has ASCII letters (`<U+0430>ccounts`, `<U+051D>here`), and
//!   fullwidth and mathematical letters anywhere: a word in one such script alone (Russian
//!   text) is left as it is;
//! - combining marks that can hide or change what they sit on: overlays and enclosing marks
//!   (a struck-through `DELETE`), marks on an ASCII character that is not a letter or digit
//!   (`=` plus U+0338 reads as a not-equal sign), and any mark past the second on one
//!   character (stacks that spill over the lines around them).

use std::borrow::Cow;
use std::fmt::{self, Write};

use unicode_normalization::char::is_combining_mark;

/// Which layout characters a caller keeps as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// A one-line field: every control character is shown, newline and tab included.
    Nothing,
    /// Multi-line text (a statement, a script, reasoning): `\n` and `\t` stay layout. `\r`
    /// is still shown, since it returns to the line start and lets text overwrite text.
    Lines,
}

/// Whether `c` is ever shown as a token: every character a terminal obeys, or that is
/// invisible or reorders text, except newline and tab when the caller keeps them.
pub fn needs_escape(c: char, keep: Keep) -> bool {
    if keep == Keep::Lines && (c == '\n' || c == '\t') {
        return false;
    }
    is_hazard(c)
}

/// Every character shown as a token under [`Keep::Nothing`].
fn is_hazard(c: char) -> bool {
    matches!(
        c as u32,
        // C0 controls (ESC included) and DEL; C1 controls (8-bit CSI, OSC, DCS...).
        0x00..=0x1f | 0x7f | 0x80..=0x9f
        // Soft hyphen, combining grapheme joiner, Arabic letter mark, Mongolian vowel
        // separator: invisible.
        | 0x00ad | 0x034f | 0x061c | 0x180e
        // Hangul fillers: blank glyphs that can stand in for a name or hide a space.
        | 0x115f | 0x1160 | 0x3164 | 0xffa0
        // Khmer inherent vowels: invisible.
        | 0x17b4 | 0x17b5
        // Zero-width space, non-joiner, joiner; left-to-right and right-to-left marks.
        | 0x200b..=0x200f
        // Line and paragraph separators; bidirectional embeddings and overrides.
        | 0x2028..=0x202e
        // Word joiner, invisible operators, bidirectional isolates, deprecated formats.
        | 0x2060..=0x206f
        // Variation selectors: invisible, and can carry hidden data.
        | 0xfe00..=0xfe0f
        // Zero-width no-break space (byte order mark).
        | 0xfeff
        // Interlinear annotation controls.
        | 0xfff9..=0xfffb
        // Shorthand format controls; musical invisible formatting.
        | 0x1bca0..=0x1bca3 | 0x1d173..=0x1d17a
        // Tag characters (invisible ASCII look-alikes) and variation selectors supplement.
        | 0xe0000..=0xe007f | 0xe0100..=0xe01ef
        // Spaces that are not U+0020: no-break, Ogham, en/em/thin/hair..., narrow no-break,
        // medium mathematical, ideographic. A reader sees a word break; PostgreSQL and the
        // shell see a letter.
        | 0x00a0 | 0x1680 | 0x2000..=0x200a | 0x202f | 0x205f | 0x3000
        // Latin letters that pass for punctuation (dental and lateral clicks: `|`, `!`).
        | 0x01c0..=0x01c3
        // Fullwidth ASCII and mathematical letters and digits: styled copies of ASCII.
        | 0xff01..=0xff5e | 0x1d400..=0x1d7ff
    )
}

/// Letters of scripts with Latin look-alikes: shown when they share a word with ASCII letters.
fn lookalike_script(c: char) -> bool {
    matches!(
        c as u32,
        // Dotless i, dotless j; IPA; Greek; Cyrillic; Armenian.
        0x0131 | 0x0237 | 0x0250..=0x02af | 0x0370..=0x03ff | 0x0400..=0x052f | 0x0530..=0x058f
        // Cherokee; Cyrillic extended C; phonetic extensions (small capitals); Greek extended.
        | 0x13a0..=0x13ff | 0x1c80..=0x1c8f | 0x1d00..=0x1dbf | 0x1f00..=0x1fff
        // Letterlike symbols; Coptic; Cyrillic extended A and B; Lisu; Cherokee supplement.
        | 0x2100..=0x214f | 0x2c80..=0x2cff | 0x2de0..=0x2dff | 0xa640..=0xa69f
        | 0xa4d0..=0xa4ff | 0xab70..=0xabbf
    ) && c.is_alphabetic()
}

/// Overlays (strike-through, slash) and enclosing marks: they cover what they sit on.
fn covering_mark(c: char) -> bool {
    matches!(
        c as u32,
        0x0334..=0x0338 | 0x0488 | 0x0489 | 0x20d2..=0x20d3 | 0x20d8..=0x20da | 0x20dd..=0x20e0
            | 0x20e2..=0x20e6 | 0x20ea | 0x20eb | 0xa670..=0xa672
    )
}

/// Part of a word for the look-alike check: what PostgreSQL and shells read as one name.
fn word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$' || is_combining_mark(c)
}

/// Calls `token(index, char)` for every character of `text` that is shown as a token, in
/// order: the per-character hazards, look-alike letters in mixed words, and combining marks
/// that hide or change what they sit on. One linear pass (plus one look at each word).
fn for_each_token(
    text: &str,
    keep: Keep,
    mut token: impl FnMut(usize, char) -> fmt::Result,
) -> fmt::Result {
    // The character the next combining mark sits on, whether it was shown as a token, and
    // how many marks it already carries.
    let mut base: Option<char> = None;
    let mut base_shown = true;
    let mut marks = 0usize;
    // End of the current word, and whether it mixes ASCII letters with look-alike letters.
    let mut word_end = 0usize;
    let mut mixed = false;
    for (i, c) in text.char_indices() {
        if i >= word_end && word_char(c) {
            let rest = &text[i..];
            let len = rest
                .char_indices()
                .find(|&(_, c)| !word_char(c))
                .map_or(rest.len(), |(j, _)| j);
            word_end = i + len;
            let word = &rest[..len];
            mixed = !word.is_ascii()
                && word.chars().any(|c| c.is_ascii_alphabetic())
                && word.chars().any(lookalike_script);
        }
        let in_word = i < word_end;
        let shown = if is_combining_mark(c) {
            marks += 1;
            let on_symbol = base.is_none_or(|b| b.is_ascii() && !b.is_ascii_alphanumeric());
            base_shown || on_symbol || covering_mark(c) || marks > 2 || needs_escape(c, keep)
        } else {
            let shown = needs_escape(c, keep) || (in_word && mixed && lookalike_script(c));
            base = Some(c);
            base_shown = shown;
            marks = 0;
            shown
        };
        if shown {
            token(i, c)?;
        }
    }
    Ok(())
}

/// Writes the visible token for a character that [`needs_escape`].
fn write_token(out: &mut impl Write, c: char) -> fmt::Result {
    match c {
        '\n' => out.write_str("\\n"),
        '\t' => out.write_str("\\t"),
        '\r' => out.write_str("\\r"),
        '\0'..='\x1f' | '\x7f' => write!(out, "\\x{:02x}", c as u32),
        _ => write!(out, "<U+{:04X}>", c as u32),
    }
}

/// Writes `text` inert to `out`.
pub fn write_inert(out: &mut impl Write, text: &str, keep: Keep) -> fmt::Result {
    let mut last = 0;
    for_each_token(text, keep, |i, c| {
        out.write_str(&text[last..i])?;
        write_token(out, c)?;
        last = i + c.len_utf8();
        Ok(())
    })?;
    out.write_str(&text[last..])
}

/// `text` made inert, borrowed when it needs no change (the common case).
pub fn inert(text: &str, keep: Keep) -> Cow<'_, str> {
    // Stops at the first token: `Err` is only the early exit here.
    if for_each_token(text, keep, |_, _| Err(fmt::Error)).is_ok() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    // Writing to a String cannot fail.
    let _ = write_inert(&mut out, text, keep);
    Cow::Owned(out)
}

/// A one-line field made inert: no control character survives, newline included.
pub fn line(text: &str) -> Cow<'_, str> {
    inert(text, Keep::Nothing)
}

/// Multi-line text made inert: newline and tab stay layout, nothing else does.
pub fn text(text: &str) -> Cow<'_, str> {
    inert(text, Keep::Lines)
}

/// Displays a one-line field inert without allocating: for `tracing` fields
/// (`agent = %Line(&name)`) and `format!`.
#[derive(Debug, Clone, Copy)]
pub struct Line<'a>(pub &'a str);

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_inert(f, self.0, Keep::Nothing)
    }
}

/// Displays multi-line text inert (newline and tab kept) without allocating.
#[derive(Debug, Clone, Copy)]
pub struct Text<'a>(pub &'a str);

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_inert(f, self.0, Keep::Lines)
    }
}

/// Displays anything that is `Display` (an error quoting agent text, a peer address) as one
/// inert line.
pub struct LineOf<T>(pub T);

impl<T: fmt::Display> fmt::Display for LineOf<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Escaping<'a, 'b>(&'a mut fmt::Formatter<'b>);
        impl Write for Escaping<'_, '_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                write_inert(self.0, s, Keep::Nothing)
            }
        }
        write!(Escaping(f), "{}", self.0)
    }
}

#[cfg(test)]
#[path = "inert_tests.rs"]
mod tests;
