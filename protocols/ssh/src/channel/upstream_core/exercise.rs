//! Drives the agent-to-target core the way the adapter does, from a script of agent input,
//! late answers and EOF, and checks what reaches the target. Shared by the property test and
//! the `ssh_upstream_core` fuzz entry point.
//!
//! What must hold, whatever the script:
//! - nothing is returned after a question (`Judge`, `CheckSyntax`, `AwaitEcho`) until it is
//!   answered, and nothing at all after `End`;
//! - input is recorded (`RecordInput`) before any of it is forwarded;
//! - in a shell, bytes reach the target only in answer to an `Allow` (or as a blank line,
//!   which is never judged); a denied line never does;
//! - without a terminal, what is forwarded is the agent's own bytes, unaltered and in order;
//! - with printable input, an allowed line is forwarded as exactly the text judged (plus its
//!   newline), and the lines judged are the agent's lines, in order.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use proctor_gate::{Action, Event, ShellSyntax};

use super::{CoreConfig, Mode, UpAction, UpCore, Verdict};
use crate::judged::Discipline;
use crate::lines::LineTracker;

/// One step of a script.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// Agent bytes (held back by the adapter while the core waits, as `AgentIn` does).
    Data(Vec<u8>),
    /// Answer the pending question: allow (true) or deny.
    Answer(bool),
    /// bash's answer to a pending syntax check.
    Syntax(u8),
    Eof,
    Resize(u32, u32),
    Signal,
}

/// Which channel the script runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `ssh host` with piped input: a record-only shell without a terminal.
    RawShell,
    /// A judged shell without a terminal.
    JudgedPlain,
    /// `ssh host cmd`: bytes pass as they come.
    Exec,
}

enum Pending {
    Judge(String),
    Syntax,
}

struct Checker {
    kind: Kind,
    core: UpCore,
    pending: Option<Pending>,
    held: VecDeque<Op>,
    /// Everything the agent sent that was handed to the core.
    input: Vec<u8>,
    recorded: usize,
    forwarded: usize,
    /// Position in `input` up to which forwarded bytes were found, in order.
    cursor: usize,
    /// Lines judged (text) and whether allowed, in order.
    judged: Vec<(String, bool)>,
    ended: bool,
    printable: bool,
    eof: bool,
}

/// Runs `ops` against a fresh core of `kind`; panics when an invariant breaks.
pub(crate) fn run(kind: Kind, ops: impl IntoIterator<Item = Op>, held_input_bytes: usize) {
    let mode = match kind {
        Kind::RawShell => Mode::Shell(Arc::new(Mutex::new(LineTracker::new(None)))),
        Kind::JudgedPlain => Mode::Judged(Arc::new(Mutex::new(Discipline::new(false)))),
        Kind::Exec => Mode::Raw,
    };
    let core = UpCore::new(
        CoreConfig {
            channel: 7,
            terminal: false,
            record_only: kind == Kind::RawShell,
            held_input_bytes: held_input_bytes.max(1),
        },
        mode,
    );
    let mut c = Checker {
        kind,
        core,
        pending: None,
        held: VecDeque::new(),
        input: Vec::new(),
        recorded: 0,
        forwarded: 0,
        cursor: 0,
        judged: Vec::new(),
        ended: false,
        printable: true,
        eof: false,
    };
    for op in ops {
        c.step(op);
    }
    // Whatever is still held goes in once every question is answered (allowing all).
    let mut rounds = 0;
    while (c.pending.is_some() || !c.held.is_empty()) && !c.ended && rounds < 100_000 {
        rounds += 1;
        if c.pending.is_some() {
            c.step(Op::Answer(true));
            c.step(Op::Syntax(0));
        } else if let Some(op) = c.held.pop_front() {
            c.feed(op);
        }
    }
    c.finish();
}

impl Checker {
    fn step(&mut self, op: Op) {
        if self.ended {
            return;
        }
        match op {
            Op::Answer(allow) => {
                if let Some(Pending::Judge(_)) = &self.pending
                    && let Some(Pending::Judge(text)) = self.pending.take()
                {
                    self.judged.push((text, allow));
                    let v = if allow {
                        Verdict::Allow
                    } else {
                        Verdict::Deny("denied".into())
                    };
                    self.core.verdict(v);
                    self.drain(allow);
                } else {
                    // A verdict nobody asked for changes nothing.
                    self.core.verdict(Verdict::Allow);
                    assert!(self.core.poll().is_none(), "an unasked verdict acted on");
                }
                self.release();
            }
            Op::Syntax(s) => {
                if matches!(self.pending, Some(Pending::Syntax)) {
                    self.pending = None;
                    self.core.syntax(match s % 4 {
                        0 | 1 => ShellSyntax::Complete,
                        2 => ShellSyntax::Unfinished,
                        _ => ShellSyntax::Unchecked("no bash".into()),
                    });
                    self.drain(false);
                    self.release();
                }
            }
            other if self.pending.is_some() => self.held.push_back(other),
            other => self.feed(other),
        }
    }

    /// Held input goes in once nothing is pending, in order.
    fn release(&mut self) {
        while self.pending.is_none() && !self.ended {
            let Some(op) = self.held.pop_front() else {
                return;
            };
            self.feed(op);
        }
    }

    fn feed(&mut self, op: Op) {
        match op {
            Op::Data(d) if self.eof => {
                // Nothing after the agent's EOF is taken.
                self.core.agent_data(Bytes::from(d));
            }
            Op::Data(d) => {
                if d.iter()
                    .any(|&b| !(b == b'\n' || (0x20..0x7f).contains(&b)))
                {
                    self.printable = false;
                }
                self.input.extend_from_slice(&d);
                self.core.agent_data(Bytes::from(d));
            }
            Op::Eof => {
                self.eof = true;
                self.core.agent_eof();
            }
            Op::Resize(c, r) => self.core.window_change(c, r, 0, 0),
            Op::Signal => self.core.signal("INT".into()),
            Op::Answer(_) | Op::Syntax(_) => return,
        }
        self.drain(false);
    }

    /// Takes the core's actions after an input; `allowed`: they answer an `Allow`.
    fn drain(&mut self, allowed: bool) {
        let mut forwarded_now = Vec::new();
        while let Some(a) = self.core.poll() {
            assert!(!self.ended, "an action after End: {a:?}");
            assert!(self.pending.is_none(), "an action after a question: {a:?}");
            match a {
                UpAction::RecordInput(Event::Input { data, channel }) => {
                    assert_eq!(channel, 7);
                    self.recorded += data.len();
                }
                UpAction::Forward(data) => {
                    assert!(!data.is_empty());
                    self.forwarded += data.len();
                    if self.kind != Kind::JudgedPlain {
                        assert!(self.forwarded <= self.recorded, "forwarded before recorded");
                        let at = find(&self.input[self.cursor..], &data)
                            .expect("forwarded bytes are the agent's, unaltered and in order");
                        self.cursor += at + data.len();
                    }
                    forwarded_now.extend_from_slice(&data);
                }
                UpAction::Judge { action, .. } => {
                    let Action::CommandLine { line, .. } = action else {
                        panic!("a shell judges command lines: {action:?}");
                    };
                    self.pending = Some(Pending::Judge(line));
                }
                UpAction::JudgeUnread { action, .. } => {
                    let Action::CommandLine { line, .. } = action else {
                        panic!("a shell judges command lines: {action:?}");
                    };
                    self.pending = Some(Pending::Judge(line));
                }
                UpAction::CheckSyntax(_) => self.pending = Some(Pending::Syntax),
                UpAction::AwaitEcho => panic!("no screen to read without a terminal"),
                UpAction::End(_) => self.ended = true,
                _ => {}
            }
        }
        assert_eq!(self.core.waiting(), self.pending.is_some());
        assert_eq!(self.core.ended(), self.ended);
        if forwarded_now.is_empty() || self.kind == Kind::Exec {
            return;
        }
        // A judged shell also passes the interrupt and EOF keys on, unjudged.
        let blank = forwarded_now.iter().all(|&b| {
            b.is_ascii_whitespace() || (self.kind == Kind::JudgedPlain && (b == 3 || b == 4))
        });
        if !allowed {
            assert!(
                blank,
                "{:?} reached the target without a verdict",
                String::from_utf8_lossy(&forwarded_now)
            );
            return;
        }
        let (text, _) = self.judged.last().expect("an allowed line");
        if self.printable {
            let mut with_newline = text.clone().into_bytes();
            with_newline.push(b'\n');
            // Blank lines typed before the next judged line may follow it in the same drain.
            let body = trim_trailing_blank_lines(&forwarded_now, &with_newline);
            assert!(
                body == text.as_bytes() || body == with_newline.as_slice(),
                "forwarded {:?} for the line judged as {text:?}",
                String::from_utf8_lossy(&forwarded_now)
            );
        }
    }

    fn finish(&self) {
        if self.kind == Kind::Exec && !self.ended {
            assert_eq!(self.forwarded, self.input.len(), "exec passes every byte");
        }
        if self.printable && self.kind == Kind::RawShell {
            // The lines judged are the agent's non-blank lines, in order.
            let lines: Vec<&[u8]> = self
                .input
                .split(|&b| b == b'\n')
                .filter(|l| !l.iter().all(|b| b.is_ascii_whitespace()))
                .collect();
            for (i, (text, _)) in self.judged.iter().enumerate() {
                if text.len() < self.core.cfg.held_input_bytes {
                    assert_eq!(
                        Some(&text.as_bytes()),
                        lines.get(i),
                        "judged line {i} is not the agent's"
                    );
                } else {
                    break;
                }
            }
        }
    }
}

/// `forwarded` is one judged line, maybe followed by blank lines forwarded unjudged.
fn trim_trailing_blank_lines<'a>(forwarded: &'a [u8], line: &[u8]) -> &'a [u8] {
    if forwarded.starts_with(line)
        && forwarded[line.len()..]
            .iter()
            .all(|b| b.is_ascii_whitespace())
    {
        &forwarded[..line.len()]
    } else {
        forwarded
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}
