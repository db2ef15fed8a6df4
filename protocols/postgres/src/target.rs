//! The target side: connect, optionally TLS (verify-full), start up as the just-in-time role
//! and authenticate with SCRAM-SHA-256 (or MD5 / cleartext-over-TLS if the target asks).

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use proctor_gate::{PostgresTarget, TargetTls};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

use crate::stream::Stream;
use crate::wire::{ErrorFields, Frame, Reader, lossy, take_typed_frame};

/// Startup messages from the target are small; a larger one means something is wrong.
const MAX_TARGET_STARTUP_MESSAGE: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("cannot reach the target: {0}")]
    Connect(io::Error),
    #[error("connecting to the target timed out")]
    Timeout,
    #[error("target TLS: {0}")]
    Tls(String),
    #[error("the target refused the login: {} {}", .0.code, .0.message)]
    Refused(ErrorFields),
    #[error("target authentication: {0}")]
    Auth(String),
    #[error("target protocol error: {0}")]
    Protocol(String),
    #[error("target connection lost during startup: {0}")]
    Io(io::Error),
}

/// A logged-in target connection, ready for queries.
pub struct TargetConn {
    pub stream: Stream,
    /// ParameterStatus and NoticeResponse frames of the startup, to relay to the client as is.
    pub relay: Vec<Frame>,
    /// `(name, value)` of every ParameterStatus.
    pub params: Vec<(String, String)>,
    /// The backend's cancel key.
    pub backend_key: Option<(i32, i32)>,
    /// Transaction status from the first ReadyForQuery.
    pub status: u8,
    /// Bytes read past the first ReadyForQuery (normally none).
    pub leftover: BytesMut,
}

fn tls_config(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>, TargetError> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<rustls::ClientConfig>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Ok(c) = cache.lock()
        && let Some(cfg) = c.get(ca_pem)
    {
        return Ok(cfg.clone());
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| TargetError::Tls(format!("CA bundle: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| TargetError::Tls(format!("CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(TargetError::Tls("CA bundle holds no certificate".into()));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TargetError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let cfg = Arc::new(cfg);
    if let Ok(mut c) = cache.lock() {
        c.insert(ca_pem.to_string(), cfg.clone());
    }
    Ok(cfg)
}

async fn open_stream(t: &PostgresTarget) -> Result<Stream, TargetError> {
    let tcp = tokio::time::timeout(
        t.connect_timeout,
        TcpStream::connect((t.host.as_str(), t.port)),
    )
    .await
    .map_err(|_| TargetError::Timeout)?
    .map_err(TargetError::Connect)?;
    tcp.set_nodelay(true).map_err(TargetError::Connect)?;
    match &t.tls {
        TargetTls::Disable => Ok(Stream::Plain(tcp)),
        TargetTls::VerifyFull { ca_pem } => {
            let cfg = tls_config(ca_pem)?;
            let mut tcp = tcp;
            let mut req = BytesMut::new();
            frontend::ssl_request(&mut req);
            tcp.write_all(&req).await.map_err(TargetError::Io)?;
            let mut answer = [0u8; 1];
            tokio::time::timeout(t.connect_timeout, tcp.read_exact(&mut answer))
                .await
                .map_err(|_| TargetError::Timeout)?
                .map_err(TargetError::Io)?;
            if answer[0] != b'S' {
                return Err(TargetError::Tls("the target does not accept TLS".into()));
            }
            let name = ServerName::try_from(t.host.clone())
                .map_err(|e| TargetError::Tls(format!("server name {}: {e}", t.host)))?;
            let tls = tokio::time::timeout(
                t.connect_timeout,
                tokio_rustls::TlsConnector::from(cfg).connect(name, tcp),
            )
            .await
            .map_err(|_| TargetError::Timeout)?
            .map_err(|e| TargetError::Tls(e.to_string()))?;
            Ok(Stream::Client(Box::new(tls)))
        }
    }
}

/// Settings a client may pass in its startup packet (directly or as `-c name=value` in
/// `options`) that proctor passes on. Anything else is dropped: a startup parameter such as
/// `role` or `session_authorization` would change privileges without a statement proctor can
/// judge. (The client's full list is in the session record either way.)
fn allowed_setting(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "application_name"
            | "client_encoding"
            | "datestyle"
            | "timezone"
            | "intervalstyle"
            | "extra_float_digits"
            | "search_path"
            | "statement_timeout"
            | "lock_timeout"
            | "idle_in_transaction_session_timeout"
            | "idle_session_timeout"
            | "default_transaction_isolation"
            | "default_transaction_read_only"
            | "default_transaction_deferrable"
            | "bytea_output"
            | "client_min_messages"
            | "standard_conforming_strings"
            | "lc_monetary"
            | "lc_numeric"
            | "lc_time"
            | "xmlbinary"
            | "xmloption"
            | "work_mem"
            | "jit"
            | "geqo"
    ) || n.starts_with("enable_")
}

/// Splits `options` into its settings, following PostgreSQL's rules: words separated by
/// spaces, `\` escapes the next character.
fn option_words(options: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_ascii_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

fn escape_option(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if c == '\\' || c.is_ascii_whitespace() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The client's startup parameters proctor passes on to the target, and the names it dropped.
/// `user`, `database` and `replication` are proctor's to decide; protocol extensions
/// (`_pq_.*`) are declined at negotiation.
pub fn forwardable_params(params: &[(String, String)]) -> (Vec<(String, String)>, Vec<String>) {
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for (k, v) in params {
        match k.as_str() {
            "user" | "database" | "replication" => {}
            _ if k.starts_with("_pq_.") => {}
            "options" => {
                let words = option_words(v);
                let mut settings: Vec<String> = Vec::new();
                let mut it = words.into_iter();
                while let Some(w) = it.next() {
                    let setting = if w == "-c" {
                        it.next()
                    } else if let Some(s) = w.strip_prefix("-c") {
                        Some(s.to_string())
                    } else {
                        w.strip_prefix("--").map(str::to_string)
                    };
                    match setting {
                        Some(s) if s.split_once('=').is_some_and(|(n, _)| allowed_setting(n)) => {
                            settings.push(s)
                        }
                        Some(s) => {
                            dropped.push(format!("options: {}", s.split('=').next().unwrap_or("")))
                        }
                        None => dropped.push(format!("options: {w}")),
                    }
                }
                if !settings.is_empty() {
                    let joined = settings
                        .iter()
                        .map(|s| format!("-c {}", escape_option(s)))
                        .collect::<Vec<_>>()
                        .join(" ");
                    kept.push((k.clone(), joined));
                }
            }
            _ if allowed_setting(k) => kept.push((k.clone(), v.clone())),
            _ => dropped.push(k.clone()),
        }
    }
    (kept, dropped)
}

/// The value of `name` (a setting [`forwardable_params`] passes on) that the client's startup
/// packet gives the session, as the server applies it: the `-c` settings of `options` first,
/// then the other parameters, the last one winning; names are case-insensitive. The target
/// accepted it when the login succeeded, so it is the session's default (what `RESET` returns
/// to), and the approval card must show it, not the target's default.
pub fn startup_setting(params: &[(String, String)], name: &str) -> Option<String> {
    let (kept, _) = forwardable_params(params);
    let mut from_options = None;
    let mut direct = None;
    for (k, v) in &kept {
        if k == "options" {
            // `forwardable_params` rebuilt it as `-c name=value` pairs.
            for w in option_words(v) {
                if let Some((n, val)) = w.split_once('=')
                    && n.eq_ignore_ascii_case(name)
                {
                    from_options = Some(val.to_string());
                }
            }
        } else if k.eq_ignore_ascii_case(name) {
            direct = Some(v.clone());
        }
    }
    direct.or(from_options)
}

/// Connects and logs in. `params` are the client's startup parameters after
/// [`forwardable_params`].
pub async fn connect(
    t: &PostgresTarget,
    user: &str,
    password: &Zeroizing<String>,
    params: &[(String, String)],
) -> Result<TargetConn, TargetError> {
    let mut stream = open_stream(t).await?;
    let mut startup: Vec<(&str, &str)> = vec![("user", user), ("database", &t.dbname)];
    for (k, v) in params {
        startup.push((k.as_str(), v.as_str()));
    }
    let mut out = BytesMut::new();
    frontend::startup_message(startup.iter().copied(), &mut out).map_err(TargetError::Io)?;
    stream.write_all(&out).await.map_err(TargetError::Io)?;
    out.clear();

    let mut inbuf = BytesMut::with_capacity(8192);
    let mut scram: Option<ScramSha256> = None;
    let mut conn = TargetConn {
        stream,
        relay: Vec::new(),
        params: Vec::new(),
        backend_key: None,
        status: b'I',
        leftover: BytesMut::new(),
    };
    loop {
        let frame = read_frame(&mut conn.stream, &mut inbuf, t).await?;
        match frame.tag {
            b'R' => {
                let mut r = Reader::new(frame.body(), "Authentication");
                let code = r.i32().map_err(|e| TargetError::Protocol(e.to_string()))?;
                let data = &frame.body()[4..];
                match code {
                    0 => {}
                    10 => {
                        let mut mechs = Vec::new();
                        let mut r = Reader::new(data, "AuthenticationSASL");
                        while let Ok(m) = r.cstr() {
                            if m.is_empty() {
                                break;
                            }
                            mechs.push(lossy(m));
                        }
                        if !mechs.iter().any(|m| m == "SCRAM-SHA-256") {
                            return Err(TargetError::Auth(format!(
                                "no supported SASL mechanism in {mechs:?}"
                            )));
                        }
                        let s =
                            ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
                        frontend::sasl_initial_response("SCRAM-SHA-256", s.message(), &mut out)
                            .map_err(TargetError::Io)?;
                        scram = Some(s);
                    }
                    11 => {
                        let s = scram.as_mut().ok_or_else(|| {
                            TargetError::Protocol("SASL continue out of order".into())
                        })?;
                        check_scram_iterations(data)?;
                        s.update(data)
                            .map_err(|e| TargetError::Auth(e.to_string()))?;
                        frontend::sasl_response(s.message(), &mut out).map_err(TargetError::Io)?;
                    }
                    12 => {
                        let s = scram.as_mut().ok_or_else(|| {
                            TargetError::Protocol("SASL final out of order".into())
                        })?;
                        // Proves the target knows the password too.
                        s.finish(data)
                            .map_err(|e| TargetError::Auth(e.to_string()))?;
                    }
                    5 => {
                        let salt: [u8; 4] = data
                            .get(..4)
                            .and_then(|s| s.try_into().ok())
                            .ok_or_else(|| TargetError::Protocol("MD5 salt".into()))?;
                        let hash = Zeroizing::new(postgres_protocol::authentication::md5_hash(
                            user.as_bytes(),
                            password.as_bytes(),
                            salt,
                        ));
                        frontend::password_message(hash.as_bytes(), &mut out)
                            .map_err(TargetError::Io)?;
                    }
                    3 if conn.stream.is_tls() => {
                        frontend::password_message(password.as_bytes(), &mut out)
                            .map_err(TargetError::Io)?;
                    }
                    3 => {
                        return Err(TargetError::Auth(
                            "the target asks for a cleartext password without TLS".into(),
                        ));
                    }
                    other => {
                        return Err(TargetError::Auth(format!(
                            "unsupported authentication request {other}"
                        )));
                    }
                }
                if !out.is_empty() {
                    conn.stream.write_all(&out).await.map_err(TargetError::Io)?;
                    out.clear();
                }
            }
            b'S' => {
                let mut r = Reader::new(frame.body(), "ParameterStatus");
                let name = r.cstr().map(lossy).unwrap_or_default();
                let value = r.cstr().map(lossy).unwrap_or_default();
                conn.params.push((name, value));
                conn.relay.push(frame);
            }
            b'K' => {
                let mut r = Reader::new(frame.body(), "BackendKeyData");
                if let (Ok(pid), Ok(secret)) = (r.i32(), r.i32()) {
                    conn.backend_key = Some((pid, secret));
                }
            }
            b'N' => conn.relay.push(frame),
            b'v' => {
                // NegotiateProtocolVersion: we asked for 3.0 without extensions, so anything
                // it says is informational.
            }
            b'E' => return Err(TargetError::Refused(ErrorFields::parse(frame.body()))),
            b'Z' => {
                conn.status = frame.body().first().copied().unwrap_or(b'I');
                conn.leftover = inbuf;
                return Ok(conn);
            }
            other => {
                return Err(TargetError::Protocol(format!(
                    "unexpected message {:?} during startup",
                    other as char
                )));
            }
        }
    }
}

async fn read_frame(
    s: &mut Stream,
    buf: &mut BytesMut,
    t: &PostgresTarget,
) -> Result<Frame, TargetError> {
    loop {
        if let Some(f) = take_typed_frame(buf, MAX_TARGET_STARTUP_MESSAGE)
            .map_err(|e| TargetError::Protocol(e.to_string()))?
        {
            return Ok(f);
        }
        buf.reserve(8192);
        let n = tokio::time::timeout(t.connect_timeout, s.read_buf(buf))
            .await
            .map_err(|_| TargetError::Timeout)?
            .map_err(TargetError::Io)?;
        if n == 0 {
            return Err(TargetError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the target closed the connection",
            )));
        }
    }
}

/// Most PBKDF2 iterations a target may ask for (OWASP's figure for PBKDF2-HMAC-SHA256; PostgreSQL
/// uses 4096). The count comes from the target, and the key derivation runs on proctor's CPU: a
/// hostile target must not make every login burn seconds.
const MAX_SCRAM_ITERATIONS: u64 = 600_000;

fn check_scram_iterations(server_first: &[u8]) -> Result<(), TargetError> {
    let text = String::from_utf8_lossy(server_first);
    let iterations = text
        .split(',')
        .find_map(|attr| attr.strip_prefix("i="))
        .and_then(|i| i.trim().parse::<u64>().ok());
    match iterations {
        Some(n) if n > MAX_SCRAM_ITERATIONS => Err(TargetError::Auth(format!(
            "the target asks for {n} SCRAM iterations (at most {MAX_SCRAM_ITERATIONS} accepted)"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn scram_iteration_count_is_bounded() {
        assert!(check_scram_iterations(b"r=abc,s=c2FsdA==,i=4096").is_ok());
        assert!(check_scram_iterations(b"r=abc,s=c2FsdA==,i=600000").is_ok());
        assert!(check_scram_iterations(b"r=abc,s=c2FsdA==,i=2147483647").is_err());
        // Malformed counts are left to the SCRAM client, which rejects them.
        assert!(check_scram_iterations(b"r=abc,s=c2FsdA==,i=x").is_ok());
    }

    #[test]
    fn startup_parameters_are_filtered() {
        let (kept, dropped) = forwardable_params(&p(&[
            ("user", "alice"),
            ("database", "appdb"),
            ("application_name", "psql"),
            ("DateStyle", "ISO"),
            ("role", "admin"),
            ("_pq_.x", "1"),
            (
                "options",
                "-c search_path=a\\ b --statement_timeout=5s -c role=admin -crole=x",
            ),
        ]));
        assert_eq!(
            kept,
            p(&[
                ("application_name", "psql"),
                ("DateStyle", "ISO"),
                ("options", "-c search_path=a\\ b -c statement_timeout=5s"),
            ])
        );
        assert_eq!(dropped, vec!["role", "options: role", "options: role"]);
    }

    #[test]
    fn startup_settings_as_the_server_applies_them() {
        let sp = |ps: &[(&str, &str)]| startup_setting(&p(ps), "search_path");
        assert_eq!(sp(&[("user", "a")]), None);
        assert_eq!(
            sp(&[("options", "-c search_path=a\\ b -c SEARCH_PATH=audit")]),
            Some("audit".into())
        );
        assert_eq!(
            sp(&[
                ("options", "--search_path=x"),
                ("Search_Path", "audit,public")
            ]),
            Some("audit,public".into())
        );
        // A direct parameter wins over `options` whatever their order.
        assert_eq!(
            sp(&[
                ("search_path", "audit"),
                ("options", "-csearch_path=public")
            ]),
            Some("audit".into())
        );
        // What proctor drops never reached the target.
        assert_eq!(sp(&[("options", "-c search-path=audit")]), None);
    }
}
