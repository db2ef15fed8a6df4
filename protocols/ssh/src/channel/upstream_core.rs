//! The agent-to-target direction of one channel as a state machine without I/O, in the style
//! of rustls' and quinn-proto's cores: the adapter (`upstream.rs`) hands it what the agent sent
//! and the answers it was asked for (a verdict, bash's syntax check, the echo having settled),
//! and carries out the actions it returns, in order. Nothing here awaits, touches a socket or
//! knows russh or tokio.
//!
//! The contract with the adapter, which is what keeps rule 1 and rule 4:
//! - actions are carried out in the order they are returned; a `Record` or `RecordInput` that
//!   fails ends the channel and every later action is dropped, so nothing whose record failed
//!   (and nothing after it) reaches the target or the agent;
//! - while the core waits (`waiting()`), the adapter feeds it only the answer it waits for (or
//!   ends the channel); bytes reach the target only through `Forward`, and a held line is
//!   forwarded only after its `Judge` was answered `Allow`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use proctor_gate::{Action, Event, ShellSyntax};

use crate::judged::{Discipline, Out};
use crate::lines::LineTracker;
use crate::record::Tally;
use crate::sftp::{self, Change, Framer, Request, SftpTracker};

/// How the channel's data is interpreted. The trackers are shared with the target-to-agent
/// pump, which feeds them the target's output.
pub(crate) enum Mode {
    Raw,
    Shell(Arc<Mutex<LineTracker>>),
    /// A judged shell: proctor is the line discipline (`judged`).
    Judged(Arc<Mutex<Discipline>>),
    Sftp(Arc<Mutex<SftpTracker>>),
}

impl Mode {
    pub(crate) fn share(&self) -> Mode {
        match self {
            Mode::Raw => Mode::Raw,
            Mode::Shell(t) => Mode::Shell(t.clone()),
            Mode::Judged(d) => Mode::Judged(d.clone()),
            Mode::Sftp(t) => Mode::Sftp(t.clone()),
        }
    }
}

/// What the core needs to know of its channel.
pub(crate) struct CoreConfig {
    pub channel: u32,
    /// The agent has a terminal: notices and the judged shell's end-of-file key differ.
    pub terminal: bool,
    /// A record-only shell: every verdict on a line is noted as not enforced.
    pub record_only: bool,
    /// Without a terminal, a line longer than this is judged as it stands (piped data).
    pub held_input_bytes: usize,
}

/// What the adapter does, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UpAction {
    /// Record the event; continue only once it is durable, end the channel if it fails.
    Record(Event),
    /// Queue the agent's input for the recorder: everything forwarded after it waits until it
    /// is durable; a failure ends the channel.
    RecordInput(Event),
    /// Queue output proctor itself shows the agent (a judged shell's echo); it goes to the
    /// agent with the next `ToAgent`.
    RecordOutput(Event),
    /// Ask the gate; answer with `verdict`.
    Judge {
        action: Action,
        label: String,
    },
    /// Ask the gate about a command proctor could not read (never allowed outright).
    JudgeUnread {
        action: Action,
        label: String,
        why: String,
    },
    /// Ask the target where these SFTP paths land (REALPATH); answer with `resolved`, one
    /// answer per question, in order.
    Resolve(Vec<sftp::Ask>),
    /// Ask bash's parser whether the text is a complete command; answer with `syntax`.
    CheckSyntax(String),
    /// Wait until the target's echo stopped changing the screen; answer with `echo_settled`.
    AwaitEcho,
    Forward(Bytes),
    ForwardEof,
    ForwardWindowChange {
        cols: u32,
        rows: u32,
        px_w: u32,
        px_h: u32,
    },
    /// A signal by its SSH name.
    ForwardSignal(String),
    /// Bytes for the agent's channel (echo, an SFTP refusal).
    ToAgent(Bytes),
    /// A message for the agent's stderr.
    Notice(String),
    End(CoreEnd),
}

/// Why the core ends the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CoreEnd {
    /// Proctor's model of the channel broke (a poisoned lock): nothing it would judge can be
    /// trusted any more.
    Internal,
    /// The agent sent SFTP proctor cannot decode: recorded, told, and the channel closed.
    SftpViolation(String),
}

/// A verdict as the core acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allow,
    /// Refused, with the message for the agent.
    Deny(String),
}

/// Agent input not yet acted on.
enum Work {
    Data(Bytes),
    /// Judged shell: the discipline's actions still to run.
    Outs(VecDeque<Out>),
    /// The agent's EOF: first the last line, then the EOF itself.
    EofFlush,
    EofSend,
}

/// What the core waits for before it goes on.
enum Wait {
    /// The echo of a line typed on a terminal, before reading it from the screen.
    Echo { submit: Bytes },
    /// A verdict on a line typed on a terminal: the key that submits it is held back.
    ShellLine { line: String, submit: Bytes },
    /// A verdict on a line without a terminal, held back whole.
    RawLine { line: String },
    /// bash's answer on a judged shell's command.
    Syntax,
    /// A verdict on a judged shell's command.
    JudgedLine { text: String },
    /// The target's answers on where an SFTP request's paths land.
    Resolve {
        req: Request,
        packet: Bytes,
        changes: Vec<Change>,
    },
    /// Verdicts on the changes of one SFTP request, one by one.
    Sftp {
        req: Request,
        packet: Bytes,
        changes: VecDeque<Change>,
    },
}

pub(crate) struct UpCore {
    cfg: CoreConfig,
    mode: Mode,
    todo: VecDeque<Work>,
    wait: Option<Wait>,
    out: VecDeque<UpAction>,
    ended: bool,
    eof_seen: bool,
    eof_sent: bool,
    /// Without a terminal, a line is held back whole until it is judged: the target cannot be
    /// told to forget part of a line.
    raw_line: BytesMut,
    framer: Framer,
    /// SFTP requests that change nothing, forwarded together.
    sftp_out: BytesMut,
    /// Keys a judged shell dropped since its last note.
    bells: usize,
    tally: Tally,
}

mod sftp_input;
mod shell;

type CoreResult<T> = Result<T, CoreEnd>;

impl UpCore {
    pub(crate) fn new(cfg: CoreConfig, mode: Mode) -> UpCore {
        UpCore {
            cfg,
            mode,
            todo: VecDeque::new(),
            wait: None,
            out: VecDeque::new(),
            ended: false,
            eof_seen: false,
            eof_sent: false,
            raw_line: BytesMut::new(),
            framer: Framer::default(),
            sftp_out: BytesMut::new(),
            bells: 0,
            tally: Tally::default(),
        }
    }

    pub(crate) fn mode(&self) -> &Mode {
        &self.mode
    }

    /// The next action, in order.
    pub(crate) fn poll(&mut self) -> Option<UpAction> {
        self.out.pop_front()
    }

    /// An answer is awaited: feed nothing else.
    pub(crate) fn waiting(&self) -> bool {
        self.wait.is_some() && !self.ended
    }

    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn ended(&self) -> bool {
        self.ended
    }

    /// Digest and count of the agent's bytes recorded so far.
    pub(crate) fn take_tally(&mut self) -> Tally {
        std::mem::take(&mut self.tally)
    }

    /// Bytes the agent sent: recorded at once, acted on in order.
    pub(crate) fn agent_data(&mut self, data: Bytes) {
        if self.ended || self.eof_sent || self.eof_seen || data.is_empty() {
            return;
        }
        self.out.push_back(UpAction::RecordInput(Event::Input {
            channel: self.cfg.channel,
            data: data.clone(),
        }));
        self.tally.add(&data);
        self.todo.push_back(Work::Data(data));
        self.run();
    }

    pub(crate) fn agent_eof(&mut self) {
        if self.ended || self.eof_seen {
            return;
        }
        self.eof_seen = true;
        self.todo.push_back(Work::EofFlush);
        self.todo.push_back(Work::EofSend);
        self.run();
    }

    pub(crate) fn window_change(&mut self, cols: u32, rows: u32, px_w: u32, px_h: u32) {
        if self.ended {
            return;
        }
        self.out.push_back(UpAction::Record(Event::Resize {
            channel: self.cfg.channel,
            cols,
            rows,
        }));
        if let Mode::Shell(t) = &self.mode
            && t.lock().map(|mut t| t.resize(cols, rows)).is_err()
        {
            return self.end(CoreEnd::Internal);
        }
        self.out.push_back(UpAction::ForwardWindowChange {
            cols,
            rows,
            px_w,
            px_h,
        });
    }

    /// An `env` request after the channel started: too late for the target's environment,
    /// still part of the record.
    pub(crate) fn env_request(&mut self, name: &str, value: &str, accepted: bool) {
        if self.ended {
            return;
        }
        for ev in env_events(self.cfg.channel, name, value, accepted) {
            self.out.push_back(UpAction::Record(ev));
        }
    }

    /// A request proctor refuses (X11, agent forwarding): recorded as refused.
    pub(crate) fn refused_request(&mut self, request: &str) {
        if self.ended {
            return;
        }
        self.out
            .push_back(UpAction::Record(refused_event(self.cfg.channel, request)));
    }

    pub(crate) fn signal(&mut self, name: String) {
        if self.ended {
            return;
        }
        self.out.push_back(UpAction::Record(Event::ChannelRequest {
            channel: self.cfg.channel,
            request: "signal".into(),
            detail: name.clone(),
            accepted: true,
        }));
        self.out.push_back(UpAction::ForwardSignal(name));
    }

    /// A verdict on the `Judge` or `JudgeUnread` last returned.
    pub(crate) fn verdict(&mut self, v: Verdict) {
        let r = match self.wait.take() {
            Some(Wait::ShellLine { line, submit }) => self.shell_verdict(&line, submit, v),
            Some(Wait::RawLine { line }) => self.raw_verdict(&line, v),
            Some(Wait::JudgedLine { text }) => self.judged_verdict(text, v),
            Some(Wait::Sftp {
                req,
                packet,
                changes,
            }) => self.sftp_verdict(req, packet, changes, v),
            // A verdict nobody asked for changes nothing.
            other => {
                self.wait = other;
                return;
            }
        };
        self.settle(r);
    }

    /// The target's answers to the `Resolve` last returned.
    pub(crate) fn resolved(&mut self, answers: Vec<sftp::Answer>) {
        if !matches!(self.wait, Some(Wait::Resolve { .. })) {
            return;
        }
        let Some(Wait::Resolve {
            req,
            packet,
            changes,
        }) = self.wait.take()
        else {
            return;
        };
        let r = self.sftp_resolved(req, packet, changes, answers);
        self.settle(r);
    }

    /// bash's answer to the `CheckSyntax` last returned.
    pub(crate) fn syntax(&mut self, s: ShellSyntax) {
        if !matches!(self.wait, Some(Wait::Syntax)) {
            return;
        }
        self.wait = None;
        let r = self.judged_checked(s);
        self.settle(r);
    }

    /// The echo awaited by `AwaitEcho` has settled.
    pub(crate) fn echo_settled(&mut self) {
        let Some(Wait::Echo { submit }) = self.wait.take() else {
            return;
        };
        let r = self.read_screen_line(submit);
        self.settle(r);
    }

    fn settle(&mut self, r: CoreResult<()>) {
        match r {
            Ok(()) => self.run(),
            Err(e) => self.end(e),
        }
    }

    fn end(&mut self, e: CoreEnd) {
        if !self.ended {
            self.ended = true;
            self.wait = None;
            self.todo.clear();
            self.out.push_back(UpAction::End(e));
        }
    }

    /// Acts on queued input until the core must wait or has nothing left.
    fn run(&mut self) {
        while !self.ended && self.wait.is_none() {
            let Some(work) = self.todo.pop_front() else {
                break;
            };
            let r = match work {
                Work::Data(data) => self.data(data),
                Work::Outs(outs) => self.judged_outs(outs),
                Work::EofFlush => self.eof_flush(),
                Work::EofSend => {
                    if !self.eof_sent {
                        self.eof_sent = true;
                        self.out.push_back(UpAction::ForwardEof);
                    }
                    Ok(())
                }
            };
            if let Err(e) = r {
                self.end(e);
            }
        }
    }

    fn data(&mut self, data: Bytes) -> CoreResult<()> {
        if self.eof_sent {
            return Ok(());
        }
        match &self.mode {
            Mode::Raw => {
                self.forward(data);
                Ok(())
            }
            Mode::Shell(t) => {
                let t = t.clone();
                self.shell_data(&t, data)
            }
            Mode::Judged(d) => {
                let outs = lock(d, |d| d.feed(&data))?;
                self.judged_outs(outs.into())
            }
            Mode::Sftp(t) => {
                let t = t.clone();
                self.sftp_data(&t, data)
            }
        }
    }

    fn eof_flush(&mut self) -> CoreResult<()> {
        match &self.mode {
            Mode::Shell(t) => {
                let t = t.clone();
                self.flush_raw_line(&t)
            }
            Mode::Judged(d) => {
                let outs = lock(d, |d| d.end())?;
                self.judged_outs(outs.into())
            }
            _ => Ok(()),
        }
    }

    fn forward(&mut self, data: Bytes) {
        if !data.is_empty() {
            self.out.push_back(UpAction::Forward(data));
        }
    }

    fn note(&mut self, text: String) {
        self.out.push_back(UpAction::Record(Event::Annotation {
            source: "proctor".into(),
            text,
        }));
    }

    fn notice(&mut self, text: String) {
        self.out.push_back(UpAction::Notice(text));
    }
}

/// Runs `f` under a tracker's lock. A poisoned lock (the model panicked, on hostile output or
/// a bug) ends the channel: lines proctor can no longer rebuild must not be forwarded.
fn lock<M, T>(m: &Mutex<M>, f: impl FnOnce(&mut M) -> T) -> CoreResult<T> {
    match m.lock() {
        Ok(mut g) => Ok(f(&mut g)),
        Err(_) => Err(CoreEnd::Internal),
    }
}

/// The record of an `env` request (and of the agent's stated reason, `PROCTOR_REASON`).
pub(crate) fn env_events(channel: u32, name: &str, value: &str, accepted: bool) -> Vec<Event> {
    let detail = if accepted {
        format!("{name}={value}")
    } else {
        format!("{name}={value} refused: not in ssh.accept_env")
    };
    let mut v = vec![Event::ChannelRequest {
        channel,
        request: "env".into(),
        detail,
        accepted,
    }];
    if accepted && name == "PROCTOR_REASON" {
        v.push(Event::Annotation {
            source: "agent".into(),
            text: value.to_string(),
        });
    }
    v
}

/// The record of a request proctor refuses.
pub(crate) fn refused_event(channel: u32, request: &str) -> Event {
    Event::ChannelRequest {
        channel,
        request: request.into(),
        detail: "refused: forwarding to the agent is not supported".into(),
        accepted: false,
    }
}

/// How a line is named in notices and approvals.
fn line_label(line: &str) -> String {
    format!("line `{}`", super::shorten(line))
}

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod exercise;
#[cfg(test)]
mod proptests;
