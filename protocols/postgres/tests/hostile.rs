//! Regression tests for known attacks on a PostgreSQL proxy, from both sides.
//!
//! Agent side: a hand-driven client against proctor with a real PostgreSQL behind it.
//! Target side: a scripted backend (real PostgreSQL cannot misbehave on cue) that logs proctor
//! in with AuthenticationOk and then answers each Query with whatever the test asks for.
//!
//! Every await is bounded, so a regression fails instead of hanging.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use common::*;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use proctor_gate::{Event, Outcome, Party, RefusalKind};
use proctor_postgres::PgFrontendConfig;
use proctor_postgres::wire::ErrorFields;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 4, 210, 22, 47];
const CANCEL_CODE: i32 = 80877102;

async fn within<T>(secs: u64, what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: nothing within {secs} s"),
    }
}

fn startup_packet(user: &str) -> BytesMut {
    let mut out = BytesMut::new();
    frontend::startup_message([("user", user), ("database", TARGET)], &mut out).unwrap();
    out
}

fn cancel_request(pid: i32, secret: i32) -> Vec<u8> {
    let mut b = Vec::with_capacity(16);
    b.extend_from_slice(&16i32.to_be_bytes());
    b.extend_from_slice(&CANCEL_CODE.to_be_bytes());
    b.extend_from_slice(&pid.to_be_bytes());
    b.extend_from_slice(&secret.to_be_bytes());
    b
}

/// Reads everything up to EOF (bounded in time and size).
async fn read_to_eof(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    within(10, "EOF from proctor", async {
        let mut b = [0u8; 4096];
        loop {
            match s.read(&mut b).await {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&b[..n]),
            }
            assert!(all.len() < 1 << 20, "proctor keeps talking");
        }
    })
    .await;
    all
}

/// Waits until the authority holds `n` refusals (a refusal may be recorded just after the
/// connection is closed) and returns the last one: agent, kind, message.
async fn refusal_number(f: &Fixture, n: usize) -> (String, RefusalKind, String) {
    for _ in 0..200 {
        {
            let r = f.authority.refusals.lock().unwrap();
            assert!(r.len() <= n, "more refusals than expected: {r:?}");
            if r.len() == n {
                let (req, refusal) = &r[n - 1];
                return (req.agent.clone(), refusal.kind, refusal.message.clone());
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("refusal {n} was not recorded");
}

/// A normal client still gets through: login, query, answer.
async fn still_serving(f: &Fixture) {
    let (client, conn) = within(10, "connect after the attack", f.connect()).await;
    let rows = within(
        10,
        "query after the attack",
        client.simple_query("SELECT 1"),
    )
    .await
    .unwrap();
    assert!(
        rows.iter().any(
            |m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("1"))
        )
    );
    drop(client);
    let _ = within(10, "client connection end", conn).await;
}

// ---------------------------------------------------------------------------------------------
// Agent side
// ---------------------------------------------------------------------------------------------

/// CVE-2021-23214 class: plaintext pipelined behind SSLRequest must never be processed as if it
/// had come through the TLS handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_pipelined_after_ssl_request_is_refused() {
    let (ca, f) = tls_fixture().await;
    let startup = startup_packet(AGENT);

    // SSLRequest and, in the same write, the start of a startup packet / a whole one.
    for (i, extra) in [&startup[..12], &startup[..]].into_iter().enumerate() {
        let mut raw = RawClient::connect(f.port).await;
        let mut bytes = SSL_REQUEST.to_vec();
        bytes.extend_from_slice(extra);
        raw.send(&bytes).await;
        let mut first = [0u8; 1];
        within(10, "proctor's answer", raw.stream.read_exact(&mut first))
            .await
            .expect("an answer before the close");
        assert_eq!(
            first[0], b'E',
            "no TLS handshake ('S') on a connection with buffered plaintext"
        );
        raw.buf.put_u8(first[0]);
        let (code, msg) = raw.read_error().await.expect("an ErrorResponse");
        assert_eq!(code, "08P01");
        assert!(msg.contains("unencrypted data after SSL request"), "{msg}");
        assert!(raw.read().await.is_none(), "closed after the error");
        let (agent, kind, message) = refusal_number(&f, i + 1).await;
        assert_eq!((agent.as_str(), kind), ("", RefusalKind::ProtocolViolation));
        assert!(message.contains("unencrypted data"), "{message}");
    }

    // Plaintext sent after proctor said 'S' is not a ClientHello: the handshake fails, nothing
    // from the plaintext is answered.
    let mut tcp = TcpStream::connect(("127.0.0.1", f.port)).await.unwrap();
    tcp.write_all(&SSL_REQUEST).await.unwrap();
    let mut s = [0u8; 1];
    within(10, "'S'", tcp.read_exact(&mut s)).await.unwrap();
    assert_eq!(s[0], b'S');
    tcp.write_all(&startup).await.unwrap();
    let rest = read_to_eof(&mut tcp).await;
    assert!(
        rest.is_empty() || rest[0] == 0x15,
        "only a TLS alert may follow, got {rest:?}"
    );
    let (_, kind, message) = refusal_number(&f, 3).await;
    assert_eq!(kind, RefusalKind::ProtocolViolation);
    assert!(message.contains("TLS handshake failed"), "{message}");

    // TLS still works for a well-behaved client, and so does plain.
    let mut tls = tls_after_ssl_request(&f, &ca).await;
    tls.write_all(&startup).await.unwrap();
    let mut head = [0u8; 9];
    within(10, "AuthenticationSASL over TLS", tls.read_exact(&mut head))
        .await
        .unwrap();
    assert_eq!(head[0], b'R');
    assert_eq!(i32::from_be_bytes([head[5], head[6], head[7], head[8]]), 10);
    drop(tls);
    still_serving(&f).await;
    assert_eq!(f.authority.session_count(), 1);
}

/// SSLRequest, then nothing (or a TLS record header and nothing): closed at the handshake
/// timeout, recorded, and the listener serves others meanwhile and afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_after_ssl_request_times_out() {
    let ca = TestCa::new();
    let cert = ca.issue(&["localhost"]);
    let timeout = Duration::from_millis(1500);
    let f = Fixture::start(PgFrontendConfig {
        tls: Some(server_tls(&cert)),
        handshake_timeout: timeout,
        ..PgFrontendConfig::default()
    })
    .await;

    // A TLS record header announcing 512 bytes of ClientHello that never come.
    let partial_hello: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01];
    for (i, after_s) in [&[][..], partial_hello].into_iter().enumerate() {
        let started = Instant::now();
        let mut tcp = TcpStream::connect(("127.0.0.1", f.port)).await.unwrap();
        tcp.write_all(&SSL_REQUEST).await.unwrap();
        let mut s = [0u8; 1];
        within(10, "'S'", tcp.read_exact(&mut s)).await.unwrap();
        assert_eq!(s[0], b'S');
        tcp.write_all(after_s).await.unwrap();
        // The silent connection does not hold up the listener.
        still_serving(&f).await;
        let rest = read_to_eof(&mut tcp).await;
        let elapsed = started.elapsed();
        assert!(
            rest.is_empty() || rest[0] == 0x15,
            "nothing but a TLS alert: {rest:?}"
        );
        assert!(
            elapsed >= timeout - Duration::from_millis(100),
            "closed after {elapsed:?}, before the timeout"
        );
        assert!(
            elapsed < timeout + Duration::from_secs(5),
            "closed only after {elapsed:?}"
        );
        let (_, kind, message) = refusal_number(&f, i + 1).await;
        assert_eq!(kind, RefusalKind::ProtocolViolation);
        assert_eq!(message, "startup timed out");
    }
    still_serving(&f).await;
    assert_eq!(f.authority.session_count(), 3);
}

/// What real drivers do at startup and on cancel that psql does not: protocol 3.2 with a
/// `_pq_.` option (libpq 18 `max_protocol_version=3.2`) gets a NegotiateProtocolVersion naming
/// 3.0 as a whole version number, then login goes on; a CancelRequest sent over TLS (libpq 17
/// `PQcancelStart`) is answered by a clean TLS close, which OpenSSL requires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_startup_negotiation_and_tls_cancel() {
    let (ca, f) = tls_fixture().await;

    let mut raw = RawClient::connect(f.port).await;
    let mut body = BytesMut::new();
    body.put_i32((3 << 16) | 2);
    for (k, v) in [
        ("user", AGENT),
        ("database", TARGET),
        ("_pq_.test_option", "x"),
    ] {
        body.put_slice(k.as_bytes());
        body.put_u8(0);
        body.put_slice(v.as_bytes());
        body.put_u8(0);
    }
    body.put_u8(0);
    let mut packet = (body.len() as i32 + 4).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    raw.send(&packet).await;
    let (tag, msg) = within(10, "NegotiateProtocolVersion", raw.read())
        .await
        .expect("an answer");
    assert_eq!(tag, b'v', "{}", String::from_utf8_lossy(&msg));
    let word = |i: usize| i32::from_be_bytes([msg[i], msg[i + 1], msg[i + 2], msg[i + 3]]);
    assert_eq!(word(0), 3 << 16, "newest version supported: 3.0");
    assert_eq!(word(4), 1);
    assert_eq!(&msg[8..], b"_pq_.test_option\0");
    let (tag, msg) = within(10, "AuthenticationSASL", raw.read())
        .await
        .expect("login goes on");
    assert_eq!((tag, word_of(&msg)), (b'R', 10));
    drop(raw);

    let mut tls = tls_after_ssl_request(&f, &ca).await;
    tls.write_all(&cancel_request(1, 2)).await.unwrap();
    let mut rest = Vec::new();
    let end = within(10, "close after a cancel", tls.read_to_end(&mut rest)).await;
    assert!(
        end.is_ok() && rest.is_empty(),
        "a TLS close_notify and nothing else: {end:?} {rest:?}"
    );
    still_serving(&f).await;
}

/// `sslnegotiation=direct` (libpq 17+): TLS from the first byte, no SSLRequest. With the
/// `postgresql` ALPN protocol the login goes on inside TLS; without ALPN it is refused with a
/// FATAL error, as PostgreSQL 17 does.
#[tokio::test]
async fn direct_tls_needs_the_postgresql_alpn_protocol() {
    let (ca, f) = tls_fixture().await;
    for alpn in [true, false] {
        let tcp = TcpStream::connect(("127.0.0.1", f.port)).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = within(
            10,
            "direct TLS handshake",
            tls_client(&ca, alpn).connect(name, tcp),
        )
        .await
        .expect("TLS handshake with proctor");
        tls.write_all(&startup_packet(AGENT)).await.unwrap();
        let mut head = [0u8; 5];
        within(10, "an answer inside TLS", tls.read_exact(&mut head))
            .await
            .expect("an answer");
        let len = word_of(&head[1..]) as usize;
        let mut body = vec![0u8; len - 4];
        tls.read_exact(&mut body).await.unwrap();
        if alpn {
            assert_eq!((head[0], word_of(&body)), (b'R', 10), "AuthenticationSASL");
        } else {
            let text = String::from_utf8_lossy(&body);
            assert_eq!(head[0], b'E', "{text}");
            assert!(text.contains("08P01") && text.contains("ALPN"), "{text}");
        }
    }
    still_serving(&f).await;
}

/// A front end with TLS from a fresh test CA.
async fn tls_fixture() -> (TestCa, Fixture) {
    let ca = TestCa::new();
    let cert = ca.issue(&["localhost"]);
    let f = Fixture::start(PgFrontendConfig {
        tls: Some(server_tls(&cert)),
        ..PgFrontendConfig::default()
    })
    .await;
    (ca, f)
}

/// A TLS client trusting `ca`; `alpn` offers the `postgresql` protocol as libpq 17+ does.
fn tls_client(ca: &TestCa, alpn: bool) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca.pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    if alpn {
        cfg.alpn_protocols = vec![b"postgresql".to_vec()];
    }
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// SSLRequest, proctor's 'S', then the TLS handshake, as libpq does by default.
async fn tls_after_ssl_request(
    f: &Fixture,
    ca: &TestCa,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut tcp = TcpStream::connect(("127.0.0.1", f.port)).await.unwrap();
    tcp.write_all(&SSL_REQUEST).await.unwrap();
    let mut s = [0u8; 1];
    within(10, "'S'", tcp.read_exact(&mut s)).await.unwrap();
    assert_eq!(s[0], b'S');
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    within(
        10,
        "TLS handshake",
        tls_client(ca, false).connect(name, tcp),
    )
    .await
    .expect("TLS handshake with proctor")
}

fn word_of(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Up to AuthenticationSASL by hand.
async fn at_sasl(port: u16) -> RawClient {
    let mut raw = RawClient::connect(port).await;
    raw.send(&startup_packet(AGENT)).await;
    let (tag, body) = raw.read().await.expect("AuthenticationSASL");
    assert_eq!(tag, b'R');
    assert_eq!(&body[..4], &10i32.to_be_bytes());
    assert!(body.windows(13).any(|w| w == b"SCRAM-SHA-256"));
    raw
}

fn sasl_initial(mechanism: &[u8], inner_len: i32, data: &[u8]) -> Vec<u8> {
    let mut body = mechanism.to_vec();
    body.extend_from_slice(&inner_len.to_be_bytes());
    body.extend_from_slice(data);
    typed(b'p', &body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_scram_messages_are_refused_and_recorded() {
    let f = Fixture::start(PgFrontendConfig::default()).await;
    let first = b"n,,n=,r=rOprNGfwEbeRWgbNEkqO";
    let n = first.len() as i32;
    let mut huge_frame = vec![b'p'];
    huge_frame.extend_from_slice(&i32::MAX.to_be_bytes());
    huge_frame.extend_from_slice(b"SCRAM-SHA-256\0");
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "negative inner length",
            sasl_initial(b"SCRAM-SHA-256\0", -1, first),
            "08P01",
            "malformed SASL initial response",
        ),
        (
            "inner length past the message",
            sasl_initial(b"SCRAM-SHA-256\0", n + 100, first),
            "08P01",
            "malformed SASL initial response",
        ),
        (
            "inner length of 2 GiB",
            sasl_initial(b"SCRAM-SHA-256\0", i32::MAX, first),
            "08P01",
            "malformed SASL initial response",
        ),
        (
            "inner length short of the message",
            sasl_initial(b"SCRAM-SHA-256\0", n - 4, first),
            "08P01",
            "malformed SASL initial response",
        ),
        (
            "mechanism without its NUL",
            typed(b'p', b"SCRAM-SHA-256"),
            "08P01",
            "malformed SASL initial response",
        ),
        (
            "frame announcing 2 GiB",
            huge_frame,
            "54000",
            "exceeds the limit",
        ),
        (
            "garbage client-first",
            sasl_initial(b"SCRAM-SHA-256\0", 3, b"\xff,,"),
            "08P01",
            "malformed SCRAM message",
        ),
    ];
    for (i, (what, bytes, want_code, want_msg)) in cases.iter().enumerate() {
        let mut raw = at_sasl(f.port).await;
        raw.send(bytes).await;
        let (code, msg) = raw
            .read_error()
            .await
            .unwrap_or_else(|| panic!("{what}: an ErrorResponse"));
        assert_eq!(&code, want_code, "{what}: {msg}");
        assert!(msg.contains(want_msg), "{what}: {msg}");
        assert!(raw.read().await.is_none(), "{what}: closed after the error");
        let (agent, kind, message) = refusal_number(&f, i + 1).await;
        assert_eq!(
            (agent.as_str(), kind),
            (AGENT, RefusalKind::ProtocolViolation),
            "{what}"
        );
        assert!(message.contains(want_msg), "{what}: {message}");
    }
    let mut refusals = cases.len();

    // SASLResponse with a truncated body: a correct client-final cut short inside the proof,
    // and an empty one.
    for cut in [Some(10usize), None] {
        let mut raw = at_sasl(f.port).await;
        let mut scram = ScramSha256::new(AGENT_SECRET.as_bytes(), ChannelBinding::unsupported());
        let mut out = BytesMut::new();
        frontend::sasl_initial_response("SCRAM-SHA-256", scram.message(), &mut out).unwrap();
        raw.send(&out).await;
        let (tag, body) = raw.read().await.expect("AuthenticationSASLContinue");
        assert_eq!((tag, &body[..4]), (b'R', &11i32.to_be_bytes()[..]));
        scram.update(&body[4..]).unwrap();
        let fin = scram.message();
        let truncated = match cut {
            Some(c) => &fin[..fin.len() - c],
            None => &b""[..],
        };
        raw.send(&typed(b'p', truncated)).await;
        let (code, msg) = raw.read_error().await.expect("an ErrorResponse");
        assert_eq!(code, "08P01", "{msg}");
        assert!(msg.contains("malformed SCRAM message"), "{msg}");
        assert!(raw.read().await.is_none());
        refusals += 1;
        let (agent, kind, message) = refusal_number(&f, refusals).await;
        assert_eq!(
            (agent.as_str(), kind),
            (AGENT, RefusalKind::ProtocolViolation)
        );
        assert!(message.contains("malformed SCRAM message"), "{message}");
    }

    // A SASLResponse whose frame is cut short by the client going away.
    let mut raw = at_sasl(f.port).await;
    let mut scram = ScramSha256::new(AGENT_SECRET.as_bytes(), ChannelBinding::unsupported());
    let mut out = BytesMut::new();
    frontend::sasl_initial_response("SCRAM-SHA-256", scram.message(), &mut out).unwrap();
    raw.send(&out).await;
    let (_, body) = raw.read().await.expect("AuthenticationSASLContinue");
    scram.update(&body[4..]).unwrap();
    let full = typed(b'p', scram.message());
    raw.send(&full[..full.len() / 2]).await;
    raw.stream.shutdown().await.unwrap();
    assert!(raw.read().await.is_none());
    refusals += 1;
    let (agent, kind, message) = refusal_number(&f, refusals).await;
    assert_eq!(
        (agent.as_str(), kind),
        (AGENT, RefusalKind::ProtocolViolation)
    );
    assert!(message.contains("closed"), "{message}");

    // No session was opened by any of them; a real client still gets in.
    assert_eq!(f.authority.session_count(), 0);
    still_serving(&f).await;
    assert_eq!(f.authority.session_count(), 1);
}

// ---------------------------------------------------------------------------------------------
// Target side: a scripted backend
// ---------------------------------------------------------------------------------------------

const FAKE_PID: i32 = 4242;
const FAKE_SECRET: i32 = 0x0bad_cafe;
const FORGED_PID: i32 = 666;
const FORGED_SECRET: i32 = 999;
const FLOOD_NOTICES: usize = 100_000;
const NO_CODE_ERROR: &[u8] = b"SERROR\0Mhostile error without a code\0\0";

fn row_description(name: &str) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_i16(1);
    b.put_slice(name.as_bytes());
    b.put_u8(0);
    b.put_i32(0);
    b.put_i16(0);
    b.put_i32(25);
    b.put_i16(-1);
    b.put_i32(-1);
    b.put_i16(0);
    typed(b'T', &b)
}

fn data_row_body(v: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 1];
    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
    b.extend_from_slice(v);
    b
}

fn one_row(name: &str, value: &[u8]) -> Vec<u8> {
    let mut b = row_description(name);
    b.extend(typed(b'D', &data_row_body(value)));
    b.extend(typed(b'C', b"SELECT 1\0"));
    b.extend(typed(b'Z', b"I"));
    b
}

fn forged_key() -> Vec<u8> {
    let mut b = FORGED_PID.to_be_bytes().to_vec();
    b.extend_from_slice(&FORGED_SECRET.to_be_bytes());
    typed(b'K', &b)
}

/// Piece `i` of the flood: a notice with a 700-byte detail (not recorded, only relayed), a
/// forged BackendKeyData every 10,000 notices, and once a request for a cleartext password.
fn flood_piece(i: usize) -> Vec<u8> {
    let mut b = Vec::new();
    if i.is_multiple_of(10_000) {
        b.extend(forged_key());
    }
    if i == FLOOD_NOTICES / 2 {
        b.extend(typed(b'R', &3i32.to_be_bytes()));
    }
    let mut n = BytesMut::new();
    n.put_slice(b"SNOTICE\0VNOTICE\0C01000\0M");
    n.put_slice(format!("flood notice {i:06}\0").as_bytes());
    n.put_u8(b'D');
    n.put_slice(&[b'x'; 700]);
    n.put_slice(b"\0\0");
    b.extend(typed(b'N', &n));
    b
}

fn flood_total() -> u64 {
    let pieces: usize = (0..FLOOD_NOTICES).map(|i| flood_piece(i).len()).sum();
    (pieces + one_row("flood", b"done").len()) as u64
}

struct FakeTarget {
    port: u16,
    /// CancelRequests received: (pid, secret).
    cancels: mpsc::UnboundedReceiver<(i32, i32)>,
    /// How each logged-in connection ended ("terminate" or "eof").
    ends: mpsc::UnboundedReceiver<&'static str>,
    /// Bytes of the flood written so far.
    flood_written: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    cancels: mpsc::UnboundedSender<(i32, i32)>,
    ends: mpsc::UnboundedSender<&'static str>,
    flood_written: Arc<AtomicU64>,
}

impl FakeTarget {
    async fn start() -> FakeTarget {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        // Small buffers on the backend's side, so that what it manages to write shows what
        // proctor and the agent's socket hold.
        let _ = socket.set_send_buffer_size(64 << 10);
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(64).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cancels_tx, cancels) = mpsc::unbounded_channel();
        let (ends_tx, ends) = mpsc::unbounded_channel();
        let flood_written = Arc::new(AtomicU64::new(0));
        let shared = Arc::new(Shared {
            cancels: cancels_tx,
            ends: ends_tx,
            flood_written: flood_written.clone(),
        });
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(fake_backend(s, shared.clone()));
            }
        });
        FakeTarget {
            port,
            cancels,
            ends,
            flood_written,
            task,
        }
    }
}

async fn read_typed(s: &mut TcpStream, buf: &mut BytesMut) -> Option<(u8, Vec<u8>)> {
    loop {
        if buf.len() >= 5 {
            let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if buf.len() > len {
                let frame = buf.split_to(len + 1);
                return Some((frame[0], frame[5..].to_vec()));
            }
        }
        if s.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    }
}

async fn fake_backend(mut s: TcpStream, st: Arc<Shared>) {
    let mut len = [0u8; 4];
    if s.read_exact(&mut len).await.is_err() {
        return;
    }
    let len = i32::from_be_bytes(len);
    if !(8..=10_000).contains(&len) {
        return;
    }
    let mut body = vec![0u8; len as usize - 4];
    if s.read_exact(&mut body).await.is_err() {
        return;
    }
    let word = |i: usize| i32::from_be_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
    if word(0) == CANCEL_CODE && body.len() == 12 {
        let _ = st.cancels.send((word(4), word(8)));
        return;
    }
    if word(0) != 3 << 16 {
        return;
    }
    let mut out = BytesMut::new();
    out.extend(typed(b'R', &0i32.to_be_bytes()));
    for (k, v) in [
        ("server_version", "15.0 (hostile)"),
        ("client_encoding", "UTF8"),
        ("standard_conforming_strings", "on"),
    ] {
        out.extend(typed(b'S', format!("{k}\0{v}\0").as_bytes()));
    }
    let mut key = FAKE_PID.to_be_bytes().to_vec();
    key.extend_from_slice(&FAKE_SECRET.to_be_bytes());
    out.extend(typed(b'K', &key));
    out.extend(typed(b'Z', b"I"));
    if s.write_all(&out).await.is_err() {
        return;
    }
    let mut buf = BytesMut::new();
    loop {
        let Some((tag, body)) = read_typed(&mut s, &mut buf).await else {
            let _ = st.ends.send("eof");
            return;
        };
        match tag {
            b'X' => {
                let _ = st.ends.send("terminate");
                return;
            }
            b'Q' => {
                let sql = String::from_utf8_lossy(&body).to_string();
                if respond(&mut s, &sql, &st).await.is_err() {
                    let _ = st.ends.send("eof");
                    return;
                }
            }
            _ => {}
        }
    }
}

async fn respond(s: &mut TcpStream, sql: &str, st: &Shared) -> std::io::Result<()> {
    if sql.contains("no_sqlstate") {
        let mut b = typed(b'E', NO_CODE_ERROR);
        b.extend(typed(b'Z', b"I"));
        return s.write_all(&b).await;
    }
    if sql.contains("flood") {
        let mut chunk = Vec::with_capacity(256 << 10);
        for i in 0..FLOOD_NOTICES {
            chunk.extend(flood_piece(i));
            if chunk.len() >= 256 << 10 {
                s.write_all(&chunk).await?;
                st.flood_written
                    .fetch_add(chunk.len() as u64, Ordering::SeqCst);
                chunk.clear();
            }
        }
        chunk.extend(one_row("flood", b"done"));
        s.write_all(&chunk).await?;
        st.flood_written
            .fetch_add(chunk.len() as u64, Ordering::SeqCst);
        return Ok(());
    }
    if sql.contains("forged_keys") {
        let mut b = forged_key();
        b.extend(forged_key());
        b.extend(one_row("keys", b"ok"));
        return s.write_all(&b).await;
    }
    if sql.contains("at_limit") {
        // A DataRow of exactly 1 MiB, header included.
        let value = vec![b'v'; (1 << 20) - 1 - 4 - 2 - 4];
        let mut b = row_description("big");
        b.extend(typed(b'D', &data_row_body(&value)));
        b.extend(typed(b'C', b"SELECT 1\0"));
        b.extend(typed(b'Z', b"I"));
        return s.write_all(&b).await;
    }
    // Hostile lengths: a header only (plus a little), and then the connection stays open.
    let declared: Option<i32> = if sql.contains("row_of_2gib") {
        Some(i32::MAX)
    } else if sql.contains("over_limit") {
        Some(1 << 20)
    } else if sql.contains("bad_length") {
        Some(2)
    } else {
        None
    };
    if let Some(len) = declared {
        let mut b = row_description("evil");
        b.push(b'D');
        b.extend_from_slice(&len.to_be_bytes());
        b.extend_from_slice(&[0, 1, 0x7f, 0xff, 0xff, 0xff]);
        return s.write_all(&b).await;
    }
    s.write_all(&one_row("?column?", b"1")).await
}

/// Reads messages up to ReadyForQuery; notices are counted, not kept.
async fn until_ready(raw: &mut RawClient) -> (Vec<(u8, Vec<u8>)>, usize) {
    let mut msgs = Vec::new();
    let mut notices = 0;
    loop {
        let (tag, body) = raw.read().await.expect("a message before ReadyForQuery");
        match tag {
            b'N' => notices += 1,
            b'Z' => {
                msgs.push((tag, body));
                return (msgs, notices);
            }
            _ => msgs.push((tag, body)),
        }
    }
}

fn tags(msgs: &[(u8, Vec<u8>)]) -> String {
    msgs.iter().map(|(t, _)| *t as char).collect()
}

async fn select_one_works(raw: &mut RawClient) {
    raw.send(&typed(b'Q', b"SELECT 1\0")).await;
    let (msgs, _) = until_ready(raw).await;
    assert_eq!(tags(&msgs), "TDCZ");
    assert_eq!(msgs[1].1, data_row_body(b"1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_error_without_sqlstate() {
    let fake = FakeTarget::start().await;
    let f = Fixture::with_target_port(fake.port, PgFrontendConfig::default()).await;

    // Relayed as the target sent it; the session goes on.
    let mut raw = within(10, "login", RawClient::login(f.port)).await;
    raw.send(&typed(b'Q', b"SELECT 'no_sqlstate'\0")).await;
    let (msgs, _) = until_ready(&mut raw).await;
    assert_eq!(tags(&msgs), "EZ");
    assert_eq!(msgs[0].1, NO_CODE_ERROR);
    select_one_works(&mut raw).await;
    raw.send(&typed(b'X', b"")).await;
    assert!(raw.read().await.is_none());

    // A real client gets an error for the statement and can go on.
    let (client, conn) = within(10, "connect", f.connect()).await;
    let e = within(10, "query", client.simple_query("SELECT 'no_sqlstate'"))
        .await
        .unwrap_err();
    assert!(!e.is_closed(), "{e:?}");
    within(10, "next query", client.simple_query("SELECT 1"))
        .await
        .unwrap();
    drop(client);
    let _ = within(10, "client end", conn).await;

    for i in 0..2 {
        let g = f.wait_ended(i).await;
        assert_eq!(g.end().unwrap().0, Outcome::Completed);
        let stmt = g
            .statements()
            .into_iter()
            .find(|s| s.text.contains("no_sqlstate"))
            .unwrap();
        let r = g
            .results()
            .into_iter()
            .find(|r| r.statement_id == stmt.id)
            .expect("the failed statement has a result");
        let err = r.error.expect("recorded as an error");
        assert_eq!(
            (
                err.severity.as_str(),
                err.code.as_str(),
                err.message.as_str()
            ),
            ("ERROR", "", "hostile error without a code")
        );
        assert!(r.tag.is_empty());
        let one = g
            .statements()
            .into_iter()
            .find(|s| s.text == "SELECT 1")
            .unwrap();
        let r = g
            .results()
            .into_iter()
            .find(|r| r.statement_id == one.id)
            .unwrap();
        assert!(r.error.is_none() && r.rows == 1);
    }
}

/// Waits until the scripted backend stops making progress (or finishes); returns the bytes it
/// managed to write.
async fn stalled_at(written: &AtomicU64, total: u64) -> u64 {
    let start = Instant::now();
    let (mut last, mut same) = (0, 0);
    while start.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = written.load(Ordering::SeqCst);
        if now == total {
            return now;
        }
        if now == last && now > 0 {
            same += 1;
            if same >= 4 {
                return now;
            }
        } else {
            (last, same) = (now, 0);
        }
    }
    written.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_notice_flood_and_forged_backend_keys() {
    let mut fake = FakeTarget::start().await;
    let f = Fixture::with_target_port(fake.port, PgFrontendConfig::default()).await;
    let total = flood_total();
    let mut raw = within(10, "login", RawClient::login(f.port)).await;
    let key = raw.key.expect("proctor's cancel key at login");
    assert_ne!(
        key,
        (FAKE_PID, FAKE_SECRET),
        "the target's key is not handed out"
    );

    // The agent does not read: proctor must stop reading the target instead of buffering the
    // flood (tens of MB) in memory.
    raw.send(&typed(b'Q', b"SELECT 'flood'\0")).await;
    let stalled = stalled_at(&fake.flood_written, total).await;
    assert!(
        stalled > 0 && stalled < total / 2,
        "the target wrote {stalled} of {total} bytes to an agent that reads nothing"
    );

    // Then everything arrives, minus the target's startup-only messages.
    let (msgs, notices) = within(60, "the flood", until_ready(&mut raw)).await;
    assert_eq!(notices, FLOOD_NOTICES);
    assert_eq!(tags(&msgs), "TDCZ", "no K or R relayed mid-session");
    assert_eq!(msgs[1].1, data_row_body(b"done"));
    assert_eq!(fake.flood_written.load(Ordering::SeqCst), total);

    raw.send(&typed(b'Q', b"SELECT 'forged_keys'\0")).await;
    let (msgs, _) = until_ready(&mut raw).await;
    assert_eq!(tags(&msgs), "TDCZ");

    // Cancels: the forged key and the target's real key mean nothing at proctor; proctor's
    // key reaches the target with the key of its login, not the forged one.
    for (pid, secret) in [(FORGED_PID, FORGED_SECRET), (FAKE_PID, FAKE_SECRET), key] {
        let mut c = TcpStream::connect(("127.0.0.1", f.port)).await.unwrap();
        c.write_all(&cancel_request(pid, secret)).await.unwrap();
        let _ = read_to_eof(&mut c).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let got = within(5, "a cancel at the target", fake.cancels.recv())
        .await
        .unwrap();
    assert_eq!(got, (FAKE_PID, FAKE_SECRET));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        fake.cancels.try_recv().is_err(),
        "only proctor's key leads to a cancel"
    );

    select_one_works(&mut raw).await;
    raw.send(&typed(b'X', b"")).await;
    assert!(raw.read().await.is_none());
    assert_eq!(
        within(5, "backend end", fake.ends.recv()).await,
        Some("terminate")
    );

    let g = f.wait_ended(0).await;
    assert_eq!(g.end().unwrap().0, Outcome::Completed);
    let events = g.events();
    let recorded_notices = events
        .iter()
        .filter(|e| matches!(e, Event::TargetMessage { kind, text } if kind == "notice" && text.contains("flood notice")))
        .count();
    assert_eq!(recorded_notices, FLOOD_NOTICES);
    let late: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::ProtocolError {
                party: Party::Target,
                message,
            } => Some(message.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        late,
        vec!["the target sent BackendKeyData after startup (ignored)".to_string()]
    );
    let flood = g
        .statements()
        .into_iter()
        .find(|s| s.text.contains("flood"))
        .unwrap();
    let r = g
        .results()
        .into_iter()
        .find(|r| r.statement_id == flood.id)
        .unwrap();
    assert!(r.error.is_none());
    assert_eq!((r.tag.as_str(), r.rows), ("SELECT 1", 1));

    // Another session through the same listener.
    let mut raw = within(10, "login", RawClient::login(f.port)).await;
    select_one_works(&mut raw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_oversized_and_bad_length_messages() {
    let mut fake = FakeTarget::start().await;
    let max = 1 << 20;
    let f = Fixture::with_target_port(
        fake.port,
        PgFrontendConfig {
            max_message_bytes: max,
            ..PgFrontendConfig::default()
        },
    )
    .await;

    // Exactly at the limit is fine.
    let mut raw = within(10, "login", RawClient::login(f.port)).await;
    raw.send(&typed(b'Q', b"SELECT 'at_limit'\0")).await;
    let (msgs, _) = until_ready(&mut raw).await;
    assert_eq!(tags(&msgs), "TDCZ");
    assert_eq!(msgs[1].1.len() + 5, max);
    raw.send(&typed(b'X', b"")).await;
    assert!(raw.read().await.is_none());
    assert_eq!(
        within(5, "backend end", fake.ends.recv()).await,
        Some("terminate")
    );

    // The target announces a DataRow it never sends in full and keeps the connection open:
    // proctor must neither wait for (nor allocate) the body.
    let cases = [
        ("row_of_2gib", "exceeds the limit"),
        ("over_limit", "exceeds the limit"),
        ("bad_length", "invalid message length 2"),
    ];
    for (i, (query, detail)) in cases.into_iter().enumerate() {
        let mut raw = within(10, "login", RawClient::login(f.port)).await;
        raw.send(&typed(b'Q', format!("SELECT '{query}'\0").as_bytes()))
            .await;
        let (tag, _) = raw.read().await.expect("RowDescription");
        assert_eq!(tag, b'T', "{query}");
        let (tag, body) = raw.read().await.expect("an error");
        assert_eq!(tag, b'E', "{query}");
        let e = ErrorFields::parse(&body);
        assert_eq!(
            (e.severity.as_str(), e.code.as_str()),
            ("FATAL", "08P01"),
            "{query}"
        );
        assert!(e.message.contains("invalid message"), "{query}: {e:?}");
        assert!(raw.read().await.is_none(), "{query}: closed");

        let g = f.wait_ended(i + 1).await;
        let (outcome, reason) = g.end().unwrap();
        assert_eq!(outcome, Outcome::TargetLost, "{query}");
        assert!(
            reason.starts_with("target protocol error") && reason.contains(detail),
            "{query}: {reason}"
        );
        assert!(
            g.events().iter().any(|e| matches!(e,
                Event::ProtocolError { party: Party::Target, message } if message.contains(detail))),
            "{query}"
        );
        // Proctor let go of the target connection.
        let end = within(5, "backend end", fake.ends.recv()).await;
        assert!(matches!(end, Some("terminate" | "eof")), "{query}: {end:?}");
    }

    // The listener and the target are still fine for the next client.
    let mut raw = within(10, "login", RawClient::login(f.port)).await;
    select_one_works(&mut raw).await;
}
