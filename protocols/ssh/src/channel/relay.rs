//! An activated channel: the two pumps (agent to target through `upstream`, target to agent
//! through `downstream`), the forwarder that writes to the target only what is durable, and
//! the channel's summary once both ends are done.

use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use proctor_gate::{Durable, Event, ShellMode, TransferSummary};
use russh::{ChannelWriteHalf, Sig, client, server};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::agent_input::AgentIn;
use super::downstream::downstream;
use super::setup::panicked;
use super::upstream::Upstream;
use super::upstream_core::{CoreConfig, Mode, UpCore};
use super::{ChanCtx, DownEnd, Interrupt, Style, Watches, end_on_interrupt};
use crate::record::Tally;
use crate::session::wait_true;

/// Relays an activated channel until either side ends it, then records its summary.
pub(super) async fn relay(
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
    let pump = downstream(
        ctx.clone(),
        trx,
        atx,
        mode.share(),
        cancel_rx,
        down_tx.clone(),
        forward_first_reply,
        // Weak: the forwarder still ends when the upstream lets go of its sender.
        fwd_tx.downgrade(),
    );
    // The panic boundary around hostile target output (terminal model, prompt scanner, SFTP
    // reply decoder): a panic ends the channel as an internal error, never lets the upstream
    // keep forwarding with no pump behind it.
    let down = tokio::spawn(async move {
        match std::panic::AssertUnwindSafe(pump).catch_unwind().await {
            Ok(tally) => tally,
            Err(_) => {
                tracing::error!("the target-to-agent pump panicked; the channel ends");
                let _ = down_tx.send(Some(DownEnd::Internal));
                Tally::default()
            }
        }
    });
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
        cwd: crate::cwd_probe::CwdProbe::default(),
        w: Watches {
            stop: ctx.sess.stop.clone(),
            down: down_rx,
            fwd: Some(fwd_end_rx),
        },
        core: UpCore::new(
            CoreConfig {
                channel: ctx.num(),
                terminal: style == Style::Terminal,
                record_only: matches!(mode, Mode::Shell(_))
                    && ctx.sess.target.shell == ShellMode::RecordOnly,
                held_input_bytes: ctx.sess.limits.held_input_bytes,
            },
            mode,
        ),
        style,
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
    if let Mode::Sftp(t) = up.core.mode() {
        let rest = t.lock().map(|mut t| t.finish()).unwrap_or_default();
        for op in rest {
            let _ = gate.record(Event::Sftp(op)).await;
        }
    }
    let (bytes_in, digest_in) = up.core.take_tally().finish();
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
pub(super) enum Fwd {
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

/// Relay of an already-open pair of channels without requests (port forwards).
pub(crate) async fn relay_raw(
    ctx: ChanCtx,
    agent: russh::Channel<server::Msg>,
    target: russh::Channel<client::Msg>,
) {
    let (sess, handle, id) = (ctx.sess.clone(), ctx.agent.clone(), ctx.id);
    let (rx, atx) = agent.split();
    let input = AgentIn::new(rx, &ctx);
    let run = std::panic::AssertUnwindSafe(relay(
        ctx,
        input,
        atx,
        target,
        Mode::Raw,
        Style::Silent,
        false,
    ));
    if run.catch_unwind().await.is_err() {
        panicked(ChanCtx::new(sess, handle, id), Style::Silent).await;
    }
}
