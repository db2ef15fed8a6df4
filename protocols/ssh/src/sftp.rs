//! SFTP v3 decoding on an `sftp` subsystem channel: frames packets out of the byte stream,
//! says which requests change the target (so they can be judged before they are forwarded)
//! and turns requests and their replies into `SftpOp` records with per-handle totals and
//! SHA-256 digests of the bytes read and written.
//!
//! Everything here reads untrusted bytes: lengths are checked against what is buffered and
//! against `MAX_PACKET` before anything is allocated from them.

use std::collections::HashMap;

use bytes::{Buf, Bytes, BytesMut};
use proctor_gate::SftpOp;
use sha2::{Digest, Sha256};

/// Largest SFTP packet accepted (OpenSSH's own limit is 256 KiB).
pub(crate) const MAX_PACKET: usize = 1024 * 1024 + 1024;
/// Requests awaiting a reply that are tracked at once; the client's own limit is far lower.
const MAX_PENDING: usize = 16 * 1024;
const MAX_HANDLES: usize = 4096;
const MAX_PATH: usize = 8192;

const FXP_INIT: u8 = 1;
const FXP_OPEN: u8 = 3;
const FXP_CLOSE: u8 = 4;
const FXP_READ: u8 = 5;
const FXP_WRITE: u8 = 6;
const FXP_SETSTAT: u8 = 9;
const FXP_FSETSTAT: u8 = 10;
const FXP_OPENDIR: u8 = 11;
const FXP_REMOVE: u8 = 13;
const FXP_MKDIR: u8 = 14;
const FXP_RMDIR: u8 = 15;
const FXP_RENAME: u8 = 18;
const FXP_SYMLINK: u8 = 20;
const FXP_EXTENDED: u8 = 200;
const FXP_STATUS: u8 = 101;
const FXP_HANDLE: u8 = 102;
const FXP_DATA: u8 = 103;

const FXF_READ: u32 = 0x01;
const FXF_WRITE: u32 = 0x02;
const FXF_APPEND: u32 = 0x04;
const FXF_CREAT: u32 = 0x08;
const FXF_TRUNC: u32 = 0x10;
const FXF_EXCL: u32 = 0x20;

pub(crate) const FX_PERMISSION_DENIED: u32 = 3;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum SftpError {
    #[error("SFTP packet of {0} bytes exceeds the limit")]
    TooLong(usize),
    #[error("empty SFTP packet")]
    Empty,
    #[error("malformed SFTP packet")]
    Malformed,
}

/// Splits a byte stream into whole SFTP packets (length prefix included).
#[derive(Default)]
pub(crate) struct Framer {
    buf: BytesMut,
}

impl Framer {
    pub(crate) fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole packet, if one is buffered.
    pub(crate) fn next_packet(&mut self) -> Result<Option<Bytes>, SftpError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len == 0 {
            return Err(SftpError::Empty);
        }
        if len > MAX_PACKET {
            return Err(SftpError::TooLong(len));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        Ok(Some(self.buf.split_to(4 + len).freeze()))
    }

    /// Whatever is left (a partial packet), for when decoding is abandoned.
    pub(crate) fn take_rest(&mut self) -> Bytes {
        self.buf.split().freeze()
    }
}

/// Bounds-checked reader over one packet body.
struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8, SftpError> {
        if self.b.is_empty() {
            return Err(SftpError::Malformed);
        }
        Ok(self.b.get_u8())
    }

    fn u32(&mut self) -> Result<u32, SftpError> {
        if self.b.len() < 4 {
            return Err(SftpError::Malformed);
        }
        Ok(self.b.get_u32())
    }

    fn u64(&mut self) -> Result<u64, SftpError> {
        if self.b.len() < 8 {
            return Err(SftpError::Malformed);
        }
        Ok(self.b.get_u64())
    }

    fn string(&mut self) -> Result<&'a [u8], SftpError> {
        let len = self.u32()? as usize;
        if self.b.len() < len {
            return Err(SftpError::Malformed);
        }
        let (s, rest) = self.b.split_at(len);
        self.b = rest;
        Ok(s)
    }

    fn path(&mut self) -> Result<String, SftpError> {
        let s = self.string()?;
        let s = &s[..s.len().min(MAX_PATH)];
        Ok(String::from_utf8_lossy(s).into_owned())
    }

    /// SFTP v3 ATTRS, rendered as text.
    fn attrs(&mut self) -> Result<String, SftpError> {
        let flags = self.u32()?;
        let mut parts = Vec::new();
        if flags & 0x1 != 0 {
            parts.push(format!("size={}", self.u64()?));
        }
        if flags & 0x2 != 0 {
            let uid = self.u32()?;
            let gid = self.u32()?;
            parts.push(format!("uid={uid} gid={gid}"));
        }
        if flags & 0x4 != 0 {
            parts.push(format!("mode={:o}", self.u32()?));
        }
        if flags & 0x8 != 0 {
            let atime = self.u32()?;
            let mtime = self.u32()?;
            parts.push(format!("atime={atime} mtime={mtime}"));
        }
        if flags & 0x8000_0000 != 0 {
            let count = self.u32()?;
            for _ in 0..count {
                let k = self.string()?;
                self.string()?;
                parts.push(format!("ext={}", String::from_utf8_lossy(k)));
            }
        }
        Ok(parts.join(" "))
    }
}

/// A change to the target that policy must allow before it is forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub op: String,
    pub path: String,
    /// The other path of a rename or link; empty otherwise.
    pub target_path: String,
}

/// What the relay must do with one request.
#[derive(Debug)]
pub(crate) struct Request {
    pub id: Option<u32>,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Open {
        path: String,
        flags: u32,
        attrs: String,
    },
    OpenDir {
        path: String,
    },
    Close {
        handle: Vec<u8>,
    },
    Read {
        handle: Vec<u8>,
    },
    Write {
        handle: Vec<u8>,
        data: Bytes,
    },
    Op {
        op: String,
        path: String,
        target: String,
        detail: String,
        handle: Option<Vec<u8>>,
    },
    /// `copy-data`: the target copies between two open handles itself, so the bytes never
    /// cross proctor; the copy is recorded as an operation of its own (both handles were
    /// judged when they were opened).
    CopyData {
        from: Vec<u8>,
        to: Vec<u8>,
        detail: String,
    },
    Other,
}

fn flags_text(flags: u32) -> String {
    let names = [
        (FXF_READ, "read"),
        (FXF_WRITE, "write"),
        (FXF_APPEND, "append"),
        (FXF_CREAT, "creat"),
        (FXF_TRUNC, "trunc"),
        (FXF_EXCL, "excl"),
    ];
    let v: Vec<&str> = names
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    v.join("|")
}

/// Decodes one request packet (length prefix included).
pub(crate) fn parse_request(packet: &Bytes) -> Result<Request, SftpError> {
    let body = packet.get(4..).ok_or(SftpError::Malformed)?;
    let mut r = Reader { b: body };
    let ty = r.u8()?;
    if ty == FXP_INIT {
        return Ok(Request {
            id: None,
            kind: Kind::Other,
        });
    }
    let id = r.u32()?;
    let op = |op: &str, path: String, target: String, detail: String, handle: Option<Vec<u8>>| {
        Kind::Op {
            op: op.to_string(),
            path,
            target,
            detail,
            handle,
        }
    };
    let kind = match ty {
        FXP_OPEN => {
            let path = r.path()?;
            let flags = r.u32()?;
            let attrs = r.attrs().unwrap_or_default();
            Kind::Open { path, flags, attrs }
        }
        FXP_OPENDIR => Kind::OpenDir { path: r.path()? },
        FXP_CLOSE => Kind::Close {
            handle: r.string()?.to_vec(),
        },
        FXP_READ => Kind::Read {
            handle: r.string()?.to_vec(),
        },
        FXP_WRITE => {
            let handle = r.string()?.to_vec();
            let _offset = r.u64()?;
            let len = r.u32()? as usize;
            // The data is the packet's tail: slice it without copying.
            let start = packet.len() - r.b.len();
            if r.b.len() < len {
                return Err(SftpError::Malformed);
            }
            Kind::Write {
                handle,
                data: packet.slice(start..start + len),
            }
        }
        FXP_SETSTAT => {
            let path = r.path()?;
            let attrs = r.attrs()?;
            op("setstat", path, String::new(), attrs, None)
        }
        FXP_FSETSTAT => {
            let handle = r.string()?.to_vec();
            let attrs = r.attrs()?;
            op(
                "fsetstat",
                String::new(),
                String::new(),
                attrs,
                Some(handle),
            )
        }
        FXP_REMOVE => op("remove", r.path()?, String::new(), String::new(), None),
        FXP_MKDIR => {
            let path = r.path()?;
            let attrs = r.attrs().unwrap_or_default();
            op("mkdir", path, String::new(), attrs, None)
        }
        FXP_RMDIR => op("rmdir", r.path()?, String::new(), String::new(), None),
        FXP_RENAME => {
            let from = r.path()?;
            let to = r.path()?;
            op("rename", from, to, String::new(), None)
        }
        FXP_SYMLINK => {
            // OpenSSH sends (target, link): the order the draft specified was swapped.
            let target = r.path()?;
            let link = r.path()?;
            op("symlink", link, target, String::new(), None)
        }
        FXP_EXTENDED => {
            let name = String::from_utf8_lossy(r.string()?).into_owned();
            match name.as_str() {
                "posix-rename@openssh.com" => {
                    let from = r.path()?;
                    let to = r.path()?;
                    op("rename", from, to, "posix".into(), None)
                }
                "hardlink@openssh.com" => {
                    let from = r.path()?;
                    let to = r.path()?;
                    op("hardlink", to, from, String::new(), None)
                }
                "lsetstat@openssh.com" => {
                    let path = r.path()?;
                    let attrs = r.attrs()?;
                    op("setstat", path, String::new(), attrs, None)
                }
                // Read-only queries, or operations on handles already judged at open.
                "fsync@openssh.com"
                | "statvfs@openssh.com"
                | "fstatvfs@openssh.com"
                | "limits@openssh.com"
                | "expand-path@openssh.com"
                | "home-directory"
                | "users-groups-by-id@openssh.com" => Kind::Other,
                "copy-data" => {
                    let from = r.string()?.to_vec();
                    let read_offset = r.u64()?;
                    let length = r.u64()?;
                    let to = r.string()?.to_vec();
                    let write_offset = r.u64()?;
                    Kind::CopyData {
                        from,
                        to,
                        detail: format!(
                            "read_offset={read_offset} length={length} write_offset={write_offset}"
                        ),
                    }
                }
                _ => op(
                    &format!("extended:{name}"),
                    String::new(),
                    String::new(),
                    String::new(),
                    None,
                ),
            }
        }
        _ => Kind::Other,
    };
    Ok(Request { id: Some(id), kind })
}

/// A `SSH_FXP_STATUS` reply, for requests proctor refuses itself.
pub(crate) fn status_packet(id: u32, code: u32, message: &str) -> Bytes {
    let msg = message.as_bytes();
    let len = 1 + 4 + 4 + 4 + msg.len() + 4;
    let mut b = BytesMut::with_capacity(4 + len);
    b.extend_from_slice(&(len as u32).to_be_bytes());
    b.extend_from_slice(&[FXP_STATUS]);
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(&code.to_be_bytes());
    b.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    b.extend_from_slice(msg);
    b.extend_from_slice(&0u32.to_be_bytes());
    b.freeze()
}

fn status_text(code: u32, message: &[u8]) -> String {
    let name = match code {
        0 => "ok",
        1 => "eof",
        2 => "no such file",
        3 => "permission denied",
        4 => "failure",
        5 => "bad message",
        6 => "no connection",
        7 => "connection lost",
        8 => "op unsupported",
        n => return format!("status {n}"),
    };
    let message = String::from_utf8_lossy(&message[..message.len().min(256)]);
    if code == 0 || message.is_empty() || message.eq_ignore_ascii_case(name) {
        name.to_string()
    } else {
        format!("{name}: {message}")
    }
}

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
mod tests {
    use super::*;

    fn packet(ty: u8, id: u32, fields: &[&[u8]], tail: &[u8]) -> Bytes {
        let mut body = vec![ty];
        body.extend_from_slice(&id.to_be_bytes());
        for f in fields {
            body.extend_from_slice(&(f.len() as u32).to_be_bytes());
            body.extend_from_slice(f);
        }
        body.extend_from_slice(tail);
        let mut p = (body.len() as u32).to_be_bytes().to_vec();
        p.extend_from_slice(&body);
        Bytes::from(p)
    }

    #[test]
    fn framer_rejects_huge_lengths_without_allocating() {
        let mut f = Framer::default();
        f.push(&[0xff, 0xff, 0xff, 0xff, 1]);
        assert_eq!(f.next_packet(), Err(SftpError::TooLong(0xffff_ffff)));
        let mut f = Framer::default();
        f.push(&[0, 0, 0, 5, 1, 0]);
        assert_eq!(f.next_packet(), Ok(None));
        f.push(&[0, 0, 3]);
        assert!(matches!(f.next_packet(), Ok(Some(p)) if p.len() == 9));
    }

    #[test]
    fn truncated_fields_are_malformed() {
        let p = packet(FXP_OPEN, 7, &[], &[0, 0, 0, 50, b'/']);
        assert_eq!(parse_request(&p).err(), Some(SftpError::Malformed));
    }

    #[test]
    fn upload_is_tracked_and_digested() {
        let mut t = SftpTracker::new(0);
        let mut flags = (FXF_WRITE | FXF_CREAT | FXF_TRUNC).to_be_bytes().to_vec();
        flags.extend_from_slice(&0u32.to_be_bytes());
        let open = parse_request(&packet(FXP_OPEN, 1, &[b"/tmp/x"], &flags)).expect("open");
        assert_eq!(
            t.changes(&open),
            vec![Change {
                op: "open-write".into(),
                path: "/tmp/x".into(),
                target_path: String::new(),
            }]
        );
        t.forwarded(open);
        let done = t.replies(&packet(FXP_HANDLE, 1, &[b"h1"], &[]));
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].status, "ok");
        assert_eq!(done[0].detail, "write|creat|trunc");
        let mut tail = 0u64.to_be_bytes().to_vec();
        tail.extend_from_slice(&5u32.to_be_bytes());
        tail.extend_from_slice(b"hello");
        let write = parse_request(&packet(FXP_WRITE, 2, &[b"h1"], &tail)).expect("write");
        assert!(t.changes(&write).is_empty());
        t.forwarded(write);
        t.forwarded(parse_request(&packet(FXP_CLOSE, 3, &[b"h1"], &[])).expect("close"));
        let mut ok = 0u32.to_be_bytes().to_vec();
        ok.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        let done = t.replies(&packet(FXP_STATUS, 3, &[], &ok));
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].op, "close");
        assert_eq!(done[0].bytes_written, 5);
        let want: [u8; 32] = Sha256::digest(b"hello").into();
        assert_eq!(done[0].digest_written, Some(want));
    }

    #[test]
    fn copy_data_is_recorded_with_both_paths() {
        let mut t = SftpTracker::new(0);
        let mut ok = 0u32.to_be_bytes().to_vec();
        ok.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        for (id, path, flags, h) in [
            (1, &b"/tmp/src"[..], FXF_READ, &b"hr"[..]),
            (
                2,
                &b"/tmp/dst"[..],
                FXF_WRITE | FXF_CREAT | FXF_TRUNC,
                &b"hw"[..],
            ),
        ] {
            let mut tail = flags.to_be_bytes().to_vec();
            tail.extend_from_slice(&0u32.to_be_bytes());
            t.forwarded(parse_request(&packet(FXP_OPEN, id, &[path], &tail)).expect("open"));
            t.replies(&packet(FXP_HANDLE, id, &[h], &[]));
        }
        let mut body = vec![FXP_EXTENDED];
        body.extend_from_slice(&3u32.to_be_bytes());
        for (f, n) in [
            (&b"copy-data"[..], None),
            (b"hr", Some(0u64)),
            (b"hw", None),
        ] {
            body.extend_from_slice(&(f.len() as u32).to_be_bytes());
            body.extend_from_slice(f);
            if let Some(off) = n {
                body.extend_from_slice(&off.to_be_bytes());
                body.extend_from_slice(&0u64.to_be_bytes());
            }
        }
        body.extend_from_slice(&0u64.to_be_bytes());
        let mut p = (body.len() as u32).to_be_bytes().to_vec();
        p.extend_from_slice(&body);
        let req = parse_request(&Bytes::from(p)).expect("copy-data");
        assert!(
            t.changes(&req).is_empty(),
            "both handles were judged at open"
        );
        t.forwarded(req);
        let done = t.replies(&packet(FXP_STATUS, 3, &[], &ok));
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].op, "copy-data");
        assert_eq!(done[0].path, "/tmp/dst");
        assert_eq!(done[0].target_path, "/tmp/src");
        assert_eq!(done[0].status, "ok");
        assert_eq!(done[0].detail, "read_offset=0 length=0 write_offset=0");
    }

    #[test]
    fn rename_judges_both_paths() {
        let t = SftpTracker::new(0);
        let req =
            parse_request(&packet(FXP_RENAME, 4, &[b"/a", b"/etc/shadow"], &[])).expect("rename");
        let c = t.changes(&req);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].path, "/a");
        assert_eq!(c[0].target_path, "/etc/shadow");
    }
}
