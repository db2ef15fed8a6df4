//! `--format asciicast`: an SSH session's terminal as asciicast v2, which asciinema and
//! asciinema-player play unchanged. Output is `o`, input `i`, resizes `r`, and each submitted
//! command line a marker `m`, so players can seek by command.

use std::io::{self, Write};
use std::ops::ControlFlow;
use std::path::Path;

use proctor_gate::{ChannelKind, Event};
use serde_json::json;

use super::{write_line, write_record_lines};
use crate::recorder::codec::Body;
use crate::recorder::index::SessionMeta;
use crate::recorder::reader;

/// The terminal being played: its channel, size and `TERM`.
struct Terminal {
    channel: Option<u32>,
    cols: u32,
    rows: u32,
    term: String,
}

/// Picks the terminal channel: the first interactive shell, else the first channel with output.
fn pick_channel(data: &Path, meta: &SessionMeta) -> io::Result<Terminal> {
    let mut shell = None;
    let mut first_output = None;
    let mut size: std::collections::HashMap<u32, (u32, u32)> = Default::default();
    let mut terms: std::collections::HashMap<u32, String> = Default::default();
    reader::for_each_record(data, meta, |r| {
        if let Ok(Body::Event(e)) = &r.body {
            match e {
                Event::ChannelOpen {
                    channel,
                    kind: ChannelKind::Shell,
                    ..
                } if shell.is_none() => shell = Some(*channel),
                Event::ChannelRequest {
                    channel, request, ..
                } if request == "shell" && shell.is_none() => shell = Some(*channel),
                // Recorded as `term=NAME cols=C rows=R`.
                Event::ChannelRequest {
                    channel,
                    request,
                    detail,
                    ..
                } if request == "pty-req" => {
                    if let Some(term) = detail
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("term="))
                        .filter(|t| !t.is_empty())
                    {
                        terms.entry(*channel).or_insert_with(|| term.to_string());
                    }
                }
                Event::Output { channel, .. } if first_output.is_none() => {
                    first_output = Some(*channel)
                }
                Event::Resize {
                    channel,
                    cols,
                    rows,
                } if *cols > 0 && *rows > 0 => {
                    // A pty requested from a pipe reports 0x0; players need a real size.
                    size.entry(*channel).or_insert((*cols, *rows));
                }
                _ => {}
            }
        }
        ControlFlow::Continue(())
    })?;
    let channel = shell.or(first_output);
    let (cols, rows) = channel
        .and_then(|c| size.get(&c).copied())
        .unwrap_or((80, 24));
    let term = channel
        .and_then(|c| terms.remove(&c))
        .unwrap_or_else(|| "xterm-256color".to_string());
    Ok(Terminal {
        channel,
        cols,
        rows,
        term,
    })
}

pub fn write(data: &Path, meta: &SessionMeta, out: &mut dyn Write) -> io::Result<()> {
    let Terminal {
        channel,
        cols,
        rows,
        term,
    } = pick_channel(data, meta)?;
    let start = meta.started_ns;
    let header = json!({
        "version": 2,
        "width": cols,
        "height": rows,
        "timestamp": start / 1_000_000_000,
        "title": format!("{} on {} ({})", meta.agent, meta.target, meta.id),
        "env": { "TERM": term, "SHELL": "/bin/sh" },
    });
    write_line(out, &header)?;
    let mut seen_size = false;
    let (mut carry_out, mut carry_in) = (Vec::new(), Vec::new());
    write_record_lines(data, meta, out, |r| {
        let Ok(Body::Event(e)) = &r.body else {
            return None;
        };
        let t = (r.header.ts_ns - start).max(0) as f64 / 1e9;
        match e {
            Event::Output {
                channel: c, data, ..
            } if Some(*c) == channel => Some(json!([t, "o", utf8_chunk(&mut carry_out, data)])),
            Event::Input { channel: c, data } if Some(*c) == channel => {
                Some(json!([t, "i", utf8_chunk(&mut carry_in, data)]))
            }
            Event::Resize {
                channel: c,
                cols,
                rows,
            } if Some(*c) == channel && *cols > 0 && *rows > 0 => {
                // The first size is the header's; later ones are resizes.
                if seen_size {
                    Some(json!([t, "r", format!("{cols}x{rows}")]))
                } else {
                    seen_size = true;
                    None
                }
            }
            Event::CommandLine { channel: c, line } if Some(*c) == channel => {
                Some(json!([t, "m", line]))
            }
            Event::Exec { command, .. } => Some(json!([t, "m", format!("exec: {command}")])),
            _ => None,
        }
    })
}

/// Text of a terminal chunk. A multi-byte character split across two chunks is carried to the
/// next one instead of becoming two replacement characters.
fn utf8_chunk(carry: &mut Vec<u8>, data: &[u8]) -> String {
    carry.extend_from_slice(data);
    let valid = match std::str::from_utf8(carry) {
        Ok(_) => carry.len(),
        // An incomplete sequence at the very end: keep it for the next chunk.
        Err(e) if e.error_len().is_none() && carry.len() - e.valid_up_to() < 4 => e.valid_up_to(),
        Err(_) => carry.len(),
    };
    let text = String::from_utf8_lossy(&carry[..valid]).into_owned();
    carry.drain(..valid);
    text
}

#[cfg(test)]
mod tests {
    use super::utf8_chunk;

    #[test]
    fn split_characters_survive() {
        let s = "héllo ✓".as_bytes();
        let mut carry = Vec::new();
        let a = utf8_chunk(&mut carry, &s[..2]);
        let b = utf8_chunk(&mut carry, &s[2..8]);
        let c = utf8_chunk(&mut carry, &s[8..]);
        assert_eq!(format!("{a}{b}{c}"), "héllo ✓");
        assert_eq!(utf8_chunk(&mut carry, b"\xff!"), "\u{fffd}!");
    }
}
