//! Known attacks on SSH servers and proxies, replayed against proctor's front end with raw TCP
//! (and, where a whole login is needed, russh's client): Terrapin prefix truncation under
//! strict kex, invalid curve25519 / ML-KEM values, huge packet lengths and field lengths,
//! compression negotiation (no bomb can be delivered), endless lines before the banner, slow
//! unauthenticated clients, and a port forward opened while a command is held. After each,
//! a real OpenSSH client still gets through.

mod common;

use std::time::{Duration, Instant};

use common::{Env, eventually};
use proctor_gate::{ChannelKind, Event};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(20);

const MSG_IGNORE: u8 = 2;
const MSG_KEXINIT: u8 = 20;
const MSG_NEWKEYS: u8 = 21;
const MSG_KEX_ECDH_INIT: u8 = 30;
const MSG_KEX_ECDH_REPLY: u8 = 31;

/// An unencrypted binary packet (RFC 4253 §6): length, padding length, payload, padding.
fn packet(payload: &[u8]) -> Vec<u8> {
    let mut pad = 8 - (payload.len() + 5) % 8;
    if pad < 4 {
        pad += 8;
    }
    let mut p = Vec::with_capacity(payload.len() + pad + 5);
    p.extend_from_slice(&((payload.len() + pad + 1) as u32).to_be_bytes());
    p.push(pad as u8);
    p.extend_from_slice(payload);
    p.extend(std::iter::repeat_n(0u8, pad));
    p
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// A client KEXINIT offering `kex` (with OpenSSH's strict-kex marker when `strict`) and the
/// given compression methods.
fn kexinit(kex: &str, strict: bool, compression: &str) -> Vec<u8> {
    let mut p = vec![MSG_KEXINIT];
    p.extend_from_slice(&[7u8; 16]);
    let kex = if strict {
        format!("{kex},kex-strict-c-v00@openssh.com")
    } else {
        kex.to_string()
    };
    let cipher = "chacha20-poly1305@openssh.com,aes256-gcm@openssh.com";
    let mac = "hmac-sha2-256-etm@openssh.com";
    for list in [
        kex.as_str(),
        "ssh-ed25519",
        cipher,
        cipher,
        mac,
        mac,
        compression,
        compression,
        "",
        "",
    ] {
        put_string(&mut p, list.as_bytes());
    }
    p.push(0);
    p.extend_from_slice(&0u32.to_be_bytes());
    p
}

fn ecdh_init(public: &[u8]) -> Vec<u8> {
    let mut p = vec![MSG_KEX_ECDH_INIT];
    put_string(&mut p, public);
    p
}

/// A usable X25519 public value: X25519 works on any u-coordinate, and a random one is of
/// low order with negligible probability.
fn x25519_public() -> Vec<u8> {
    let mut v = rand::random::<[u8; 32]>().to_vec();
    v[31] &= 0x7f;
    v
}

struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// Connects and exchanges identification strings.
    async fn connect(port: u16) -> Raw {
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        s.write_all(b"SSH-2.0-hostile_test\r\n")
            .await
            .expect("banner");
        let mut r = Raw { s, buf: Vec::new() };
        let line = r.line().await.expect("server banner");
        assert!(line.starts_with("SSH-2.0-proctor"), "{line}");
        r
    }

    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let l: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(String::from_utf8_lossy(&l).trim_end().to_string());
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    async fn fill(&mut self) -> bool {
        let mut tmp = [0u8; 4096];
        match tokio::time::timeout(T, self.s.read(&mut tmp)).await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
            _ => false,
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> bool {
        self.s.write_all(bytes).await.is_ok()
    }

    /// The next unencrypted packet's payload; `None` once the connection is closed.
    async fn packet(&mut self) -> Option<Vec<u8>> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]])
                    as usize;
                assert!(len < 64 * 1024, "server packet length {len}");
                if self.buf.len() >= 4 + len {
                    let pad = self.buf[4] as usize;
                    let p: Vec<u8> = self.buf.drain(..4 + len).collect();
                    return Some(p[5..4 + len - pad].to_vec());
                }
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Message types the server sends until it closes the connection (bounded by `T`).
    async fn until_closed(&mut self) -> (Vec<u8>, bool) {
        let deadline = Instant::now() + T;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            match self.packet().await {
                Some(p) => seen.push(p.first().copied().unwrap_or(0)),
                None => return (seen, true),
            }
        }
        (seen, false)
    }
}

/// A real OpenSSH client still runs a command through proctor.
async fn still_serves(env: &Env) {
    let out = tokio::time::timeout(T, env.ssh("web1").arg("echo still-$((20+1))").output())
        .await
        .expect("ssh in time")
        .expect("ssh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "still-21\n");
}

fn rss_kib() -> u64 {
    proctor_harness::proc_status_kib(std::process::id(), "VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_kex_handshake_completes_for_a_well_behaved_client() {
    // The control case: the raw client speaks correctly and gets the server's key exchange
    // reply and NEWKEYS, so the refusals below are refusals of the attack, not of the client.
    let env = Env::start().await;
    let mut r = Raw::connect(env.port).await;
    assert!(
        r.send(&packet(&kexinit("curve25519-sha256", true, "none")))
            .await
    );
    assert!(r.send(&packet(&ecdh_init(&x25519_public()))).await);
    let mut seen = Vec::new();
    while let Some(p) = r.packet().await {
        seen.push(p[0]);
        if p[0] == MSG_NEWKEYS {
            break;
        }
    }
    assert_eq!(seen, vec![MSG_KEXINIT, MSG_KEX_ECDH_REPLY, MSG_NEWKEYS]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terrapin_ignore_before_kexinit_is_refused() {
    // Terrapin (CVE-2023-48795) shifts sequence numbers with messages injected before the
    // keys are in use. Under strict kex the first packet must be KEXINIT.
    let env = Env::start().await;
    let mut r = Raw::connect(env.port).await;
    let mut ignore = vec![MSG_IGNORE];
    put_string(&mut ignore, b"shift");
    assert!(r.send(&packet(&ignore)).await);
    let _ = r
        .send(&packet(&kexinit("curve25519-sha256", true, "none")))
        .await;
    let _ = r.send(&packet(&ecdh_init(&x25519_public()))).await;
    let (seen, closed) = r.until_closed().await;
    assert!(closed, "connection kept open; saw {seen:?}");
    assert!(!seen.contains(&MSG_KEX_ECDH_REPLY), "{seen:?}");
    assert!(!seen.contains(&MSG_NEWKEYS), "{seen:?}");
    still_serves(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terrapin_ignore_during_kex_is_refused() {
    let env = Env::start().await;
    let mut r = Raw::connect(env.port).await;
    assert!(
        r.send(&packet(&kexinit("curve25519-sha256", true, "none")))
            .await
    );
    let mut ignore = vec![MSG_IGNORE];
    put_string(&mut ignore, b"shift");
    let _ = r.send(&packet(&ignore)).await;
    let _ = r.send(&packet(&ecdh_init(&x25519_public()))).await;
    let (seen, closed) = r.until_closed().await;
    assert!(closed, "connection kept open; saw {seen:?}");
    assert!(!seen.contains(&MSG_NEWKEYS), "{seen:?}");
    assert!(!seen.contains(&MSG_KEX_ECDH_REPLY), "{seen:?}");
    still_serves(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_key_exchange_values_are_refused() {
    let env = Env::start().await;
    let mut low_order_one = vec![0u8; 32];
    low_order_one[0] = 1;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("curve25519-sha256", vec![0u8; 32]),
        ("curve25519-sha256", low_order_one),
        ("curve25519-sha256", vec![9u8; 31]),
        ("curve25519-sha256", vec![9u8; 33]),
        ("curve25519-sha256", Vec::new()),
        ("mlkem768x25519-sha256", vec![1u8; 100]),
        ("mlkem768x25519-sha256", vec![0u8; 1184 + 32]),
    ];
    for (kex, value) in cases {
        let mut r = Raw::connect(env.port).await;
        assert!(r.send(&packet(&kexinit(kex, true, "none"))).await);
        let _ = r.send(&packet(&ecdh_init(&value))).await;
        let (seen, closed) = r.until_closed().await;
        assert!(
            closed,
            "{kex} {} bytes: kept open, saw {seen:?}",
            value.len()
        );
        if kex == "curve25519-sha256" {
            // ML-KEM with a malformed-but-sized key may be answered; curve25519 never.
            assert!(
                !seen.contains(&MSG_KEX_ECDH_REPLY),
                "{kex} {:?}: {seen:?}",
                &value[..value.len().min(4)]
            );
        }
        assert!(!seen.contains(&MSG_NEWKEYS), "{kex}: {seen:?}");
    }
    // A forged ECDH_INIT length field larger than the packet.
    let mut r = Raw::connect(env.port).await;
    assert!(
        r.send(&packet(&kexinit("curve25519-sha256", true, "none")))
            .await
    );
    let mut forged = vec![MSG_KEX_ECDH_INIT];
    forged.extend_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
    forged.extend_from_slice(&[9u8; 32]);
    let _ = r.send(&packet(&forged)).await;
    let (seen, closed) = r.until_closed().await;
    assert!(closed && !seen.contains(&MSG_NEWKEYS), "{seen:?}");
    still_serves(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_packet_and_field_lengths_are_refused_without_allocating() {
    let env = Env::start().await;
    let before = rss_kib();
    // A 4 GiB packet announced right after the banner.
    let mut r = Raw::connect(env.port).await;
    let _ = r
        .send(&[0xFF, 0xFF, 0xFF, 0xF0, 4, 0, 0, 0, 0, 0, 0, 0])
        .await;
    let t0 = Instant::now();
    let (_, closed) = r.until_closed().await;
    assert!(closed, "a 4 GiB packet length kept the connection open");
    assert!(t0.elapsed() < Duration::from_secs(5));
    // Several just over the limit at once.
    let mut conns = Vec::new();
    for _ in 0..8 {
        let mut r = Raw::connect(env.port).await;
        let _ = r.send(&(300 * 1024u32).to_be_bytes()).await;
        let _ = r.send(&[4u8; 64]).await;
        conns.push(r);
    }
    for mut r in conns {
        let (_, closed) = r.until_closed().await;
        assert!(closed, "an oversized packet kept the connection open");
    }
    // A name-list claiming 4 GiB inside a normal packet, and one with 20 000 names.
    let mut r = Raw::connect(env.port).await;
    let mut bad = vec![MSG_KEXINIT];
    bad.extend_from_slice(&[7u8; 16]);
    bad.extend_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
    bad.extend_from_slice(b"curve25519-sha256");
    let _ = r.send(&packet(&bad)).await;
    let (seen, closed) = r.until_closed().await;
    assert!(closed && !seen.contains(&MSG_KEX_ECDH_REPLY), "{seen:?}");
    let mut r = Raw::connect(env.port).await;
    let many = vec!["x"; 20_000].join(",");
    let _ = r.send(&packet(&kexinit(&many, false, "none"))).await;
    let t0 = Instant::now();
    let (seen, closed) = r.until_closed().await;
    assert!(closed, "no common kex among 20 000 names: must disconnect");
    assert!(!seen.contains(&MSG_KEX_ECDH_REPLY), "{seen:?}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    let grown = rss_kib().saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "RSS grew by {grown} KiB: something allocated what a peer announced"
    );
    still_serves(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_is_never_negotiated() {
    // With no compression there is no decompression bomb: a client that insists on zlib is
    // refused at negotiation, and OpenSSH's `-C` falls back to none.
    let env = Env::start().await;
    let mut r = Raw::connect(env.port).await;
    assert!(
        r.send(&packet(&kexinit(
            "curve25519-sha256",
            true,
            "zlib@openssh.com,zlib"
        )))
        .await
    );
    let _ = r.send(&packet(&ecdh_init(&x25519_public()))).await;
    let (seen, closed) = r.until_closed().await;
    assert!(closed, "{seen:?}");
    assert!(!seen.contains(&MSG_KEX_ECDH_REPLY), "{seen:?}");
    let out = tokio::time::timeout(
        T,
        env.ssh("web1")
            .args(["-C", "-o", "Compression=yes"])
            .arg("head -c 1000000 /dev/zero | wc -c")
            .output(),
    )
    .await
    .expect("in time")
    .expect("ssh");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1000000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_lines_before_the_banner_are_cut_off() {
    let env = Env::start().await;
    let mut s = TcpStream::connect(("127.0.0.1", env.port))
        .await
        .expect("connect");
    let line = b"this is not an ssh banner, and there is always one more\r\n".repeat(64);
    let t0 = Instant::now();
    let mut sent = 0usize;
    let mut cut = false;
    while t0.elapsed() < Duration::from_secs(10) && sent < 64 * 1024 * 1024 {
        match tokio::time::timeout(Duration::from_secs(2), s.write_all(&line)).await {
            Ok(Ok(())) => sent += line.len(),
            _ => {
                cut = true;
                break;
            }
        }
    }
    if !cut {
        // The writes may all have landed in socket buffers: the server must have closed.
        let mut tmp = [0u8; 1024];
        let mut closed = false;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(1), s.read(&mut tmp)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed = true;
                    break;
                }
                _ => {}
            }
        }
        cut = closed;
    }
    assert!(
        cut,
        "{sent} bytes of lines before the banner were accepted without end"
    );
    assert!(
        sent < 16 * 1024 * 1024,
        "{sent} bytes were read before the cut"
    );
    still_serves(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_unauthenticated_clients_do_not_stall_the_accept_loop() {
    let env = Env::start().await;
    // Clients stuck at every pre-auth stage: nothing sent, half a banner, a banner and KEXINIT.
    let mut idle = Vec::new();
    for i in 0..8 {
        let mut s = TcpStream::connect(("127.0.0.1", env.port))
            .await
            .expect("connect");
        match i % 3 {
            0 => {}
            1 => s.write_all(b"SSH-2.0-slo").await.expect("partial banner"),
            _ => {
                s.write_all(b"SSH-2.0-slow\r\n").await.expect("banner");
                s.write_all(&packet(&kexinit("curve25519-sha256", true, "none")))
                    .await
                    .expect("kexinit");
            }
        }
        idle.push(s);
    }
    let t0 = Instant::now();
    still_serves(&env).await;
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "a login took {:?} next to slow clients",
        t0.elapsed()
    );
    // Past the per-address bound, further anonymous connections wait in a bounded line for a
    // slot (half the authentication timeout) without a banner, then are closed; the accept
    // loop moves on meanwhile.
    let mut extra = Vec::new();
    for _ in 0..6 {
        extra.push(
            TcpStream::connect(("127.0.0.1", env.port))
                .await
                .expect("connect"),
        );
    }
    let mut refused = 0;
    for s in &mut extra {
        let mut tmp = [0u8; 256];
        let mut got = Vec::new();
        let closed = match tokio::time::timeout(Duration::from_secs(15), s.read(&mut tmp)).await {
            Ok(Ok(0)) | Ok(Err(_)) => true,
            // A banner: this one got a slot and is being served.
            Ok(Ok(n)) => {
                got.extend_from_slice(&tmp[..n]);
                false
            }
            Err(_) => false,
        };
        if closed && got.is_empty() {
            refused += 1;
        }
    }
    assert!(
        refused >= 4,
        "only {refused} of 6 over-limit connections were refused"
    );
    drop(extra);
    drop(idle);
    // Once they are gone, logins work again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    still_serves(&env).await;
}

mod client {
    //! A russh client logging in to proctor as the agent, for requests OpenSSH cannot be told
    //! to make in a precise order.

    use std::path::Path;
    use std::sync::Arc;

    use russh::client;
    use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};

    pub struct AcceptAny;

    impl client::Handler for AcceptAny {
        type Error = russh::Error;

        async fn check_server_key(
            &mut self,
            _key: &PublicKeyOrCertificate,
        ) -> Result<bool, Self::Error> {
            Ok(true)
        }
    }

    pub async fn login(port: u16, key: &Path, user: &str) -> client::Handle<AcceptAny> {
        let config = Arc::new(client::Config::default());
        let mut h = client::connect(config, ("127.0.0.1", port), AcceptAny)
            .await
            .expect("connect");
        let key = PrivateKey::read_openssh_file(key).expect("agent key");
        let ok = h
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), None))
            .await
            .expect("auth");
        assert!(ok.success(), "agent key refused");
        h
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_opened_while_a_hold_is_pending_is_recorded() {
    let env = Env::start_with(|t| t.allow_port_forwarding = true).await;
    // Something to forward to: a TCP echo server.
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let echo_port = echo.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let h = client::login(env.port, &env.key, "web1").await;
    let held = h.channel_open_session().await.expect("session");
    let marker = env.dir.path().join("ran");
    held.exec(true, format!("echo needs_approval > {}", marker.display()))
        .await
        .expect("exec");
    assert!(eventually(T, || !env.session(0).pending_holds().is_empty()).await);
    let gate = env.session(0);

    // The forward is judged on its own (it is not the held command), relayed, and recorded.
    let fwd = h
        .channel_open_direct_tcpip("127.0.0.1", echo_port as u32, "127.0.0.1", 40000)
        .await;
    match fwd {
        Ok(ch) => {
            let mut stream = ch.into_stream();
            stream
                .write_all(b"ping-through-forward")
                .await
                .expect("write");
            let mut got = [0u8; 20];
            tokio::time::timeout(T, stream.read_exact(&mut got))
                .await
                .expect("echo in time")
                .expect("echo");
            assert_eq!(&got, b"ping-through-forward");
            drop(stream);
            assert!(
                eventually(T, || gate.events().iter().any(|e| matches!(
                    e,
                    Event::ChannelClose { summary, .. } if summary.bytes_in == 20 && summary.bytes_out == 20
                )))
                .await,
                "the forward's traffic is summarised in the recording"
            );
            assert!(gate.events().iter().any(|e| matches!(
                e,
                Event::ChannelOpen { kind: ChannelKind::DirectTcpip, detail, .. } if detail.contains(&echo_port.to_string())
            )));
        }
        Err(_) => {
            // A refusal is acceptable too, as long as it is recorded.
            assert!(gate.events().iter().any(|e| matches!(
                e,
                Event::ChannelOpen {
                    kind: ChannelKind::DirectTcpip,
                    ..
                }
            )));
        }
    }
    // The held command is still held: the forward did not smuggle it through.
    assert!(!marker.exists());
    assert_eq!(gate.pending_holds().len(), 1);
    let id = gate.pending_holds().remove(0);
    gate.resolve(&id, false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!marker.exists());
    drop(held);
    let _ = h
        .disconnect(russh::Disconnect::ByApplication, "done", "en")
        .await;
    assert!(eventually(T, || gate.outcome().is_some()).await);
}
