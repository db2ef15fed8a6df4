//! Target to agent, the I/O half: reads the target's channel messages (joining output
//! already waiting into one event), hands them to the I/O-free core (`downstream_core`) and
//! carries out its actions in order: records (output queued within a bound, results before
//! they are passed on), writes to the agent within its window, the EOF grace period. A record
//! that fails ends the channel before anything after it is shown.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, server};
use tokio::sync::watch;

use super::downstream_core::{DownAction, DownCore};
use super::relay::Fwd;
use super::upstream_core::Mode;
use super::{ChanCtx, DownEnd, Style, close_agent, notice, sig_from_name, sig_name};
use crate::record::{OutputLog, Tally};
use crate::session::wait_true;

/// How long the target's EOF waits for the exit status before it is passed on anyway.
const EOF_GRACE: Duration = Duration::from_millis(100);

/// Where the pump writes.
struct Sinks<'a> {
    ctx: &'a ChanCtx,
    atx: &'a ChannelWriteHalf<server::Msg>,
    log: &'a mut OutputLog,
    cancel: &'a mut watch::Receiver<bool>,
    to_target: &'a tokio::sync::mpsc::WeakUnboundedSender<Fwd>,
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn downstream(
    ctx: Arc<ChanCtx>,
    mut trx: ChannelReadHalf,
    atx: ChannelWriteHalf<server::Msg>,
    mode: Mode,
    mut cancel: watch::Receiver<bool>,
    down: watch::Sender<Option<DownEnd>>,
    forward_first_reply: bool,
    to_target: tokio::sync::mpsc::WeakUnboundedSender<Fwd>,
) -> Tally {
    let limits = ctx.sess.limits.clone();
    let mut log = OutputLog::new(
        ctx.sess.gate.clone(),
        limits.output_tickets,
        limits.output_ticket_bytes,
    );
    let mut core = DownCore::new(ctx.num(), mode, forward_first_reply);
    let mut peeked: Option<ChannelMsg> = None;
    let end = 'pump: loop {
        let next = match peeked.take() {
            Some(m) => Some(m),
            None => tokio::select! {
                m = trx.wait() => match m {
                    Some(m) => Some(m),
                    None => break DownEnd::TargetGone,
                },
                _ = wait_true(&mut cancel) => break DownEnd::Cancelled,
                _ = tokio::time::sleep(EOF_GRACE), if core.eof_pending() => {
                    core.grace_elapsed();
                    None
                }
            },
        };
        match next {
            Some(ChannelMsg::Data { data }) => {
                let (data, next) = gather(&mut trx, data, None, limits.output_batch_bytes);
                peeked = next;
                core.output(data);
            }
            Some(ChannelMsg::ExtendedData { data, ext }) => {
                let (data, next) = gather(&mut trx, data, Some(ext), limits.output_batch_bytes);
                peeked = next;
                core.ext_output(ext, data);
            }
            Some(ChannelMsg::ExitStatus { exit_status }) => core.exit_status(exit_status),
            Some(ChannelMsg::ExitSignal {
                signal_name,
                core_dumped,
                error_message,
                lang_tag,
            }) => core.exit_signal(sig_name(&signal_name), core_dumped, error_message, lang_tag),
            Some(ChannelMsg::Eof) => core.target_eof(),
            Some(ChannelMsg::Close) => core.target_close(),
            Some(ChannelMsg::Success) => core.reply(true),
            Some(ChannelMsg::Failure) => core.reply(false),
            _ => {}
        }
        let mut sinks = Sinks {
            ctx: &ctx,
            atx: &atx,
            log: &mut log,
            cancel: &mut cancel,
            to_target: &to_target,
        };
        while let Some(a) = core.poll() {
            if let Err(e) = act(&mut sinks, a).await {
                break 'pump e;
            }
        }
    };
    let tally = core.take_tally();
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

async fn act(s: &mut Sinks<'_>, a: DownAction) -> Result<(), DownEnd> {
    let ctx = s.ctx;
    match a {
        DownAction::Log(ev) => s.log.push(ev).await.map_err(|e| {
            tracing::warn!(error = %e, "recording output failed");
            DownEnd::RecordFailed
        }),
        DownAction::Record(ev) => ctx
            .sess
            .gate
            .record(ev)
            .await
            .map_err(|_| DownEnd::RecordFailed),
        DownAction::Show(data) => tokio::select! {
            r = s.atx.data_bytes(data) => r.map_err(|_| DownEnd::Cancelled),
            _ = wait_true(s.cancel) => Err(DownEnd::Cancelled),
        },
        DownAction::ShowHeld(data) => {
            let _ = s.atx.data_bytes(data).await;
            Ok(())
        }
        DownAction::ShowExt(ext, data) => tokio::select! {
            r = s.atx.extended_data_bytes(ext, data) => r.map_err(|_| DownEnd::Cancelled),
            _ = wait_true(s.cancel) => Err(DownEnd::Cancelled),
        },
        DownAction::ExitStatus(status) => {
            let _ = ctx.agent.exit_status_request(ctx.id, status).await;
            Ok(())
        }
        DownAction::ExitSignal {
            signal,
            core_dumped,
            message,
            lang,
        } => {
            let _ = ctx
                .agent
                .exit_signal_request(ctx.id, sig_from_name(signal), core_dumped, message, lang)
                .await;
            Ok(())
        }
        DownAction::Eof => {
            ctx.eof_to_agent().await;
            Ok(())
        }
        DownAction::InterruptTarget => {
            // Gone only when the channel is ending: then nothing more is sent at all.
            if let Some(tx) = s.to_target.upgrade() {
                let _ = tx.send(Fwd::Interrupt);
            }
            Ok(())
        }
        DownAction::Notice(text) => {
            notice(ctx, &text, Style::Terminal).await;
            Ok(())
        }
        DownAction::Reply(true) => {
            let _ = ctx.agent.channel_success(ctx.id).await;
            Ok(())
        }
        DownAction::Reply(false) => {
            let _ = ctx.agent.channel_failure(ctx.id).await;
            Ok(())
        }
        DownAction::End(e) => Err(e),
    }
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
