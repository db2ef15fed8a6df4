//! The relay's I/O driver: the one place that reads and writes the two byte streams.
//!
//! The relay's state works on byte buffers (`cin`/`cout` for the agent, `tin`/`tout` for the
//! target); this pass moves bytes between those buffers and whatever streams the relay was
//! given. Nothing here names TCP or TLS: a session runs over TCP or TLS sockets
//! ([`crate::stream::Stream`]), the fuzz target and tests over `tokio::io::duplex` pipes.

use super::*;

use tokio::io::AsyncRead;

/// A byte stream the relay reads and writes: TCP, TLS, or an in-memory pipe.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The target side of a session whose login is done.
pub struct TargetSide {
    pub io: Box<dyn Io>,
    /// `(name, value)` of every ParameterStatus of the login: how the server reads text.
    pub params: Vec<(String, String)>,
    /// Transaction status from the first ReadyForQuery.
    pub status: u8,
    /// Bytes read past the first ReadyForQuery (normally none).
    pub leftover: BytesMut,
}

impl From<TargetConn> for TargetSide {
    fn from(t: TargetConn) -> TargetSide {
        TargetSide {
            io: Box::new(t.stream),
            params: t.params,
            status: t.status,
            leftover: t.leftover,
        }
    }
}

pub(super) enum Ev {
    Control(Control),
    Hold(Resolution),
    /// A statement forwarded before its record was durable could not be recorded.
    RecordFailed(GateError),
    ClientData,
    TargetData,
    ClientGone(String),
    TargetGone(String),
}

impl Relay {
    /// One pass over everything the session waits for. Writes are pushed as far as the sockets
    /// take them without returning; the pass returns on the first thing that needs handling
    /// (data read, an approval, a kill...). Every branch that is not ready has registered its
    /// waker, so `Pending` is safe.
    pub(super) fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<Ev> {
        if let Poll::Ready((ev, rx)) = self.control.as_mut().poll(cx) {
            self.control = Box::pin(control(rx));
            return Poll::Ready(Ev::Control(ev));
        }
        if let Some(id) = self.core.held()
            && let Some(h) = self.holds.iter_mut().find(|h| h.approval_id == id)
            && let Poll::Ready(r) = h.outcome.as_mut().poll(cx)
        {
            return Poll::Ready(Ev::Hold(r));
        }
        // Durability acks, oldest first (registering the waker on the first unresolved one).
        while let Some(d) = self.durables.front_mut() {
            match d.0.as_mut().poll(cx) {
                Poll::Ready(Ok(())) => {
                    self.durables.pop_front();
                    self.core.durable(Ok(()));
                }
                Poll::Ready(Err(e)) => {
                    // A resolved future is never polled again.
                    self.durables.clear();
                    return Poll::Ready(Ev::RecordFailed(e));
                }
                Poll::Pending => break,
            }
        }
        // Writes, to the agent only as far as the records before them are durable.
        let mut sendable = self.core.client_sendable();
        while sendable > 0 {
            match Pin::new(&mut self.client).poll_write(cx, &self.core.to_client()[..sendable]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Ev::ClientGone("client connection closed".into()));
                }
                Poll::Ready(Ok(n)) => {
                    self.core.wrote_client(n);
                    sendable -= n;
                    self.c_dirty = true;
                }
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Ev::ClientGone(format!("client connection lost: {e}")));
                }
                Poll::Pending => break,
            }
        }
        if sendable == 0 && self.c_dirty {
            match Pin::new(&mut self.client).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.c_dirty = false,
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Ev::ClientGone(format!("client connection lost: {e}")));
                }
                Poll::Pending => {}
            }
        }
        while !self.core.tout.is_empty() {
            match Pin::new(&mut self.target).poll_write(cx, &self.core.tout) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Ev::TargetGone("the target closed the connection".into()));
                }
                Poll::Ready(Ok(n)) => {
                    self.core.tout.advance(n);
                    self.t_dirty = true;
                }
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Ev::TargetGone(format!(
                        "writing to the target failed: {e}"
                    )));
                }
                Poll::Pending => break,
            }
        }
        if self.core.tout.is_empty() && self.t_dirty {
            match Pin::new(&mut self.target).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.t_dirty = false,
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Ev::TargetGone(format!(
                        "writing to the target failed: {e}"
                    )));
                }
                Poll::Pending => {}
            }
        }
        // Reads, each side only while the other side's outgoing buffer has room.
        if self.core.cout.len() < HIGH_WATER {
            if self.core.tin.capacity() - self.core.tin.len() < TARGET_READ_CHUNK / 4 {
                self.core.tin.reserve(TARGET_READ_CHUNK);
            }
            match poll_read_buf(Pin::new(&mut self.target), cx, &mut self.core.tin) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Ev::TargetGone("the target closed the connection".into()));
                }
                Poll::Ready(Ok(_)) => return Poll::Ready(Ev::TargetData),
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Ev::TargetGone(format!(
                        "reading from the target failed: {e}"
                    )));
                }
                Poll::Pending => {}
            }
        }
        // Client messages left unprocessed while the target's buffer was full: process them now
        // that it has drained (nothing else would wake the loop for them).
        if self.core.paused.is_none()
            && self.core.deferred.is_none()
            && self.core.tout.len() < HIGH_WATER
        {
            match crate::wire::typed_frame_len(&self.core.cin, self.core.cfg.max_message_bytes) {
                Ok(Some(len)) if self.core.cin.len() >= len => return Poll::Ready(Ev::ClientData),
                // Let process_client report the bad frame.
                Err(_) => return Poll::Ready(Ev::ClientData),
                _ => {}
            }
        }
        // While a message waits for a hold or for the server's answers, the client is read
        // only so far (and to notice it going away).
        let client_room = if self.core.paused.is_some() || self.core.deferred.is_some() {
            self.core.cin.len() < PAUSED_READ_LIMIT
        } else {
            self.core.tout.len() < HIGH_WATER
        };
        if client_room {
            if self.core.cin.capacity() - self.core.cin.len() < CLIENT_READ_CHUNK / 4 {
                self.core.cin.reserve(CLIENT_READ_CHUNK);
            }
            match poll_read_buf(Pin::new(&mut self.client), cx, &mut self.core.cin) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Ev::ClientGone("client disconnected".into()));
                }
                Poll::Ready(Ok(_)) => return Poll::Ready(Ev::ClientData),
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Ev::ClientGone(format!("client connection lost: {e}")));
                }
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }

    /// The last bytes for the agent (its goodbye), then the end of its stream.
    pub(super) async fn write_client_goodbye(&mut self, bytes: &[u8]) {
        let _ = self.client.write_all(bytes).await;
        let _ = self.client.flush().await;
        let _ = self.client.shutdown().await;
    }

    /// Everything still queued for the target, then the end of its stream.
    pub(super) async fn write_target_goodbye(&mut self) {
        let _ = self.target.write_all(&self.core.tout).await;
        let _ = self.target.flush().await;
        let _ = self.target.shutdown().await;
    }
}
