//! The agent's side of a channel, read by its own task into a bounded queue (see `Feed`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use russh::{ChannelMsg, ChannelReadHalf};
use tokio::sync::{Notify, watch};

use super::ChanCtx;
use crate::session::Pressure;

/// Agent input, read by its own task into a queue.
///
/// russh hands a channel's messages over from inside its connection read loop and grants
/// window as soon as data arrives, so the only brake on an agent is a reader that stops
/// reading, which stalls the whole connection, the agent's window adjustments included. With
/// output waiting for those adjustments while input waits for the target, the relay would
/// deadlock (`... | ssh proctor cat` does it at once). So the reader never stops early: the
/// window grants of this channel shrink with its queue instead (see `Pressure`), which keeps
/// the queue near one window; `hard` is only a safety net.
pub(super) struct Feed {
    queue: Mutex<VecDeque<ChannelMsg>>,
    /// Queued bytes; shared with the connection's `Pressure`, which sizes window grants.
    bytes: Arc<AtomicUsize>,
    ended: AtomicBool,
    /// A message arrived, or the reader ended (one consumer).
    data: Notify,
    /// Room in the queue (one waiter: the reader).
    space: Notify,
    /// Flipped when the agent closes the channel or its connection.
    gone: watch::Sender<bool>,
}

pub(super) fn msg_size(m: &ChannelMsg) -> usize {
    match m {
        ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, .. } => data.len(),
        _ => 64,
    }
}

impl Feed {
    fn added(&self, n: usize) {
        self.bytes.fetch_add(n, Ordering::AcqRel);
    }

    fn removed(&self, n: usize) {
        self.bytes.fetch_sub(n, Ordering::AcqRel);
        self.space.notify_one();
    }
}

async fn read_agent(mut rx: ChannelReadHalf, feed: Arc<Feed>, hard: usize) {
    loop {
        while feed.bytes.load(Ordering::Acquire) >= hard {
            feed.space.notified().await;
        }
        let Some(m) = rx.wait().await else {
            break;
        };
        let closing = matches!(m, ChannelMsg::Close);
        feed.added(msg_size(&m));
        // A poisoned queue would drop input unseen: stop reading instead (the channel ends).
        match feed.queue.lock() {
            Ok(mut q) => q.push_back(m),
            Err(_) => break,
        }
        feed.data.notify_one();
        if closing {
            break;
        }
    }
    feed.ended.store(true, Ordering::Release);
    let _ = feed.gone.send(true);
    feed.data.notify_one();
}

pub(super) struct AgentIn {
    feed: Arc<Feed>,
    reader: tokio::task::JoinHandle<()>,
    pressure: Arc<Pressure>,
    channel: u32,
}

impl Drop for AgentIn {
    fn drop(&mut self) {
        self.reader.abort();
        self.pressure.unregister(self.channel);
    }
}

impl AgentIn {
    pub(super) fn new(rx: ChannelReadHalf, ctx: &ChanCtx) -> Self {
        let limits = &ctx.sess.limits;
        let pressure = ctx.sess.pressure.clone();
        let feed = Arc::new(Feed {
            queue: Mutex::new(VecDeque::new()),
            bytes: pressure.register(ctx.num()),
            ended: AtomicBool::new(false),
            data: Notify::new(),
            space: Notify::new(),
            gone: watch::Sender::new(false),
        });
        let reader = tokio::spawn(read_agent(rx, feed.clone(), limits.input_hard_bytes.max(1)));
        AgentIn {
            feed,
            reader,
            pressure,
            channel: ctx.num(),
        }
    }

    fn pop(&mut self) -> Option<ChannelMsg> {
        let m = self.feed.queue.lock().ok()?.pop_front()?;
        self.feed.removed(msg_size(&m));
        Some(m)
    }

    pub(super) async fn next(&mut self) -> Option<ChannelMsg> {
        loop {
            if let Some(m) = self.pop() {
                return Some(m);
            }
            if self.feed.ended.load(Ordering::Acquire) {
                // The reader may have queued its last message just before ending.
                return self.pop();
            }
            self.feed.data.notified().await;
        }
    }

    /// The next message if one is already there.
    pub(super) fn try_next(&mut self) -> Option<ChannelMsg> {
        self.pop()
    }

    pub(super) fn unread(&mut self, m: ChannelMsg) {
        self.feed.added(msg_size(&m));
        if let Ok(mut q) = self.feed.queue.lock() {
            q.push_front(m);
        }
    }

    /// Resolves once the agent has closed the channel (the close may still be queued).
    pub(super) fn gone(&self) -> watch::Receiver<bool> {
        self.feed.gone.subscribe()
    }
}
