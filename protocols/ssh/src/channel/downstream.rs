//! Target to agent: records the target's output and results, feeds the shell's terminal model,
//! the judged shell's prompt scanner or the SFTP reply decoder, and forwards within the
//! agent's window. An exit status or signal is passed on only once recorded.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use proctor_gate::{Event, GateError, OutputStream};
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, server};
use tokio::sync::watch;

use super::relay::Fwd;
use super::upstream_core::Mode;
use super::{ChanCtx, DownEnd, close_agent, judged_shell, sig_name};
use crate::judged::Discipline;
use crate::record::{OutputLog, Tally};
use crate::session::wait_true;

/// Target to agent: records output (without waiting for each event to be durable), feeds
/// the line tracker or SFTP decoder, forwards within the agent's window.
/// How long the target's EOF waits for the exit status before it is passed on anyway.
const EOF_GRACE: Duration = Duration::from_millis(100);

#[allow(clippy::too_many_arguments)]
pub(super) async fn downstream(
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
                // Fail closed: an exit status the record does not hold is not passed on.
                let recorded = log
                    .push(Event::ExitStatus {
                        channel: num,
                        status: exit_status,
                    })
                    .await;
                if recorded.is_ok() {
                    let _ = ctx.agent.exit_status_request(ctx.id, exit_status).await;
                    if std::mem::take(&mut eof_pending) {
                        ctx.eof_to_agent().await;
                    }
                }
                recorded.map_err(|_| DownEnd::RecordFailed)
            }
            ChannelMsg::ExitSignal {
                signal_name,
                core_dumped,
                error_message,
                lang_tag,
            } => {
                let recorded = log
                    .push(Event::ExitSignal {
                        channel: num,
                        signal: sig_name(&signal_name),
                        message: error_message.clone(),
                    })
                    .await;
                if recorded.is_ok() {
                    let _ = ctx
                        .agent
                        .exit_signal_request(
                            ctx.id,
                            signal_name,
                            core_dumped,
                            error_message,
                            lang_tag,
                        )
                        .await;
                    if std::mem::take(&mut eof_pending) {
                        ctx.eof_to_agent().await;
                    }
                }
                recorded.map_err(|_| DownEnd::RecordFailed)
            }
            ChannelMsg::Eof => {
                // No more output: bytes held back as a possible prompt marker were none.
                eof_pending = true;
                match &mode {
                    Mode::Judged(d) => match flush_judged(d) {
                        Ok(rest) => {
                            if !rest.is_empty() {
                                let _ = atx.data_bytes(Bytes::from(rest)).await;
                            }
                            Ok(())
                        }
                        Err(_) => Err(DownEnd::Internal),
                    },
                    _ => Ok(()),
                }
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

/// Output held back as a possible prompt marker; an error if the discipline's lock is poisoned.
fn flush_judged(d: &Mutex<Discipline>) -> Result<Vec<u8>, ()> {
    d.lock().map(|mut d| d.flush_output()).map_err(|_| ())
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
