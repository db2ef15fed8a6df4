//! The line discipline of a judged shell: keystrokes in, actions out.
//!
//! With a terminal, proctor edits the line (see [`super::editor`]), echoes it, and hands the
//! relay a complete command (one or more physical lines) to judge; only a judged command, the
//! interrupt key and the end-of-file key on an empty line ever reach the target. Without a
//! terminal (`echo cmd | ssh host`), input is read as whole lines, collected until the
//! command is complete, and handed over the same way. The state machine does no I/O.
//!
//! Proctor's own reader (`complete`) says when a command may be complete; bash's parser has
//! the last word: the discipline asks for it ([`Out::Check`]) and reads no further input
//! until [`Discipline::checked`] gives the answer. The stricter of the two wins: a command
//! either calls unfinished stays open.

use std::collections::VecDeque;

use proctor_gate::ShellSyntax;

use super::complete::{Status, status};
use super::editor::{Edit, Editor};
use super::keys::{Decoder, Key};
use super::prompts::{Prompts, Scanned};

/// What the relay must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// Write to the agent's terminal (local echo, continuation prompt).
    Echo(Vec<u8>),
    /// A complete command: judge it, then send it with a newline. Empty: send a bare newline.
    Judge(String),
    /// Proctor's reader takes this command as complete: ask bash's parser, then give the
    /// answer to [`Discipline::checked`]. Nothing more comes out until then.
    Check(String),
    /// A command whose completeness bash could not check (why): judge it as one proctor
    /// cannot read (never allowed outright), then send it like `Judge`.
    JudgeUnread(String, String),
    /// Ring the agent's bell: a key or byte was dropped.
    Bell,
    /// A line was refused before judgement (what it held, why); nothing of it is sent.
    Refused(String, &'static str),
    /// Send the terminal's interrupt character (Ctrl-C): the target's pty signals the program.
    Interrupt,
    /// End of input: Ctrl-D on an empty line (a pty's EOF character), or the channel's EOF.
    Eof,
}

/// Bytes of one physical line. Linux keeps at most 4095 bytes of a canonical pty line and
/// drops the rest, so a longer line would not run as judged.
pub const MAX_LINE_BYTES: usize = 4000;
/// Lines of one command (here-documents, continuations) before it is judged as it stands.
pub const MAX_COMMAND_LINES: usize = 10_000;
/// Bytes of one command before it is judged as it stands (the reader then holds it if it is
/// still open).
pub const MAX_COMMAND_BYTES: usize = 1024 * 1024;

const CONTINUATION_PROMPT: &[u8] = b"> ";

pub struct Discipline {
    /// A terminal: edit and echo. Without one, whole lines are read as they come.
    pty: bool,
    keys: Decoder,
    editor: Editor,
    /// Lines of the command so far, before the one being edited.
    pending: Vec<String>,
    pending_bytes: usize,
    /// Without a terminal: the bytes of the line not yet ended.
    raw: Vec<u8>,
    /// Input not yet acted on: what arrived while a check was out (at most the rest of one
    /// `feed`: the relay reads no more input until it has answered).
    keys_in: VecDeque<Key>,
    bytes_in: VecDeque<u8>,
    /// A check is out for the pending command; `Some(true)` when it was a single typed line
    /// (remembered in the history once sent).
    checking: Option<bool>,
    /// The channel's EOF came while a check was out.
    ending: bool,
    eof: bool,
    /// On a terminal: the target's prompts, read for its word on unfinished commands.
    prompts: Option<Prompts>,
}

impl Discipline {
    pub fn new(pty: bool) -> Discipline {
        Discipline {
            pty,
            keys: Decoder::default(),
            editor: Editor::new(MAX_LINE_BYTES),
            pending: Vec::new(),
            pending_bytes: 0,
            raw: Vec::new(),
            keys_in: VecDeque::new(),
            bytes_in: VecDeque::new(),
            checking: None,
            ending: false,
            eof: false,
            prompts: None,
        }
    }

    /// Reads the target's prompts, marked as `prompts` says (see [`Prompts`]).
    pub fn with_prompts(mut self, prompts: Option<Prompts>) -> Discipline {
        self.prompts = prompts;
        self
    }

    /// A judged command was sent to the target.
    pub fn sent(&mut self, text: &str) {
        if let Some(p) = &mut self.prompts {
            p.sent(text);
        }
    }

    /// Output of the target: what the agent is shown, and whether bash waits for more of a
    /// command it was sent whole. `None`: no prompts are read here, show it as it is.
    pub fn target_output(&mut self, data: &[u8]) -> Option<Scanned> {
        self.prompts.as_mut().map(|p| p.scan(data))
    }

    /// The shell's process id when its working directory should be read again (see
    /// [`Prompts::cwd_due`]).
    pub fn cwd_due(&mut self) -> super::prompts::CwdDue {
        self.prompts
            .as_mut()
            .map_or(super::prompts::CwdDue::Unchanged, Prompts::cwd_due)
    }

    /// The target's output ended: what was held back as a possible marker's start was not.
    pub fn flush_output(&mut self) -> Vec<u8> {
        self.prompts
            .as_mut()
            .map(Prompts::flush)
            .unwrap_or_default()
    }

    /// Proctor interrupts the target itself (bash read a sent command as unfinished).
    pub fn interrupting(&mut self) {
        if let Some(p) = &mut self.prompts {
            p.interrupted();
        }
    }

    /// Feeds agent input; returns what to do, in order.
    pub fn feed(&mut self, data: &[u8]) -> Vec<Out> {
        if self.eof || self.ending {
            return Vec::new();
        }
        if self.pty {
            let mut keys = Vec::new();
            for &b in data {
                self.keys.push(b, &mut keys);
            }
            self.keys_in.extend(keys);
        } else {
            self.bytes_in.extend(data);
        }
        let mut out = Vec::new();
        self.run(&mut out);
        out
    }

    /// Acts on queued input until it is used up or a check is out.
    fn run(&mut self, out: &mut Vec<Out>) {
        while self.checking.is_none() && !self.eof {
            if self.pty {
                let Some(k) = self.keys_in.pop_front() else {
                    return;
                };
                self.key(k, out);
            } else {
                let Some(b) = self.bytes_in.pop_front() else {
                    return;
                };
                if b == b'\n' {
                    let line = std::mem::take(&mut self.raw);
                    self.plain_line(line, out);
                } else if self.raw.len() <= MAX_COMMAND_BYTES {
                    self.raw.push(b);
                }
            }
        }
    }

    /// Bash's answer to the last [`Out::Check`]: the command is sent (`Judge`), kept open
    /// for more lines, or judged as unreadable; then queued input is acted on.
    pub fn checked(&mut self, syntax: ShellSyntax) -> Vec<Out> {
        let mut out = Vec::new();
        let Some(single) = self.checking.take() else {
            return out;
        };
        match syntax {
            ShellSyntax::Complete => self.send_pending(single, &mut out),
            ShellSyntax::Unfinished if !self.overflowing() => {
                // Kept open; at the input's end it goes as it stands (bash, reading no more,
                // refuses it).
                if self.pty && !self.ending {
                    out.push(Out::Echo(continuation()));
                }
            }
            ShellSyntax::Unfinished => {
                // Too long: it goes as it stands, which bash reads as unfinished, so it is
                // judged as unreadable.
                let text = self.take_pending();
                if self.pty {
                    out.push(Out::Echo(b"\r\n".to_vec()));
                }
                out.push(Out::JudgeUnread(
                    text,
                    "bash reads the command as unfinished".into(),
                ));
            }
            ShellSyntax::Unchecked(why) => {
                let text = self.take_pending();
                if self.pty {
                    out.push(Out::Echo(b"\r\n".to_vec()));
                }
                out.push(Out::JudgeUnread(text, why));
            }
        }
        if self.ending {
            self.ending = false;
            out.extend(self.end());
        } else {
            self.run(&mut out);
        }
        out
    }

    /// The channel's EOF: what is left is judged as it stands (bash runs a last line without
    /// a newline, and reports an open quote as an error), then EOF follows.
    pub fn end(&mut self) -> Vec<Out> {
        let mut out = Vec::new();
        if self.eof {
            return out;
        }
        if self.checking.is_some() {
            // Finished once the answer is in.
            self.ending = true;
            return out;
        }
        // What arrived with the last input and was not yet read.
        self.run(&mut out);
        if self.checking.is_some() {
            self.ending = true;
            return out;
        }
        if self.pty {
            if !self.editor.is_empty() {
                let line = self.editor.take();
                self.push_pending(line);
            }
        } else if !self.raw.is_empty() {
            let line = std::mem::take(&mut self.raw);
            match clean(&line) {
                Ok(l) => self.push_pending(l),
                Err(why) => out.push(Out::Refused(String::from_utf8_lossy(&line).into(), why)),
            }
        }
        if !self.pending.is_empty() {
            out.push(Out::Judge(self.take_pending()));
        }
        self.eof = true;
        out.push(Out::Eof);
        out
    }

    fn push_pending(&mut self, line: String) {
        self.pending_bytes += line.len() + 1;
        self.pending.push(line);
    }

    fn take_pending(&mut self) -> String {
        self.pending_bytes = 0;
        std::mem::take(&mut self.pending).join("\n")
    }

    /// Too much for one command: judge it as it stands.
    fn overflowing(&self) -> bool {
        self.pending.len() >= MAX_COMMAND_LINES || self.pending_bytes >= MAX_COMMAND_BYTES
    }

    fn plain_line(&mut self, line: Vec<u8>, out: &mut Vec<Out>) {
        match clean(&line) {
            Ok(l) => {
                self.push_pending(l);
                let text = self.pending.join("\n");
                if text.is_empty() {
                    out.push(Out::Judge(self.take_pending()));
                } else if status(&text) == Status::Complete {
                    self.checking = Some(false);
                    out.push(Out::Check(text));
                } else if self.overflowing() {
                    out.push(Out::Judge(self.take_pending()));
                }
            }
            Err(why) => {
                // The command it belonged to is dropped whole: sent in part, it would mean
                // something else.
                let mut held = self.take_pending();
                if !held.is_empty() {
                    held.push('\n');
                }
                held.push_str(&String::from_utf8_lossy(&line));
                out.push(Out::Refused(held, why));
            }
        }
    }

    fn key(&mut self, k: Key, out: &mut Vec<Out>) {
        match k {
            Key::Enter => self.enter(out),
            Key::PasteBreak => {
                // A line break inside a paste is text, not Enter: collect, never submit.
                let line = self.editor.take();
                if line.len() + self.pending_bytes > MAX_COMMAND_BYTES {
                    out.push(Out::Bell);
                    return;
                }
                self.push_pending(line);
                out.push(Out::Echo(continuation()));
            }
            Key::Interrupt => {
                self.editor.take();
                self.take_pending();
                out.push(Out::Echo(b"^C\r\n".to_vec()));
                out.push(Out::Interrupt);
                self.interrupting();
            }
            Key::EndOfFile if self.editor.is_empty() && self.pending.is_empty() => {
                self.eof = true;
                out.push(Out::Eof);
            }
            k => match self.editor.apply(k) {
                Edit::Echo(b) => out.push(Out::Echo(b)),
                Edit::Bell => out.push(Out::Bell),
                Edit::None => {}
            },
        }
    }

    fn enter(&mut self, out: &mut Vec<Out>) {
        let line = self.editor.take();
        let single = self.pending.is_empty();
        self.push_pending(line.clone());
        let text = self.pending.join("\n");
        match status(&text) {
            // An empty line runs nothing: no need to ask.
            Status::Complete if text.is_empty() => self.send_pending(single, out),
            Status::Complete => {
                self.checking = Some(single);
                out.push(Out::Check(text));
            }
            Status::Incomplete if self.overflowing() => self.send_pending(single, out),
            Status::Incomplete => out.push(Out::Echo(continuation())),
        }
    }

    /// The pending command goes to judgement (a single typed line is also remembered).
    fn send_pending(&mut self, single: bool, out: &mut Vec<Out>) {
        let text = self.take_pending();
        if self.pty {
            if single {
                self.editor.remember(&text);
            }
            out.push(Out::Echo(b"\r\n".to_vec()));
        }
        out.push(Out::Judge(text));
    }
}

fn continuation() -> Vec<u8> {
    let mut v = b"\r\n".to_vec();
    v.extend_from_slice(CONTINUATION_PROMPT);
    v
}

/// A line read without a terminal, as text: refused if it holds a control character other
/// than TAB (a CR included), is not UTF-8, or is longer than a line may be.
fn clean(line: &[u8]) -> Result<String, &'static str> {
    if line.len() > MAX_COMMAND_BYTES {
        return Err("the line is too long");
    }
    if line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err("the line holds a control character");
    }
    String::from_utf8(line.to_vec()).map_err(|_| "the line is not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers every check as `answer` says, as the relay does.
    pub(crate) fn drive(
        d: &mut Discipline,
        outs: Vec<Out>,
        answer: &dyn Fn(&str) -> ShellSyntax,
    ) -> Vec<Out> {
        let mut all = Vec::new();
        let mut queue = VecDeque::from(outs);
        while let Some(o) = queue.pop_front() {
            if let Out::Check(t) = &o {
                queue.extend(d.checked(answer(t)));
            }
            all.push(o);
        }
        all
    }

    fn feed(d: &mut Discipline, data: &[u8]) -> Vec<Out> {
        let o = d.feed(data);
        drive(d, o, &|_| ShellSyntax::Complete)
    }

    fn end(d: &mut Discipline) -> Vec<Out> {
        let o = d.end();
        drive(d, o, &|_| ShellSyntax::Complete)
    }

    fn judged(outs: &[Out]) -> Vec<String> {
        outs.iter()
            .filter_map(|o| match o {
                Out::Judge(t) => Some(t.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_typed_line_is_judged_once_complete() {
        let mut d = Discipline::new(true);
        let o = feed(&mut d, b"echo 'a\r");
        assert!(judged(&o).is_empty());
        assert!(o.contains(&Out::Echo(b"\r\n> ".to_vec())));
        let o = feed(&mut d, b"b'\r");
        assert_eq!(judged(&o), vec!["echo 'a\nb'"]);
        let o = feed(&mut d, b"for x in 1; do\recho $x\rdone\r");
        assert_eq!(judged(&o), vec!["for x in 1; do\necho $x\ndone"]);
    }

    #[test]
    fn unknown_keys_ring_and_are_never_sent() {
        let mut d = Discipline::new(true);
        let o = feed(&mut d, b"rm -r /victim\x0f\x18\x05\x12\x16\x1b");
        assert!(judged(&o).is_empty());
        assert_eq!(o.iter().filter(|o| **o == Out::Bell).count(), 4, "{o:?}");
        let o = feed(&mut d, b"x\x15ls\r");
        assert_eq!(judged(&o), vec!["ls"]);
    }

    #[test]
    fn interrupt_and_eof() {
        let mut d = Discipline::new(true);
        let o = feed(&mut d, b"sleep 9\x03");
        assert!(o.contains(&Out::Interrupt) && judged(&o).is_empty());
        let o = feed(&mut d, b"x\x04");
        assert!(!o.contains(&Out::Eof));
        let o = feed(&mut d, b"\x15\x04");
        assert_eq!(o.last(), Some(&Out::Eof));
        assert!(feed(&mut d, b"ls\r").is_empty());
    }

    #[test]
    fn a_paste_is_text_until_enter() {
        let mut d = Discipline::new(true);
        let o = feed(&mut d, b"\x1b[200~echo a\rrm -r /v\x03\x1b[201~");
        assert!(judged(&o).is_empty(), "{o:?}");
        let o = feed(&mut d, b"\r");
        assert_eq!(judged(&o), vec!["echo a\nrm -r /v"]);
    }

    #[test]
    fn without_a_terminal_lines_are_collected_and_controls_refused() {
        let mut d = Discipline::new(false);
        let o = feed(&mut d, b"echo 'a\nb'\nls\nx\x15y\n");
        assert_eq!(judged(&o), vec!["echo 'a\nb'", "ls"]);
        assert!(matches!(o.last(), Some(Out::Refused(t, _)) if t == "x\x15y"));
        let o = feed(&mut d, b"echo last");
        assert!(o.is_empty());
        let o = end(&mut d);
        assert_eq!(judged(&o), vec!["echo last"]);
        assert_eq!(o.last(), Some(&Out::Eof));
    }

    #[test]
    fn bash_keeps_open_what_it_reads_as_unfinished() {
        // Bash's word wins over proctor's reader: the command stays open, later lines join it,
        // and input typed while the check was out waits for the answer.
        let mut d = Discipline::new(true);
        let o = d.feed(b"echo a |\recho b\r");
        assert_eq!(o.last(), Some(&Out::Check("echo a |".into())), "{o:?}");
        let o = d.checked(ShellSyntax::Unfinished);
        assert!(o.contains(&Out::Echo(b"\r\n> ".to_vec())), "{o:?}");
        assert_eq!(
            o.last(),
            Some(&Out::Check("echo a |\necho b".into())),
            "{o:?}"
        );
        let o = d.checked(ShellSyntax::Complete);
        assert_eq!(judged(&o), vec!["echo a |\necho b"]);
        // A check that cannot be made: the command is judged as unreadable, never plainly.
        let o = d.feed(b"ls\r");
        assert_eq!(o.last(), Some(&Out::Check("ls".into())));
        let o = d.checked(ShellSyntax::Unchecked("no bash".into()));
        assert_eq!(
            o.last(),
            Some(&Out::JudgeUnread("ls".into(), "no bash".into()))
        );
        // Without a terminal, and with the input ending while a check is out.
        let mut d = Discipline::new(false);
        let o = d.feed(b"x &&\ny\n");
        assert_eq!(o, vec![Out::Check("x &&".into())]);
        assert!(d.end().is_empty());
        let o = d.checked(ShellSyntax::Unfinished);
        assert_eq!(o, vec![Out::Check("x &&\ny".into())]);
        let o = d.checked(ShellSyntax::Complete);
        assert_eq!(o, vec![Out::Judge("x &&\ny".into()), Out::Eof]);
    }
}
