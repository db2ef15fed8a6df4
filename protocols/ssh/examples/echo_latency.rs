//! Keystroke echo round trip of an interactive SSH session, for `integration/bench/ssh.sh`.
//!
//! `echo_latency [--samples N] -- ssh ARGS...` runs the given command (it should be an
//! `ssh -tt ...` to an interactive shell) inside a pseudo-terminal, waits for the prompt, then
//! types a character (alternately `a` and backspace) and times the first output that follows,
//! N times, 5 ms apart. It prints one line: `p50_us=... p99_us=... mean_us=... samples=N`.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Screen {
    bytes: usize,
    /// When each chunk of output arrived.
    stamps: Vec<Instant>,
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn open_pty() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut master: i32 = -1;
    let mut slave: i32 = -1;
    // SAFETY: openpty writes two descriptors into the provided ints.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just returned by openpty and are owned here.
    Ok(unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) })
}

fn run(samples: usize, argv: &[String]) -> Result<Vec<f64>, String> {
    let (master, slave) = open_pty().map_err(|e| format!("openpty: {e}"))?;
    let ws = libc::winsize {
        ws_row: 24,
        ws_col: 80,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ on a pty we own, with a valid winsize.
    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| format!("dup: {e}"));
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::from(dup(&slave)?))
        .stdout(Stdio::from(dup(&slave)?))
        .stderr(Stdio::from(dup(&slave)?));
    // SAFETY: setsid and TIOCSCTTY are async-signal-safe; the slave is fd 0 in the child.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| format!("{}: {e}", argv[0]))?;
    drop(slave);
    let mut master = std::fs::File::from(master);
    let screen = Arc::new(Mutex::new(Screen {
        bytes: 0,
        stamps: Vec::new(),
    }));
    let mut reader = master.try_clone().map_err(|e| format!("dup: {e}"))?;
    let sink = screen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            let now = Instant::now();
            if let Ok(mut s) = sink.lock() {
                s.bytes += n;
                s.stamps.push(now);
            }
        }
    });
    let bytes = || screen.lock().map(|s| s.bytes).unwrap_or(0);
    // The prompt: output that has stopped changing for a moment.
    let start = Instant::now();
    let mut last = bytes();
    let mut since = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
        let now = bytes();
        if now != last {
            last = now;
            since = Instant::now();
        } else if now > 0 && since.elapsed() > Duration::from_millis(500) {
            break;
        }
    }
    if bytes() == 0 {
        let _ = child.kill();
        return Err("no prompt within 30 s".into());
    }
    let mut out = Vec::with_capacity(samples);
    for i in 0..samples {
        let key: &[u8] = if i % 2 == 0 { b"a" } else { b"\x7f" };
        let t0 = Instant::now();
        master
            .write_all(key)
            .map_err(|e| format!("write to the pty: {e}"))?;
        let deadline = t0 + Duration::from_secs(5);
        let got = loop {
            let first = screen.lock().ok().and_then(|s| {
                s.stamps
                    .iter()
                    .rev()
                    .take_while(|t| **t > t0)
                    .last()
                    .copied()
            });
            if let Some(t) = first {
                break t;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!("no echo for sample {i}"));
            }
            std::thread::sleep(Duration::from_micros(50));
        };
        out.push(got.duration_since(t0).as_secs_f64() * 1e6);
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = master.write_all(b"\x15exit\r");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return Ok(out);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok(out)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut samples = 200;
    let mut i = 0;
    while i < args.len() && args[i] != "--" {
        if args[i] == "--samples" {
            samples = args
                .get(i + 1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(samples);
            i += 1;
        }
        i += 1;
    }
    let argv = args.get(i + 1..).unwrap_or_default();
    if argv.is_empty() || samples == 0 {
        eprintln!("usage: echo_latency [--samples N] -- ssh -tt ARGS...");
        return ExitCode::from(2);
    }
    match run(samples, argv) {
        Ok(mut v) => {
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            println!(
                "p50_us={:.0} p99_us={:.0} mean_us={:.0} samples={}",
                percentile(&mut v, 0.5),
                percentile(&mut v, 0.99),
                mean,
                v.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("echo_latency: {e}");
            ExitCode::FAILURE
        }
    }
}
