//! The agent's first bytes: SSL and GSS negotiation, TLS, and the startup packet or a
//! CancelRequest.

use std::io;

use bytes::BytesMut;
use pgwire::messages::startup::{GssEncRequest, SslRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::PgFrontendConfig;
use crate::stream::Stream;
use crate::wire::{Frame, FrameError, Reader, lossy, take_typed_frame, untyped_frame_len};

const CANCEL_REQUEST_CODE: i32 = 80877102;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("connection closed by the client")]
    Closed,
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The client broke the protocol; `code` is the SQLSTATE to answer with.
    #[error("{message}")]
    Violation { code: &'static str, message: String },
    #[error("TLS handshake failed: {0}")]
    Tls(io::Error),
}

impl StartupError {
    fn violation(code: &'static str, message: impl Into<String>) -> Self {
        StartupError::Violation {
            code,
            message: message.into(),
        }
    }
}

impl From<FrameError> for StartupError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::TooLarge { .. } => StartupError::violation("54000", e.to_string()),
            FrameError::BadLength(_) => StartupError::violation("08P01", e.to_string()),
        }
    }
}

/// What the client asked for.
pub enum Hello {
    Startup(Startup),
    Cancel { pid: i32, secret: i32 },
}

pub struct Startup {
    pub stream: Stream,
    pub minor_version: u16,
    /// Parameters in the order the client sent them.
    pub params: Vec<(String, String)>,
    /// Bytes already read past the startup packet.
    pub buffered: BytesMut,
}

impl Startup {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

async fn read_untyped(stream: &mut Stream, buf: &mut BytesMut) -> Result<BytesMut, StartupError> {
    loop {
        if let Some(len) = untyped_frame_len(buf)?
            && buf.len() >= len
        {
            return Ok(buf.split_to(len));
        }
        buf.reserve(1024);
        if stream.read_buf(buf).await? == 0 {
            return Err(if buf.is_empty() {
                StartupError::Closed
            } else {
                StartupError::violation("08P01", "incomplete startup packet")
            });
        }
    }
}

/// A TLS handshake record (0x16) where a startup packet's length would start: a client using
/// `sslnegotiation=direct` (libpq 17+), which skips SSLRequest. A startup packet's first byte
/// is the top byte of its length, which is never 0x16 for the sizes accepted here.
async fn starts_with_tls_hello(slot: &mut Option<Stream>) -> Result<bool, StartupError> {
    const TLS_HANDSHAKE: u8 = 0x16;
    let Some(Stream::Plain(tcp)) = slot.as_mut() else {
        return Ok(false);
    };
    let mut first = [0u8; 1];
    if tcp.peek(&mut first).await? == 0 {
        return Err(StartupError::Closed);
    }
    Ok(first[0] == TLS_HANDSHAKE)
}

/// Direct TLS, as PostgreSQL 17 does it: the client must name the `postgresql` protocol in
/// ALPN, which keeps a TLS connection meant for another service from being taken for one.
async fn accept_direct_tls(
    slot: &mut Option<Stream>,
    tls: std::sync::Arc<rustls::ServerConfig>,
) -> Result<(), StartupError> {
    let Some(Stream::Plain(tcp)) = slot.take() else {
        return Err(StartupError::Closed);
    };
    let tls = tokio_rustls::TlsAcceptor::from(tls)
        .accept(tcp)
        .await
        .map_err(StartupError::Tls)?;
    let alpn_ok = tls.get_ref().1.alpn_protocol() == Some(crate::ALPN_PROTOCOL);
    *slot = Some(Stream::Server(Box::new(tls)));
    if !alpn_ok {
        return Err(StartupError::violation(
            "08P01",
            "received direct SSL connection request without ALPN protocol negotiation extension",
        ));
    }
    Ok(())
}

/// Reads until the client sends a startup packet or a CancelRequest, answering SSLRequest and
/// GSSENCRequest on the way. A protocol violation is answered with a FATAL ErrorResponse
/// before the error is returned. The caller bounds the time this may take.
pub async fn negotiate(tcp: TcpStream, config: &PgFrontendConfig) -> Result<Hello, StartupError> {
    let mut stream = Some(Stream::Plain(tcp));
    let result = negotiate_inner(&mut stream, config).await;
    if let (Err(StartupError::Violation { code, message }), Some(s)) = (&result, stream.as_mut()) {
        let mut out = BytesMut::new();
        crate::wire::put_error(&mut out, crate::wire::Severity::Fatal, code, message);
        let _ = s.write_all(&out).await;
        let _ = s.flush().await;
    }
    result
}

async fn negotiate_inner(
    slot: &mut Option<Stream>,
    config: &PgFrontendConfig,
) -> Result<Hello, StartupError> {
    let mut buf = BytesMut::with_capacity(1024);
    let mut gss_declined = false;
    if let Some(tls) = config.tls.clone()
        && starts_with_tls_hello(slot).await?
    {
        accept_direct_tls(slot, tls).await?;
    }
    loop {
        let stream = slot.as_mut().ok_or(StartupError::Closed)?;
        let packet = read_untyped(stream, &mut buf).await?;
        match decode_packet(&packet)? {
            Packet::SslRequest => {
                if stream.is_tls() {
                    return Err(StartupError::violation("08P01", "SSLRequest inside TLS"));
                }
                let Some(tls) = config.tls.clone() else {
                    stream.write_all(b"N").await?;
                    continue;
                };
                // Anything the client sent after SSLRequest was written before it saw our
                // answer, so it is not TLS: processing it as if it had come through the
                // handshake is the CVE-2021-23214 class of bug.
                if !buf.is_empty() {
                    return Err(StartupError::violation(
                        "08P01",
                        "received unencrypted data after SSL request",
                    ));
                }
                stream.write_all(b"S").await?;
                let Some(Stream::Plain(tcp)) = slot.take() else {
                    return Err(StartupError::violation("08P01", "SSLRequest inside TLS"));
                };
                let tls = tokio_rustls::TlsAcceptor::from(tls)
                    .accept(tcp)
                    .await
                    .map_err(StartupError::Tls)?;
                *slot = Some(Stream::Server(Box::new(tls)));
                continue;
            }
            Packet::GssEncRequest => {
                if gss_declined || stream.is_tls() {
                    return Err(StartupError::violation("08P01", "unexpected GSSENCRequest"));
                }
                // Declined: libpq then falls back to SSL or plain.
                gss_declined = true;
                stream.write_all(b"N").await?;
                continue;
            }
            Packet::Cancel { pid, secret } => {
                // Close as PostgreSQL does, with a TLS close_notify when the request came over
                // TLS (libpq 17's PQcancelStart does that): a bare TCP close is an "unexpected
                // eof" to OpenSSL, and the client reports the cancel as failed.
                let _ = stream.shutdown().await;
                return Ok(Hello::Cancel { pid, secret });
            }
            Packet::Startup {
                minor_version,
                params,
            } => {
                let stream = slot.take().ok_or(StartupError::Closed)?;
                return Ok(Hello::Startup(Startup {
                    stream,
                    minor_version,
                    params,
                    buffered: buf,
                }));
            }
        }
    }
}

/// One startup-phase packet, decoded; what to answer depends on the connection's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Packet {
    SslRequest,
    GssEncRequest,
    Cancel {
        pid: i32,
        secret: i32,
    },
    Startup {
        minor_version: u16,
        params: Vec<(String, String)>,
    },
}

/// Decodes a whole untyped packet (length word included) as framed by
/// [`untyped_frame_len`].
pub(crate) fn decode_packet(packet: &[u8]) -> Result<Packet, StartupError> {
    let Some(&[a, b, c, d]) = packet.get(4..8) else {
        // untyped_frame_len never frames fewer than 8 bytes.
        return Err(StartupError::violation(
            "08P01",
            "invalid startup packet layout",
        ));
    };
    let code = i32::from_be_bytes([a, b, c, d]);
    if SslRequest::is_ssl_request_packet(packet) && packet.len() == 8 {
        return Ok(Packet::SslRequest);
    }
    if GssEncRequest::is_gss_enc_request_packet(packet) && packet.len() == 8 {
        return Ok(Packet::GssEncRequest);
    }
    if code == CANCEL_REQUEST_CODE {
        let mut r = Reader::new(&packet[8..], "CancelRequest");
        let (Ok(pid), Ok(secret)) = (r.i32(), r.i32()) else {
            return Err(StartupError::violation("08P01", "malformed CancelRequest"));
        };
        return Ok(Packet::Cancel { pid, secret });
    }
    let major = (code >> 16) as u16;
    let minor = (code & 0xffff) as u16;
    if major != 3 {
        return Err(StartupError::violation(
            "0A000",
            format!("unsupported frontend protocol {major}.{minor}: proctor supports 3.0"),
        ));
    }
    let params = parse_params(&packet[8..])?;
    Ok(Packet::Startup {
        minor_version: minor,
        params,
    })
}

fn parse_params(body: &[u8]) -> Result<Vec<(String, String)>, StartupError> {
    let bad = || StartupError::violation("08P01", "invalid startup packet layout");
    let mut r = Reader::new(body, "StartupMessage");
    let mut out = Vec::new();
    loop {
        let k = r.cstr().map_err(|_| bad())?;
        if k.is_empty() {
            break;
        }
        let v = r.cstr().map_err(|_| bad())?;
        out.push((lossy(k), lossy(v)));
    }
    if r.remaining() != 0 {
        return Err(bad());
    }
    Ok(out)
}

/// Reads one typed message during authentication (limited to the startup size).
pub async fn read_auth_message(
    stream: &mut Stream,
    buf: &mut BytesMut,
) -> Result<Frame, StartupError> {
    loop {
        if let Some(f) = take_typed_frame(buf, crate::wire::MAX_STARTUP_BYTES)? {
            return Ok(f);
        }
        buf.reserve(1024);
        if stream.read_buf(buf).await? == 0 {
            return Err(StartupError::Closed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_in_order() {
        let p = parse_params(b"user\0a\0database\0b\0application_name\0\0\0").unwrap();
        assert_eq!(
            p,
            vec![
                ("user".into(), "a".into()),
                ("database".into(), "b".into()),
                ("application_name".into(), "".into())
            ]
        );
        assert!(parse_params(b"user\0a").is_err());
        assert!(parse_params(b"user\0a\0\0junk").is_err());
    }
}
