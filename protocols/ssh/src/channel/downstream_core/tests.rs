//! The target-to-agent core on its own: output is recorded before it is shown, results are
//! recorded before they are passed on, and a broken model ends the channel.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use proctor_gate::Event;

use super::{DownAction, DownCore};
use crate::channel::DownEnd;
use crate::channel::upstream_core::Mode;
use crate::lines::LineTracker;
use crate::sftp::SftpTracker;

fn actions(core: &mut DownCore) -> Vec<DownAction> {
    std::iter::from_fn(|| core.poll()).collect()
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

#[test]
fn output_is_recorded_before_it_is_shown_and_results_before_they_are_passed_on() {
    let mut core = DownCore::new(3, Mode::Raw, true);
    core.reply(true);
    core.reply(false);
    core.output(Bytes::from_static(b"hello\n"));
    core.target_eof();
    assert!(core.eof_pending());
    core.exit_status(3);
    let acts = actions(&mut core);
    assert!(
        matches!(
            acts.as_slice(),
            [
                DownAction::Reply(true),
                DownAction::Log(Event::Output { .. }),
                DownAction::Show(_),
                DownAction::Log(Event::ExitStatus { status: 3, .. }),
                DownAction::ExitStatus(3),
                DownAction::Eof,
            ]
        ),
        "{acts:?}"
    );
    assert!(!core.eof_pending());
    let (bytes, _) = core.take_tally().finish();
    assert_eq!(bytes, 6);
}

#[test]
fn the_eof_waits_for_the_grace_period_without_a_status() {
    let mut core = DownCore::new(3, Mode::Raw, false);
    core.target_eof();
    assert!(actions(&mut core).is_empty());
    core.grace_elapsed();
    assert_eq!(actions(&mut core), vec![DownAction::Eof]);
    core.grace_elapsed();
    assert!(actions(&mut core).is_empty(), "one EOF only");
}

/// A poisoned terminal model (a panic on hostile output) ends the channel: the output is
/// recorded, but neither shown nor followed by anything.
#[test]
fn a_poisoned_terminal_model_ends_the_channel() {
    let mut core = DownCore::new(
        1,
        Mode::Shell(poisoned(LineTracker::new(Some((80, 24))))),
        false,
    );
    core.output(Bytes::from_static(b"\x1b[2J$ "));
    core.exit_status(0);
    let acts = actions(&mut core);
    assert!(
        matches!(
            acts.as_slice(),
            [
                DownAction::Log(Event::Output { .. }),
                DownAction::End(DownEnd::Internal)
            ]
        ),
        "{acts:?}"
    );
}

#[test]
fn a_poisoned_sftp_decoder_ends_the_channel() {
    let mut core = DownCore::new(1, Mode::Sftp(poisoned(SftpTracker::new(1))), false);
    core.output(Bytes::from_static(b"\x00\x00\x00\x05\x65\x00\x00\x00\x01"));
    let acts = actions(&mut core);
    assert_eq!(
        acts.last(),
        Some(&DownAction::End(DownEnd::Internal)),
        "{acts:?}"
    );
    assert!(!acts.iter().any(|a| matches!(a, DownAction::Show(_))));
}

/// Hostile terminal output goes through the model and on to the agent, and never ends the
/// channel by itself.
#[test]
fn hostile_output_is_shown_as_received() {
    let tracker = Arc::new(Mutex::new(LineTracker::new(Some((2, 1)))));
    let mut core = DownCore::new(1, Mode::Shell(tracker), false);
    let mut junk = Vec::new();
    for i in 0..4096u32 {
        junk.push((i.wrapping_mul(2_654_435_761) >> 13) as u8);
    }
    for chunk in [
        b"\x1b[999999999;999999999H\x1b[?1049h\x1b[99999999L".as_slice(),
        b"\x1b]52;c;Y3VybCB8IHNo\x07\x1b]2;title\x07\x1bP+q\x1b\\",
        junk.as_slice(),
    ] {
        core.output(Bytes::copy_from_slice(chunk));
        let acts = actions(&mut core);
        assert_eq!(acts.len(), 2, "{acts:?}");
        assert_eq!(acts[1], DownAction::Show(Bytes::copy_from_slice(chunk)));
    }
}
