//! Length-prefixed framing and the few messages proctor writes itself.
//!
//! Frames are kept as the original bytes so that what reaches the other side is exactly what
//! was sent; parsing only looks at them. pgwire does not decode FunctionCall and re-encodes
//! some messages differently, which is why the framing here is our own.

use bytes::{BufMut, Bytes, BytesMut};

/// Startup-phase messages (SSLRequest, StartupMessage, CancelRequest, SASL) are small; the
/// same bound PostgreSQL and pgwire use.
pub const MAX_STARTUP_BYTES: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("invalid message length {0}")]
    BadLength(i64),
}

/// A complete message: `tag` and the whole frame including its 5-byte header.
#[derive(Debug, Clone)]
pub struct Frame {
    pub tag: u8,
    pub bytes: Bytes,
}

impl Frame {
    /// The bytes after the 5-byte type+length header.
    pub fn body(&self) -> &[u8] {
        &self.bytes[5..]
    }
}

/// Size of the typed frame at the start of `buf` (header included), once its header is there.
/// Errors as soon as the header announces something impossible or too large, before the
/// body is buffered.
pub fn typed_frame_len(buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(FrameError::BadLength(len as i64));
    }
    let total = len as usize + 1;
    if total > max {
        return Err(FrameError::TooLarge { len: total, max });
    }
    Ok(Some(total))
}

/// Takes one complete typed frame off the front of `buf`, if there is one.
pub fn take_typed_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Frame>, FrameError> {
    match typed_frame_len(buf, max)? {
        Some(total) if buf.len() >= total => {
            let bytes = buf.split_to(total).freeze();
            Ok(Some(Frame {
                tag: bytes[0],
                bytes,
            }))
        }
        _ => Ok(None),
    }
}

/// Size of an untyped startup-phase frame (length first, no tag).
pub fn untyped_frame_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 8 {
        return Err(FrameError::BadLength(len as i64));
    }
    let len = len as usize;
    if len > MAX_STARTUP_BYTES {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_STARTUP_BYTES,
        });
    }
    Ok(Some(len))
}

/// Malformed message body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed {0} message")]
pub struct Malformed(pub &'static str);

/// Cursor over a message body; every read is bounds-checked.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }

    fn err(&self) -> Malformed {
        Malformed(self.what)
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn u8(&mut self) -> Result<u8, Malformed> {
        let b = *self.buf.get(self.pos).ok_or(self.err())?;
        self.pos += 1;
        Ok(b)
    }

    pub fn i16(&mut self) -> Result<i16, Malformed> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    pub fn i32(&mut self) -> Result<i32, Malformed> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self.pos.checked_add(n).ok_or(self.err())?;
        let s = self.buf.get(self.pos..end).ok_or(self.err())?;
        self.pos = end;
        Ok(s)
    }

    /// A NUL-terminated string, without the NUL.
    pub fn cstr(&mut self) -> Result<&'a [u8], Malformed> {
        let rest = self.buf.get(self.pos..).ok_or(self.err())?;
        let nul = rest.iter().position(|&b| b == 0).ok_or(self.err())?;
        self.pos += nul + 1;
        Ok(&rest[..nul])
    }

    /// A non-negative count, checked against what is left so that a hostile count cannot
    /// drive an allocation.
    pub fn count(&mut self, min_elem_size: usize) -> Result<usize, Malformed> {
        let n = self.i16()?;
        if n < 0 {
            return Err(self.err());
        }
        let n = n as usize;
        if n.saturating_mul(min_elem_size) > self.remaining() {
            return Err(self.err());
        }
        Ok(n)
    }

    pub fn finish(&self) -> Result<(), Malformed> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(self.err())
        }
    }
}

pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn begin(out: &mut BytesMut, tag: u8) -> usize {
    out.put_u8(tag);
    let at = out.len();
    out.put_i32(0);
    at
}

fn finish(out: &mut BytesMut, at: usize) {
    let len = (out.len() - at) as i32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Severity of a message proctor writes itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
    Notice,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
            Severity::Notice => "NOTICE",
        }
    }
}

/// ErrorResponse (or NoticeResponse for `Severity::Notice`) with severity, SQLSTATE and message.
pub fn put_error(out: &mut BytesMut, severity: Severity, code: &str, message: &str) {
    let tag = if severity == Severity::Notice {
        b'N'
    } else {
        b'E'
    };
    let at = begin(out, tag);
    for (field, value) in [
        (b'S', severity.as_str()),
        (b'V', severity.as_str()),
        (b'C', code),
        (b'M', message),
    ] {
        out.put_u8(field);
        put_cstr(out, value);
    }
    out.put_u8(0);
    finish(out, at);
}

pub fn error_bytes(severity: Severity, code: &str, message: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(32 + message.len());
    put_error(&mut b, severity, code, message);
    b.freeze()
}

/// Writes `s` as a C string; interior NULs would end the field early, so they are dropped.
pub fn put_cstr(out: &mut BytesMut, s: &str) {
    if s.as_bytes().contains(&0) {
        out.extend(s.bytes().filter(|&b| b != 0));
    } else {
        out.put_slice(s.as_bytes());
    }
    out.put_u8(0);
}

pub fn put_ready(out: &mut BytesMut, status: u8) {
    out.put_slice(&[b'Z', 0, 0, 0, 5, status]);
}

pub fn put_backend_key(out: &mut BytesMut, pid: i32, secret: i32) {
    out.put_u8(b'K');
    out.put_i32(12);
    out.put_i32(pid);
    out.put_i32(secret);
}

/// Fields of an ErrorResponse or NoticeResponse body.
#[derive(Debug, Default, Clone)]
pub struct ErrorFields {
    pub severity: String,
    pub code: String,
    pub message: String,
}

impl ErrorFields {
    pub fn parse(body: &[u8]) -> ErrorFields {
        let mut f = ErrorFields::default();
        let mut r = Reader::new(body, "ErrorResponse");
        let mut localized = String::new();
        while let Ok(field) = r.u8() {
            if field == 0 {
                break;
            }
            let Ok(value) = r.cstr() else { break };
            match field {
                b'V' => f.severity = lossy(value),
                b'S' => localized = lossy(value),
                b'C' => f.code = lossy(value),
                b'M' => f.message = lossy(value),
                _ => {}
            }
        }
        if f.severity.is_empty() {
            f.severity = localized;
        }
        f
    }

    pub fn is_fatal(&self) -> bool {
        self.severity == "FATAL" || self.severity == "PANIC"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_limits() {
        let mut b = BytesMut::from(&b"Q\0\0\0\x08abc\0Z"[..]);
        let f = take_typed_frame(&mut b, 100).unwrap().unwrap();
        assert_eq!(f.tag, b'Q');
        assert_eq!(f.body(), b"abc\0");
        assert_eq!(&b[..], b"Z");
        assert_eq!(take_typed_frame(&mut b, 100).unwrap().map(|f| f.tag), None);
        let mut big = BytesMut::from(&b"Q\x7f\0\0\0"[..]);
        assert!(matches!(
            take_typed_frame(&mut big, 1000),
            Err(FrameError::TooLarge { .. })
        ));
        let mut neg = BytesMut::from(&b"Q\xff\xff\xff\xff"[..]);
        assert!(matches!(
            take_typed_frame(&mut neg, 1000),
            Err(FrameError::BadLength(_))
        ));
    }

    #[test]
    fn error_round_trip() {
        let b = error_bytes(Severity::Error, "42501", "no\0pe");
        let f = ErrorFields::parse(&b[5..]);
        assert_eq!(f.code, "42501");
        assert_eq!(f.message, "nope");
        assert_eq!(f.severity, "ERROR");
        // A hostile ErrorResponse without terminator or SQLSTATE must not panic.
        let f = ErrorFields::parse(b"SERROR\0Mx");
        assert_eq!(f.code, "");
    }
}
