//! The relay side of a judged shell: runs the discipline's actions. Echo and the bell go to
//! the agent (and into the record as output, so a replay shows what the agent saw); a
//! complete command is judged and only then sent whole with its newline; nothing else the
//! agent types reaches the target but the interrupt and end-of-file keys.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use proctor_gate::{Action, Event, OutputStream};

use super::{
    AgentIn, ChanCtx, DownEnd, Flow, Fwd, Interrupt, Judged, Style, Upstream, follow, notice,
};
use crate::judged::{Discipline, Out};

/// How long the card waits for the shell's working directory before it says unknown.
const CWD_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

impl Upstream {
    pub(super) async fn judged_input(
        &mut self,
        d: &Arc<Mutex<Discipline>>,
        data: Bytes,
        input: &mut AgentIn,
    ) -> Flow<()> {
        let outs = match d.lock() {
            Ok(mut d) => d.feed(&data),
            Err(_) => return Err(Interrupt::Down(DownEnd::Internal)),
        };
        self.judged_actions(d, outs, input).await
    }

    /// The channel's EOF: the rest of the input is judged as it stands, then EOF is sent.
    pub(super) async fn judged_end(
        &mut self,
        d: &Arc<Mutex<Discipline>>,
        input: &mut AgentIn,
    ) -> Flow<()> {
        let outs = match d.lock() {
            Ok(mut d) => d.end(),
            Err(_) => return Err(Interrupt::Down(DownEnd::Internal)),
        };
        self.judged_actions(d, outs, input).await
    }

    async fn judged_actions(
        &mut self,
        d: &Arc<Mutex<Discipline>>,
        outs: Vec<Out>,
        input: &mut AgentIn,
    ) -> Flow<()> {
        let mut bells = 0usize;
        let mut queue = VecDeque::from(outs);
        while let Some(out) = queue.pop_front() {
            match out {
                Out::Check(text) => {
                    // Bash's parser has the last word on whether the command is complete; the
                    // discipline reads nothing further until it has the answer.
                    let syntax = self.ctx.sess.gate.shell_syntax(&text).await;
                    let more = match d.lock() {
                        Ok(mut d) => d.checked(syntax),
                        Err(_) => return Err(Interrupt::Down(DownEnd::Internal)),
                    };
                    queue.extend(more);
                }
                Out::JudgeUnread(text, why) => {
                    self.refresh_cwd(d).await?;
                    self.note(format!(
                        "judged shell: bash could not check whether the command is complete \
                         ({why}); it is held as unreadable"
                    ))
                    .await?;
                    match self.judge_unread(&text, &why, input).await {
                        Judged::Allow => self.send_judged(d, text).await?,
                        Judged::Deny(msg) => notice(&self.ctx, &msg, self.style).await,
                        Judged::Gone(i) => return Err(i),
                    }
                }
                Out::Echo(bytes) => self.echo(bytes).await?,
                Out::Bell => {
                    bells += 1;
                    self.echo(b"\x07".to_vec()).await?;
                }
                Out::Judge(text) => {
                    let verdict = if text.is_empty() {
                        Judged::Allow
                    } else {
                        self.refresh_cwd(d).await?;
                        self.judge_line(&text, true, input).await
                    };
                    match verdict {
                        Judged::Allow => self.send_judged(d, text).await?,
                        Judged::Deny(msg) => notice(&self.ctx, &msg, self.style).await,
                        Judged::Gone(i) => return Err(i),
                    }
                }
                Out::Refused(text, why) => {
                    let note = format!("proctor: line refused in a judged shell: {why}");
                    self.note(format!("{note}: {text:?}")).await?;
                    notice(&self.ctx, &note, self.style).await;
                }
                Out::Interrupt => self.forward(Bytes::from_static(b"\x03")).await?,
                Out::Eof => {
                    if self.style == Style::Terminal {
                        // The pty's end-of-file character, on an empty line.
                        self.forward(Bytes::from_static(b"\x04")).await?;
                    } else if !self.eof_sent {
                        self.eof_sent = true;
                        self.send(Fwd::Eof)?;
                    }
                }
            }
        }
        if bells > 0 {
            // The keys are in the input record; say that they went nowhere.
            self.note(format!(
                "judged shell: {bells} key(s) that proctor's line editor does not follow were dropped"
            ))
            .await?;
        }
        Ok(())
    }

    /// Reads the shell's working directory again if a command ran since the last reading, so
    /// the card of the line about to be judged shows where it runs. A reading that fails or
    /// takes too long leaves the card saying the directory is unknown, and why.
    async fn refresh_cwd(&mut self, d: &Arc<Mutex<Discipline>>) -> Flow<()> {
        let due = match d.lock() {
            Ok(mut d) => d.cwd_due(),
            Err(_) => return Err(Interrupt::Down(DownEnd::Internal)),
        };
        let Some(pid) = due else {
            return Ok(());
        };
        let read =
            tokio::time::timeout(CWD_WAIT, self.cwd.read(&self.ctx.sess.conn.handle, pid)).await;
        let (cwd, why) = match read {
            Ok(Ok(dir)) => (Some(dir), String::new()),
            Ok(Err(e)) => (None, e.to_string()),
            Err(_) => (None, "the target did not answer in time".to_string()),
        };
        self.ctx
            .sess
            .gate
            .shell_context(self.ctx.num(), cwd, &why)
            .await
            .map_err(|_| Interrupt::Down(DownEnd::RecordFailed))
    }

    /// Sends a judged command whole; the target's prompts are then read against it.
    async fn send_judged(&mut self, d: &Arc<Mutex<Discipline>>, text: String) -> Flow<()> {
        match d.lock() {
            Ok(mut d) => d.sent(&text),
            Err(_) => return Err(Interrupt::Down(DownEnd::Internal)),
        }
        let mut line = text.into_bytes();
        line.push(b'\n');
        self.forward(Bytes::from(line)).await
    }

    /// Judges a command whose completeness bash could not check: the core never allows it
    /// outright.
    async fn judge_unread(&mut self, text: &str, why: &str, input: &mut AgentIn) -> Judged {
        let action = Action::CommandLine {
            channel: self.ctx.num(),
            line: text.to_string(),
        };
        let label = format!("line `{}`", super::shorten(text));
        let decision = tokio::select! {
            d = self.ctx.sess.gate.decide_unread(action, why) => d,
            i = self.w.interrupted() => return Judged::Gone(i),
        };
        follow(
            &self.ctx,
            decision,
            &label,
            self.style,
            input,
            &mut self.w,
            false,
        )
        .await
    }

    /// Local echo: shown to the agent and recorded as the channel's output.
    async fn echo(&mut self, bytes: Vec<u8>) -> Flow<()> {
        let data = Bytes::from(bytes);
        let queued = self
            .ctx
            .sess
            .gate
            .enqueue(Event::Output {
                channel: self.ctx.num(),
                stream: OutputStream::Stdout,
                data: data.clone(),
            })
            .await;
        if queued.is_err() {
            return Err(Interrupt::Down(DownEnd::RecordFailed));
        }
        let _ = self.ctx.agent.data(self.ctx.id, data).await;
        Ok(())
    }

    pub(super) async fn note(&mut self, text: String) -> Flow<()> {
        self.ctx
            .sess
            .gate
            .record(Event::Annotation {
                source: "proctor".into(),
                text,
            })
            .await
            .map_err(|_| Interrupt::Down(DownEnd::RecordFailed))
    }
}

/// The target printed its continuation prompt after reading the whole of a judged command:
/// bash took it as unfinished and would join the next judged line to it. It is interrupted
/// (bash drops what it read), recorded, and the agent told.
pub(super) async fn unfinished(
    ctx: &ChanCtx,
    d: &Mutex<Discipline>,
    to_target: &tokio::sync::mpsc::WeakUnboundedSender<Fwd>,
) -> Result<(), DownEnd> {
    let recorded = ctx
        .sess
        .gate
        .record(Event::Annotation {
            source: "proctor".into(),
            text: "judged shell: target read the command as unfinished; discarded (proctor \
                   sent the interrupt character)"
                .into(),
        })
        .await;
    if recorded.is_err() {
        return Err(DownEnd::RecordFailed);
    }
    if let Ok(mut d) = d.lock() {
        d.interrupting();
    }
    // Gone only when the channel is ending: then nothing more is sent at all.
    if let Some(tx) = to_target.upgrade() {
        let _ = tx.send(Fwd::Interrupt);
    }
    notice(
        ctx,
        "proctor: the target read the command as unfinished and would have joined the next \
         line to it; bash dropped the unfinished command",
        Style::Terminal,
    )
    .await;
    Ok(())
}
