//! The target-to-agent direction of one channel as a state machine without I/O (the
//! counterpart of `upstream_core`): the adapter (`downstream.rs`) hands it what the target
//! sent and carries out the actions it returns, in order, stopping at the first record that
//! fails. It decides what is recorded before the agent sees it, feeds the shell's terminal
//! model, the judged shell's prompt scanner and the SFTP reply decoder (a panic or a poisoned
//! lock there ends the channel as an internal error), and when the target's EOF is passed on.

use std::collections::VecDeque;

use bytes::Bytes;
use proctor_gate::{Event, OutputStream};

use super::DownEnd;
use super::upstream_core::Mode;
use crate::record::Tally;

/// What the adapter does, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DownAction {
    /// Queue for the recorder within the bound of what is not yet durable; a failure ends
    /// the channel (`RecordFailed`) before anything after it is shown.
    Log(Event),
    /// Record and wait until durable; a failure ends the channel.
    Record(Event),
    /// The agent's stdout; a failure to write ends the pump.
    Show(Bytes),
    /// Output held back as a possible prompt marker, shown once the target's output ended.
    ShowHeld(Bytes),
    /// An extended stream (stderr) of the agent's channel.
    ShowExt(u32, Bytes),
    ExitStatus(u32),
    ExitSignal {
        signal: String,
        core_dumped: bool,
        message: String,
        lang: String,
    },
    /// EOF to the agent.
    Eof,
    /// The terminal's interrupt character to the target, sent by proctor itself.
    InterruptTarget,
    /// A message on the agent's terminal.
    Notice(String),
    /// The target's answer to the activating request, passed on once.
    Reply(bool),
    End(DownEnd),
}

pub(crate) struct DownCore {
    channel: u32,
    mode: Mode,
    tally: Tally,
    /// The target's EOF, not yet passed on. sshd sends EOF and then the exit status; passed
    /// on one by one, a client that has already sent its own EOF may close the channel in
    /// between and lose the status (OpenSSH then exits 255). So the EOF waits for the status,
    /// the close, or a short grace period (a program may close its output and keep running).
    eof_pending: bool,
    first_reply: bool,
    ended: bool,
    out: VecDeque<DownAction>,
}

impl DownCore {
    pub(crate) fn new(channel: u32, mode: Mode, forward_first_reply: bool) -> DownCore {
        DownCore {
            channel,
            mode,
            tally: Tally::default(),
            eof_pending: false,
            first_reply: forward_first_reply,
            ended: false,
            out: VecDeque::new(),
        }
    }

    pub(crate) fn poll(&mut self) -> Option<DownAction> {
        self.out.pop_front()
    }

    /// The adapter passes the EOF on after the grace period unless the status comes first.
    pub(crate) fn eof_pending(&self) -> bool {
        self.eof_pending && !self.ended
    }

    pub(crate) fn take_tally(&mut self) -> Tally {
        std::mem::take(&mut self.tally)
    }

    /// Output on the target's stdout.
    pub(crate) fn output(&mut self, data: Bytes) {
        if self.ended {
            return;
        }
        self.record_output(OutputStream::Stdout, &data);
        let shown = match self.follow(&data) {
            Ok(shown) => shown,
            Err(e) => return self.end(e),
        };
        if let Some(data) = shown.or(Some(data)).filter(|d| !d.is_empty()) {
            self.out.push_back(DownAction::Show(data));
        }
    }

    /// Output on an extended stream (stderr): recorded and passed on as it is.
    pub(crate) fn ext_output(&mut self, ext: u32, data: Bytes) {
        if self.ended {
            return;
        }
        self.record_output(OutputStream::Stderr, &data);
        self.out.push_back(DownAction::ShowExt(ext, data));
    }

    pub(crate) fn exit_status(&mut self, status: u32) {
        if self.ended {
            return;
        }
        // Fail closed: an exit status the record does not hold is not passed on.
        self.out.push_back(DownAction::Log(Event::ExitStatus {
            channel: self.channel,
            status,
        }));
        self.out.push_back(DownAction::ExitStatus(status));
        self.eof_after_result();
    }

    pub(crate) fn exit_signal(
        &mut self,
        signal: String,
        core_dumped: bool,
        message: String,
        lang: String,
    ) {
        if self.ended {
            return;
        }
        self.out.push_back(DownAction::Log(Event::ExitSignal {
            channel: self.channel,
            signal: signal.clone(),
            message: message.clone(),
        }));
        self.out.push_back(DownAction::ExitSignal {
            signal,
            core_dumped,
            message,
            lang,
        });
        self.eof_after_result();
    }

    pub(crate) fn target_eof(&mut self) {
        if self.ended {
            return;
        }
        self.eof_pending = true;
        // No more output: bytes held back as a possible prompt marker were none.
        if let Mode::Judged(d) = &self.mode {
            let flushed = d.lock().map(|mut d| d.flush_output()).map_err(|_| ());
            match flushed {
                Ok(rest) if !rest.is_empty() => {
                    self.out.push_back(DownAction::ShowHeld(Bytes::from(rest)))
                }
                Ok(_) => {}
                Err(_) => self.end(DownEnd::Internal),
            }
        }
    }

    /// The grace period after the target's EOF passed without an exit status.
    pub(crate) fn grace_elapsed(&mut self) {
        if std::mem::take(&mut self.eof_pending) && !self.ended {
            self.out.push_back(DownAction::Eof);
        }
    }

    pub(crate) fn target_close(&mut self) {
        self.end(DownEnd::TargetClosed);
    }

    /// The target's answer (success or failure) to a channel request.
    pub(crate) fn reply(&mut self, success: bool) {
        if std::mem::take(&mut self.first_reply) && !self.ended {
            self.out.push_back(DownAction::Reply(success));
        }
    }

    fn eof_after_result(&mut self) {
        if std::mem::take(&mut self.eof_pending) {
            self.out.push_back(DownAction::Eof);
        }
    }

    fn end(&mut self, e: DownEnd) {
        if !self.ended {
            self.ended = true;
            self.out.push_back(DownAction::End(e));
        }
    }

    fn record_output(&mut self, stream: OutputStream, data: &Bytes) {
        self.tally.add(data);
        self.out.push_back(DownAction::Log(Event::Output {
            channel: self.channel,
            stream,
            data: data.clone(),
        }));
    }

    /// Feeds the mode's model; `Some`: what the agent is shown instead of the output itself.
    fn follow(&mut self, data: &Bytes) -> Result<Option<Bytes>, DownEnd> {
        match &self.mode {
            Mode::Shell(t) => {
                // A panic in the terminal model (on hostile output, or a bug) must not pass
                // unnoticed: it poisons the tracker, which ends the channel on both sides.
                let fed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    t.lock().map(|mut t| t.feed_output(data)).is_ok()
                }));
                if !matches!(fed, Ok(true)) {
                    return Err(DownEnd::Internal);
                }
                Ok(None)
            }
            Mode::Sftp(t) => {
                let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    t.lock().map(|mut t| t.replies(data)).ok()
                }));
                let Ok(Some(done)) = done else {
                    return Err(DownEnd::Internal);
                };
                for op in done {
                    self.out.push_back(DownAction::Log(Event::Sftp(op)));
                }
                Ok(None)
            }
            Mode::Judged(d) => {
                let d = d.clone();
                let scanned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    d.lock().map(|mut d| d.target_output(data)).ok()
                }));
                let Ok(Some(scanned)) = scanned else {
                    return Err(DownEnd::Internal);
                };
                let Some(s) = scanned else {
                    return Ok(None);
                };
                if s.unfinished {
                    self.unfinished(&d)?;
                }
                Ok(Some(Bytes::from(s.shown)))
            }
            Mode::Raw => Ok(None),
        }
    }

    /// The target printed its continuation prompt after reading the whole of a judged
    /// command: bash took it as unfinished and would join the next judged line to it. It is
    /// recorded, interrupted (bash drops what it read), and the agent told.
    fn unfinished(
        &mut self,
        d: &std::sync::Mutex<crate::judged::Discipline>,
    ) -> Result<(), DownEnd> {
        self.out.push_back(DownAction::Record(Event::Annotation {
            source: "proctor".into(),
            text: "judged shell: target read the command as unfinished; discarded (proctor \
                   sent the interrupt character)"
                .into(),
        }));
        d.lock()
            .map(|mut d| d.interrupting())
            .map_err(|_| DownEnd::Internal)?;
        self.out.push_back(DownAction::InterruptTarget);
        self.out.push_back(DownAction::Notice(
            "proctor: the target read the command as unfinished and would have joined the next \
             line to it; bash dropped the unfinished command"
                .into(),
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests;
