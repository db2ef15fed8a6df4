//! A session channel before it relays: its setup requests (pty, env, refused forwards), the
//! judgement of the request that activates it (`shell`, `exec`, `subsystem`), the opening of
//! the target's channel, and the refusal of what is not allowed.

use futures::FutureExt;
use proctor_gate::{Action, ChannelKind, Event, ShellMode};
use russh::{ChannelMsg, Pty, client, server};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

use super::agent_input::{AgentIn, msg_size};
use super::judge::judge;
use super::relay::relay;
use super::upstream_core::{Mode, env_events, refused_event};
use super::{
    ChanCtx, DENIED_EXIT_STATUS, DownEnd, Flow, Interrupt, Judged, Style, Watches, close_agent,
    end_on_interrupt, notice, record_failed, shorten,
};
use crate::judged::Discipline;
use crate::lines::LineTracker;
use crate::sftp::SftpTracker;

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

/// The relay of one session channel, from its opening to its close. A panic anywhere in it
/// ends the channel with a recorded reason (rule 4: fail closed), never silently.
pub(crate) async fn run_session(ctx: ChanCtx, channel: russh::Channel<server::Msg>) {
    let (sess, agent, id) = (ctx.sess.clone(), ctx.agent.clone(), ctx.id);
    let run = std::panic::AssertUnwindSafe(session_channel(ctx, channel));
    if run.catch_unwind().await.is_err() {
        panicked(ChanCtx::new(sess, agent, id), Style::Plain).await;
    }
}

pub(super) async fn panicked(ctx: ChanCtx, style: Style) {
    tracing::error!(
        channel = ctx.num(),
        "a channel task panicked; the channel ends"
    );
    end_on_interrupt(&ctx, &Interrupt::Down(DownEnd::Internal), style).await;
}

async fn session_channel(ctx: ChanCtx, channel: russh::Channel<server::Msg>) {
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
                let allowed = ctx.sess.accept_env.allows(&variable_name, &variable_value);
                if let Err(i) = record_env(&ctx, &variable_name, &variable_value, allowed).await {
                    // Fail closed: a variable whose record failed never reaches the target.
                    end_on_interrupt(&ctx, &i, Style::Plain).await;
                    return;
                }
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
            ChannelMsg::RequestX11 { .. } | ChannelMsg::AgentForward { .. } => {
                if let Err(i) = record_refused_request(&ctx, &msg).await {
                    end_on_interrupt(&ctx, &i, Style::Plain).await;
                    return;
                }
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
        let recorded = gate
            .record(Event::ChannelRequest {
                channel: num,
                request: "shell".into(),
                detail: "refused: the grant allows no shell (shell = \"deny\")".into(),
                accepted: false,
            })
            .await;
        if recorded.is_err() {
            end_on_interrupt(&ctx, &record_failed(), style).await;
            return;
        }
        let msg = "proctor: this grant allows no interactive shell; run commands with \
                   `ssh HOST COMMAND`";
        refuse_channel(&ctx, msg, style).await;
        return;
    }
    // A command is recorded, judged and shown as text. Bytes that are not UTF-8 would reach
    // all three as U+FFFD while the target runs the bytes themselves (`rm -rf d/\xff` and
    // `rm -rf d/\xfe` read the same), so such a command is refused, with the bytes in the
    // record as `\xNN`. `$'\xff'` in the command says the same to the shell in ASCII.
    if let Activation::Exec(cmd) = &activation
        && std::str::from_utf8(cmd).is_err()
    {
        let shown = crate::cwd_probe::shown_path(cmd);
        let recorded = gate
            .record(Event::ChannelRequest {
                channel: num,
                request: "exec".into(),
                detail: format!("refused: the command is not UTF-8: {shown}"),
                accepted: false,
            })
            .await;
        if recorded.is_err() {
            end_on_interrupt(&ctx, &record_failed(), style).await;
            return;
        }
        let msg = "proctor: this command is not UTF-8, so it cannot be recorded or shown to an \
                   approver exactly; write such bytes as $'\\xNN'";
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

/// Records an `env` request. An error means the channel must end: the variable (and
/// whatever follows it) must not reach the target unrecorded.
async fn record_env(ctx: &ChanCtx, name: &str, value: &str, accepted: bool) -> Flow<()> {
    for ev in env_events(ctx.num(), name, value, accepted) {
        ctx.sess
            .gate
            .record(ev)
            .await
            .map_err(|_| record_failed())?;
    }
    Ok(())
}

/// Records a request proctor refuses (X11 and agent forwarding). An error ends the channel.
async fn record_refused_request(ctx: &ChanCtx, msg: &ChannelMsg) -> Flow<()> {
    let request = match msg {
        ChannelMsg::RequestX11 { .. } => "x11-req",
        _ => "auth-agent-req@openssh.com",
    };
    ctx.sess
        .gate
        .record(refused_event(ctx.num(), request))
        .await
        .map_err(|_| record_failed())
}

/// A refused command: the request "succeeds" so the client shows the message and the exit
/// status instead of a generic failure.
async fn refuse_channel(ctx: &ChanCtx, msg: &str, style: Style) {
    let _ = ctx.agent.channel_success(ctx.id).await;
    notice(ctx, msg, style).await;
    let recorded = ctx
        .sess
        .gate
        .record(Event::ExitStatus {
            channel: ctx.num(),
            status: DENIED_EXIT_STATUS,
        })
        .await;
    if recorded.is_err() {
        // No exit status the record does not hold reaches the agent.
        end_on_interrupt(ctx, &record_failed(), style).await;
        return;
    }
    let _ = ctx
        .agent
        .exit_status_request(ctx.id, DENIED_EXIT_STATUS)
        .await;
    close_agent(ctx).await;
}
