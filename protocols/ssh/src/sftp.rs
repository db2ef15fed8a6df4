//! SFTP v3 decoding on an `sftp` subsystem channel: frames packets out of the byte stream,
//! says which requests change the target (so they can be judged before they are forwarded)
//! and turns requests and their replies into `SftpOp` records with per-handle totals and
//! SHA-256 digests of the bytes read and written.
//!
//! Everything here reads untrusted bytes: lengths are checked against what is buffered and
//! against `MAX_PACKET` before anything is allocated from them.

mod request;
mod resolve;
mod wire;

use std::collections::HashMap;

use bytes::Bytes;
use proctor_gate::SftpOp;
use sha2::{Digest, Sha256};

pub(crate) use request::{Change, FX_PERMISSION_DENIED, Request, parse_request};
use request::{
    FXF_APPEND, FXF_CREAT, FXF_TRUNC, FXF_WRITE, FXP_DATA, FXP_HANDLE, FXP_STATUS, Kind, flags_text,
};
pub(crate) use resolve::{Answer, Ask, asks, resolved};
#[cfg(feature = "fuzzing")]
pub(crate) use wire::MAX_PACKET;
pub(crate) use wire::{Framer, SftpError, status_packet};
use wire::{MAX_HANDLES, MAX_PENDING, Reader, status_text};

struct HandleStats {
    path: String,
    detail: String,
    dir: bool,
    bytes_read: u64,
    bytes_written: u64,
    read: Sha256,
    written: Sha256,
}

enum Pending {
    Open { path: String, detail: String },
    OpenDir { path: String },
    Read { handle: Vec<u8> },
    Close { handle: Vec<u8> },
    Op(SftpOp),
}

/// Per-channel SFTP state shared by both directions.
pub(crate) struct SftpTracker {
    channel: u32,
    pending: HashMap<u32, Pending>,
    handles: HashMap<Vec<u8>, HandleStats>,
    replies: Framer,
    replies_broken: bool,
    /// A request was forwarded while `pending` was full, so its answer is not followed.
    untracked: bool,
    completed: Vec<SftpOp>,
}

fn op_record(channel: u32, op: &str, path: String, target: String, detail: String) -> SftpOp {
    SftpOp {
        channel,
        op: op.to_string(),
        path,
        target_path: target,
        detail,
        bytes_read: 0,
        bytes_written: 0,
        digest_read: None,
        digest_written: None,
        status: String::new(),
    }
}

impl SftpTracker {
    pub(crate) fn new(channel: u32) -> Self {
        SftpTracker {
            channel,
            pending: HashMap::new(),
            handles: HashMap::new(),
            replies: Framer::default(),
            replies_broken: false,
            untracked: false,
            completed: Vec::new(),
        }
    }

    /// The changes policy must allow before `req` is forwarded.
    pub(crate) fn changes(&self, req: &Request) -> Vec<Change> {
        match &req.kind {
            Kind::Open { path, flags, .. }
                if flags & (FXF_WRITE | FXF_APPEND | FXF_CREAT | FXF_TRUNC) != 0 =>
            {
                vec![Change {
                    op: "open-write".into(),
                    path: path.clone(),
                    target_path: String::new(),
                }]
            }
            Kind::Op {
                op,
                path,
                target,
                handle,
                ..
            } => {
                let path = match handle {
                    Some(h) => self.handle_path(h),
                    None => path.clone(),
                };
                // Both ends of a rename or link matter (moving a file away is a change too):
                // one action carries both, and policy judges both.
                let linked = op == "rename" || op == "hardlink" || op == "symlink";
                vec![Change {
                    op: op.clone(),
                    path,
                    target_path: if linked {
                        target.clone()
                    } else {
                        String::new()
                    },
                }]
            }
            _ => Vec::new(),
        }
    }

    /// Whether a forwarded request that may change the target's names is still unanswered.
    pub(crate) fn unanswered(&self) -> bool {
        // Past the tracking limit a forwarded request may be in flight unseen: never settled.
        self.untracked
            || self.replies_broken && !self.pending.is_empty()
            || self
                .pending
                .values()
                .any(|p| !matches!(p, Pending::Read { .. }))
    }

    fn handle_path(&self, h: &[u8]) -> String {
        self.handles
            .get(h)
            .map(|s| s.path.clone())
            .unwrap_or_else(|| format!("<handle {}>", hex::encode(&h[..h.len().min(16)])))
    }

    /// The record of a request that proctor refused.
    pub(crate) fn denied(&self, req: &Request, reason: &str) -> Option<SftpOp> {
        let mut rec = match &req.kind {
            Kind::Open { path, flags, attrs } => op_record(
                self.channel,
                "open",
                path.clone(),
                String::new(),
                join_detail(&flags_text(*flags), attrs),
            ),
            Kind::Op {
                op,
                path,
                target,
                detail,
                handle,
            } => {
                let path = match handle {
                    Some(h) => self.handle_path(h),
                    None => path.clone(),
                };
                op_record(self.channel, op, path, target.clone(), detail.clone())
            }
            _ => return None,
        };
        rec.status = format!("denied: {reason}");
        Some(rec)
    }

    /// Notes a request that is being forwarded.
    pub(crate) fn forwarded(&mut self, req: Request) {
        let Some(id) = req.id else {
            return;
        };
        let pending = match req.kind {
            Kind::Open { path, flags, attrs } => Pending::Open {
                path,
                detail: join_detail(&flags_text(flags), &attrs),
            },
            Kind::OpenDir { path } => Pending::OpenDir { path },
            Kind::Close { handle } => Pending::Close { handle },
            Kind::Read { handle } => Pending::Read { handle },
            Kind::Write { handle, data } => {
                if let Some(h) = self.handles.get_mut(&handle) {
                    h.bytes_written += data.len() as u64;
                    h.written.update(&data);
                }
                return;
            }
            Kind::Op {
                op,
                path,
                target,
                detail,
                handle,
            } => {
                let path = match handle {
                    Some(h) => self.handle_path(&h),
                    None => path,
                };
                Pending::Op(op_record(self.channel, &op, path, target, detail))
            }
            Kind::CopyData { from, to, detail } => Pending::Op(op_record(
                self.channel,
                "copy-data",
                self.handle_path(&to),
                self.handle_path(&from),
                detail,
            )),
            Kind::Other => return,
        };
        if self.pending.len() < MAX_PENDING {
            self.pending.insert(id, pending);
        } else {
            self.untracked = true;
        }
    }

    /// Feeds reply bytes from the target; returns the operations they complete.
    pub(crate) fn replies(&mut self, data: &[u8]) -> Vec<SftpOp> {
        let mut done = Vec::new();
        if self.replies_broken {
            return done;
        }
        self.replies.push(data);
        loop {
            match self.replies.next_packet() {
                Ok(Some(p)) => {
                    if self.reply(&p).is_err() {
                        tracing::debug!("undecodable SFTP reply");
                    }
                    done.append(&mut self.completed);
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "SFTP replies no longer decoded");
                    self.replies_broken = true;
                    self.replies = Framer::default();
                    break;
                }
            }
        }
        done
    }

    fn reply(&mut self, packet: &Bytes) -> Result<(), SftpError> {
        let body = packet.get(4..).ok_or(SftpError::Malformed)?;
        let mut r = Reader { b: body };
        let ty = r.u8()?;
        if !(FXP_STATUS..=205).contains(&ty) {
            return Ok(());
        }
        let id = r.u32()?;
        let Some(pending) = self.pending.remove(&id) else {
            return Ok(());
        };
        let status = match ty {
            FXP_STATUS => {
                let code = r.u32()?;
                let msg = r.string().unwrap_or_default();
                Some(status_text(code, msg))
            }
            _ => None,
        };
        match pending {
            Pending::Open { path, detail } => {
                let mut rec = op_record(
                    self.channel,
                    "open",
                    path.clone(),
                    String::new(),
                    detail.clone(),
                );
                if ty == FXP_HANDLE {
                    let h = r.string()?.to_vec();
                    if self.handles.len() < MAX_HANDLES {
                        self.handles.insert(h, new_handle(path, detail, false));
                    }
                    rec.status = "ok".into();
                } else {
                    rec.status = status.unwrap_or_else(|| "unexpected reply".into());
                }
                self.completed.push(rec);
            }
            Pending::OpenDir { path } => {
                if ty == FXP_HANDLE {
                    let h = r.string()?.to_vec();
                    if self.handles.len() < MAX_HANDLES {
                        self.handles
                            .insert(h, new_handle(path, String::new(), true));
                    }
                } else {
                    let mut rec =
                        op_record(self.channel, "opendir", path, String::new(), String::new());
                    rec.status = status.unwrap_or_else(|| "unexpected reply".into());
                    self.completed.push(rec);
                }
            }
            Pending::Read { handle } => {
                if ty == FXP_DATA {
                    let data = r.string()?;
                    if let Some(h) = self.handles.get_mut(&handle) {
                        h.bytes_read += data.len() as u64;
                        h.read.update(data);
                    }
                }
            }
            Pending::Close { handle } => {
                if let Some(h) = self.handles.remove(&handle) {
                    let status = status.unwrap_or_else(|| "unexpected reply".into());
                    self.completed.push(close_record(self.channel, h, status));
                }
            }
            Pending::Op(mut rec) => {
                rec.status = status.unwrap_or_else(|| "ok".into());
                self.completed.push(rec);
            }
        }
        Ok(())
    }

    /// Records for what was still open or unanswered when the channel closed.
    pub(crate) fn finish(&mut self) -> Vec<SftpOp> {
        let mut out = std::mem::take(&mut self.completed);
        let mut pending: Vec<(u32, Pending)> = self.pending.drain().collect();
        pending.sort_by_key(|(id, _)| *id);
        for (_, p) in pending {
            if let Pending::Op(mut rec) = p {
                rec.status = "no reply".into();
                out.push(rec);
            }
        }
        for (_, h) in self.handles.drain() {
            out.push(close_record(self.channel, h, "channel closed".into()));
        }
        out
    }
}

fn new_handle(path: String, detail: String, dir: bool) -> HandleStats {
    HandleStats {
        path,
        detail,
        dir,
        bytes_read: 0,
        bytes_written: 0,
        read: Sha256::new(),
        written: Sha256::new(),
    }
}

fn close_record(channel: u32, h: HandleStats, status: String) -> SftpOp {
    let mut rec = op_record(
        channel,
        if h.dir { "closedir" } else { "close" },
        h.path,
        String::new(),
        h.detail,
    );
    rec.bytes_read = h.bytes_read;
    rec.bytes_written = h.bytes_written;
    if !h.dir {
        rec.digest_read = Some(h.read.finalize().into());
        rec.digest_written = Some(h.written.finalize().into());
    }
    rec.status = status;
    rec
}

fn join_detail(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (_, true) => a.to_string(),
        (true, false) => b.to_string(),
        (false, false) => format!("{a} {b}"),
    }
}

#[cfg(test)]
mod tests;
