//! SSH replay: the terminal's output with its original timing. On a terminal: Space pauses,
//! → jumps to the next command line, ← back to the previous one, q quits. `--step` prints each
//! command with its output, for scripts.
//!
//! The output was written by the agent's programs, so it reaches the auditor's terminal only
//! through [`ScreenFilter`] (no clipboard, title, hyperlink or report sequences), and each
//! recorded command line is shown as a marker in the stream: an agent that erased its line on
//! screen cannot erase it from the replay. `--step` shows the output itself inert (escapes as
//! `\x1b`), since a script's reader wants every byte.

use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

use crossterm::event::{self, Event as TermEvent, KeyCode, KeyEvent};
use crossterm::terminal;
use proctor_gate::{ChannelKind, Event};

use proctor_gate::inert::{Keep, line, write_inert};

use super::screen::ScreenFilter;
use super::{Rec, ReplayOptions};
use crate::clock::format_ns;

/// One thing to show at a time offset (seconds from the session start).
#[derive(Debug, Clone)]
pub enum Frame {
    Output(Vec<u8>),
    /// A command line (shell) or exec command: a place to step to.
    Marker(String),
    Note(String),
}

pub fn timeline(recs: &[Rec]) -> Vec<(f64, Frame)> {
    let start = recs.first().map_or(0, |r| r.ts_ns);
    let shell = recs.iter().find_map(|r| match &r.event {
        Event::ChannelOpen {
            channel,
            kind: ChannelKind::Shell,
            ..
        } => Some(*channel),
        Event::ChannelRequest {
            channel, request, ..
        } if request == "shell" => Some(*channel),
        _ => None,
    });
    let mut out = Vec::new();
    for r in recs {
        let t = (r.ts_ns - start).max(0) as f64 / 1e9;
        let frame = match &r.event {
            Event::Output { channel, data, .. } if shell.is_none_or(|c| c == *channel) => {
                Frame::Output(data.to_vec())
            }
            Event::CommandLine { line, .. } => Frame::Marker(line.clone()),
            Event::Exec { command, channel } => {
                Frame::Marker(format!("exec (channel {channel}): {command}"))
            }
            Event::Verdict(v) if v.verdict != proctor_gate::VerdictKind::Allow => {
                Frame::Note(format!(
                    "{} {} by rule {}: {}",
                    v.subject,
                    v.verdict.as_str(),
                    v.rule,
                    v.reason
                ))
            }
            Event::Approval(a) => Frame::Note(format!(
                "approval {} {} {}",
                a.approval_id,
                a.outcome.as_str(),
                a.reason
            )),
            Event::Alert(a) => {
                Frame::Note(format!("alert [{}] {}: {}", a.severity, a.rule, a.message))
            }
            Event::Sftp(op) => Frame::Note(format!("sftp {} {} {}", op.op, op.path, op.status)),
            Event::SessionEnd { outcome, reason } => {
                Frame::Note(format!("session ended: {} ({reason})", outcome.as_str()))
            }
            _ => continue,
        };
        out.push((t, frame));
    }
    out
}

/// A line of proctor's own between recorded output. It first undoes what the recording may
/// have left set that would disguise it (insert mode, another character set, colours), and
/// its text (`s`, agent-controlled) is inert.
fn note_text(s: &str) -> String {
    format!(
        "\r\n\x1b[0m\x1b[4l\x1b(B\x0f\x1b[7m proctor: {} \x1b[0m\r\n",
        line(s)
    )
}

/// Recorded terminal output as text a person can read on any terminal: `\r\n` line ends
/// become newlines, every other control (escapes included) and invisible character is shown
/// as a token, and bytes that are not UTF-8 as `\xNN`.
pub fn inert_output(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len());
    for chunk in data.utf8_chunks() {
        let valid = chunk.valid().replace("\r\n", "\n");
        // Writing to a String cannot fail.
        let _ = write_inert(&mut s, &valid, Keep::Lines);
        for b in chunk.invalid() {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

/// Recorded output for `--step`: inert, and every line behind a `| ` gutter, so output that
/// prints `=== +1.000s command: ls` or `--- ... deny` at the start of a line cannot pass for
/// proctor's own markers (round 3: it did, and a fake "deny" note could follow an `rm` that
/// ran).
fn step_output(data: &[u8]) -> String {
    if data.is_empty() {
        return String::new();
    }
    let shown = inert_output(data);
    let mut s = String::with_capacity(shown.len() + 16);
    for l in shown.split_inclusive('\n') {
        s.push_str("| ");
        s.push_str(l);
    }
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// Prints each command with the output that followed it, without timing. Consecutive output
/// chunks are joined first, so a character or a sequence split between chunks reads as one.
fn step_print(frames: &[(f64, Frame)], start: f64, out: &mut impl Write) -> io::Result<()> {
    let mut pending: Vec<u8> = Vec::new();
    for (t, f) in frames.iter().filter(|(t, _)| *t >= start) {
        if let Frame::Output(d) = f {
            pending.extend_from_slice(d);
            continue;
        }
        out.write_all(step_output(&pending).as_bytes())?;
        pending.clear();
        match f {
            Frame::Marker(m) => write!(out, "\n=== +{t:.3}s command: {}\n", line(m))?,
            Frame::Note(n) => write!(out, "\n--- +{t:.3}s {}\n", line(n))?,
            Frame::Output(_) => {}
        }
    }
    out.write_all(step_output(&pending).as_bytes())?;
    writeln!(out)?;
    out.flush()
}

pub fn replay(recs: &[Rec], opts: &ReplayOptions) -> io::Result<()> {
    let frames = timeline(recs);
    let mut out = io::stdout();
    if let Some(first) = recs.first() {
        eprintln!(
            "session started {} — {} events",
            format_ns(first.ts_ns),
            recs.len()
        );
    }
    if opts.step {
        return step_print(&frames, opts.from_secs, &mut out);
    }
    let interactive = io::stdin().is_terminal() && out.is_terminal();
    if interactive {
        terminal::enable_raw_mode()?;
    }
    let result = play(&frames, opts, interactive, &mut out);
    if interactive {
        terminal::disable_raw_mode()?;
        writeln!(out)?;
    }
    result
}

/// Redraws from the start up to `end` (a seek), with a fresh filter.
fn render_upto(
    frames: &[(f64, Frame)],
    end: usize,
    filter: &mut ScreenFilter,
    out: &mut impl Write,
) -> io::Result<()> {
    *filter = ScreenFilter::new();
    write!(out, "\x1b[2J\x1b[H")?;
    for (_, f) in &frames[..end] {
        show(f, filter, out)?;
    }
    out.flush()
}

/// Writes one frame to the auditor's terminal.
fn show(f: &Frame, filter: &mut ScreenFilter, out: &mut impl Write) -> io::Result<()> {
    match f {
        Frame::Output(d) => out.write_all(&filter.filter(d)),
        Frame::Marker(m) => write!(out, "{}", note_text(&format!("command: {m}"))),
        Frame::Note(n) => write!(out, "{}", note_text(n)),
    }
}

fn play(
    frames: &[(f64, Frame)],
    opts: &ReplayOptions,
    interactive: bool,
    out: &mut impl Write,
) -> io::Result<()> {
    let speed = if opts.speed > 0.0 { opts.speed } else { 1.0 };
    let mut filter = ScreenFilter::new();
    let mut i = frames
        .iter()
        .position(|(t, _)| *t >= opts.from_secs)
        .unwrap_or(frames.len());
    if i > 0 {
        render_upto(frames, i, &mut filter, out)?;
    }
    let mut clock = frames.get(i).map_or(0.0, |(t, _)| *t);
    let mut paused = false;
    while i < frames.len() {
        let t = frames[i].0;
        let wait = ((t - clock).min(opts.max_idle) / speed).max(0.0);
        let deadline = Instant::now() + Duration::from_secs_f64(wait);
        // Wait for the frame's time while handling keys.
        loop {
            let now = Instant::now();
            if !paused && now >= deadline {
                break;
            }
            if !interactive {
                std::thread::sleep(deadline.saturating_duration_since(now));
                break;
            }
            let timeout = if paused {
                Duration::from_millis(200)
            } else {
                deadline - now
            };
            if event::poll(timeout)?
                && let TermEvent::Key(KeyEvent { code, .. }) = event::read()?
            {
                match code {
                    KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                    KeyCode::Char(' ') => paused = !paused,
                    KeyCode::Right => {
                        // Show everything up to the next command line at once.
                        let next = frames[i + 1..]
                            .iter()
                            .position(|(_, f)| matches!(f, Frame::Marker(_)))
                            .map_or(frames.len(), |p| i + 1 + p);
                        for (_, f) in &frames[i..next] {
                            show(f, &mut filter, out)?;
                        }
                        out.flush()?;
                        i = next;
                        paused = true;
                        break;
                    }
                    KeyCode::Left => {
                        let prev = frames[..i]
                            .iter()
                            .rposition(|(_, f)| matches!(f, Frame::Marker(_)))
                            .and_then(|p| {
                                frames[..p]
                                    .iter()
                                    .rposition(|(_, f)| matches!(f, Frame::Marker(_)))
                            })
                            .unwrap_or(0);
                        render_upto(frames, prev, &mut filter, out)?;
                        i = prev;
                        paused = true;
                        break;
                    }
                    _ => {}
                }
            }
        }
        if i >= frames.len() {
            break;
        }
        let (t, f) = &frames[i];
        show(f, &mut filter, out)?;
        out.flush()?;
        clock = *t;
        i += 1;
    }
    Ok(())
}
