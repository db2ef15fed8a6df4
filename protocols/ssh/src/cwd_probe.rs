//! Reads a judged shell's working directory from the target's kernel, for the approval card.
//!
//! The shell's process id comes from the marker its login shell printed before any command
//! ran ([`crate::judged::Prompts`]). Proctor asks the target's SFTP server, on a channel of its
//! own over the same connection, for `readlink("/proc/PID/cwd")`: one round trip, no process
//! started per reading, and nothing the agent prints can change the answer. A target without
//! the SFTP subsystem or without `/proc` gives no answer; the card then says the directory is
//! unknown and why.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use russh::ChannelMsg;
use russh::client;

/// SFTP version 3 (draft-ietf-secsh-filexfer-02), the version OpenSSH speaks.
const FXP_INIT: u8 = 1;
const FXP_VERSION: u8 = 2;
const FXP_REALPATH: u8 = 16;
const FXP_READLINK: u8 = 19;
const FXP_STATUS: u8 = 101;
const FXP_NAME: u8 = 104;
/// SSH_FX_NO_SUCH_FILE.
const FX_NO_SUCH_FILE: u32 = 2;
/// A reply longer than this is no answer to a readlink (a path is at most 4 KiB on Linux).
const MAX_REPLY: usize = 64 * 1024;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub(crate) enum ProbeError {
    #[error("the target refused an SFTP channel for reading it: {0}")]
    Channel(String),
    #[error("the target's SFTP server refused: {0}")]
    Refused(String),
    #[error("the target has no such file: {0}")]
    NoSuchFile(String),
    #[error("the target's SFTP server sent a malformed reply")]
    Malformed,
    #[error("the target's SFTP channel closed")]
    Closed,
}

/// The request for one reading.
pub(crate) fn readlink_packet(id: u32, pid: u32) -> Bytes {
    path_packet(FXP_READLINK, id, &format!("/proc/{pid}/cwd"))
}

/// A request naming one path.
fn path_packet(kind: u8, id: u32, path: &str) -> Bytes {
    let mut body = BytesMut::new();
    body.put_u8(kind);
    body.put_u32(id);
    body.put_u32(path.len() as u32);
    body.put_slice(path.as_bytes());
    framed(body)
}

fn init_packet() -> Bytes {
    let mut body = BytesMut::new();
    body.put_u8(FXP_INIT);
    body.put_u32(3);
    framed(body)
}

fn framed(body: BytesMut) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + body.len());
    out.put_u32(body.len() as u32);
    out.put_slice(&body);
    out.freeze()
}

/// One whole packet from the front of `buf` (type and body), or `None` until more arrives.
pub(crate) fn take_packet(buf: &mut BytesMut) -> Result<Option<(u8, Bytes)>, ProbeError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len == 0 || len > MAX_REPLY {
        return Err(ProbeError::Malformed);
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    buf.advance(4);
    let mut body = buf.split_to(len).freeze();
    let kind = body.get_u8();
    Ok(Some((kind, body)))
}

fn string(body: &mut Bytes) -> Result<Bytes, ProbeError> {
    if body.remaining() < 4 {
        return Err(ProbeError::Malformed);
    }
    let n = body.get_u32() as usize;
    if body.remaining() < n {
        return Err(ProbeError::Malformed);
    }
    Ok(body.split_to(n))
}

/// The directory in a reply to request `id`; `Ok(None)` for a reply to another request.
pub(crate) fn parse_reply(
    kind: u8,
    mut body: Bytes,
    id: u32,
) -> Result<Option<String>, ProbeError> {
    if body.remaining() < 4 {
        return Err(ProbeError::Malformed);
    }
    if body.get_u32() != id {
        return Ok(None);
    }
    match kind {
        FXP_NAME => {
            if body.remaining() < 4 || body.get_u32() < 1 {
                return Err(ProbeError::Malformed);
            }
            Ok(Some(shown_path(&string(&mut body)?)))
        }
        FXP_STATUS => {
            let code = if body.remaining() >= 4 {
                body.get_u32()
            } else {
                0
            };
            let msg = string(&mut body).unwrap_or_default();
            let msg = format!("status {code} {}", String::from_utf8_lossy(&msg));
            Err(if code == FX_NO_SUCH_FILE {
                ProbeError::NoSuchFile(msg)
            } else {
                ProbeError::Refused(msg)
            })
        }
        _ => Err(ProbeError::Malformed),
    }
}

/// Bytes as text; bytes that are not UTF-8 are written `\xNN` so a person sees them.
pub(crate) fn shown_path(raw: &[u8]) -> String {
    match std::str::from_utf8(raw) {
        Ok(s) => s.to_string(),
        Err(_) => raw.utf8_chunks().fold(String::new(), |mut out, chunk| {
            out.push_str(chunk.valid());
            for b in chunk.invalid() {
                out.push_str(&format!("\\x{b:02x}"));
            }
            out
        }),
    }
}

/// The side channel of one judged shell or SFTP channel, opened at its first question and
/// kept: the working directory of a judged shell, and where an SFTP change's path lands.
#[derive(Default)]
pub(crate) struct CwdProbe {
    chan: Option<russh::Channel<client::Msg>>,
    buf: BytesMut,
    next_id: u32,
    /// Once it failed it is not tried again: the card says why.
    failed: Option<ProbeError>,
}

impl CwdProbe {
    /// Reads the working directory of process `pid` on the target.
    pub(crate) async fn read<H: client::Handler>(
        &mut self,
        handle: &client::Handle<H>,
        pid: u32,
    ) -> Result<String, ProbeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.ask(handle, |id| readlink_packet(id, pid)).await
    }

    /// Asks the target's SFTP server for `realpath(path)`: every link resolved, a last
    /// component that does not exist kept as it is (OpenSSH's behaviour).
    pub(crate) async fn realpath<H: client::Handler>(
        &mut self,
        handle: &client::Handle<H>,
        path: &str,
    ) -> Result<String, ProbeError> {
        self.ask(handle, |id| path_packet(FXP_REALPATH, id, path))
            .await
    }

    async fn ask<H: client::Handler>(
        &mut self,
        handle: &client::Handle<H>,
        packet: impl FnOnce(u32) -> Bytes,
    ) -> Result<String, ProbeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.try_ask(handle, packet).await;
        // A broken side channel stays broken; a refused question may be one-off.
        if let Err(e) = &r
            && !matches!(e, ProbeError::Refused(_) | ProbeError::NoSuchFile(_))
        {
            self.failed = Some(e.clone());
            if let Some(ch) = self.chan.take() {
                let _ = ch.close().await;
            }
        }
        r
    }

    async fn try_ask<H: client::Handler>(
        &mut self,
        handle: &client::Handle<H>,
        packet: impl FnOnce(u32) -> Bytes,
    ) -> Result<String, ProbeError> {
        if self.chan.is_none() {
            let ch = handle
                .channel_open_session()
                .await
                .map_err(|e| ProbeError::Channel(e.to_string()))?;
            ch.request_subsystem(true, "sftp")
                .await
                .map_err(|e| ProbeError::Channel(e.to_string()))?;
            ch.data(&init_packet()[..])
                .await
                .map_err(|e| ProbeError::Channel(e.to_string()))?;
            self.chan = Some(ch);
            loop {
                let (kind, _) = self.next_packet().await?;
                if kind == FXP_VERSION {
                    break;
                }
            }
        }
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        let ch = self.chan.as_ref().ok_or(ProbeError::Closed)?;
        ch.data(&packet(id)[..])
            .await
            .map_err(|_| ProbeError::Closed)?;
        loop {
            let (kind, body) = self.next_packet().await?;
            if let Some(dir) = parse_reply(kind, body, id)? {
                return Ok(dir);
            }
        }
    }

    async fn next_packet(&mut self) -> Result<(u8, Bytes), ProbeError> {
        loop {
            if let Some(p) = take_packet(&mut self.buf)? {
                return Ok(p);
            }
            let ch = self.chan.as_mut().ok_or(ProbeError::Closed)?;
            match ch.wait().await {
                Some(ChannelMsg::Data { data }) => {
                    if self.buf.len() + data.len() > MAX_REPLY + 4 {
                        return Err(ProbeError::Malformed);
                    }
                    self.buf.extend_from_slice(&data);
                }
                Some(ChannelMsg::Failure) => {
                    return Err(ProbeError::Channel("no sftp subsystem".into()));
                }
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => {
                    return Err(ProbeError::Closed);
                }
                Some(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(kind: u8, id: u32, rest: &[u8]) -> BytesMut {
        let mut body = BytesMut::new();
        body.put_u8(kind);
        body.put_u32(id);
        body.put_slice(rest);
        BytesMut::from(&framed(body)[..])
    }

    fn s(b: &[u8]) -> Vec<u8> {
        [&(b.len() as u32).to_be_bytes()[..], b].concat()
    }

    #[test]
    fn a_name_reply_gives_the_directory_and_other_replies_do_not() {
        let name = [
            &1u32.to_be_bytes()[..],
            &s(b"/srv/prod"),
            &s(b""),
            &[0u8; 4],
        ]
        .concat();
        let mut buf = reply(FXP_NAME, 7, &name);
        // Cut in two: nothing until the rest arrives.
        let mut first = buf.split_to(6);
        assert_eq!(take_packet(&mut first), Ok(None));
        first.unsplit(buf);
        let (kind, body) = take_packet(&mut first).unwrap().unwrap();
        assert_eq!(
            parse_reply(kind, body.clone(), 7),
            Ok(Some("/srv/prod".into()))
        );
        assert_eq!(parse_reply(kind, body, 8), Ok(None));
        let status = [&2u32.to_be_bytes()[..], &s(b"No such file"), &s(b"")].concat();
        let mut buf = reply(FXP_STATUS, 3, &status);
        let (kind, body) = take_packet(&mut buf).unwrap().unwrap();
        // NO_SUCH_FILE is told apart (an SFTP path whose directory is missing); other codes
        // are refusals.
        assert!(
            matches!(parse_reply(kind, body, 3), Err(ProbeError::NoSuchFile(m)) if m.contains("No such file"))
        );
        let status = [&3u32.to_be_bytes()[..], &s(b"Permission denied"), &s(b"")].concat();
        let mut buf = reply(FXP_STATUS, 4, &status);
        let (kind, body) = take_packet(&mut buf).unwrap().unwrap();
        assert!(
            matches!(parse_reply(kind, body, 4), Err(ProbeError::Refused(m)) if m.contains("Permission"))
        );
        // A name with bytes that are not UTF-8 is shown, not dropped.
        let odd = [
            &1u32.to_be_bytes()[..],
            &s(b"/tmp/a\xffb\x1b"),
            &s(b""),
            &[0u8; 4],
        ]
        .concat();
        let mut buf = reply(FXP_NAME, 1, &odd);
        let (kind, body) = take_packet(&mut buf).unwrap().unwrap();
        assert_eq!(
            parse_reply(kind, body, 1),
            Ok(Some("/tmp/a\\xffb\u{1b}".into()))
        );
        // Lengths that lie.
        let mut huge = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
        assert_eq!(take_packet(&mut huge), Err(ProbeError::Malformed));
        let short = [&1u32.to_be_bytes()[..], &100u32.to_be_bytes()[..], b"/x"].concat();
        let mut buf = reply(FXP_NAME, 1, &short);
        let (kind, body) = take_packet(&mut buf).unwrap().unwrap();
        assert_eq!(parse_reply(kind, body, 1), Err(ProbeError::Malformed));
    }

    #[test]
    fn the_request_names_the_process() {
        let p = readlink_packet(5, 4242);
        assert_eq!(&p[4..5], &[FXP_READLINK]);
        assert!(p.ends_with(b"/proc/4242/cwd"));
        assert_eq!(
            u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize,
            p.len() - 4
        );
    }
}
