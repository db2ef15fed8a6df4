//! Recording helpers: output is queued without waiting for each event to be durable, but the
//! number and size of events not yet durable is bounded, so forwarding can never run far
//! ahead of the recording.

use std::collections::VecDeque;
use std::sync::Arc;

use proctor_gate::{Durable, Event, Gate, GateError};
use sha2::{Digest, Sha256};

/// Events queued with `Gate::enqueue` whose durability has not been awaited yet.
pub(crate) struct OutputLog {
    gate: Arc<dyn Gate>,
    tickets: VecDeque<(Durable, usize)>,
    bytes: usize,
    max_tickets: usize,
    max_bytes: usize,
}

impl OutputLog {
    pub(crate) fn new(gate: Arc<dyn Gate>, max_tickets: usize, max_bytes: usize) -> Self {
        OutputLog {
            gate,
            tickets: VecDeque::new(),
            bytes: 0,
            max_tickets: max_tickets.max(1),
            max_bytes: max_bytes.max(1),
        }
    }

    pub(crate) async fn push(&mut self, event: Event) -> Result<(), GateError> {
        let weight = event.weight();
        let ticket = self.gate.enqueue(event).await?;
        self.tickets.push_back((ticket, weight));
        self.bytes += weight;
        while self.tickets.len() > self.max_tickets || self.bytes > self.max_bytes {
            let Some((t, w)) = self.tickets.pop_front() else {
                break;
            };
            self.bytes -= w;
            t.wait().await?;
        }
        Ok(())
    }

    /// Waits until everything queued is durable.
    pub(crate) async fn flush(&mut self) -> Result<(), GateError> {
        while let Some((t, w)) = self.tickets.pop_front() {
            self.bytes -= w;
            t.wait().await?;
        }
        Ok(())
    }
}

/// Byte count and SHA-256 of one direction of a channel.
pub(crate) struct Tally {
    pub bytes: u64,
    hash: Sha256,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            bytes: 0,
            hash: Sha256::new(),
        }
    }
}

impl Tally {
    pub(crate) fn add(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        self.hash.update(data);
    }

    pub(crate) fn finish(self) -> (u64, [u8; 32]) {
        (self.bytes, self.hash.finalize().into())
    }
}
