//! The relay side of a record-only shell: the target's own shell and line editor. Each line is
//! rebuilt from the keystrokes and a terminal model (`crate::lines`) and the key that submits
//! it is held back while it is judged; without a terminal a line is held back whole. Also the
//! judgement of one line, which judged shells share.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proctor_gate::{Action, ShellMode};

use super::{
    AgentIn, ECHO_MAX_WAIT, ECHO_QUIET, Flow, Judged, Mode, Upstream, judge, notice, shorten, track,
};
use crate::lines::{LineTracker, Step};

impl Upstream {
    pub(super) async fn shell_input(
        &mut self,
        tracker: &Arc<Mutex<LineTracker>>,
        data: Bytes,
        input: &mut AgentIn,
    ) -> Flow<()> {
        if track(tracker, |t| t.is_raw())? {
            return self.raw_shell_input(tracker, data, input).await;
        }
        let mut start = 0;
        for i in 0..data.len() {
            let step = track(tracker, |t| t.input_byte(data[i]))?;
            if step == Step::Drop {
                self.forward(data.slice(start..i)).await?;
                start = i + 1;
                notice(
                    &self.ctx,
                    "proctor: Ctrl-X editing commands are not passed on in a recorded shell",
                    self.style,
                )
                .await;
                continue;
            }
            if step != Step::Submit {
                continue;
            }
            self.forward(data.slice(start..i)).await?;
            start = i + 1;
            if track(tracker, |t| t.needs_screen())? {
                self.settle(tracker).await?;
            }
            let (line, typed) = track(tracker, |t| (t.line(), t.saw_input()))?;
            let verdict = self.judge_line(&line, typed, input).await;
            track(tracker, |t| t.finish_line(&line))?;
            match verdict {
                Judged::Allow => self.forward(data.slice(i..i + 1)).await?,
                Judged::Deny(msg) => {
                    // Clear what was typed on the target instead of submitting it.
                    self.forward(Bytes::from_static(b"\x15")).await?;
                    notice(&self.ctx, &msg, self.style).await;
                }
                Judged::Gone(i) => return Err(i),
            }
        }
        self.forward(data.slice(start..)).await
    }

    pub(super) async fn judge_line(
        &mut self,
        line: &str,
        typed: bool,
        input: &mut AgentIn,
    ) -> Judged {
        if line.trim().is_empty() && !typed {
            return Judged::Allow;
        }
        let action = Action::CommandLine {
            channel: self.ctx.num(),
            line: line.to_string(),
        };
        let label = format!("line `{}`", shorten(line));
        let verdict = judge(&self.ctx, action, &label, self.style, input, &mut self.w).await;
        if matches!(self.mode, Mode::Shell(_))
            && self.ctx.sess.target.shell == ShellMode::RecordOnly
        {
            // Every verdict of a record-only shell says it could not be enforced; a line whose
            // note cannot be recorded is not submitted.
            if let Err(i) = self
                .note(format!(
                    "verdict on {label} not enforced: record-only shell (the target's own line \
                     editor runs what it reads; a hold or deny on this line does not bind it)"
                ))
                .await
            {
                return Judged::Gone(i);
            }
        }
        verdict
    }

    async fn raw_shell_input(
        &mut self,
        tracker: &Arc<Mutex<LineTracker>>,
        data: Bytes,
        input: &mut AgentIn,
    ) -> Flow<()> {
        let mut start = 0;
        for i in 0..data.len() {
            let step = track(tracker, |t| t.input_byte(data[i]))?;
            if step != Step::Submit {
                continue;
            }
            self.raw_line.extend_from_slice(&data[start..=i]);
            start = i + 1;
            self.submit_raw_line(tracker, input).await?;
        }
        self.raw_line.extend_from_slice(&data[start..]);
        if self.raw_line.len() > self.ctx.sess.limits.held_input_bytes {
            // An endless line (data piped into a shell): judge what there is and move on.
            self.submit_raw_line(tracker, input).await?;
        }
        Ok(())
    }

    async fn submit_raw_line(
        &mut self,
        tracker: &Arc<Mutex<LineTracker>>,
        input: &mut AgentIn,
    ) -> Flow<()> {
        let line = track(tracker, |t| t.line())?;
        let verdict = self.judge_line(&line, false, input).await;
        track(tracker, |t| t.finish_line(&line))?;
        let bytes = self.raw_line.split().freeze();
        match verdict {
            Judged::Allow => self.forward(bytes).await,
            Judged::Deny(msg) => {
                notice(&self.ctx, &msg, self.style).await;
                Ok(())
            }
            Judged::Gone(i) => Err(i),
        }
    }

    /// At end of input, a last line without a newline is still run by the shell.
    pub(super) async fn flush_raw_line(
        &mut self,
        tracker: &Arc<Mutex<LineTracker>>,
        input: &mut AgentIn,
    ) -> Flow<()> {
        let pending = track(tracker, |t| t.is_raw() && t.has_partial_line())?;
        if pending || !self.raw_line.is_empty() {
            self.submit_raw_line(tracker, input).await?;
        }
        Ok(())
    }

    /// Waits until the target's echo has stopped changing the screen.
    async fn settle(&mut self, tracker: &Arc<Mutex<LineTracker>>) -> Flow<()> {
        let began = Instant::now();
        loop {
            let last = track(tracker, |t| t.last_output())?;
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
