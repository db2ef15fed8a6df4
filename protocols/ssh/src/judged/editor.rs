//! The line editor of a judged shell: one physical line, a cursor, and the history of lines
//! proctor itself judged. It only edits and draws; what a finished line means is the
//! discipline's business.
//!
//! Drawing uses relative cursor moves only (proctor does not know the width of the target's
//! prompt): keys typed at the end of the line are echoed as themselves, anything else redraws
//! the line from the cursor's column. Characters that could act on the agent's terminal, or
//! hide from a reader (controls, TAB, bidirectional overrides, zero-width characters), are
//! drawn as visible tokens such as `\t` or `<U+202E>`, never obeyed.

use std::borrow::Cow;

use super::keys::Key;

/// What an edit asks of the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Write these bytes to the agent's terminal.
    Echo(Vec<u8>),
    /// The key was not followed: ring the bell.
    Bell,
    /// Nothing to do.
    None,
}

/// Lines kept for Up/Down.
const MAX_HISTORY: usize = 500;

#[derive(Debug, Clone)]
pub struct Editor {
    line: Vec<char>,
    cursor: usize,
    /// Most bytes one line may hold (the target pty's canonical line is bounded).
    max_bytes: usize,
    history: Vec<String>,
    /// Position while browsing the history, and the line being typed before it.
    browsing: Option<(usize, Vec<char>)>,
}

fn shown(c: char) -> Cow<'static, str> {
    let mut buf = [0u8; 4];
    match proctor_gate::inert::line(c.encode_utf8(&mut buf)) {
        Cow::Borrowed(s) => Cow::Owned(s.to_string()),
        Cow::Owned(s) => Cow::Owned(s),
    }
}

fn width(chars: &[char]) -> usize {
    chars.iter().map(|&c| shown(c).chars().count()).sum()
}

fn left(n: usize, out: &mut Vec<u8>) {
    if n > 0 {
        out.extend_from_slice(format!("\x1b[{n}D").as_bytes());
    }
}

impl Editor {
    pub fn new(max_bytes: usize) -> Editor {
        Editor {
            line: Vec::new(),
            cursor: 0,
            max_bytes,
            history: Vec::new(),
            browsing: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.line.is_empty()
    }

    pub fn text(&self) -> String {
        self.line.iter().collect()
    }

    fn bytes(&self) -> usize {
        self.line.iter().map(|c| c.len_utf8()).sum()
    }

    /// Takes the line (for Enter or a paste break) and starts an empty one.
    pub fn take(&mut self) -> String {
        self.browsing = None;
        self.cursor = 0;
        std::mem::take(&mut self.line).into_iter().collect()
    }

    /// Remembers a judged line for Up/Down.
    pub fn remember(&mut self, line: &str) {
        if line.trim().is_empty() || self.history.last().is_some_and(|l| l == line) {
            return;
        }
        if self.history.len() == MAX_HISTORY {
            self.history.remove(0);
        }
        self.history.push(line.to_string());
    }

    /// Applies one key. Enter, Interrupt, EndOfFile and paste breaks are the discipline's.
    pub fn apply(&mut self, key: Key) -> Edit {
        match key {
            Key::Char(c) => self.insert(c),
            Key::Backspace if self.cursor > 0 => {
                let from = self.cursor;
                self.line.remove(self.cursor - 1);
                self.cursor -= 1;
                self.redraw(from)
            }
            Key::Delete | Key::EndOfFile if self.cursor < self.line.len() => {
                self.line.remove(self.cursor);
                self.redraw(self.cursor)
            }
            Key::Left if self.cursor > 0 => {
                let from = self.cursor;
                self.cursor -= 1;
                self.redraw(from)
            }
            Key::Right if self.cursor < self.line.len() => {
                let from = self.cursor;
                self.cursor += 1;
                self.redraw(from)
            }
            Key::Home => {
                let from = self.cursor;
                self.cursor = 0;
                self.redraw(from)
            }
            Key::End => {
                let from = self.cursor;
                self.cursor = self.line.len();
                self.redraw(from)
            }
            Key::KillStart => {
                let from = self.cursor;
                self.line.drain(..self.cursor);
                self.cursor = 0;
                self.redraw(from)
            }
            Key::KillEnd => {
                self.line.truncate(self.cursor);
                self.redraw(self.cursor)
            }
            Key::KillWord if self.cursor > 0 => {
                let from = self.cursor;
                let mut start = self.cursor;
                while start > 0 && self.line[start - 1].is_whitespace() {
                    start -= 1;
                }
                while start > 0 && !self.line[start - 1].is_whitespace() {
                    start -= 1;
                }
                self.line.drain(start..self.cursor);
                self.cursor = start;
                self.redraw(from)
            }
            Key::Up => self.recall(true),
            Key::Down => self.recall(false),
            Key::PasteMark => Edit::None,
            _ => Edit::Bell,
        }
    }

    fn insert(&mut self, c: char) -> Edit {
        if self.bytes() + c.len_utf8() > self.max_bytes {
            return Edit::Bell;
        }
        self.browsing = None;
        self.line.insert(self.cursor, c);
        self.cursor += 1;
        if self.cursor == self.line.len() {
            // The common case, and the one whose latency matters: echo the key itself.
            return Edit::Echo(shown(c).into_owned().into_bytes());
        }
        self.redraw(self.cursor - 1)
    }

    fn recall(&mut self, older: bool) -> Edit {
        let (pos, typed) = match self.browsing.take() {
            Some(b) => b,
            None => (self.history.len(), self.line.clone()),
        };
        let next = if older {
            match pos.checked_sub(1) {
                Some(p) => p,
                None => {
                    self.browsing = Some((pos, typed));
                    return Edit::Bell;
                }
            }
        } else if pos < self.history.len() {
            pos + 1
        } else {
            self.browsing = None;
            return Edit::Bell;
        };
        let old_cols = self.cursor_cols();
        self.line = match self.history.get(next) {
            Some(l) => l.chars().collect(),
            None => typed.clone(),
        };
        self.cursor = self.line.len();
        if next < self.history.len() {
            self.browsing = Some((next, typed));
        }
        Edit::Echo(self.draw_from_start(old_cols))
    }

    /// Redraws from the column of character `from` (where the terminal's cursor stands) to
    /// the end of the line, then puts the cursor where it belongs.
    fn redraw(&self, from: usize) -> Edit {
        let from = from.min(self.line.len());
        let start = from.min(self.cursor);
        let mut out = Vec::new();
        left(width(&self.line[start..from]), &mut out);
        for &c in &self.line[start..] {
            out.extend_from_slice(shown(c).as_bytes());
        }
        out.extend_from_slice(b"\x1b[K");
        left(width(&self.line[self.cursor..]), &mut out);
        Edit::Echo(out)
    }

    /// Draws the whole line; the terminal's cursor stands `old_cols` columns in.
    fn draw_from_start(&self, old_cols: usize) -> Vec<u8> {
        let mut out = Vec::new();
        left(old_cols, &mut out);
        for &c in &self.line {
            out.extend_from_slice(shown(c).as_bytes());
        }
        out.extend_from_slice(b"\x1b[K");
        left(width(&self.line[self.cursor..]), &mut out);
        out
    }

    /// Columns from the start of the line to the cursor.
    pub fn cursor_cols(&self) -> usize {
        width(&self.line[..self.cursor])
    }
}

#[cfg(test)]
mod tests {
    use super::super::keys::decode;
    use super::*;

    fn typed(e: &mut Editor, bytes: &[u8]) -> Vec<Edit> {
        decode(bytes).into_iter().map(|k| e.apply(k)).collect()
    }

    #[test]
    fn editing_keys_change_the_line() {
        let mut e = Editor::new(4000);
        typed(&mut e, b"echo hellp\x7fo");
        assert_eq!(e.text(), "echo hello");
        typed(&mut e, b"\x01X\x05Y");
        assert_eq!(e.text(), "Xecho helloY");
        typed(&mut e, b"\x17");
        assert_eq!(e.text(), "Xecho ");
        typed(&mut e, b"\x1b[D\x1b[D\x0b");
        assert_eq!(e.text(), "Xech");
        typed(&mut e, b"\x1b[D\x15");
        assert_eq!(e.text(), "h");
        typed(&mut e, b"\x1b[H\x1b[3~");
        assert_eq!(e.text(), "");
    }

    #[test]
    fn echo_at_the_end_is_the_key_and_controls_are_drawn_visibly() {
        let mut e = Editor::new(4000);
        assert_eq!(e.apply(Key::Char('a')), Edit::Echo(b"a".to_vec()));
        assert_eq!(e.apply(Key::Char('\t')), Edit::Echo(b"\\t".to_vec()));
        assert_eq!(
            e.apply(Key::Char('\u{202e}')),
            Edit::Echo(b"<U+202E>".to_vec())
        );
        assert_eq!(e.text(), "a\t\u{202e}");
        assert_eq!(e.cursor_cols(), 1 + 2 + 8);
        assert_eq!(e.apply(Key::Unknown), Edit::Bell);
    }

    #[test]
    fn history_holds_remembered_lines_only() {
        let mut e = Editor::new(4000);
        e.remember("ls");
        e.remember("pwd");
        typed(&mut e, b"dra");
        typed(&mut e, b"\x1b[A");
        assert_eq!(e.text(), "pwd");
        typed(&mut e, b"\x1b[A");
        assert_eq!(e.text(), "ls");
        assert_eq!(e.apply(Key::Up), Edit::Bell);
        typed(&mut e, b"\x1b[B\x1b[B");
        assert_eq!(e.text(), "dra");
        assert_eq!(e.take(), "dra");
    }

    #[test]
    fn a_line_is_bounded() {
        let mut e = Editor::new(3);
        typed(&mut e, b"abc");
        assert_eq!(e.apply(Key::Char('d')), Edit::Bell);
        assert_eq!(e.text(), "abc");
    }
}
