//! SFTP framing and field decoding: whole packets out of the byte stream, and bounds-checked
//! reads of the fields inside one (every length is checked against what is there before
//! anything is taken from it).

use bytes::{Buf, Bytes, BytesMut};

use super::request::FXP_STATUS;

/// Largest SFTP packet accepted (OpenSSH's own limit is 256 KiB).
pub(crate) const MAX_PACKET: usize = 1024 * 1024 + 1024;
/// Requests awaiting a reply that are tracked at once; the client's own limit is far lower.
pub(super) const MAX_PENDING: usize = 16 * 1024;
pub(super) const MAX_HANDLES: usize = 4096;
pub(super) const MAX_PATH: usize = 8192;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum SftpError {
    #[error("SFTP packet of {0} bytes exceeds the limit")]
    TooLong(usize),
    #[error("empty SFTP packet")]
    Empty,
    #[error("malformed SFTP packet")]
    Malformed,
    /// Judged, recorded and shown as text, the path would read U+FFFD where the target uses
    /// the bytes themselves, so the channel ends instead.
    #[error("SFTP path is not UTF-8, so it cannot be recorded or shown exactly: {0}")]
    NotUtf8(String),
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
pub(super) struct Reader<'a> {
    pub(super) b: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn u8(&mut self) -> Result<u8, SftpError> {
        if self.b.is_empty() {
            return Err(SftpError::Malformed);
        }
        Ok(self.b.get_u8())
    }

    pub(super) fn u32(&mut self) -> Result<u32, SftpError> {
        if self.b.len() < 4 {
            return Err(SftpError::Malformed);
        }
        Ok(self.b.get_u32())
    }

    pub(super) fn u64(&mut self) -> Result<u64, SftpError> {
        if self.b.len() < 8 {
            return Err(SftpError::Malformed);
        }
        Ok(self.b.get_u64())
    }

    pub(super) fn string(&mut self) -> Result<&'a [u8], SftpError> {
        let len = self.u32()? as usize;
        if self.b.len() < len {
            return Err(SftpError::Malformed);
        }
        let (s, rest) = self.b.split_at(len);
        self.b = rest;
        Ok(s)
    }

    pub(super) fn path(&mut self) -> Result<String, SftpError> {
        let s = self.string()?;
        let s = &s[..s.len().min(MAX_PATH)];
        match std::str::from_utf8(s) {
            Ok(p) => Ok(p.to_string()),
            Err(_) => Err(SftpError::NotUtf8(crate::cwd_probe::shown_path(s))),
        }
    }

    /// SFTP v3 ATTRS, rendered as text.
    pub(super) fn attrs(&mut self) -> Result<String, SftpError> {
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

pub(super) fn status_text(code: u32, message: &[u8]) -> String {
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
