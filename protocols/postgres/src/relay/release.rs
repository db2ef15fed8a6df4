//! Holding answers back until the records they follow are durable (issue 15).
//!
//! A statement forwarded before its record is durable (see `crate::durability`) leaves a mark:
//! the position in the stream of bytes to the agent where the answers to it begin. Bytes
//! before the oldest mark still pending may be written; bytes after it wait until its ticket
//! resolves. Marks fall on message boundaries (everything reaches the outgoing buffer as whole
//! messages), so what is held back is always whole messages, and can be dropped whole when a
//! record fails.

use std::collections::VecDeque;
use std::task::{Context, Poll};
use std::time::Duration;

use proctor_gate::{Durable, GateError};

/// Pending tickets allowed before the session waits for the oldest (a pipelining client could
/// otherwise pile them up without bound).
const MAX_PENDING: usize = 256;

#[derive(Default)]
pub(super) struct Release {
    /// Tickets in the order the statements were forwarded, each with the stream position
    /// (bytes ever queued to the agent) at which the answers to its statements begin.
    pending: VecDeque<(Durable, u64)>,
    /// Bytes written to the agent so far.
    written: u64,
    /// Where the answers of a statement whose record failed begin: nothing from there on is
    /// ever written.
    failed_at: Option<u64>,
}

impl Release {
    /// Holds back everything queued to the agent from `mark` on until `ticket` resolves.
    pub(super) fn hold(&mut self, ticket: Durable, mark: u64) {
        self.pending.push_back((ticket, mark));
    }

    /// Waits for the oldest tickets while too many are pending.
    pub(super) async fn bound(&mut self) -> Result<(), GateError> {
        while self.pending.len() > MAX_PENDING {
            if let Some((d, mark)) = self.pending.pop_front()
                && let Err(e) = d.wait().await
            {
                self.pending.clear();
                self.failed_at = Some(mark);
                return Err(e);
            }
        }
        Ok(())
    }

    /// The stream position after `queued` more bytes than written so far.
    pub(super) fn mark(&self, queued: usize) -> u64 {
        self.written + queued as u64
    }

    pub(super) fn wrote(&mut self, n: usize) {
        self.written += n as u64;
    }

    /// How many of the `queued` bytes may be written now. Polls the pending tickets oldest
    /// first (registering the waker on the first unresolved one); a failed ticket is the
    /// recorder's error, after which nothing held may ever be written.
    pub(super) fn poll_sendable(
        &mut self,
        cx: &mut Context<'_>,
        queued: usize,
    ) -> Result<usize, GateError> {
        if let Some(mark) = self.failed_at {
            return Ok(self.room(queued, mark));
        }
        while let Some((d, mark)) = self.pending.front_mut() {
            let mark = *mark;
            match d.0.as_mut().poll(cx) {
                Poll::Ready(Ok(())) => {
                    self.pending.pop_front();
                }
                Poll::Ready(Err(e)) => {
                    // A resolved future is never polled again.
                    self.pending.clear();
                    self.failed_at = Some(mark);
                    return Err(e);
                }
                Poll::Pending => return Ok(self.room(queued, mark)),
            }
        }
        Ok(queued)
    }

    /// How many of `queued` bytes lie before stream position `mark`.
    fn room(&self, queued: usize, mark: u64) -> usize {
        let room = mark.saturating_sub(self.written);
        queued.min(usize::try_from(room).unwrap_or(usize::MAX))
    }

    /// At the end of a session: waits (up to `limit`) for the pending tickets and says how
    /// many of the `queued` bytes may still be written; a ticket that fails or does not
    /// resolve in time keeps everything from its mark on from the agent.
    pub(super) async fn settle(&mut self, queued: usize, limit: Duration) -> usize {
        if let Some(mark) = self.failed_at {
            return self.room(queued, mark);
        }
        let deadline = tokio::time::Instant::now() + limit;
        while let Some((d, mark)) = self.pending.pop_front() {
            match tokio::time::timeout_at(deadline, d.wait()).await {
                Ok(Ok(())) => {}
                _ => {
                    self.pending.clear();
                    self.failed_at = Some(mark);
                    return self.room(queued, mark);
                }
            }
        }
        queued
    }
}
