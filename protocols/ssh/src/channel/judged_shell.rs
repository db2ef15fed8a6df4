//! The relay side of a judged shell: runs the discipline's actions. Echo and the bell go to
//! the agent (and into the record as output, so a replay shows what the agent saw); a
//! complete command is judged and only then sent whole with its newline; nothing else the
//! agent types reaches the target but the interrupt and end-of-file keys.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use proctor_gate::{Event, OutputStream};

use super::{AgentIn, DownEnd, Flow, Fwd, Interrupt, Judged, Style, Upstream, notice};
use crate::judged::{Discipline, Out};

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
        self.judged_actions(outs, input).await
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
        self.judged_actions(outs, input).await
    }

    async fn judged_actions(&mut self, outs: Vec<Out>, input: &mut AgentIn) -> Flow<()> {
        let mut bells = 0usize;
        for out in outs {
            match out {
                Out::Echo(bytes) => self.echo(bytes).await?,
                Out::Bell => {
                    bells += 1;
                    self.echo(b"\x07".to_vec()).await?;
                }
                Out::Judge(text) => {
                    let verdict = if text.is_empty() {
                        Judged::Allow
                    } else {
                        self.judge_line(&text, true, input).await
                    };
                    match verdict {
                        Judged::Allow => {
                            let mut line = text.into_bytes();
                            line.push(b'\n');
                            self.forward(Bytes::from(line)).await?;
                        }
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
