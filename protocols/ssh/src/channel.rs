//! One agent channel relayed to one target channel.
//!
//! Each channel is an actor task: it collects the channel's setup requests, has the
//! activating request (`shell`, `exec`, `subsystem`) judged, opens the target channel, and
//! then pumps agent input towards the target itself while a companion task pumps target
//! output towards the agent. Approvals are awaited here, never in russh's callbacks, so a
//! held command stalls only its own channel. Every await that depends on a peer also watches
//! the session's stop signal and the other direction's end, so nothing hangs on a peer that
//! went away.
//!
//! - `setup`: requests before activation, the activating request's judgement, the target
//!   channel's opening;
//! - `relay`: an activated channel's two pumps, the forwarder (durable before forwarded) and
//!   the closing summary;
//! - `upstream_core`: the agent-to-target decisions, without I/O (modes, framing, which line
//!   is judged, what is forwarded, held, refused, recorded); `upstream`: its russh adapter;
//! - `downstream_core`: the target-to-agent decisions, without I/O (what is recorded before
//!   the agent sees it, the models fed with the target's output, when EOF is passed on);
//!   `downstream`: its russh adapter;
//! - `agent_input`: the agent's messages, read ahead into a bounded queue;
//! - `judge`: verdicts and holds as a channel waits for them.
//!
//! Rule 4 (fail closed) holds throughout: an action whose record fails is not forwarded and
//! ends the channel; a poisoned lock or a panic in a pump ends it as an internal error.

use std::sync::Arc;

use bytes::Bytes;
use proctor_gate::Event;
use russh::{ChannelId, Sig, server};
use tokio::sync::watch;

use crate::session::{Session, Stop, wait_some};

/// Exit status reported to the agent when proctor refuses a command.
pub const DENIED_EXIT_STATUS: u32 = 126;

mod agent_input;
mod downstream;
mod downstream_core;
mod judge;
mod relay;
mod setup;
mod upstream;
mod upstream_core;

pub(crate) use relay::relay_raw;
pub(crate) use setup::run_session;
#[cfg(feature = "fuzzing")]
pub(crate) use upstream_core::exercise;

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

/// The signal a name stands for (the inverse of `sig_name`).
fn sig_from_name(name: String) -> Sig {
    match name.as_str() {
        "ABRT" => Sig::ABRT,
        "ALRM" => Sig::ALRM,
        "FPE" => Sig::FPE,
        "HUP" => Sig::HUP,
        "ILL" => Sig::ILL,
        "INT" => Sig::INT,
        "KILL" => Sig::KILL,
        "PIPE" => Sig::PIPE,
        "QUIT" => Sig::QUIT,
        "SEGV" => Sig::SEGV,
        "TERM" => Sig::TERM,
        "USR1" => Sig::USR1,
        _ => Sig::Custom(name),
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

pub(crate) fn shorten(s: &str) -> String {
    const MAX: usize = 200;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let t: String = s.chars().take(MAX).collect();
        format!("{t}...")
    }
}

/// The end of a channel whose record failed: nothing more may be forwarded either way.
fn record_failed() -> Interrupt {
    Interrupt::Down(DownEnd::RecordFailed)
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
            let message = "proctor: recording failed; the channel is closed";
            // Where recording still works (the failure was one event's), the reason is kept.
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
        Interrupt::Down(DownEnd::Internal) => {
            let message = "proctor: internal error in proctor's model of the channel; the \
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

type Flow<T> = Result<T, Interrupt>;
