//! Agent to target, the I/O half: reads the agent's channel messages, hands them to the
//! I/O-free core (`upstream_core`) and carries out the core's actions in order: records
//! through the gate, asks the gate for verdicts (waiting out holds), queues bytes for the
//! forwarder, writes notices and replies to the agent. It decides nothing itself; a failed
//! record ends the channel before any later action runs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use proctor_gate::{Event, Party};
use russh::ChannelMsg;
use tokio::sync::Semaphore;

use super::agent_input::AgentIn;
use super::judge::{follow, judge};
use super::relay::Fwd;
use super::upstream_core::{CoreEnd, Mode, UpAction, UpCore, Verdict};
use super::{
    ChanCtx, DownEnd, Flow, Interrupt, Judged, Style, Watches, close_agent, notice, record_failed,
    sig_from_name, sig_name,
};
use crate::cwd_probe::ProbeError;
use crate::judged::CwdDue;
use crate::lines::LineTracker;
use crate::sftp;

/// How long a line read from the screen waits for the echo to settle.
const ECHO_QUIET: Duration = Duration::from_millis(40);
const ECHO_MAX_WAIT: Duration = Duration::from_millis(500);
/// How long the card waits for a judged shell's working directory before it says unknown.
const CWD_WAIT: Duration = Duration::from_millis(500);
/// How long an SFTP change waits for the target to say where its paths land.
const RESOLVE_WAIT: Duration = Duration::from_secs(5);

pub(super) struct Upstream {
    pub ctx: Arc<ChanCtx>,
    /// Towards the forwarder; `None` once handed over for draining.
    pub fwd: Option<tokio::sync::mpsc::UnboundedSender<Fwd>>,
    /// Bytes queued for the forwarder but not yet written to the target.
    pub budget: Arc<Semaphore>,
    pub w: Watches,
    pub core: UpCore,
    pub style: Style,
    /// Reads a judged shell's working directory for the approval card.
    pub cwd: crate::cwd_probe::CwdProbe,
}

impl Upstream {
    pub(super) async fn run(&mut self, input: &mut AgentIn) -> Interrupt {
        loop {
            let msg = tokio::select! {
                biased;
                i = self.w.interrupted() => return i,
                m = input.next() => m,
            };
            let Some(msg) = msg else {
                return Interrupt::AgentGone;
            };
            match msg {
                ChannelMsg::Data { data } => {
                    let batch = self.collect(data, input);
                    self.core.agent_data(batch);
                }
                ChannelMsg::Eof => self.core.agent_eof(),
                ChannelMsg::Close => return Interrupt::AgentGone,
                ChannelMsg::WindowChange {
                    col_width,
                    row_height,
                    pix_width,
                    pix_height,
                } => self
                    .core
                    .window_change(col_width, row_height, pix_width, pix_height),
                ChannelMsg::Signal { signal } => self.core.signal(sig_name(&signal)),
                ChannelMsg::SetEnv {
                    variable_name,
                    variable_value,
                    ..
                } => {
                    let allowed = self
                        .ctx
                        .sess
                        .accept_env
                        .allows(&variable_name, &variable_value);
                    self.core
                        .env_request(&variable_name, &variable_value, allowed);
                }
                ChannelMsg::RequestX11 { .. } => self.core.refused_request("x11-req"),
                ChannelMsg::AgentForward { .. } => {
                    self.core.refused_request("auth-agent-req@openssh.com")
                }
                _ => {}
            }
            if let Err(i) = self.drive(input).await {
                return i;
            }
        }
    }

    /// Carries out the core's actions until it has none left. Answers it asks for are fed
    /// back at once, so it is never left waiting when this returns.
    async fn drive(&mut self, input: &mut AgentIn) -> Flow<()> {
        while let Some(a) = self.core.poll() {
            self.act(a, input).await?;
        }
        debug_assert!(
            !self.core.waiting(),
            "every question of the core was answered"
        );
        Ok(())
    }

    /// In a judged shell, reads the shell's working directory again if a command ran since the
    /// last reading, so the card of the line about to be judged shows where it runs. A reading
    /// that fails or takes too long leaves the card saying the directory is unknown, and why.
    async fn refresh_cwd(&mut self) -> Flow<()> {
        let Mode::Judged(d) = self.core.mode() else {
            return Ok(());
        };
        let due = d
            .lock()
            .map(|mut d| d.cwd_due())
            .map_err(|_| Interrupt::Down(DownEnd::Internal))?;
        let pid = match due {
            CwdDue::Unchanged => return Ok(()),
            CwdDue::Read(pid) => pid,
            CwdDue::Busy => {
                return self
                    .ctx
                    .sess
                    .gate
                    .shell_context(
                        self.ctx.num(),
                        None,
                        "a command sent before this line was still running when it was judged; \
                         the line runs wherever that command leaves the shell",
                    )
                    .await
                    .map_err(|_| record_failed());
            }
        };
        let read = tokio::time::timeout(CWD_WAIT, self.cwd.read(&self.ctx.sess.conn.handle, pid));
        let (cwd, why) = tokio::select! {
            r = read => match r {
                Ok(Ok(dir)) => (Some(dir), String::new()),
                Ok(Err(e)) => (None, e.to_string()),
                Err(_) => (None, "the target did not answer in time".to_string()),
            },
            i = self.w.interrupted() => return Err(i),
        };
        self.ctx
            .sess
            .gate
            .shell_context(self.ctx.num(), cwd, &why)
            .await
            .map_err(|_| record_failed())
    }

    async fn act(&mut self, a: UpAction, input: &mut AgentIn) -> Flow<()> {
        let gate = self.ctx.sess.gate.clone();
        match a {
            UpAction::Record(ev) => gate.record(ev).await.map_err(|e| {
                tracing::warn!(error = %e, "recording failed; the channel ends");
                record_failed()
            }),
            UpAction::RecordInput(ev) => {
                // Queued for the recorder; the forwarder sends nothing after it before it is
                // durable.
                let queued = tokio::select! {
                    r = gate.enqueue(ev) => r,
                    i = self.w.interrupted() => return Err(i),
                };
                let durable = queued.map_err(|_| record_failed())?;
                self.send(Fwd::Durable(durable))
            }
            UpAction::RecordOutput(ev) => gate
                .enqueue(ev)
                .await
                .map(drop)
                .map_err(|_| record_failed()),
            UpAction::Judge { action, label } => {
                self.refresh_cwd().await?;
                let style = self.notice_style();
                let v = judge(&self.ctx, action, &label, style, input, &mut self.w).await;
                self.answer(v)
            }
            UpAction::JudgeUnread { action, label, why } => {
                self.refresh_cwd().await?;
                let decision = tokio::select! {
                    d = gate.decide_unread(action, &why) => d,
                    i = self.w.interrupted() => return Err(i),
                };
                let style = self.notice_style();
                let v = follow(
                    &self.ctx,
                    decision,
                    &label,
                    style,
                    input,
                    &mut self.w,
                    false,
                )
                .await;
                self.answer(v)
            }
            UpAction::Resolve(asks) => {
                let answers = self.resolve(asks).await?;
                self.core.resolved(answers);
                Ok(())
            }
            UpAction::CheckSyntax(text) => {
                let syntax = tokio::select! {
                    s = gate.shell_syntax(&text) => s,
                    i = self.w.interrupted() => return Err(i),
                };
                self.core.syntax(syntax);
                Ok(())
            }
            UpAction::AwaitEcho => {
                if let Mode::Shell(t) = self.core.mode() {
                    let t = t.clone();
                    self.settle(&t).await?;
                }
                self.core.echo_settled();
                Ok(())
            }
            UpAction::Forward(data) => self.forward(data).await,
            UpAction::ForwardEof => self.send(Fwd::Eof),
            UpAction::ForwardWindowChange {
                cols,
                rows,
                px_w,
                px_h,
            } => self.send(Fwd::WindowChange {
                cols,
                rows,
                px_w,
                px_h,
            }),
            UpAction::ForwardSignal(name) => self.send(Fwd::Signal(sig_from_name(name))),
            UpAction::ToAgent(data) => {
                let _ = self.ctx.agent.data(self.ctx.id, data).await;
                Ok(())
            }
            UpAction::Notice(text) => {
                notice(&self.ctx, &text, self.notice_style()).await;
                Ok(())
            }
            UpAction::End(CoreEnd::Internal) => Err(Interrupt::Down(DownEnd::Internal)),
            UpAction::End(CoreEnd::SftpViolation(message)) => {
                let _ = gate
                    .record(Event::ProtocolError {
                        party: Party::Agent,
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
                Err(Interrupt::AgentGone)
            }
        }
    }

    /// Asks the target where each SFTP path lands. The requests already forwarded on this
    /// channel are answered first (a rename or link the agent pipelined before this change
    /// would otherwise land after the question). An answer that is late, refused or about a
    /// path proctor could not decode exactly is a failure, and the core refuses the change.
    async fn resolve(&mut self, asks: Vec<sftp::Ask>) -> Flow<Vec<sftp::Answer>> {
        let Mode::Sftp(t) = self.core.mode() else {
            return Err(Interrupt::Down(DownEnd::Internal));
        };
        let t = t.clone();
        let began = Instant::now();
        loop {
            let pending = t
                .lock()
                .map(|t| t.unanswered())
                .map_err(|_| Interrupt::Down(DownEnd::Internal))?;
            if !pending {
                break;
            }
            if began.elapsed() >= RESOLVE_WAIT {
                let why = "requests sent before it were still unanswered".to_string();
                return Ok(asks
                    .iter()
                    .map(|_| sftp::Answer::Failed(why.clone()))
                    .collect());
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(1)) => {}
                i = self.w.interrupted() => return Err(i),
            }
        }
        let mut answers = Vec::with_capacity(asks.len());
        for ask in asks {
            if ask.query.contains('\u{FFFD}') {
                answers.push(sftp::Answer::Failed(
                    "the path is not valid UTF-8, so proctor cannot name it exactly".into(),
                ));
                continue;
            }
            let left = RESOLVE_WAIT.saturating_sub(began.elapsed());
            let read = tokio::time::timeout(
                left,
                self.cwd.realpath(&self.ctx.sess.conn.handle, &ask.query),
            );
            let answer = tokio::select! {
                r = read => match r {
                    Ok(Ok(real)) => sftp::Answer::Real(real),
                    Ok(Err(ProbeError::NoSuchFile(_))) => sftp::Answer::Missing,
                    Ok(Err(e)) => sftp::Answer::Failed(e.to_string()),
                    Err(_) => sftp::Answer::Failed("the target did not answer in time".into()),
                },
                i = self.w.interrupted() => return Err(i),
            };
            answers.push(answer);
        }
        Ok(answers)
    }

    /// Feeds a verdict to the core; a channel that ended while judging stops here.
    fn answer(&mut self, v: Judged) -> Flow<()> {
        match v {
            Judged::Allow => self.core.verdict(Verdict::Allow),
            Judged::Deny(msg) => self.core.verdict(Verdict::Deny(msg)),
            Judged::Gone(i) => return Err(i),
        }
        Ok(())
    }

    /// SFTP speaks binary on stdout: its notices are plain lines on stderr.
    fn notice_style(&self) -> Style {
        match self.core.mode() {
            Mode::Sftp(_) => Style::Plain,
            _ => self.style,
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

    /// Queues an operation for the forwarder.
    pub(super) fn send(&mut self, op: Fwd) -> Flow<()> {
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

    /// Waits until the target's echo has stopped changing the screen.
    async fn settle(&mut self, tracker: &Mutex<LineTracker>) -> Flow<()> {
        let began = Instant::now();
        loop {
            let last = tracker
                .lock()
                .map(|t| t.last_output())
                .map_err(|_| Interrupt::Down(DownEnd::Internal))?;
            let now = Instant::now();
            let quiet_since = last.max(began);
            if now.duration_since(quiet_since) >= ECHO_QUIET
                || now.duration_since(began) >= ECHO_MAX_WAIT
            {
                return Ok(());
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                i = self.w.interrupted() => return Err(i),
            }
        }
    }
}
