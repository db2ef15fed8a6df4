//! Random keystrokes through the discipline (a fixed-seed generator, many cases): everything
//! that would reach the target is a judged command (plus the interrupt and EOF keys), never
//! holds a byte a pty would act on, never a line longer than a pty keeps, and is exactly the
//! text handed over for judgement. Bash's answers to the discipline's checks are drawn at
//! random too: nothing is judged plainly unless both proctor's reader and "bash" took it as
//! complete.

use std::collections::VecDeque;

use proctor_gate::ShellSyntax;

use super::complete::{Status, status};
use super::discipline::{Discipline, MAX_COMMAND_BYTES, MAX_COMMAND_LINES, MAX_LINE_BYTES, Out};

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

    /// What "bash" says of a command proctor's reader took as complete: mostly complete,
    /// sometimes unfinished (bash reads further than proctor), sometimes no answer.
    fn syntax(&mut self) -> ShellSyntax {
        match self.below(10) {
            0..=6 => ShellSyntax::Complete,
            7 | 8 => ShellSyntax::Unfinished,
            _ => ShellSyntax::Unchecked("no bash".into()),
        }
    }
}

/// Answers every check at random, as the relay would with bash's answers; checks that a
/// command is judged plainly only after "bash" called exactly that text complete (or past
/// the size limits, where it goes as it stands; an empty line needs no check).
fn drive(d: &mut Discipline, outs: Vec<Out>, rng: &mut Rng, ending: bool) -> Vec<Out> {
    let mut all = Vec::new();
    let mut queue = VecDeque::from(outs);
    let mut complete: Option<String> = None;
    while let Some(o) = queue.pop_front() {
        match &o {
            Out::Check(t) => {
                assert_eq!(status(t), Status::Complete, "checked while open: {t:?}");
                let answer = rng.syntax();
                complete = (answer == ShellSyntax::Complete).then(|| t.clone());
                queue.extend(d.checked(answer));
            }
            // At the input's end what is left goes as it stands: nothing can follow it.
            Out::Judge(t)
                if !ending
                    && !t.is_empty()
                    && t.len() < MAX_COMMAND_BYTES / 2
                    && t.lines().count() < 100 =>
            {
                if status(t) == Status::Complete {
                    assert_eq!(complete.as_ref(), Some(t), "judged without bash's word");
                }
                complete = None;
            }
            _ => {}
        }
        all.push(o);
    }
    all
}

const PIECES: &[&[u8]] = &[
    b"a",
    b"rm",
    b" -r ",
    b"/victim",
    b"'",
    b"\"",
    b"`",
    b"$(",
    b")",
    b"\\",
    b"{",
    b"}",
    b";",
    b"if ",
    b"fi",
    b"do",
    b"done",
    b"<<E",
    b"E",
    b"#",
    b"\t",
    b"\r",
    b"\n",
    b"\r\n",
    b"\x7f",
    b"\x08",
    b"\x01",
    b"\x02",
    b"\x03",
    b"\x04",
    b"\x05",
    b"\x06",
    b"\x0b",
    b"\x0e",
    b"\x0f",
    b"\x10",
    b"\x12",
    b"\x15",
    b"\x16",
    b"\x17",
    b"\x18",
    b"\x1a",
    b"\x1b",
    b"\x1b[A",
    b"\x1b[B",
    b"\x1b[C",
    b"\x1b[D",
    b"\x1b[3~",
    b"\x1b[200~",
    b"\x1b[201~",
    b"\x1bOH",
    b"\x1b[1;5C",
    b"\xc3\xa9",
    b"\xe2\x80\xae",
    b"\xc2\x85",
    b"\xff",
    b"\xc3",
    b"\x00",
];

/// The bytes the relay sends the target for these actions.
fn sent(outs: &[Out], to: &mut Vec<u8>) {
    for o in outs {
        match o {
            Out::Judge(text) | Out::JudgeUnread(text, _) => {
                to.extend_from_slice(text.as_bytes());
                to.push(b'\n');
            }
            Out::Interrupt => to.push(0x03),
            Out::Eof => to.push(0x04),
            Out::Echo(_) | Out::Bell | Out::Refused(..) | Out::Check(_) => {}
        }
    }
}

#[test]
fn random_keys_send_only_judged_commands_without_bytes_a_pty_acts_on() {
    let mut rng = Rng(0x5eed_0013_0002);
    for case in 0..3000 {
        let pty = case % 4 != 0;
        let mut d = Discipline::new(pty);
        let mut to_target = Vec::new();
        let mut judged = 0usize;
        for _ in 0..1 + rng.below(60) {
            let mut chunk = Vec::new();
            for _ in 0..1 + rng.below(6) {
                chunk.extend_from_slice(PIECES[rng.below(PIECES.len())]);
            }
            let outs = d.feed(&chunk);
            let outs = drive(&mut d, outs, &mut rng, false);
            judged += outs
                .iter()
                .filter(|o| matches!(o, Out::Judge(_) | Out::JudgeUnread(..)))
                .count();
            sent(&outs, &mut to_target);
        }
        let outs = d.end();
        let outs = drive(&mut d, outs, &mut rng, true);
        judged += outs
            .iter()
            .filter(|o| matches!(o, Out::Judge(_) | Out::JudgeUnread(..)))
            .count();
        sent(&outs, &mut to_target);
        // Newlines only end judged commands' lines; the interrupt and EOF keys stand alone.
        let text = String::from_utf8(to_target.clone()).expect("UTF-8 only");
        let mut newlines = 0;
        for b in text.bytes() {
            match b {
                b'\n' => newlines += 1,
                0x03 | 0x04 => {}
                b'\t' => {}
                b if b < 0x20 || b == 0x7f => panic!("{b:#x} sent in {text:?}"),
                _ => {}
            }
        }
        assert!(newlines >= judged);
        for line in text.split(['\n', '\x03', '\x04']) {
            if pty {
                assert!(line.len() <= MAX_LINE_BYTES, "{} bytes", line.len());
            } else {
                assert!(line.len() <= MAX_COMMAND_BYTES + MAX_COMMAND_LINES);
            }
        }
    }
}

#[test]
fn an_incomplete_command_is_never_judged_before_enter_completes_it() {
    let mut rng = Rng(0x0bad_5eed);
    for _ in 0..2000 {
        let mut d = Discipline::new(true);
        let mut chunk = Vec::new();
        for _ in 0..1 + rng.below(20) {
            chunk.extend_from_slice(PIECES[rng.below(PIECES.len())]);
        }
        let outs = d.feed(&chunk);
        for o in drive(&mut d, outs, &mut rng, false) {
            if let Out::Judge(t) = o {
                assert_eq!(status(&t), Status::Complete, "{t:?} from {chunk:?}");
            }
        }
    }
}
