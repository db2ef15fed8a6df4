//! Entry points for fuzzing the SSH front end's own parsers: each takes arbitrary bytes and
//! must never panic, hang or allocate without bound. `fuzz/` drives them with libFuzzer
//! (`cargo fuzz`), and the root `tests/fuzz_smoke.rs` runs them over the committed seed corpus
//! (`fuzz/corpus/TARGET/`) plus mutations in every CI run.
//!
//! Inputs are read as a sequence of records `[op: u8][len: u16 BE][len bytes]`, so the fuzzer
//! can interleave both directions of a channel, resizes and requests in any order.

use bytes::Bytes;

use crate::lines::{LineTracker, Step};
use crate::server::parse_user;
use crate::sftp::{self, Framer, SftpTracker};

/// Splits fuzz input into `(op, payload)` records; a short tail is one last record.
fn records(data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let (&op, tail) = rest.split_first()?;
        if tail.len() < 2 {
            rest = &[];
            return Some((op, tail));
        }
        let len = usize::from(u16::from_be_bytes([tail[0], tail[1]]));
        let body = &tail[2..];
        let n = len.min(body.len());
        rest = &body[n..];
        Some((op, &body[..n]))
    })
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    let mut v = [0u8; 4];
    for (k, x) in v.iter_mut().enumerate() {
        *x = b.get(i + k).copied().unwrap_or(0);
    }
    u32::from_be_bytes(v)
}

/// SFTP as the relay sees it: agent requests framed, decoded, judged for changes and
/// forwarded; target replies decoded against them (handles, byte counts, digests); and at the
/// end the summary of what was left open. Op even: agent bytes; odd: target bytes.
pub fn sftp(data: &[u8]) {
    let mut framer = Framer::default();
    let mut tracker = SftpTracker::new(1);
    let mut agent_broken = false;
    for (op, chunk) in records(data) {
        if op % 2 == 1 {
            for done in tracker.replies(chunk) {
                assert!(done.op.len() < 64, "operation names are proctor's own");
            }
            continue;
        }
        if agent_broken {
            continue;
        }
        framer.push(chunk);
        loop {
            match framer.next_packet() {
                Ok(Some(packet)) => {
                    assert!(packet.len() <= sftp::MAX_PACKET + 4);
                    match sftp::parse_request(&packet) {
                        Ok(req) => {
                            for c in tracker.changes(&req) {
                                let _ = tracker.denied(&req, &c.path);
                            }
                            tracker.forwarded(req);
                        }
                        // The relay closes the channel on an undecodable request.
                        Err(_) => {
                            agent_broken = true;
                            break;
                        }
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    agent_broken = true;
                    let _ = framer.take_rest();
                    break;
                }
            }
        }
    }
    let _ = tracker.finish();
    let _ = sftp::status_packet(u32_at(data, 0), u32_at(data, 4), "fuzz");
}

/// The interactive line rebuilder: keystrokes (op 0), target output into the terminal
/// emulator (op 1), resizes with any size (op 2), a line read at any moment (op 3), with or
/// without a terminal (first byte odd: no pty).
pub fn line_rebuilder(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let pty = (mode % 2 == 0).then(|| (u32_at(rest, 0) % 2048, u32_at(rest, 4) % 2048));
    let mut t = LineTracker::new(pty);
    for (op, chunk) in records(rest.get(8..).unwrap_or_default()) {
        match op % 4 {
            0 => {
                for &b in chunk {
                    if t.input_byte(b) == Step::Submit {
                        let line = t.line();
                        // Lines come from the keystroke model (bounded) or the screen.
                        assert!(line.len() <= 4 * 64 * 1024 + 4 * 1000 * 1000);
                        t.finish_line(&line);
                    }
                }
            }
            1 => t.feed_output(chunk),
            2 => t.resize(u32_at(chunk, 0), u32_at(chunk, 4)),
            _ => {
                let _ = t.needs_screen();
                let _ = t.has_partial_line();
                let line = t.line();
                if chunk.first().is_some_and(|b| b % 2 == 0) {
                    t.finish_line(&line);
                }
            }
        }
    }
}

/// What proctor itself makes of the agent's requests: the SSH user name that selects target
/// and login (op 0), exec command lines shortened for notices (op 1), and the SFTP status
/// replies it writes back to refuse a change (op 2: they must frame as one whole packet).
pub fn channel_requests(data: &[u8]) {
    for (op, chunk) in records(data) {
        let text = String::from_utf8_lossy(chunk);
        match op % 3 {
            0 => {
                if let Ok((login, target)) = parse_user(&text) {
                    assert!(!target.is_empty() && target.len() <= 128);
                    assert!(!target.contains('@'));
                    if let Some(l) = login {
                        assert!(!l.is_empty() && !l.starts_with('-') && l.len() <= 128);
                    }
                }
            }
            1 => {
                let s = crate::channel::shorten(&text);
                assert!(s.chars().count() <= 203);
            }
            _ => {
                let reply: Bytes = sftp::status_packet(u32_at(chunk, 0), u32_at(chunk, 4), &text);
                let mut f = Framer::default();
                f.push(&reply);
                match f.next_packet() {
                    Ok(Some(p)) => assert_eq!(p, reply),
                    other => panic!("proctor's own status reply does not frame: {other:?}"),
                }
            }
        }
    }
}

/// The agent-to-target core of a channel, driven the way the relay drives it (see
/// `channel::upstream_core::exercise` for what is checked): byte 0 picks the channel (a shell
/// without a terminal, a judged shell, an exec), byte 1 the held-line bound; then records: op
/// 0 agent bytes, 1 a verdict (first byte even: allow), 2 bash's answer, 3 EOF, 4 a resize,
/// 5 a signal. Answers come whenever the script says, late or unasked.
pub fn upstream_core(data: &[u8]) {
    use crate::channel::exercise::{Kind, Op, run};
    let (Some(&kind), Some(&held)) = (data.first(), data.get(1)) else {
        return;
    };
    let kind = match kind % 3 {
        0 => Kind::RawShell,
        1 => Kind::JudgedPlain,
        _ => Kind::Exec,
    };
    let ops: Vec<Op> = records(&data[2..])
        .map(|(op, chunk)| match op % 6 {
            0 => Op::Data(chunk.to_vec()),
            1 => Op::Answer(chunk.first().is_none_or(|b| b % 2 == 0)),
            2 => Op::Syntax(chunk.first().copied().unwrap_or(0)),
            3 => Op::Eof,
            4 => Op::Resize(u32_at(chunk, 0), u32_at(chunk, 4)),
            _ => Op::Signal,
        })
        .collect();
    run(kind, ops, usize::from(held) * 32);
}

/// Every target by name, for runners.
pub type Target = (&'static str, fn(&[u8]));

pub const TARGETS: &[Target] = &[
    ("ssh_sftp", sftp),
    ("ssh_line_rebuilder", line_rebuilder),
    ("ssh_channel_requests", channel_requests),
    ("ssh_upstream_core", upstream_core),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_split_and_stop() {
        let v: Vec<(u8, Vec<u8>)> = records(&[1, 0, 2, 9, 9, 3, 0, 9, 7])
            .map(|(o, b)| (o, b.to_vec()))
            .collect();
        assert_eq!(v, vec![(1, vec![9, 9]), (3, vec![7]),]);
        assert_eq!(records(&[]).count(), 0);
        assert_eq!(records(&[5]).collect::<Vec<_>>(), vec![(5, &[][..])]);
    }

    #[test]
    fn targets_accept_anything_small() {
        for (_, f) in TARGETS {
            f(&[]);
            f(&[0]);
            f(&[0xff; 64]);
            f(b"\x00\x00\x10root@web1\x01\x00\x05a=b");
        }
    }
}
