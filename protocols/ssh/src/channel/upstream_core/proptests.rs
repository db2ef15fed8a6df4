//! Random scripts through the agent-to-target core (a fixed-seed generator, many cases): agent
//! bytes in random pieces with held lines, verdicts and bash's answers arriving late (after
//! more input), denials, EOF in the middle of a line, resizes and signals in between. The
//! invariants are checked by `exercise`: nothing reaches the target that a verdict did not
//! allow, in order, and nothing is forwarded before it is recorded. Also: a poisoned model
//! ends the channel instead of letting input through.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::exercise::{Kind, Op, run};
use super::{CoreConfig, CoreEnd, Mode, UpAction, UpCore};
use crate::lines::LineTracker;
use crate::sftp::SftpTracker;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn script(rng: &mut Rng, printable: bool) -> Vec<Op> {
    const TEXT: &[u8] = b"ab c\n\n ls\n";
    let mut ops = Vec::new();
    for _ in 0..rng.below(40) {
        ops.push(match rng.below(12) {
            0..=4 => {
                let n = 1 + rng.below(12);
                Op::Data(
                    (0..n)
                        .map(|_| {
                            if printable {
                                TEXT[rng.below(TEXT.len())]
                            } else {
                                rng.next() as u8
                            }
                        })
                        .collect(),
                )
            }
            5 | 6 => Op::Answer(true),
            7 => Op::Answer(false),
            8 | 9 => Op::Syntax(rng.next() as u8),
            10 => Op::Resize(rng.below(300) as u32, rng.below(100) as u32),
            _ if rng.below(4) == 0 => Op::Eof,
            _ => Op::Signal,
        });
    }
    ops
}

#[test]
fn nothing_reaches_the_target_that_a_verdict_did_not_allow() {
    let mut rng = Rng(0x5eed_c0de_0016);
    for case in 0..3000 {
        let kind = match case % 3 {
            0 => Kind::RawShell,
            1 => Kind::JudgedPlain,
            _ => Kind::Exec,
        };
        let printable = case % 5 != 0;
        let held = if case % 7 == 0 { 8 } else { 4096 };
        let ops = script(&mut rng, printable);
        run(kind, ops, held);
    }
}

fn poisoned<T: Send + 'static>(m: T) -> Arc<Mutex<T>> {
    let m = Arc::new(Mutex::new(m));
    let m2 = m.clone();
    let crashed = std::thread::spawn(move || {
        let _guard = m2.lock();
        panic!("the model panicked on hostile output");
    })
    .join();
    assert!(crashed.is_err());
    m
}

fn config() -> CoreConfig {
    CoreConfig {
        channel: 1,
        terminal: true,
        record_only: true,
        held_input_bytes: 4096,
    }
}

fn actions(core: &mut UpCore) -> Vec<UpAction> {
    std::iter::from_fn(|| core.poll()).collect()
}

/// A panic while the terminal model holds its lock (hostile output, a bug) poisons it; from
/// then on the channel ends instead of forwarding lines it can no longer rebuild.
#[test]
fn a_poisoned_line_tracker_ends_the_channel() {
    let tracker = poisoned(LineTracker::new(Some((80, 24))));
    let mut core = UpCore::new(config(), Mode::Shell(tracker));
    core.agent_data(Bytes::from_static(b"rm -rf /tmp/x\r"));
    let acts = actions(&mut core);
    assert!(!acts.iter().any(|a| matches!(a, UpAction::Forward(_))));
    assert_eq!(acts.last(), Some(&UpAction::End(CoreEnd::Internal)));
    core.agent_data(Bytes::from_static(b"more\r"));
    core.window_change(1, 1, 0, 0);
    assert!(actions(&mut core).is_empty(), "nothing after the end");
}

/// A poisoned SFTP tracker cannot say what a request changes: the channel ends instead of
/// forwarding the request unjudged.
#[test]
fn a_poisoned_sftp_tracker_ends_the_channel() {
    let tracker = poisoned(SftpTracker::new(1));
    let mut core = UpCore::new(config(), Mode::Sftp(tracker));
    // SSH_FXP_MKDIR (14), id 1, path "/x", empty attributes.
    let mut p = vec![14, 0, 0, 0, 1, 0, 0, 0, 2, b'/', b'x', 0, 0, 0, 0];
    let mut packet = (p.len() as u32).to_be_bytes().to_vec();
    packet.append(&mut p);
    core.agent_data(Bytes::from(packet));
    let acts = actions(&mut core);
    assert!(!acts.iter().any(|a| matches!(a, UpAction::Forward(_))));
    assert_eq!(acts.last(), Some(&UpAction::End(CoreEnd::Internal)));
}

/// Hostile terminal output never panics the model; if it did, the output path would report
/// the channel's end rather than unwind through the relay.
#[test]
fn hostile_output_is_fed_without_panicking() {
    let mut t = LineTracker::new(Some((2, 1)));
    let mut junk = Vec::new();
    for i in 0..4096u32 {
        junk.push((i.wrapping_mul(2_654_435_761) >> 13) as u8);
    }
    for chunk in [
        b"\x1b[999999999;999999999H\x1b[?1049h\x1b[99999999L".as_slice(),
        b"\x1b]52;c;Y3VybCB8IHNo\x07\x1b]2;title\x07\x1bP+q\x1b\\",
        junk.as_slice(),
    ] {
        let fed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            t.feed_output(chunk);
            t.resize(1, 1);
        }));
        assert!(fed.is_ok());
    }
}

/// A signal or a resize is recorded before it is forwarded: the adapter carries the actions
/// out in order and stops at a record that fails, so an unrecorded one never reaches the
/// target.
#[test]
fn signals_and_resizes_are_recorded_before_they_are_forwarded() {
    let tracker = Arc::new(Mutex::new(LineTracker::new(Some((80, 24)))));
    let mut core = UpCore::new(config(), Mode::Shell(tracker));
    core.signal("INT".into());
    core.window_change(100, 40, 0, 0);
    let acts = actions(&mut core);
    assert!(
        matches!(
            acts.as_slice(),
            [
                UpAction::Record(proctor_gate::Event::ChannelRequest { request, .. }),
                UpAction::ForwardSignal(sig),
                UpAction::Record(proctor_gate::Event::Resize { cols: 100, rows: 40, .. }),
                UpAction::ForwardWindowChange { cols: 100, rows: 40, .. },
            ] if request == "signal" && sig == "INT"
        ),
        "{acts:?}"
    );
}
