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

use std::borrow::Cow;
use std::fmt::{self, Write};

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
    )
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
    let mut rest = text;
    while let Some((i, c)) = rest.char_indices().find(|&(_, c)| needs_escape(c, keep)) {
        out.write_str(&rest[..i])?;
        write_token(out, c)?;
        rest = &rest[i + c.len_utf8()..];
    }
    out.write_str(rest)
}

/// `text` made inert, borrowed when it needs no change (the common case).
pub fn inert(text: &str, keep: Keep) -> Cow<'_, str> {
    if !text.chars().any(|c| needs_escape(c, keep)) {
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
