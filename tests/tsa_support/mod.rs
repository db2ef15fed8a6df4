//! A real RFC 3161 TSA for tests: OpenSSL's `openssl ts -reply` (Debian's openssl CLI) with a
//! test CA and a TSA certificate made by `openssl req`/`openssl x509` (timeStamping extended key
//! usage), behind a small HTTP/1.1 front end on a random loopback port. Also a TSA that accepts
//! connections and never answers. Everything lives in the caller's temporary directory; the
//! front end's thread and every openssl process end before the guard is dropped.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// A test PKI: `ca.pem` (trust anchor), `tsa.pem`/`tsa.key` (the TSA), `ts.cnf` (openssl ts).
pub struct Pki {
    pub dir: PathBuf,
    pub ca: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes a CA and a TSA certificate it issued, in `dir/name`. `ec`: P-256 keys, else RSA 2048.
pub fn make_pki(dir: &Path, name: &str, ec: bool) -> Pki {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).expect("pki dir");
    let newkey: &[&str] = if ec {
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    } else {
        &["-newkey", "rsa:2048"]
    };
    let ca_subj = format!("/CN=Test TSA CA {name}");
    let mut args = vec![
        "req", "-x509", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
    ];
    args.extend_from_slice(newkey);
    args.extend_from_slice(&[
        "-days",
        "2",
        "-subj",
        &ca_subj,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(&dir, &args);
    let tsa_subj = format!("/CN=Test TSA {name}");
    let mut args = vec!["req", "-nodes", "-keyout", "tsa.key", "-out", "tsa.csr"];
    args.extend_from_slice(newkey);
    args.extend_from_slice(&["-subj", &tsa_subj]);
    openssl(&dir, &args);
    std::fs::write(
        dir.join("ext.cnf"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=critical,timeStamping\nsubjectKeyIdentifier=hash\n\
         authorityKeyIdentifier=keyid\n",
    )
    .expect("ext.cnf");
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "tsa.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "tsa.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    std::fs::write(dir.join("serial"), "01\n").expect("serial");
    std::fs::write(
        dir.join("ts.cnf"),
        format!(
            "[ tsa ]\ndefault_tsa = tsa_config1\n[ tsa_config1 ]\ndir = {}\nserial = $dir/serial\n\
             crypto_device = builtin\nsigner_cert = $dir/tsa.pem\ncerts = $dir/ca.pem\n\
             signer_key = $dir/tsa.key\nsigner_digest = sha256\ndefault_policy = 1.2.3.4.1\n\
             other_policies = 1.2.3.4.5.6\ndigests = sha256, sha384, sha512\naccuracy = secs:1\n\
             ordering = yes\ntsa_name = yes\ness_cert_id_chain = no\ness_cert_id_alg = sha256\n",
            dir.display()
        ),
    )
    .expect("ts.cnf");
    Pki {
        ca: dir.join("ca.pem"),
        dir,
    }
}

/// A listener thread that stops when dropped.
pub struct Server {
    pub url: String,
    pub port: u16,
    /// Requests answered (or connections held, for a black hole).
    pub requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocked accept.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_request(s: &mut TcpStream) -> Option<Vec<u8>> {
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if buf.len() > 65536 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())?;
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf[head_end..head_end + len].to_vec())
}

fn serve(pki_dir: PathBuf, listener: TcpListener, stop: Arc<AtomicBool>, n: Arc<AtomicUsize>) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut s) = conn else { continue };
        let Some(query) = read_request(&mut s) else {
            continue;
        };
        let i = n.fetch_add(1, Ordering::SeqCst);
        let (q, r) = (
            pki_dir.join(format!("q{i}.tsq")),
            pki_dir.join(format!("r{i}.tsr")),
        );
        let answer = std::fs::write(&q, &query).ok().and_then(|()| {
            let st = Command::new("openssl")
                .args(["ts", "-reply", "-config"])
                .arg(pki_dir.join("ts.cnf"))
                .arg("-queryfile")
                .arg(&q)
                .arg("-out")
                .arg(&r)
                .output()
                .ok()?;
            st.status
                .success()
                .then(|| std::fs::read(&r).ok())
                .flatten()
        });
        let _ = match answer {
            Some(body) => s
                .write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/timestamp-reply\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                )
                .and_then(|()| s.write_all(&body)),
            None => s.write_all(
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            ),
        };
    }
}

fn listen() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    (l, port)
}

/// The TSA of `pki`, answering `application/timestamp-query` POSTs with `openssl ts -reply`.
pub fn start_tsa(pki: &Pki) -> Server {
    let (l, port) = listen();
    let stop = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicUsize::new(0));
    let (d, s, n) = (pki.dir.clone(), stop.clone(), requests.clone());
    Server {
        url: format!("http://127.0.0.1:{port}/"),
        port,
        requests,
        stop,
        thread: Some(std::thread::spawn(move || serve(d, l, s, n))),
    }
}

/// A TSA that accepts connections and never answers (the worst kind of down).
pub fn black_hole() -> Server {
    let (l, port) = listen();
    let stop = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicUsize::new(0));
    let (s, n) = (stop.clone(), requests.clone());
    let thread = std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in l.incoming() {
            if s.load(Ordering::SeqCst) {
                return;
            }
            if let Ok(c) = conn {
                n.fetch_add(1, Ordering::SeqCst);
                held.push(c);
            }
        }
    });
    Server {
        url: format!("http://127.0.0.1:{port}/"),
        port,
        requests,
        stop,
        thread: Some(thread),
    }
}

/// A port nobody listens on (connections are refused).
pub fn refused_url() -> String {
    let (l, port) = listen();
    drop(l);
    format!("http://127.0.0.1:{port}/")
}
