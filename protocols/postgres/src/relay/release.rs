//! Holding answers back until the records they follow are durable (issue 15).
//!
//! A statement forwarded before its record is durable (see `crate::durability`) leaves a mark:
//! the position in the stream of bytes to the agent where the answers to it begin. Bytes
//! before the oldest mark still pending may be written; bytes after it wait until its ticket
//! is acked. Marks fall on message boundaries (everything reaches the outgoing buffer as whole
//! messages), so what is held back is always whole messages, and can be dropped whole when a
//! record fails.
//!
//! The tickets themselves (futures) live in the adapter, which acks them oldest first; this
//! keeps only their marks, so it is plain state.

use std::collections::VecDeque;

/// Pending tickets allowed before the session waits for the oldest (a pipelining client could
/// otherwise pile them up without bound).
pub(super) const MAX_PENDING: usize = 256;

#[derive(Default)]
pub(super) struct Release {
    /// For each unacked ticket, in the order they were given, the stream position (bytes ever
    /// queued to the agent) at which the answers to its statements begin.
    pending: VecDeque<u64>,
    /// Bytes written to the agent so far.
    written: u64,
    /// Where the answers of a statement whose record failed begin: nothing from there on is
    /// ever written.
    failed_at: Option<u64>,
}

impl Release {
    /// Holds back everything queued to the agent from `mark` on until the next ticket is acked.
    pub(super) fn hold(&mut self, mark: u64) {
        self.pending.push_back(mark);
    }

    /// The oldest ticket resolved.
    pub(super) fn ack(&mut self) {
        self.pending.pop_front();
    }

    /// The oldest ticket failed (or did not resolve in time at the end): nothing held may ever
    /// be written.
    pub(super) fn fail(&mut self) {
        if self.failed_at.is_none() {
            self.failed_at = self.pending.front().copied().or(Some(self.written));
        }
        self.pending.clear();
    }

    pub(super) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The stream position after `queued` more bytes than written so far.
    pub(super) fn mark(&self, queued: usize) -> u64 {
        self.written + queued as u64
    }

    pub(super) fn wrote(&mut self, n: usize) {
        self.written += n as u64;
    }

    /// How many of the `queued` bytes may be written now.
    pub(super) fn sendable(&self, queued: usize) -> usize {
        match self.failed_at.or_else(|| self.pending.front().copied()) {
            Some(mark) => self.room(queued, mark),
            None => queued,
        }
    }

    /// How many of `queued` bytes lie before stream position `mark`.
    fn room(&self, queued: usize, mark: u64) -> usize {
        let room = mark.saturating_sub(self.written);
        queued.min(usize::try_from(room).unwrap_or(usize::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_bytes_wait_for_their_ack_and_never_go_after_a_failure() {
        let mut r = Release::default();
        r.hold(r.mark(10));
        assert_eq!(r.sendable(25), 10);
        r.wrote(10);
        r.hold(r.mark(20));
        r.ack();
        assert_eq!(r.sendable(25), 20);
        r.fail();
        assert_eq!(r.sendable(25), 20);
        r.wrote(20);
        assert_eq!(r.sendable(5), 0);
    }
}
