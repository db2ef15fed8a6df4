//! The core's shells. A record-only shell is the target's own shell and line editor: each line
//! is rebuilt from the keystrokes and a terminal model (`crate::lines`) and the key that
//! submits it is held back while it is judged; without a terminal a line is held back whole.
//! A judged shell runs the discipline's actions (`crate::judged`): echo goes to the agent (and
//! into the record as output), a complete command is judged and only then sent whole with its
//! newline; nothing else the agent types reaches the target but the interrupt and EOF keys.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use proctor_gate::{Action, Event, OutputStream, ShellSyntax};

use super::{CoreResult, Mode, UpAction, UpCore, Verdict, Wait, Work, line_label, lock};
use crate::judged::{Discipline, Out};
use crate::lines::{LineTracker, Step};

impl UpCore {
    fn tracker(&self) -> CoreResult<Arc<Mutex<LineTracker>>> {
        match &self.mode {
            Mode::Shell(t) => Ok(t.clone()),
            _ => Err(super::CoreEnd::Internal),
        }
    }

    fn discipline(&self) -> CoreResult<Arc<Mutex<Discipline>>> {
        match &self.mode {
            Mode::Judged(d) => Ok(d.clone()),
            _ => Err(super::CoreEnd::Internal),
        }
    }

    pub(super) fn shell_data(&mut self, t: &Mutex<LineTracker>, data: Bytes) -> CoreResult<()> {
        if lock(t, |t| t.is_raw())? {
            return self.raw_shell_data(t, data);
        }
        let mut start = 0;
        for i in 0..data.len() {
            let step = lock(t, |t| t.input_byte(data[i]))?;
            if step == Step::Drop {
                self.forward(data.slice(start..i));
                start = i + 1;
                self.notice(
                    "proctor: Ctrl-X editing commands are not passed on in a recorded shell".into(),
                );
                continue;
            }
            if step != Step::Submit {
                continue;
            }
            self.forward(data.slice(start..i));
            // What follows the submitting key waits for the verdict.
            self.todo.push_front(Work::Data(data.slice(i + 1..)));
            let submit = data.slice(i..i + 1);
            if lock(t, |t| t.needs_screen())? {
                self.wait = Some(Wait::Echo { submit });
                self.out.push_back(UpAction::AwaitEcho);
                return Ok(());
            }
            return self.read_screen_line(submit);
        }
        self.forward(data.slice(start..));
        Ok(())
    }

    /// The line as it stands (on the screen, once the echo settled), judged with its
    /// submitting key held back.
    pub(super) fn read_screen_line(&mut self, submit: Bytes) -> CoreResult<()> {
        let t = self.tracker()?;
        let (line, typed) = lock(&t, |t| (t.line(), t.saw_input()))?;
        if line.trim().is_empty() && !typed {
            return self.apply_shell_verdict(&line, submit, Verdict::Allow, false);
        }
        self.ask(&line);
        self.wait = Some(Wait::ShellLine { line, submit });
        Ok(())
    }

    pub(super) fn shell_verdict(
        &mut self,
        line: &str,
        submit: Bytes,
        v: Verdict,
    ) -> CoreResult<()> {
        self.apply_shell_verdict(line, submit, v, true)
    }

    fn apply_shell_verdict(
        &mut self,
        line: &str,
        submit: Bytes,
        v: Verdict,
        judged: bool,
    ) -> CoreResult<()> {
        if judged {
            self.note_unenforced(line);
        }
        let t = self.tracker()?;
        lock(&t, |t| t.finish_line(line))?;
        match v {
            Verdict::Allow => self.forward(submit),
            Verdict::Deny(msg) => {
                // Clear what was typed on the target instead of submitting it.
                self.forward(Bytes::from_static(b"\x15"));
                self.notice(msg);
            }
        }
        Ok(())
    }

    /// Every verdict of a record-only shell says it could not be enforced; recorded before
    /// the line is acted on, so a line whose note fails is not submitted.
    fn note_unenforced(&mut self, line: &str) {
        if self.cfg.record_only {
            let label = line_label(line);
            self.note(format!(
                "verdict on {label} not enforced: record-only shell (the target's own line \
                 editor runs what it reads; a hold or deny on this line does not bind it)"
            ));
        }
    }

    fn ask(&mut self, line: &str) {
        self.out.push_back(UpAction::Judge {
            action: Action::CommandLine {
                channel: self.cfg.channel,
                line: line.to_string(),
            },
            label: line_label(line),
        });
    }

    fn raw_shell_data(&mut self, t: &Mutex<LineTracker>, data: Bytes) -> CoreResult<()> {
        for i in 0..data.len() {
            if lock(t, |t| t.input_byte(data[i]))? != Step::Submit {
                continue;
            }
            self.raw_line.extend_from_slice(&data[..=i]);
            self.todo.push_front(Work::Data(data.slice(i + 1..)));
            return self.submit_raw_line();
        }
        self.raw_line.extend_from_slice(&data);
        if self.raw_line.len() > self.cfg.held_input_bytes {
            // An endless line (data piped into a shell): judge what there is and move on.
            return self.submit_raw_line();
        }
        Ok(())
    }

    fn submit_raw_line(&mut self) -> CoreResult<()> {
        let t = self.tracker()?;
        let line = lock(&t, |t| t.line())?;
        // Blank by its bytes, not by the text read from them: a byte the tracker could not
        // read is still something the shell runs.
        if self.raw_line.iter().all(u8::is_ascii_whitespace) {
            return self.apply_raw_verdict(&line, Verdict::Allow, false);
        }
        self.ask(&line);
        self.wait = Some(Wait::RawLine { line });
        Ok(())
    }

    pub(super) fn raw_verdict(&mut self, line: &str, v: Verdict) -> CoreResult<()> {
        self.apply_raw_verdict(line, v, true)
    }

    fn apply_raw_verdict(&mut self, line: &str, v: Verdict, judged: bool) -> CoreResult<()> {
        if judged {
            self.note_unenforced(line);
        }
        let t = self.tracker()?;
        lock(&t, |t| t.finish_line(line))?;
        let bytes = self.raw_line.split().freeze();
        match v {
            Verdict::Allow => self.forward(bytes),
            Verdict::Deny(msg) => self.notice(msg),
        }
        Ok(())
    }

    /// At end of input, a last line without a newline is still run by the shell.
    pub(super) fn flush_raw_line(&mut self, t: &Mutex<LineTracker>) -> CoreResult<()> {
        let pending = lock(t, |t| t.is_raw() && t.has_partial_line())?;
        if pending || !self.raw_line.is_empty() {
            return self.submit_raw_line();
        }
        Ok(())
    }

    /// Runs a judged shell's actions until one needs an answer.
    pub(super) fn judged_outs(&mut self, mut queue: VecDeque<Out>) -> CoreResult<()> {
        let d = self.discipline()?;
        while let Some(out) = queue.pop_front() {
            match out {
                Out::Check(text) => {
                    // Bash's parser has the last word on whether the command is complete; the
                    // discipline reads nothing further until it has the answer.
                    self.out.push_back(UpAction::CheckSyntax(text));
                    self.wait = Some(Wait::Syntax);
                    self.todo.push_front(Work::Outs(queue));
                    return Ok(());
                }
                Out::JudgeUnread(text, why) => {
                    self.note(format!(
                        "judged shell: bash could not check whether the command is complete \
                         ({why}); it is held as unreadable"
                    ));
                    self.out.push_back(UpAction::JudgeUnread {
                        action: Action::CommandLine {
                            channel: self.cfg.channel,
                            line: text.clone(),
                        },
                        label: line_label(&text),
                        why,
                    });
                    self.wait = Some(Wait::JudgedLine { text });
                    self.todo.push_front(Work::Outs(queue));
                    return Ok(());
                }
                Out::Echo(bytes) => self.echo(bytes),
                Out::Bell => {
                    self.bells += 1;
                    self.echo(b"\x07".to_vec());
                }
                Out::Judge(text) if text.is_empty() => self.send_judged(&d, text)?,
                Out::Judge(text) => {
                    self.ask(&text);
                    self.wait = Some(Wait::JudgedLine { text });
                    self.todo.push_front(Work::Outs(queue));
                    return Ok(());
                }
                Out::Refused(text, why) => {
                    let note = format!("proctor: line refused in a judged shell: {why}");
                    self.note(format!("{note}: {text:?}"));
                    self.notice(note);
                }
                Out::Interrupt => self.forward(Bytes::from_static(b"\x03")),
                Out::Eof => {
                    if self.cfg.terminal {
                        // The pty's end-of-file character, on an empty line.
                        self.forward(Bytes::from_static(b"\x04"));
                    } else if !self.eof_sent {
                        self.eof_sent = true;
                        self.out.push_back(UpAction::ForwardEof);
                    }
                }
            }
        }
        if self.bells > 0 {
            // The keys are in the input record; say that they went nowhere.
            let bells = std::mem::take(&mut self.bells);
            self.note(format!(
                "judged shell: {bells} key(s) that proctor's line editor does not follow were dropped"
            ));
        }
        Ok(())
    }

    pub(super) fn judged_checked(&mut self, s: ShellSyntax) -> CoreResult<()> {
        let d = self.discipline()?;
        let more = lock(&d, |d| d.checked(s))?;
        match self.todo.front_mut() {
            Some(Work::Outs(q)) => q.extend(more),
            _ => self.todo.push_front(Work::Outs(more.into())),
        }
        Ok(())
    }

    pub(super) fn judged_verdict(&mut self, text: String, v: Verdict) -> CoreResult<()> {
        match v {
            Verdict::Allow => {
                let d = self.discipline()?;
                self.send_judged(&d, text)
            }
            Verdict::Deny(msg) => {
                self.notice(msg);
                Ok(())
            }
        }
    }

    /// Sends a judged command whole; the target's prompts are then read against it.
    fn send_judged(&mut self, d: &Mutex<Discipline>, text: String) -> CoreResult<()> {
        lock(d, |d| d.sent(&text))?;
        let mut line = text.into_bytes();
        line.push(b'\n');
        self.forward(Bytes::from(line));
        Ok(())
    }

    /// Local echo: recorded as the channel's output, then shown to the agent.
    fn echo(&mut self, bytes: Vec<u8>) {
        let data = Bytes::from(bytes);
        self.out.push_back(UpAction::RecordOutput(Event::Output {
            channel: self.cfg.channel,
            stream: OutputStream::Stdout,
            data: data.clone(),
        }));
        self.out.push_back(UpAction::ToAgent(data));
    }
}
