//! Keystroke echo round trip of an interactive SSH session, for `integration/bench/ssh.sh`.
//!
//! `echo_latency [--samples N] -- ssh ARGS...` runs the given command (it should be an
//! `ssh -tt ...` to an interactive shell) inside a pseudo-terminal, waits for the prompt, then
//! types a character (alternately `a` and backspace) and times the first output that follows,
//! N times, 5 ms apart. It prints one line: `p50_us=... p99_us=... mean_us=... samples=N`.

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use proctor_harness::pty::Pty;

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn run(samples: usize, argv: &[String]) -> Result<Vec<f64>, String> {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    let mut pty = Pty::spawn(cmd);
    // The prompt: output that has stopped changing for a moment.
    let start = Instant::now();
    let mut last = pty.printed();
    let mut since = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
        let now = pty.printed();
        if now != last {
            last = now;
            since = Instant::now();
        } else if now > 0 && since.elapsed() > Duration::from_millis(500) {
            break;
        }
    }
    if pty.printed() == 0 {
        return Err("no prompt within 30 s".into());
    }
    let mut out = Vec::with_capacity(samples);
    for i in 0..samples {
        let key: &[u8] = if i % 2 == 0 { b"a" } else { b"\x7f" };
        let t0 = Instant::now();
        pty.type_in(key);
        let deadline = t0 + Duration::from_secs(5);
        let got = loop {
            if let Some(t) = pty.first_output_after(t0) {
                break t;
            }
            if Instant::now() > deadline {
                return Err(format!("no echo for sample {i}"));
            }
            std::thread::sleep(Duration::from_micros(50));
        };
        out.push(got.duration_since(t0).as_secs_f64() * 1e6);
        std::thread::sleep(Duration::from_millis(5));
    }
    pty.type_in(b"\x15exit\r");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !pty.exited() {
        std::thread::sleep(Duration::from_millis(20));
    }
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
