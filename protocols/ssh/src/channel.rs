//! One agent channel relayed to one target channel.
//!
//! Each channel is an actor task: it collects the channel's setup requests, has the
//! activating request (`shell`, `exec`, `subsystem`) judged, opens the target channel, and
//! then pumps agent input towards the target itself while a companion task pumps target
//! output towards the agent. Approvals are awaited here, never in russh's callbacks, so a
//! held command stalls only its own channel. Every await that depends on a peer also watches
//! the session's stop signal and the other direction's end, so nothing hangs on a peer that
//! went away.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use proctor_gate::{
    Action, ChannelKind, Decision, Durable, Event, GateError, OutputStream, Resolution, ShellMode,
    TransferSummary,
};
use russh::{ChannelId, ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Pty, Sig, client, server};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};

use crate::judged::Discipline;
use crate::lines::LineTracker;
use crate::record::{OutputLog, Tally};
use crate::session::{Pressure, Session, Stop, wait_some, wait_true};
use crate::sftp::{self, Framer, SftpTracker};

/// Exit status reported to the agent when proctor refuses a command.
pub const DENIED_EXIT_STATUS: u32 = 126;

mod judged_shell;
mod tracked_shell;

/// How long a line read from the screen waits for the echo to settle.
const ECHO_QUIET: Duration = Duration::from_millis(40);
const ECHO_MAX_WAIT: Duration = Duration::from_millis(500);

pub(crate) struct ChanCtx {
    pub sess: Arc<Session>,
    pub agent: server::Handle,
    pub id: ChannelId,
    /// EOF was sent to the agent: nothing more may be sent on the channel but requests and
    /// the close (a strict client such as asyncssh drops the connection on a second EOF).
    pub agent_eof: std::sync::atomic::AtomicBool,
}

impl ChanCtx {
    pub(crate) fn new(sess: Arc<Session>, agent: server::Handle, id: ChannelId) -> ChanCtx {
        ChanCtx {
            sess,
            agent,
            id,
            agent_eof: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn num(&self) -> u32 {
        self.id.number()
    }

    /// Sends EOF to the agent once.
    async fn eof_to_agent(&self) {
        if !self
            .agent_eof
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            let _ = self.agent.eof(self.id).await;
        }
    }

    fn agent_eof_sent(&self) -> bool {
        self.agent_eof.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// How the channel's data is interpreted.
enum Mode {
    Raw,
    Shell(Arc<Mutex<LineTracker>>),
    /// A judged shell: proctor is the line discipline (`judged`).
    Judged(Arc<Mutex<Discipline>>),
    Sftp(Arc<Mutex<SftpTracker>>),
}

impl Mode {
    fn share(&self) -> Mode {
        match self {
            Mode::Raw => Mode::Raw,
            Mode::Shell(t) => Mode::Shell(t.clone()),
            Mode::Judged(d) => Mode::Judged(d.clone()),
            Mode::Sftp(t) => Mode::Sftp(t.clone()),
        }
    }
}

/// Why the target-to-agent pump stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DownEnd {
    /// The target closed its channel; the agent's was closed in turn.
    TargetClosed,
    /// The target connection vanished under the channel.
    TargetGone,
    /// Told to stop by the other direction.
    Cancelled,
    /// Recording failed: nothing more may be forwarded.
    RecordFailed,
    /// Proctor's own model of the channel broke (a panic in the terminal model poisoned its
    /// lock): nothing it would judge can be trusted, so nothing more is forwarded.
    Internal,
}

/// Something that ends a wait early.
#[derive(Debug, Clone)]
enum Interrupt {
    Stop(Stop),
    Down(DownEnd),
    /// The agent closed the channel (or its connection).
    AgentGone,
}

/// A verdict as the channel acts on it.
enum Judged {
    Allow,
    Deny(String),
    Gone(Interrupt),
}

fn sig_name(sig: &Sig) -> String {
    match sig {
        Sig::ABRT => "ABRT".into(),
        Sig::ALRM => "ALRM".into(),
        Sig::FPE => "FPE".into(),
        Sig::HUP => "HUP".into(),
        Sig::ILL => "ILL".into(),
        Sig::INT => "INT".into(),
        Sig::KILL => "KILL".into(),
        Sig::PIPE => "PIPE".into(),
        Sig::QUIT => "QUIT".into(),
        Sig::SEGV => "SEGV".into(),
        Sig::TERM => "TERM".into(),
        Sig::USR1 => "USR1".into(),
        Sig::Custom(s) => s.clone(),
    }
}

/// Agent input, read by its own task into a queue.
///
/// russh hands a channel's messages over from inside its connection read loop and grants
/// window as soon as data arrives, so the only brake on an agent is a reader that stops
/// reading, which stalls the whole connection, the agent's window adjustments included. With
/// output waiting for those adjustments while input waits for the target, the relay would
/// deadlock (`... | ssh proctor cat` does it at once). So the reader never stops early: the
/// window grants of this channel shrink with its queue instead (see `Pressure`), which keeps
/// the queue near one window; `hard` is only a safety net.
struct Feed {
    queue: Mutex<VecDeque<ChannelMsg>>,
    /// Queued bytes; shared with the connection's `Pressure`, which sizes window grants.
    bytes: Arc<AtomicUsize>,
    ended: AtomicBool,
    /// A message arrived, or the reader ended (one consumer).
    data: Notify,
    /// Room in the queue (one waiter: the reader).
    space: Notify,
    /// Flipped when the agent closes the channel or its connection.
    gone: watch::Sender<bool>,
}

fn msg_size(m: &ChannelMsg) -> usize {
    match m {
        ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, .. } => data.len(),
        _ => 64,
    }
}

impl Feed {
    fn added(&self, n: usize) {
        self.bytes.fetch_add(n, Ordering::AcqRel);
    }

    fn removed(&self, n: usize) {
        self.bytes.fetch_sub(n, Ordering::AcqRel);
        self.space.notify_one();
    }
}

async fn read_agent(mut rx: ChannelReadHalf, feed: Arc<Feed>, hard: usize) {
    loop {
        while feed.bytes.load(Ordering::Acquire) >= hard {
            feed.space.notified().await;
        }
        let Some(m) = rx.wait().await else {
            break;
        };
        let closing = matches!(m, ChannelMsg::Close);
        feed.added(msg_size(&m));
        if let Ok(mut q) = feed.queue.lock() {
            q.push_back(m);
        }
        feed.data.notify_one();
        if closing {
            break;
        }
    }
    feed.ended.store(true, Ordering::Release);
    let _ = feed.gone.send(true);
    feed.data.notify_one();
}

struct AgentIn {
    feed: Arc<Feed>,
    reader: tokio::task::JoinHandle<()>,
    pressure: Arc<Pressure>,
    channel: u32,
}

impl Drop for AgentIn {
    fn drop(&mut self) {
        self.reader.abort();
        self.pressure.unregister(self.channel);
    }
}

impl AgentIn {
    fn new(rx: ChannelReadHalf, ctx: &ChanCtx) -> Self {
        let limits = &ctx.sess.limits;
        let pressure = ctx.sess.pressure.clone();
        let feed = Arc::new(Feed {
            queue: Mutex::new(VecDeque::new()),
            bytes: pressure.register(ctx.num()),
            ended: AtomicBool::new(false),
            data: Notify::new(),
            space: Notify::new(),
            gone: watch::Sender::new(false),
        });
        let reader = tokio::spawn(read_agent(rx, feed.clone(), limits.input_hard_bytes.max(1)));
        AgentIn {
            feed,
            reader,
            pressure,
            channel: ctx.num(),
        }
    }

    fn pop(&mut self) -> Option<ChannelMsg> {
        let m = self.feed.queue.lock().ok()?.pop_front()?;
        self.feed.removed(msg_size(&m));
        Some(m)
    }

    async fn next(&mut self) -> Option<ChannelMsg> {
        loop {
            if let Some(m) = self.pop() {
                return Some(m);
            }
            if self.feed.ended.load(Ordering::Acquire) {
                // The reader may have queued its last message just before ending.
                return self.pop();
            }
            self.feed.data.notified().await;
        }
    }

    /// The next message if one is already there.
    fn try_next(&mut self) -> Option<ChannelMsg> {
        self.pop()
    }

    fn unread(&mut self, m: ChannelMsg) {
        self.feed.added(msg_size(&m));
        if let Ok(mut q) = self.feed.queue.lock() {
            q.push_front(m);
        }
    }

    /// Resolves once the agent has closed the channel (the close may still be queued).
    fn gone(&self) -> watch::Receiver<bool> {
        self.feed.gone.subscribe()
    }
}

/// Watches that end waits: the session's stop signal, the downstream pump's end and, once
/// the channel relays, the end of the forwarder towards the target.
struct Watches {
    stop: watch::Receiver<Option<Stop>>,
    down: watch::Receiver<Option<DownEnd>>,
    fwd: Option<watch::Receiver<Option<DownEnd>>>,
}

impl Watches {
    async fn interrupted(&mut self) -> Interrupt {
        let stop = &mut self.stop;
        let down = &mut self.down;
        let fwd = &mut self.fwd;
        let stopped = async { Interrupt::Stop(wait_some(stop).await.unwrap_or(Stop::Shutdown)) };
        let down_ended = async {
            match wait_some(down).await {
                Some(d) => Interrupt::Down(d),
                // The pump always reports before it goes; no report means no end yet.
                None => std::future::pending().await,
            }
        };
        let fwd_failed = async {
            match fwd {
                Some(f) => match wait_some(f).await {
                    Some(d) => Interrupt::Down(d),
                    None => std::future::pending().await,
                },
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            i = stopped => i,
            i = down_ended => i,
            i = fwd_failed => i,
        }
    }
}

/// What the client asked for before the channel was activated.
#[derive(Default)]
struct Setup {
    pty: Option<PtyReq>,
    env: Vec<(String, String)>,
}

struct PtyReq {
    term: String,
    cols: u32,
    rows: u32,
    px_w: u32,
    px_h: u32,
    modes: Vec<(Pty, u32)>,
}

enum Activation {
    Shell,
    Exec(Vec<u8>),
    Subsystem(String),
}

const MAX_ENV: usize = 64;

/// The relay of one session channel, from its opening to its close.
pub(crate) async fn run_session(ctx: ChanCtx, channel: russh::Channel<server::Msg>) {
    let gate = ctx.sess.gate.clone();
    let num = ctx.num();
    let (rx, atx) = channel.split();
    let mut input = AgentIn::new(rx, &ctx);
    let (_down_tx, down_rx) = watch::channel(None);
    let mut w = Watches {
        stop: ctx.sess.stop.clone(),
        down: down_rx,
        fwd: None,
    };
    if gate
        .record(Event::ChannelOpen {
            channel: num,
            kind: ChannelKind::Session,
            detail: String::new(),
        })
        .await
        .is_err()
    {
        close_agent(&ctx).await;
        return;
    }

    // Setup requests, up to the one that starts something.
    let mut setup = Setup::default();
    let mut early: Vec<ChannelMsg> = Vec::new();
    let mut early_bytes = 0usize;
    let activation = loop {
        let msg = tokio::select! {
            m = input.next() => m,
            i = w.interrupted() => {
                end_on_interrupt(&ctx, &i, Style::Plain).await;
                return;
            }
        };
        let Some(msg) = msg else {
            return;
        };
        match msg {
            ChannelMsg::RequestPty {
                term,
                col_width,
                row_height,
                pix_width,
                pix_height,
                terminal_modes,
                ..
            } => {
                let allowed = ctx.sess.target.allow_pty;
                let mut detail = format!("term={term} cols={col_width} rows={row_height}");
                if ctx.sess.target.shell == ShellMode::Deny {
                    detail.push_str(" refused: the grant allows no shell (shell = \"deny\")");
                }
                let recorded = gate
                    .record(Event::ChannelRequest {
                        channel: num,
                        request: "pty-req".into(),
                        detail,
                        accepted: allowed,
                    })
                    .await
                    .and(
                        gate.record(Event::Resize {
                            channel: num,
                            cols: col_width,
                            rows: row_height,
                        })
                        .await,
                    );
                if recorded.is_err() {
                    // Fail closed: nothing whose record failed reaches the target.
                    end_on_interrupt(&ctx, &Interrupt::Down(DownEnd::RecordFailed), Style::Plain)
                        .await;
                    return;
                }
                if allowed {
                    setup.pty = Some(PtyReq {
                        term,
                        cols: col_width,
                        rows: row_height,
                        px_w: pix_width,
                        px_h: pix_height,
                        modes: terminal_modes,
                    });
                }
            }
            ChannelMsg::SetEnv {
                variable_name,
                variable_value,
                ..
            } => {
                let allowed = ctx.sess.accept_env.allows(&variable_name);
                record_env(&ctx, &variable_name, &variable_value, allowed).await;
                if allowed && setup.env.len() < MAX_ENV {
                    setup.env.push((variable_name, variable_value));
                }
            }
            ChannelMsg::WindowChange {
                col_width,
                row_height,
                pix_width,
                pix_height,
            } => {
                let recorded = gate
                    .record(Event::Resize {
                        channel: num,
                        cols: col_width,
                        rows: row_height,
                    })
                    .await;
                if recorded.is_err() {
                    end_on_interrupt(&ctx, &Interrupt::Down(DownEnd::RecordFailed), Style::Plain)
                        .await;
                    return;
                }
                if let Some(p) = setup.pty.as_mut() {
                    p.cols = col_width;
                    p.rows = row_height;
                    p.px_w = pix_width;
                    p.px_h = pix_height;
                }
            }
            ChannelMsg::RequestShell { .. } => break Activation::Shell,
            ChannelMsg::Exec { command, .. } => break Activation::Exec(command),
            ChannelMsg::RequestSubsystem { name, .. } => break Activation::Subsystem(name),
            ChannelMsg::RequestX11 { .. } => {
                record_refused_request(&ctx, "x11-req").await;
            }
            ChannelMsg::AgentForward { .. } => {
                record_refused_request(&ctx, "auth-agent-req@openssh.com").await;
            }
            ChannelMsg::Data { .. } | ChannelMsg::Eof => {
                // Input sent before the command starts is kept for it, within bounds.
                early_bytes += msg_size(&msg);
                early.push(msg);
                if early_bytes > ctx.sess.limits.held_input_bytes {
                    let _ = gate
                        .record(Event::ProtocolError {
                            party: proctor_gate::Party::Agent,
                            message: "too much input before the channel's command".into(),
                        })
                        .await;
                    close_agent(&ctx).await;
                    return;
                }
            }
            ChannelMsg::Close => return,
            _ => {}
        }
    };
    // Input that came with the setup goes first, before anything read while judging.
    for m in early.into_iter().rev() {
        input.unread(m);
    }

    // Under a judged grant, `ssh box bash` (or `sh -i`, `bash -s`...) is the shell it asks
    // for, so it gets one: judged line by line rather than held as an unjudged shell.
    let mut shell_detail = String::new();
    let activation = match activation {
        Activation::Exec(cmd)
            if ctx.sess.target.shell == ShellMode::Judged && crate::judged::plain_shell(&cmd) =>
        {
            shell_detail = String::from_utf8_lossy(&cmd).into_owned();
            Activation::Shell
        }
        a => a,
    };
    let (kind, action, label) = match &activation {
        Activation::Shell => (
            ChannelKind::Shell,
            Action::Channel {
                channel: num,
                kind: ChannelKind::Shell,
                detail: shell_detail,
            },
            "shell".to_string(),
        ),
        Activation::Exec(cmd) => {
            let command = String::from_utf8_lossy(cmd).into_owned();
            (
                ChannelKind::Exec,
                Action::Exec {
                    channel: num,
                    command: command.clone(),
                },
                format!("command `{}`", shorten(&command)),
            )
        }
        Activation::Subsystem(name) => {
            let kind = if name == "sftp" {
                ChannelKind::Sftp
            } else {
                ChannelKind::Subsystem
            };
            (
                kind,
                Action::Channel {
                    channel: num,
                    kind,
                    detail: name.clone(),
                },
                format!("subsystem {name}"),
            )
        }
    };
    let pty = setup.pty.is_some();
    let style = if pty { Style::Terminal } else { Style::Plain };
    let shell_mode = ctx.sess.target.shell;
    if matches!(activation, Activation::Shell) && shell_mode == ShellMode::Deny {
        let _ = gate
            .record(Event::ChannelRequest {
                channel: num,
                request: "shell".into(),
                detail: "refused: the grant allows no shell (shell = \"deny\")".into(),
                accepted: false,
            })
            .await;
        let msg = "proctor: this grant allows no interactive shell; run commands with \
                   `ssh HOST COMMAND`";
        refuse_channel(&ctx, msg, style).await;
        return;
    }
    let judged = matches!(activation, Activation::Shell) && shell_mode == ShellMode::Judged;
    match judge(&ctx, action, &label, style, &mut input, &mut w).await {
        Judged::Allow => {}
        Judged::Deny(msg) => {
            refuse_channel(&ctx, &msg, style).await;
            return;
        }
        Judged::Gone(i) => {
            end_on_interrupt(&ctx, &i, style).await;
            return;
        }
    }

    // A judged shell on a terminal reads the target's prompts, marked at random.
    let prompts = (judged && pty).then(|| crate::judged::Prompts::new(rand::random()));
    // Open the target side only now that the request is allowed.
    let target =
        match open_target_session(&ctx, &setup, &activation, judged, prompts.as_ref()).await {
            Ok(t) => t,
            Err(e) => {
                let msg = format!("proctor: the target refused the channel: {e}");
                let _ = gate
                    .record(Event::ProtocolError {
                        party: proctor_gate::Party::Target,
                        message: msg.clone(),
                    })
                    .await;
                let _ = ctx.agent.channel_failure(ctx.id).await;
                notice(&ctx, &msg, style).await;
                close_agent(&ctx).await;
                return;
            }
        };
    let mode = match (&activation, kind) {
        (_, ChannelKind::Sftp) => Mode::Sftp(Arc::new(Mutex::new(SftpTracker::new(num)))),
        (Activation::Shell, _) if judged => Mode::Judged(Arc::new(Mutex::new(
            Discipline::new(pty).with_prompts(prompts),
        ))),
        (Activation::Shell, _) => Mode::Shell(Arc::new(Mutex::new(LineTracker::new(
            setup.pty.as_ref().map(|p| (p.cols, p.rows)),
        )))),
        _ => Mode::Raw,
    };
    relay(ctx, input, atx, target, mode, style, true).await;
}

pub(crate) fn shorten(s: &str) -> String {
    const MAX: usize = 200;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let t: String = s.chars().take(MAX).collect();
        format!("{t}...")
    }
}

async fn open_target_session(
    ctx: &ChanCtx,
    setup: &Setup,
    activation: &Activation,
    judged: bool,
    prompts: Option<&crate::judged::Prompts>,
) -> Result<russh::Channel<client::Msg>, russh::Error> {
    let ch = ctx.sess.conn.handle.channel_open_session().await?;
    if let Some(p) = &setup.pty {
        // A judged shell's terminal modes are proctor's: echo off, no translation.
        let modes = if judged {
            crate::judged::pty_modes()
        } else {
            p.modes.clone()
        };
        ch.request_pty(false, &p.term, p.cols, p.rows, p.px_w, p.px_h, &modes)
            .await?;
    }
    for (k, v) in &setup.env {
        ch.set_env(false, k.clone(), v.clone()).await?;
    }
    match activation {
        Activation::Shell if judged => {
            ch.exec(true, crate::judged::command(setup.pty.is_some(), prompts))
                .await?
        }
        Activation::Shell => ch.request_shell(true).await?,
        Activation::Exec(cmd) => ch.exec(true, cmd.clone()).await?,
        Activation::Subsystem(name) => ch.request_subsystem(true, name.clone()).await?,
    }
    Ok(ch)
}

async fn record_env(ctx: &ChanCtx, name: &str, value: &str, accepted: bool) {
    let gate = &ctx.sess.gate;
    let detail = if accepted {
        format!("{name}={value}")
    } else {
        format!("{name}={value} refused: not in ssh.accept_env")
    };
    let _ = gate
        .record(Event::ChannelRequest {
            channel: ctx.num(),
            request: "env".into(),
            detail,
            accepted,
        })
        .await;
    if accepted && name == "PROCTOR_REASON" {
        let _ = gate
            .record(Event::Annotation {
                source: "agent".into(),
                text: value.to_string(),
            })
            .await;
    }
}

async fn record_refused_request(ctx: &ChanCtx, request: &str) {
    let _ = ctx
        .sess
        .gate
        .record(Event::ChannelRequest {
            channel: ctx.num(),
            request: request.into(),
            detail: "refused: forwarding to the agent is not supported".into(),
            accepted: false,
        })
        .await;
}

/// How notices are written into the agent's channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// A terminal in raw mode: lines need CR LF and a fresh line first.
    Terminal,
    Plain,
    /// Not a session channel (port forward): nowhere to show text.
    Silent,
}

pub(crate) async fn notice(ctx: &ChanCtx, text: &str, style: Style) {
    if ctx.agent_eof_sent() {
        return;
    }
    let text = match style {
        Style::Terminal => format!("\r\n{}\r\n", text.replace('\n', "\r\n")),
        Style::Plain => format!("{text}\n"),
        Style::Silent => return,
    };
    let _ = ctx
        .agent
        .extended_data(ctx.id, 1, Bytes::from(text.into_bytes()))
        .await;
}

pub(crate) async fn close_agent(ctx: &ChanCtx) {
    ctx.eof_to_agent().await;
    let _ = ctx.agent.close(ctx.id).await;
}

/// A refused command: the request "succeeds" so the client shows the message and the exit
/// status instead of a generic failure.
async fn refuse_channel(ctx: &ChanCtx, msg: &str, style: Style) {
    let _ = ctx.agent.channel_success(ctx.id).await;
    notice(ctx, msg, style).await;
    let _ = ctx
        .sess
        .gate
        .record(Event::ExitStatus {
            channel: ctx.num(),
            status: DENIED_EXIT_STATUS,
        })
        .await;
    let _ = ctx
        .agent
        .exit_status_request(ctx.id, DENIED_EXIT_STATUS)
        .await;
    close_agent(ctx).await;
}

async fn end_on_interrupt(ctx: &ChanCtx, i: &Interrupt, style: Style) {
    match i {
        Interrupt::Stop(s) => {
            notice(ctx, &s.notice(), style).await;
            close_agent(ctx).await;
        }
        Interrupt::Down(DownEnd::TargetGone) => {
            notice(ctx, &Stop::TargetLost.notice(), style).await;
            close_agent(ctx).await;
        }
        Interrupt::Down(DownEnd::RecordFailed) => {
            notice(
                ctx,
                "proctor: recording failed; the channel is closed",
                style,
            )
            .await;
            close_agent(ctx).await;
        }
        Interrupt::Down(DownEnd::Internal) => {
            let message = "proctor: internal error in the channel's terminal model; the \
                           channel is closed";
            let _ = ctx
                .sess
                .gate
                .record(Event::ProtocolError {
                    party: proctor_gate::Party::Proctor,
                    message: message.into(),
                })
                .await;
            notice(ctx, message, style).await;
            close_agent(ctx).await;
        }
        Interrupt::Down(_) | Interrupt::AgentGone => {}
    }
}

/// Runs `f` on the channel's line tracker. A poisoned lock (the terminal model panicked, on
/// hostile output or a bug) ends the channel: a shell whose lines proctor can no longer
/// rebuild must not have them forwarded unjudged.
fn track<T>(tracker: &Mutex<LineTracker>, f: impl FnOnce(&mut LineTracker) -> T) -> Flow<T> {
    match tracker.lock() {
        Ok(mut t) => Ok(f(&mut t)),
        Err(_) => Err(Interrupt::Down(DownEnd::Internal)),
    }
}

/// Asks the gate, and waits out a hold while still reading (and buffering) agent input.
async fn judge(
    ctx: &ChanCtx,
    action: Action,
    label: &str,
    style: Style,
    input: &mut AgentIn,
    w: &mut Watches,
) -> Judged {
    let unenforced_line = matches!(action, Action::CommandLine { .. })
        && ctx.sess.target.shell == ShellMode::RecordOnly;
    let decision = tokio::select! {
        d = ctx.sess.gate.decide(action) => d,
        i = w.interrupted() => return Judged::Gone(i),
    };
    follow(ctx, decision, label, style, input, w, unenforced_line).await
}

/// Acts on a decision: a hold is waited out while agent input is still read (and buffered).
async fn follow(
    ctx: &ChanCtx,
    decision: Result<Decision, GateError>,
    label: &str,
    style: Style,
    input: &mut AgentIn,
    w: &mut Watches,
    unenforced_line: bool,
) -> Judged {
    match decision {
        Err(e) => Judged::Deny(format!("proctor: {label} refused: {e}")),
        Ok(Decision::Allow) => Judged::Allow,
        Ok(Decision::Deny { rule, reason }) => Judged::Deny(format!(
            "proctor: {label} denied by policy (rule {rule}): {reason}"
        )),
        Ok(Decision::Held(hold)) => {
            if unenforced_line {
                record_unenforced_hold(ctx, &hold.rule, label).await;
            }
            notice(
                ctx,
                &format!(
                    "proctor: {label} is held for approval {} (rule {}: {}); waiting for a decision...",
                    hold.approval_id, hold.rule, hold.reason
                ),
                style,
            )
            .await;
            let outcome = hold.outcome;
            let mut gone = input.gone();
            tokio::select! {
                r = outcome => match r {
                    Resolution::Allow => {
                        notice(ctx, &format!("proctor: {label} approved"), style).await;
                        Judged::Allow
                    }
                    Resolution::Deny { rule, reason, .. } => Judged::Deny(format!(
                        "proctor: {label} denied (rule {rule}): {reason}"
                    )),
                },
                i = w.interrupted() => Judged::Gone(i),
                // Dropping the outcome future cancels the approval.
                _ = wait_true(&mut gone) => Judged::Gone(Interrupt::AgentGone),
            }
        }
    }
}

/// A hold rule matched a line of a record-only shell, where the target's own line editor
/// may run something else than the line judged: people are told at once.
async fn record_unenforced_hold(ctx: &ChanCtx, rule: &str, label: &str) {
    let _ = ctx
        .sess
        .gate
        .record(Event::Alert(proctor_gate::AlertRecord {
            rule: rule.to_string(),
            severity: "high".into(),
            message: format!(
                "hold rule {rule} matched {label} in a record-only shell: the hold cannot be \
                 enforced there (the target's line editor runs the line)"
            ),
        }))
        .await;
}

/// Relays an activated channel until either side ends it, then records its summary.
async fn relay(
    ctx: ChanCtx,
    mut input: AgentIn,
    atx: ChannelWriteHalf<server::Msg>,
    target: russh::Channel<client::Msg>,
    mode: Mode,
    style: Style,
    forward_first_reply: bool,
) {
    let ctx = Arc::new(ctx);
    let (trx, ttx) = target.split();
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let (down_tx, down_rx) = watch::channel(None);
    let (fwd_tx, fwd_rx) = tokio::sync::mpsc::unbounded_channel();
    let down = tokio::spawn(downstream(
        ctx.clone(),
        trx,
        atx,
        mode.share(),
        cancel_rx,
        down_tx,
        forward_first_reply,
        // Weak: the forwarder still ends when the upstream lets go of its sender.
        fwd_tx.downgrade(),
    ));
    let (fwd_end_tx, fwd_end_rx) = watch::channel(None);
    let (fwd_cancel_tx, fwd_cancel_rx) = watch::channel(false);
    let budget = Arc::new(Semaphore::new(
        ctx.sess
            .limits
            .forward_bytes
            .clamp(1, Semaphore::MAX_PERMITS),
    ));
    let forwarder = tokio::spawn(forward_to_target(ttx, fwd_rx, fwd_cancel_rx, fwd_end_tx));
    let mut up = Upstream {
        ctx: ctx.clone(),
        fwd: Some(fwd_tx),
        budget,
        w: Watches {
            stop: ctx.sess.stop.clone(),
            down: down_rx,
            fwd: Some(fwd_end_rx),
        },
        mode,
        style,
        tally: Tally::default(),
        framer: Framer::default(),
        eof_sent: false,
        raw_line: BytesMut::new(),
        cwd: crate::cwd_probe::CwdProbe::default(),
    };
    let mut ended = up.run(&mut input).await;
    if matches!(ended, Interrupt::AgentGone) {
        // What the agent sent before it closed still goes to the target, in order.
        up.fwd.take();
        let drained = async {
            let mut f = forwarder;
            let ttx = (&mut f).await.ok();
            (f, ttx)
        };
        tokio::select! {
            (_, ttx) = drained => {
                if let Some(ttx) = ttx {
                    let _ = ttx.close().await;
                }
            }
            i = up.w.interrupted() => {
                let _ = fwd_cancel_tx.send(true);
                ended = i;
            }
        }
        let _ = cancel_tx.send(true);
        if !matches!(ended, Interrupt::AgentGone) {
            end_on_interrupt(&ctx, &ended, style).await;
        }
    } else {
        let _ = fwd_cancel_tx.send(true);
        let _ = cancel_tx.send(true);
        let ttx = forwarder.await.ok();
        if let Interrupt::Stop(_)
        | Interrupt::Down(DownEnd::TargetGone | DownEnd::RecordFailed | DownEnd::Internal) =
            &ended
        {
            end_on_interrupt(&ctx, &ended, style).await;
            if let Some(ttx) = ttx {
                let _ = ttx.close().await;
            }
        }
    }
    let (bytes_out, digest_out) = match down.await {
        Ok(t) => t.finish(),
        Err(_) => Tally::default().finish(),
    };
    let gate = &ctx.sess.gate;
    if let Mode::Sftp(t) = &up.mode {
        let rest = t.lock().map(|mut t| t.finish()).unwrap_or_default();
        for op in rest {
            let _ = gate.record(Event::Sftp(op)).await;
        }
    }
    let (bytes_in, digest_in) = std::mem::take(&mut up.tally).finish();
    let _ = gate
        .record(Event::ChannelClose {
            channel: ctx.num(),
            summary: TransferSummary {
                bytes_in,
                bytes_out,
                digest_in,
                digest_out,
            },
        })
        .await;
}

/// What the upstream hands to the forwarder, in order.
enum Fwd {
    /// Everything after this waits until the input event it stands for is durable.
    Durable(Durable),
    Data(Bytes, OwnedSemaphorePermit),
    Eof,
    WindowChange {
        cols: u32,
        rows: u32,
        px_w: u32,
        px_h: u32,
    },
    Signal(Sig),
    /// The terminal's interrupt character, sent by proctor itself (the target read a judged
    /// command as unfinished); recorded as a note, not as agent input.
    Interrupt,
}

/// Agent to target, the last step: waits for each input event to be durable, then forwards
/// what it carried. Running apart from the upstream lets the next input be read, judged and
/// queued for the recorder while the previous one is being made durable, so one fdatasync
/// covers more data; the order of everything sent to the target is kept. Returns the target
/// channel's write half so the relay can close it.
async fn forward_to_target(
    ttx: ChannelWriteHalf<client::Msg>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Fwd>,
    mut cancel: watch::Receiver<bool>,
    end: watch::Sender<Option<DownEnd>>,
) -> ChannelWriteHalf<client::Msg> {
    loop {
        let op = tokio::select! {
            op = rx.recv() => op,
            _ = wait_true(&mut cancel) => break,
        };
        let Some(op) = op else {
            break;
        };
        let failed = tokio::select! {
            f = async {
                match op {
                    Fwd::Durable(d) => d.wait().await.err().map(|e| {
                        tracing::warn!(error = %e, "recording input failed");
                        DownEnd::RecordFailed
                    }),
                    Fwd::Data(data, _permit) => {
                        ttx.data_bytes(data).await.err().map(|_| DownEnd::TargetGone)
                    }
                    Fwd::Eof => ttx.eof().await.err().map(|_| DownEnd::TargetGone),
                    Fwd::WindowChange { cols, rows, px_w, px_h } => {
                        let _ = ttx.window_change(cols, rows, px_w, px_h).await;
                        None
                    }
                    Fwd::Signal(sig) => {
                        let _ = ttx.signal(sig).await;
                        None
                    }
                    Fwd::Interrupt => ttx
                        .data_bytes(Bytes::from_static(b"\x03"))
                        .await
                        .err()
                        .map(|_| DownEnd::TargetGone),
                }
            } => f,
            _ = wait_true(&mut cancel) => break,
        };
        if let Some(e) = failed {
            let _ = end.send(Some(e));
            break;
        }
    }
    ttx
}

struct Upstream {
    ctx: Arc<ChanCtx>,
    /// Towards the forwarder; `None` once handed over for draining.
    fwd: Option<tokio::sync::mpsc::UnboundedSender<Fwd>>,
    /// Bytes queued for the forwarder but not yet written to the target.
    budget: Arc<Semaphore>,
    w: Watches,
    mode: Mode,
    style: Style,
    tally: Tally,
    framer: Framer,
    eof_sent: bool,
    /// Without a terminal, a line is held back whole until it is judged: the target cannot be
    /// told to forget part of a line.
    raw_line: BytesMut,
    /// Reads a judged shell's working directory for the approval card.
    cwd: crate::cwd_probe::CwdProbe,
}

type Flow<T> = Result<T, Interrupt>;

impl Upstream {
    async fn run(&mut self, input: &mut AgentIn) -> Interrupt {
        loop {
            let msg = tokio::select! {
                biased;
                i = self.w.interrupted() => return i,
                m = input.next() => m,
            };
            let Some(msg) = msg else {
                return Interrupt::AgentGone;
            };
            let r = match msg {
                ChannelMsg::Data { data } => {
                    let batch = self.collect(data, input);
                    self.input(batch, input).await
                }
                ChannelMsg::Eof => {
                    let mut r = Ok(());
                    if let Mode::Shell(t) = &self.mode {
                        let t = t.clone();
                        r = self.flush_raw_line(&t, input).await;
                    }
                    if let Mode::Judged(d) = &self.mode {
                        let d = d.clone();
                        r = self.judged_end(&d, input).await;
                    }
                    if r.is_ok() && !self.eof_sent {
                        self.eof_sent = true;
                        r = self.send(Fwd::Eof);
                    }
                    r
                }
                ChannelMsg::Close => return Interrupt::AgentGone,
                ChannelMsg::WindowChange {
                    col_width,
                    row_height,
                    pix_width,
                    pix_height,
                } => {
                    let recorded = self
                        .ctx
                        .sess
                        .gate
                        .record(Event::Resize {
                            channel: self.ctx.num(),
                            cols: col_width,
                            rows: row_height,
                        })
                        .await;
                    if recorded.is_err() {
                        return Interrupt::Down(DownEnd::RecordFailed);
                    }
                    if let Mode::Shell(t) = &self.mode
                        && let Err(i) = track(t, |t| t.resize(col_width, row_height))
                    {
                        return i;
                    }
                    self.send(Fwd::WindowChange {
                        cols: col_width,
                        rows: row_height,
                        px_w: pix_width,
                        px_h: pix_height,
                    })
                }
                ChannelMsg::Signal { signal } => {
                    let recorded = self
                        .ctx
                        .sess
                        .gate
                        .record(Event::ChannelRequest {
                            channel: self.ctx.num(),
                            request: "signal".into(),
                            detail: sig_name(&signal),
                            accepted: true,
                        })
                        .await;
                    if recorded.is_err() {
                        return Interrupt::Down(DownEnd::RecordFailed);
                    }
                    self.send(Fwd::Signal(signal))
                }
                ChannelMsg::SetEnv {
                    variable_name,
                    variable_value,
                    ..
                } => {
                    // Too late for the target's environment, still part of the record.
                    let allowed = self.ctx.sess.accept_env.allows(&variable_name);
                    record_env(&self.ctx, &variable_name, &variable_value, allowed).await;
                    Ok(())
                }
                ChannelMsg::RequestX11 { .. } => {
                    record_refused_request(&self.ctx, "x11-req").await;
                    Ok(())
                }
                ChannelMsg::AgentForward { .. } => {
                    record_refused_request(&self.ctx, "auth-agent-req@openssh.com").await;
                    Ok(())
                }
                _ => Ok(()),
            };
            if let Err(i) = r {
                return i;
            }
        }
    }

    /// Drains the input already waiting so it is recorded with one durable write.
    fn collect(&mut self, first: Bytes, input: &mut AgentIn) -> Bytes {
        let max = self.ctx.sess.limits.input_batch_bytes;
        let mut batch: Option<BytesMut> = None;
        let mut len = first.len();
        while len < max {
            match input.try_next() {
                Some(ChannelMsg::Data { data }) => {
                    len += data.len();
                    batch
                        .get_or_insert_with(|| {
                            let mut b = BytesMut::with_capacity(max.min(len * 2));
                            b.extend_from_slice(&first);
                            b
                        })
                        .extend_from_slice(&data);
                }
                Some(other) => {
                    input.unread(other);
                    break;
                }
                None => break,
            }
        }
        match batch {
            Some(b) => b.freeze(),
            None => first,
        }
    }

    async fn input(&mut self, data: Bytes, input: &mut AgentIn) -> Flow<()> {
        if self.eof_sent {
            return Ok(());
        }
        let gate = self.ctx.sess.gate.clone();
        // Queued for the recorder; the forwarder sends nothing of it before it is durable.
        let queued = tokio::select! {
            r = gate.enqueue(Event::Input { channel: self.ctx.num(), data: data.clone() }) => r,
            i = self.w.interrupted() => return Err(i),
        };
        let Ok(durable) = queued else {
            return Err(Interrupt::Down(DownEnd::RecordFailed));
        };
        self.send(Fwd::Durable(durable))?;
        self.tally.add(&data);
        match &self.mode {
            Mode::Raw => self.forward(data).await,
            Mode::Shell(t) => {
                let t = t.clone();
                self.shell_input(&t, data, input).await
            }
            Mode::Judged(d) => {
                let d = d.clone();
                self.judged_input(&d, data, input).await
            }
            Mode::Sftp(t) => {
                let t = t.clone();
                self.sftp_input(&t, data, input).await
            }
        }
    }

    /// Queues an operation for the forwarder.
    fn send(&mut self, op: Fwd) -> Flow<()> {
        match &self.fwd {
            Some(tx) if tx.send(op).is_ok() => Ok(()),
            // The forwarder ended: it reported why, or the channel is being torn down.
            _ => Err(Interrupt::Down(
                self.w
                    .fwd
                    .as_ref()
                    .and_then(|f| *f.borrow())
                    .unwrap_or(DownEnd::Cancelled),
            )),
        }
    }

    /// Queues data for the target, within the bound of bytes not yet written there.
    async fn forward(&mut self, data: Bytes) -> Flow<()> {
        if data.is_empty() {
            return Ok(());
        }
        let n = u32::try_from(data.len().min(self.ctx.sess.limits.forward_bytes.max(1)))
            .unwrap_or(u32::MAX);
        let permit = tokio::select! {
            p = self.budget.clone().acquire_many_owned(n) => p,
            i = self.w.interrupted() => return Err(i),
        };
        let Ok(permit) = permit else {
            return Err(Interrupt::Down(DownEnd::Cancelled));
        };
        self.send(Fwd::Data(data, permit))
    }

    async fn sftp_input(
        &mut self,
        tracker: &Arc<Mutex<SftpTracker>>,
        data: Bytes,
        input: &mut AgentIn,
    ) -> Flow<()> {
        self.framer.push(&data);
        let mut out = BytesMut::new();
        loop {
            let packet = match self.framer.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => return Err(self.sftp_violation(e.to_string()).await),
            };
            let req = match sftp::parse_request(&packet) {
                Ok(r) => r,
                Err(e) => return Err(self.sftp_violation(e.to_string()).await),
            };
            let changes = tracker.lock().map(|t| t.changes(&req)).unwrap_or_default();
            if changes.is_empty() {
                if let Ok(mut t) = tracker.lock() {
                    t.forwarded(req);
                }
                out.extend_from_slice(&packet);
                continue;
            }
            // Keep request order: what was allowed so far goes first.
            if !out.is_empty() {
                self.forward(out.split().freeze()).await?;
            }
            let mut denied = None;
            for c in changes {
                let label = if c.target_path.is_empty() {
                    format!("sftp {} {}", c.op, c.path)
                } else {
                    format!("sftp {} {} -> {}", c.op, c.path, c.target_path)
                };
                let action = Action::SftpChange {
                    channel: self.ctx.num(),
                    op: c.op,
                    path: c.path,
                    target_path: c.target_path,
                };
                match judge(&self.ctx, action, &label, Style::Plain, input, &mut self.w).await {
                    Judged::Allow => {}
                    Judged::Deny(msg) => {
                        denied = Some(msg);
                        break;
                    }
                    Judged::Gone(i) => return Err(i),
                }
            }
            match denied {
                None => {
                    if let Ok(mut t) = tracker.lock() {
                        t.forwarded(req);
                    }
                    self.forward(packet).await?;
                }
                Some(msg) => {
                    let rec = tracker.lock().ok().and_then(|t| t.denied(&req, &msg));
                    if let Some(rec) = rec {
                        let _ = self.ctx.sess.gate.record(Event::Sftp(rec)).await;
                    }
                    if let Some(id) = req.id {
                        let reply = sftp::status_packet(id, sftp::FX_PERMISSION_DENIED, &msg);
                        let _ = self.ctx.agent.data(self.ctx.id, reply).await;
                    }
                }
            }
        }
        if !out.is_empty() {
            self.forward(out.freeze()).await?;
        }
        Ok(())
    }

    async fn sftp_violation(&mut self, what: String) -> Interrupt {
        let message = format!("undecodable SFTP request: {what}");
        let _ = self
            .ctx
            .sess
            .gate
            .record(Event::ProtocolError {
                party: proctor_gate::Party::Agent,
                message: message.clone(),
            })
            .await;
        notice(
            &self.ctx,
            &format!("proctor: {message}; the channel is closed"),
            Style::Plain,
        )
        .await;
        close_agent(&self.ctx).await;
        let _ = self.framer.take_rest();
        Interrupt::AgentGone
    }
}

/// Target to agent: records output (without waiting for each event to be durable), feeds
/// the line tracker or SFTP decoder, forwards within the agent's window.
/// How long the target's EOF waits for the exit status before it is passed on anyway.
const EOF_GRACE: Duration = Duration::from_millis(100);

#[allow(clippy::too_many_arguments)]
async fn downstream(
    ctx: Arc<ChanCtx>,
    mut trx: ChannelReadHalf,
    atx: ChannelWriteHalf<server::Msg>,
    mode: Mode,
    mut cancel: watch::Receiver<bool>,
    down: watch::Sender<Option<DownEnd>>,
    mut forward_first_reply: bool,
    to_target: tokio::sync::mpsc::WeakUnboundedSender<Fwd>,
) -> Tally {
    let gate = ctx.sess.gate.clone();
    let limits = ctx.sess.limits.clone();
    let mut log = OutputLog::new(
        gate.clone(),
        limits.output_tickets,
        limits.output_ticket_bytes,
    );
    let mut tally = Tally::default();
    let num = ctx.num();
    let mut peeked: Option<ChannelMsg> = None;
    // The target's EOF, not yet passed on. sshd sends EOF and then the exit status; passed on
    // one by one, a client that has already sent its own EOF may close the channel in between
    // and lose the status (OpenSSH then exits 255). So the EOF waits for the status, the close,
    // or a short grace period (a program may close its output and keep running).
    let mut eof_pending = false;
    let end = loop {
        let msg = match peeked.take() {
            Some(m) => Some(m),
            None => tokio::select! {
                m = trx.wait() => m,
                _ = wait_true(&mut cancel) => break DownEnd::Cancelled,
                _ = tokio::time::sleep(EOF_GRACE), if eof_pending => {
                    eof_pending = false;
                    ctx.eof_to_agent().await;
                    continue;
                }
            },
        };
        let Some(msg) = msg else {
            break DownEnd::TargetGone;
        };
        let r: Result<(), DownEnd> = match msg {
            ChannelMsg::Data { data } => {
                let (data, next) = gather(&mut trx, data, None, limits.output_batch_bytes);
                peeked = next;
                output(
                    &ctx,
                    &atx,
                    &mut log,
                    &mut tally,
                    &mode,
                    &mut cancel,
                    OutputStream::Stdout,
                    data,
                    &to_target,
                )
                .await
            }
            ChannelMsg::ExtendedData { data, ext } => {
                let (data, next) = gather(&mut trx, data, Some(ext), limits.output_batch_bytes);
                peeked = next;
                let stream = OutputStream::Stderr;
                output_ext(
                    &ctx,
                    &atx,
                    &mut log,
                    &mut tally,
                    &mut cancel,
                    stream,
                    ext,
                    data,
                )
                .await
            }
            ChannelMsg::ExitStatus { exit_status } => {
                let _ = log
                    .push(Event::ExitStatus {
                        channel: num,
                        status: exit_status,
                    })
                    .await;
                let _ = ctx.agent.exit_status_request(ctx.id, exit_status).await;
                if std::mem::take(&mut eof_pending) {
                    ctx.eof_to_agent().await;
                }
                Ok(())
            }
            ChannelMsg::ExitSignal {
                signal_name,
                core_dumped,
                error_message,
                lang_tag,
            } => {
                let _ = log
                    .push(Event::ExitSignal {
                        channel: num,
                        signal: sig_name(&signal_name),
                        message: error_message.clone(),
                    })
                    .await;
                let _ = ctx
                    .agent
                    .exit_signal_request(ctx.id, signal_name, core_dumped, error_message, lang_tag)
                    .await;
                if std::mem::take(&mut eof_pending) {
                    ctx.eof_to_agent().await;
                }
                Ok(())
            }
            ChannelMsg::Eof => {
                // No more output: bytes held back as a possible prompt marker were none.
                if let Mode::Judged(d) = &mode {
                    let rest = d.lock().map(|mut d| d.flush_output()).unwrap_or_default();
                    if !rest.is_empty() {
                        let _ = atx.data_bytes(Bytes::from(rest)).await;
                    }
                }
                eof_pending = true;
                Ok(())
            }
            ChannelMsg::Close => Err(DownEnd::TargetClosed),
            ChannelMsg::Success => {
                if forward_first_reply {
                    forward_first_reply = false;
                    let _ = ctx.agent.channel_success(ctx.id).await;
                }
                Ok(())
            }
            ChannelMsg::Failure => {
                if forward_first_reply {
                    forward_first_reply = false;
                    let _ = ctx.agent.channel_failure(ctx.id).await;
                }
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(e) = r {
            break e;
        }
    };
    if log.flush().await.is_err() && end != DownEnd::Cancelled {
        let _ = down.send(Some(DownEnd::RecordFailed));
        return tally;
    }
    if end == DownEnd::TargetClosed {
        close_agent(&ctx).await;
    }
    let _ = down.send(Some(end));
    tally
}

/// Joins output messages already waiting on the same stream into one event.
fn gather(
    trx: &mut ChannelReadHalf,
    first: Bytes,
    ext: Option<u32>,
    max: usize,
) -> (Bytes, Option<ChannelMsg>) {
    let mut batch: Option<BytesMut> = None;
    let mut len = first.len();
    while len < max {
        let Some(Some(m)) = trx.wait().now_or_never() else {
            break;
        };
        let data = match (&m, ext) {
            (ChannelMsg::Data { data }, None) => data.clone(),
            (ChannelMsg::ExtendedData { data, ext: e }, Some(x)) if *e == x => data.clone(),
            _ => {
                let b = batch.map(|b| b.freeze()).unwrap_or(first);
                return (b, Some(m));
            }
        };
        len += data.len();
        batch
            .get_or_insert_with(|| {
                let mut b = BytesMut::with_capacity(max.min(len * 2));
                b.extend_from_slice(&first);
                b
            })
            .extend_from_slice(&data);
    }
    (batch.map(|b| b.freeze()).unwrap_or(first), None)
}

#[allow(clippy::too_many_arguments)]
async fn output(
    ctx: &ChanCtx,
    atx: &ChannelWriteHalf<server::Msg>,
    log: &mut OutputLog,
    tally: &mut Tally,
    mode: &Mode,
    cancel: &mut watch::Receiver<bool>,
    stream: OutputStream,
    data: Bytes,
    to_target: &tokio::sync::mpsc::WeakUnboundedSender<Fwd>,
) -> Result<(), DownEnd> {
    record_output(ctx, log, tally, stream, &data).await?;
    let mut data = data;
    match mode {
        Mode::Shell(t) => {
            // A panic in the terminal model (on hostile output, or a bug) must not pass
            // unnoticed: it poisons the tracker, which ends the channel on both sides.
            let fed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match t.lock() {
                Ok(mut t) => {
                    t.feed_output(&data);
                    true
                }
                Err(_) => false,
            }));
            if !matches!(fed, Ok(true)) {
                return Err(DownEnd::Internal);
            }
        }
        Mode::Sftp(t) => {
            let done = t
                .lock()
                .map(|mut t| t.replies(&data))
                .map_err(|_| DownEnd::Internal)?;
            for op in done {
                log.push(Event::Sftp(op))
                    .await
                    .map_err(|_| DownEnd::RecordFailed)?;
            }
        }
        Mode::Judged(d) => {
            let scanned = d
                .lock()
                .map(|mut d| d.target_output(&data))
                .map_err(|_| DownEnd::Internal)?;
            if let Some(s) = scanned {
                if s.unfinished {
                    judged_shell::unfinished(ctx, d, to_target).await?;
                }
                if s.shown.is_empty() {
                    return Ok(());
                }
                data = Bytes::from(s.shown);
            }
        }
        Mode::Raw => {}
    }
    tokio::select! {
        r = atx.data_bytes(data) => r.map_err(|_| DownEnd::Cancelled),
        _ = wait_true(cancel) => Err(DownEnd::Cancelled),
    }
}

#[allow(clippy::too_many_arguments)]
async fn output_ext(
    ctx: &ChanCtx,
    atx: &ChannelWriteHalf<server::Msg>,
    log: &mut OutputLog,
    tally: &mut Tally,
    cancel: &mut watch::Receiver<bool>,
    stream: OutputStream,
    ext: u32,
    data: Bytes,
) -> Result<(), DownEnd> {
    record_output(ctx, log, tally, stream, &data).await?;
    tokio::select! {
        r = atx.extended_data_bytes(ext, data) => r.map_err(|_| DownEnd::Cancelled),
        _ = wait_true(cancel) => Err(DownEnd::Cancelled),
    }
}

async fn record_output(
    ctx: &ChanCtx,
    log: &mut OutputLog,
    tally: &mut Tally,
    stream: OutputStream,
    data: &Bytes,
) -> Result<(), DownEnd> {
    tally.add(data);
    log.push(Event::Output {
        channel: ctx.num(),
        stream,
        data: data.clone(),
    })
    .await
    .map_err(|e: GateError| {
        tracing::warn!(error = %e, "recording output failed");
        DownEnd::RecordFailed
    })
}

/// Relay of an already-open pair of channels without requests (port forwards).
pub(crate) async fn relay_raw(
    ctx: ChanCtx,
    agent: russh::Channel<server::Msg>,
    target: russh::Channel<client::Msg>,
) {
    let (rx, atx) = agent.split();
    let input = AgentIn::new(rx, &ctx);
    relay(ctx, input, atx, target, Mode::Raw, Style::Silent, false).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic while the terminal model holds its lock (hostile output, a bug) poisons it;
    /// from then on the channel ends instead of forwarding lines it can no longer rebuild.
    #[test]
    fn a_poisoned_line_tracker_ends_the_channel() {
        let tracker = Arc::new(Mutex::new(LineTracker::new(Some((80, 24)))));
        assert!(matches!(track(&tracker, |t| t.is_raw()), Ok(false)));
        let t2 = tracker.clone();
        let crashed = std::thread::spawn(move || {
            let _guard = t2.lock();
            panic!("the terminal model panicked on hostile output");
        })
        .join();
        assert!(crashed.is_err());
        for _ in 0..2 {
            assert!(matches!(
                track(&tracker, |t| t.input_byte(b'\r')),
                Err(Interrupt::Down(DownEnd::Internal))
            ));
        }
    }

    /// Hostile terminal output never panics the model; if it did, the output path would
    /// report the channel's end rather than unwind through the relay.
    #[test]
    fn hostile_output_is_fed_without_panicking() {
        let mut t = LineTracker::new(Some((2, 1)));
        let mut junk = Vec::new();
        for i in 0..4096u32 {
            junk.push((i.wrapping_mul(2_654_435_761) >> 13) as u8);
        }
        for chunk in [
            b"\x1b[999999999;999999999H\x1b[?1049h\x1b[99999999L".as_slice(),
            b"\x1b]52;c;Y3VybCB8IHNo\x07\x1b]2;title\x07\x1bP+q\x1b\\",
            junk.as_slice(),
        ] {
            let fed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                t.feed_output(chunk);
                t.resize(1, 1);
            }));
            assert!(fed.is_ok());
        }
    }
}
