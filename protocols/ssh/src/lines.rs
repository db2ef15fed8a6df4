//! Rebuilds the command line an agent submits in an interactive shell.
//!
//! Two views are kept. The input model replays the agent's keystrokes through a small
//! readline-like editor (insert, backspace, Ctrl-U/W/K, cursor movement, bracketed paste);
//! it needs no echo, so a line typed and submitted in one burst is judged at once. Keys the
//! model cannot follow (history recall, completion, reverse search, vi mode...) mark the line
//! "dirty": the line is then read from a terminal emulator fed with the target's output,
//! once the echo has settled.

use std::time::Instant;

/// Longest line the input model keeps; beyond it the line is judged from the screen.
const MAX_LINE_CHARS: usize = 64 * 1024;

/// What one input byte did to the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing to judge yet.
    Continue,
    /// This byte submits the line (Enter, or Ctrl-O: readline's operate-and-get-next runs the
    /// line too).
    Submit,
    /// This byte starts an editing command proctor cannot follow (Ctrl-X prefix: edit the
    /// line in an editor and run it, re-read the key bindings...): it is not forwarded.
    Drop,
}

/// Counts rows scrolled off the (main) screen, so a line's start row can be followed.
#[derive(Default)]
struct ScrollCounter {
    scrolled: u64,
}

impl vt100::Callbacks for ScrollCounter {
    fn on_scroll(&mut self, _contents: vt100::capture::RowContents<'_>, alternate_screen: bool) {
        if !alternate_screen {
            self.scrolled += 1;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    None,
    /// Saw ESC.
    Start,
    /// Inside `ESC [`, collecting parameters.
    Csi,
    /// Saw `ESC O`.
    Ss3,
}

/// The keystroke model of the line being edited.
struct Editor {
    raw: bool,
    buf: Vec<char>,
    cursor: usize,
    dirty: bool,
    paste: bool,
    esc: Esc,
    csi: Vec<u8>,
    utf8: Vec<u8>,
    started: bool,
    quoted_insert: bool,
    /// The line was submitted with Ctrl-O: readline puts the next history line on the new
    /// prompt, so that line is read from the screen, not from keystrokes.
    prefilled_next: bool,
}

impl Editor {
    fn new(raw: bool) -> Self {
        Editor {
            raw,
            buf: Vec::new(),
            cursor: 0,
            dirty: false,
            paste: false,
            esc: Esc::None,
            csi: Vec::new(),
            utf8: Vec::new(),
            started: false,
            quoted_insert: false,
            prefilled_next: false,
        }
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.cursor = 0;
        self.dirty = false;
        self.paste = false;
        self.esc = Esc::None;
        self.csi.clear();
        self.utf8.clear();
        self.started = false;
        self.quoted_insert = false;
        // After Ctrl-O the next line starts with text proctor did not see typed.
        self.dirty = std::mem::take(&mut self.prefilled_next);
    }

    fn insert(&mut self, c: char) {
        if self.buf.len() >= MAX_LINE_CHARS {
            self.dirty = true;
            return;
        }
        self.buf.insert(self.cursor, c);
        self.cursor += 1;
    }

    fn text(&self) -> String {
        let mut text: String = self.buf.iter().collect();
        // Bytes of a character not yet complete are part of what the shell reads if the line
        // ends here.
        text.push_str(&String::from_utf8_lossy(&self.utf8));
        text
    }

    /// Feeds one byte; tells whether it submits the line.
    fn byte(&mut self, b: u8) -> Step {
        self.started = true;
        if b < 0x80 && !self.utf8.is_empty() {
            // An ASCII byte cannot continue a multi-byte character: what was pending is no
            // character, and it is part of the line (the shell reads it), so it is kept as
            // U+FFFD rather than dropped. Dropped, `\xe8\n` read as a blank line and went to
            // the target unjudged (found by the fuzz target `ssh_upstream_core`).
            let bytes = std::mem::take(&mut self.utf8);
            for c in String::from_utf8_lossy(&bytes).chars() {
                self.insert(c);
            }
        }
        if self.raw {
            // Without a terminal the program reads bytes as they are: no line editing.
            return match b {
                b'\n' => Step::Submit,
                b'\r' => Step::Continue,
                _ => {
                    self.push_utf8(b);
                    Step::Continue
                }
            };
        }
        if self.quoted_insert {
            self.quoted_insert = false;
            self.insert(char::from(b));
            return Step::Continue;
        }
        match self.esc {
            Esc::Start => {
                self.esc = match b {
                    b'[' => {
                        self.csi.clear();
                        Esc::Csi
                    }
                    b'O' => Esc::Ss3,
                    _ => {
                        // Meta keys (word moves, yank-last-arg, vi mode): not modelled.
                        self.dirty = true;
                        Esc::None
                    }
                };
                return Step::Continue;
            }
            Esc::Csi => {
                if (0x40..=0x7e).contains(&b) {
                    self.esc = Esc::None;
                    self.csi_final(b);
                } else if self.csi.len() < 32 {
                    self.csi.push(b);
                } else {
                    self.esc = Esc::None;
                    self.dirty = true;
                }
                return Step::Continue;
            }
            Esc::Ss3 => {
                self.esc = Esc::None;
                self.cursor_key(b);
                return Step::Continue;
            }
            Esc::None => {}
        }
        if self.paste {
            // Inside a bracketed paste everything is text, newlines included.
            match b {
                0x1b => self.esc = Esc::Start,
                b'\r' | b'\n' => self.insert('\n'),
                _ => self.push_utf8(b),
            }
            return Step::Continue;
        }
        match b {
            b'\r' | b'\n' => return Step::Submit,
            0x0f => {
                self.prefilled_next = true;
                return Step::Submit;
            }
            0x18 => return Step::Drop,
            0x1b => self.esc = Esc::Start,
            0x01 => self.cursor = 0,
            0x05 => self.cursor = self.buf.len(),
            0x02 => self.cursor = self.cursor.saturating_sub(1),
            0x06 => self.cursor = (self.cursor + 1).min(self.buf.len()),
            0x08 | 0x7f => {
                if self.cursor > 0 {
                    self.cursor -= 1;
                    self.buf.remove(self.cursor);
                }
            }
            0x04 => {
                if self.cursor < self.buf.len() {
                    self.buf.remove(self.cursor);
                }
            }
            0x15 => {
                self.buf.drain(..self.cursor);
                self.cursor = 0;
            }
            0x0b => self.buf.truncate(self.cursor),
            0x17 => {
                // unix-word-rubout: back over blanks, then over non-blanks.
                let mut start = self.cursor;
                while start > 0 && self.buf[start - 1].is_whitespace() {
                    start -= 1;
                }
                while start > 0 && !self.buf[start - 1].is_whitespace() {
                    start -= 1;
                }
                self.buf.drain(start..self.cursor);
                self.cursor = start;
            }
            0x03 => {
                // Ctrl-C abandons the line; nothing is submitted.
                self.prefilled_next = false;
                self.reset();
            }
            0x0c => {}
            0x16 => self.quoted_insert = true,
            0x00..=0x1f => self.dirty = true,
            _ => self.push_utf8(b),
        }
        Step::Continue
    }

    fn push_utf8(&mut self, b: u8) {
        self.utf8.push(b);
        match std::str::from_utf8(&self.utf8) {
            Ok(s) => {
                let chars: Vec<char> = s.chars().collect();
                self.utf8.clear();
                for c in chars {
                    self.insert(c);
                }
            }
            Err(e) if e.error_len().is_none() && self.utf8.len() < 4 => {}
            Err(_) => {
                let bytes = std::mem::take(&mut self.utf8);
                for c in String::from_utf8_lossy(&bytes).chars() {
                    self.insert(c);
                }
            }
        }
    }

    fn cursor_key(&mut self, b: u8) {
        match b {
            b'D' => self.cursor = self.cursor.saturating_sub(1),
            b'C' => self.cursor = (self.cursor + 1).min(self.buf.len()),
            b'H' => self.cursor = 0,
            b'F' => self.cursor = self.buf.len(),
            _ => self.dirty = true,
        }
    }

    fn csi_final(&mut self, b: u8) {
        let params = std::mem::take(&mut self.csi);
        if b == b'~' {
            match params.as_slice() {
                b"200" => self.paste = true,
                b"201" => self.paste = false,
                b"3" => {
                    if self.cursor < self.buf.len() {
                        self.buf.remove(self.cursor);
                    }
                }
                b"1" | b"7" => self.cursor = 0,
                b"4" | b"8" => self.cursor = self.buf.len(),
                _ => self.dirty = true,
            }
        } else if params.is_empty() {
            self.cursor_key(b);
        } else {
            self.dirty = true;
        }
    }
}

/// The screen as the agent's terminal shows it.
struct Screen {
    parser: vt100::Parser<ScrollCounter>,
    /// Where the line being edited started: absolute row (scrolls counted) and column.
    start: Option<(u64, u16)>,
    start_prefix: String,
}

impl Screen {
    fn new(cols: u32, rows: u32) -> Self {
        let (r, c) = dims(cols, rows);
        Screen {
            parser: vt100::Parser::new_with_callbacks(r, c, 0, ScrollCounter::default()),
            start: None,
            start_prefix: String::new(),
        }
    }

    fn mark_start(&mut self) {
        let screen = self.parser.screen();
        let (row, col) = screen.cursor_position();
        let abs = self.parser.callbacks().scrolled + u64::from(row);
        self.start = Some((abs, col));
        self.start_prefix = screen
            .rows(0, col)
            .nth(usize::from(row))
            .unwrap_or_default();
    }

    /// The logical line under the cursor, without the prompt.
    fn line(&self, last_prompt: Option<&str>) -> String {
        let screen = self.parser.screen();
        let (row, _) = screen.cursor_position();
        let (_, cols) = screen.size();
        let cols = cols.get();
        let mut first = row;
        while first > 0 && screen.row_wrapped(first - 1) {
            first -= 1;
        }
        let mut last = row;
        while screen.row_wrapped(last) && last + 1 < screen.size().0.get() {
            last += 1;
        }
        let rows: Vec<String> = screen.rows(0, cols).collect();
        let mut text = String::new();
        for r in first..=last {
            if let Some(s) = rows.get(usize::from(r)) {
                text.push_str(s);
            }
        }
        // The start column only applies if the line still begins on the row it started on.
        if let Some((abs, col)) = self.start {
            let first_abs = self.parser.callbacks().scrolled + u64::from(first);
            if abs == first_abs
                && !self.start_prefix.is_empty()
                && text.starts_with(&self.start_prefix)
            {
                let skip = usize::from(col).min(text.chars().count());
                return text
                    .chars()
                    .skip(skip)
                    .collect::<String>()
                    .trim_end()
                    .to_string();
            }
        }
        if let Some(p) = last_prompt
            && !p.is_empty()
            && let Some(rest) = text.strip_prefix(p)
        {
            return rest.trim_end().to_string();
        }
        strip_prompt(&text).trim_end().to_string()
    }
}

/// Best guess at a prompt's end when nothing better is known: after the first `$ `, `# ` or
/// `> ` near the start of the row.
fn strip_prompt(text: &str) -> &str {
    let head: usize = text.char_indices().nth(200).map_or(text.len(), |(i, _)| i);
    let mut best: Option<usize> = None;
    for pat in ["$ ", "# ", "> "] {
        if let Some(i) = text[..head].find(pat) {
            best = Some(best.map_or(i, |b| b.min(i)));
        }
    }
    match best {
        Some(i) => &text[i + 2..],
        None => text,
    }
}

/// Largest emulated screen. The emulator allocates every cell up front (tens of bytes each), and
/// the size comes from the agent: 1000x1000 would cost ~40 MB per session. 600 columns by 300
/// rows covers a 4K display at a small font; a larger terminal only wraps differently in the
/// emulator, and the keystroke model still rebuilds its lines.
const MAX_SCREEN_COLS: u32 = 600;
const MAX_SCREEN_ROWS: u32 = 300;

fn dims(cols: u32, rows: u32) -> (std::num::NonZeroU16, std::num::NonZeroU16) {
    let clamp = |v: u32, default: u16, max: u32| {
        let v = if v == 0 { default } else { v.min(max) as u16 };
        std::num::NonZeroU16::new(v).unwrap_or(std::num::NonZeroU16::MIN)
    };
    (
        clamp(rows, 24, MAX_SCREEN_ROWS),
        clamp(cols, 80, MAX_SCREEN_COLS),
    )
}

/// Command-line tracking for one shell channel.
pub(crate) struct LineTracker {
    editor: Editor,
    screen: Option<Screen>,
    last_prompt: Option<String>,
    last_output: Instant,
}

impl LineTracker {
    /// `pty` is the terminal size when the channel has one; without one lines end at LF and
    /// nothing is echoed.
    pub(crate) fn new(pty: Option<(u32, u32)>) -> Self {
        LineTracker {
            editor: Editor::new(pty.is_none()),
            screen: pty.map(|(c, r)| Screen::new(c, r)),
            last_prompt: None,
            last_output: Instant::now(),
        }
    }

    pub(crate) fn feed_output(&mut self, data: &[u8]) {
        self.last_output = Instant::now();
        if let Some(s) = self.screen.as_mut() {
            s.parser.process(data);
        }
    }

    pub(crate) fn resize(&mut self, cols: u32, rows: u32) {
        if let Some(s) = self.screen.as_mut() {
            let (r, c) = dims(cols, rows);
            s.parser.set_size(r, c);
        }
    }

    /// No terminal: the program reads lines as sent, nothing can be edited or cleared.
    pub(crate) fn is_raw(&self) -> bool {
        self.editor.raw
    }

    /// Whether anything was typed since the last submitted line.
    pub(crate) fn has_partial_line(&self) -> bool {
        self.editor.started
    }

    pub(crate) fn last_output(&self) -> Instant {
        self.last_output
    }

    /// Feeds one byte typed by the agent.
    pub(crate) fn input_byte(&mut self, b: u8) -> Step {
        if !self.editor.started
            && let Some(s) = self.screen.as_mut()
        {
            s.mark_start();
        }
        self.editor.byte(b)
    }

    /// Whether the submitted line must be read from the screen (after the echo settles).
    pub(crate) fn needs_screen(&self) -> bool {
        self.editor.dirty && self.screen.is_some()
    }

    /// The submitted line. Call `finish_line` afterwards.
    pub(crate) fn line(&self) -> String {
        if self.needs_screen()
            && let Some(s) = self.screen.as_ref()
        {
            let shown = s.line(self.last_prompt.as_deref());
            // Nothing on the screen (echo off, `stty -echo`) while keys were typed: judge what
            // the keystrokes say rather than an empty line.
            if shown.trim().is_empty() && !self.editor.buf.is_empty() {
                return self.editor.text();
            }
            return shown;
        }
        self.editor.text()
    }

    /// Whether keys were typed for this line at all; a line that reads as empty after typed
    /// keys is still judged (and so recorded with a verdict).
    pub(crate) fn saw_input(&self) -> bool {
        self.editor.dirty || !self.editor.buf.is_empty()
    }

    /// Starts a new line after a submission (or a cleared one).
    pub(crate) fn finish_line(&mut self, line: &str) {
        if !self.editor.dirty
            && let Some(s) = self.screen.as_ref()
        {
            // Learn the prompt: the row's text before the line the agent typed.
            let prefix = s.start_prefix.clone();
            if !prefix.is_empty() && !line.is_empty() {
                self.last_prompt = Some(prefix);
            }
        }
        self.editor.reset();
        if let Some(s) = self.screen.as_mut() {
            s.start = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(t: &mut LineTracker, input: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for &b in input {
            if t.input_byte(b) == Step::Submit {
                let line = t.line();
                t.finish_line(&line);
                out.push(line);
            }
        }
        out
    }

    #[test]
    fn edits_are_replayed() {
        let mut t = LineTracker::new(Some((80, 24)));
        assert_eq!(typed(&mut t, b"lss\x7f -l\r"), vec!["ls -l"]);
        assert_eq!(typed(&mut t, b"rm -rf /\x15echo hi\r"), vec!["echo hi"]);
        assert_eq!(
            typed(&mut t, b"echo one two\x17three\r"),
            vec!["echo one three"]
        );
        assert_eq!(typed(&mut t, b"cho x\x01e\r"), vec!["echo x"]);
        assert_eq!(typed(&mut t, b"echo ab\x1b[D\x1b[Dx\r"), vec!["echo xab"]);
        assert_eq!(typed(&mut t, b"echo abc\x1b[D\x1b[D\x0b\r"), vec!["echo a"]);
        assert_eq!(
            typed(&mut t, b"\x1b[200~echo a\necho b\x1b[201~\r"),
            vec!["echo a\necho b"]
        );
        assert_eq!(typed(&mut t, b"abc\x03ls\r"), vec!["ls"]);
        assert_eq!(typed(&mut t, "echo é\r".as_bytes()), vec!["echo é"]);
    }

    /// Issue 13, item 2: Ctrl-O runs the line (operate-and-get-next) and must be judged like
    /// Enter; the history line it puts on the next prompt is read from the screen; Ctrl-X
    /// commands (edit-and-execute, re-read bindings) are not passed on.
    #[test]
    fn ctrl_o_submits_and_ctrl_x_is_dropped() {
        let mut t = LineTracker::new(Some((80, 24)));
        assert_eq!(typed(&mut t, b"rm -r /victim\x0f"), vec!["rm -r /victim"]);
        assert!(t.needs_screen(), "the next line is prefilled by readline");
        t.finish_line("");
        assert!(!t.needs_screen());
        assert_eq!(t.input_byte(0x18), Step::Drop);
        assert_eq!(t.input_byte(b'a'), Step::Continue);
    }

    #[test]
    fn raw_mode_splits_on_newline() {
        let mut t = LineTracker::new(None);
        assert_eq!(typed(&mut t, b"ls\nuname -a\n"), vec!["ls", "uname -a"]);
    }

    #[test]
    fn history_recall_reads_the_screen() {
        let mut t = LineTracker::new(Some((80, 24)));
        t.feed_output(b"user@host:~$ ");
        assert_eq!(typed(&mut t, b"echo first\r"), vec!["echo first"]);
        t.feed_output(b"echo first\r\nfirst\r\nuser@host:~$ ");
        // Up arrow: the shell redraws the previous line.
        for &b in b"\x1b[A" {
            assert_eq!(t.input_byte(b), Step::Continue);
        }
        t.feed_output(b"echo first");
        assert_eq!(t.input_byte(b'\r'), Step::Submit);
        assert!(t.needs_screen());
        assert_eq!(t.line(), "echo first");
    }

    #[test]
    fn prompt_is_stripped_without_a_start_mark() {
        assert_eq!(strip_prompt("root@web1:/tmp# ls -l"), "ls -l");
        assert_eq!(strip_prompt("plain"), "plain");
    }
}
