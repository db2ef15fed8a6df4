//! A filter for recorded terminal output on its way to an auditor's terminal.
//!
//! The recorded bytes were written by the agent's programs, so they may hold sequences that act
//! outside the screen: OSC (window title, hyperlinks, OSC 52 clipboard writes, colour palette),
//! DCS/APC/PM/SOS strings, status reports the terminal answers by typing into our input (DSR,
//! DA), keyboard and mouse modes, window manipulation, a full reset. Those are dropped; what only
//! draws on the screen (text, colours, cursor movement, erasing, scroll regions, the alternate
//! screen) passes, so full-screen programs still replay as they looked. The recording itself is
//! untouched: `--step` and the exports show every byte.
//!
//! The filter is a byte state machine that keeps its state across chunks, because a recorded
//! output chunk may end in the middle of a sequence.

/// Control sequences longer than this are not real ones: dropped, and the filter resyncs.
const MAX_CSI: usize = 64;
/// A string sequence (OSC, DCS...) that runs on longer than this is dropped up to here and the
/// rest is shown, so an unterminated OSC cannot hide the rest of the session.
const MAX_STRING: usize = 64 * 1024;

/// DEC private modes that only concern the screen: origin, autowrap, blinking and visible
/// cursor, the alternate screen. Others (mouse reporting, focus events, keypad and cursor-key
/// modes, bracketed paste, 132 columns...) change how the terminal talks to us or the window.
const SCREEN_PRIVATE_MODES: &[&[u8]] =
    &[b"6", b"7", b"12", b"25", b"47", b"1047", b"1048", b"1049"];

/// CSI final bytes that draw or move on the screen (no reports, no window or printer control).
const SCREEN_CSI_FINALS: &[u8] = b"@ABCDEFGHIJKLMPSTXZ`abdefgmrsu";

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Ground,
    /// After ESC.
    Escape,
    /// After ESC and a byte that takes one more (charset designation, `#`): pass both.
    EscapeArg(u8),
    /// After ESC and a byte whose argument is dropped with it (`%`, space).
    EscapeDrop,
    Csi,
    /// Inside OSC/DCS/SOS/PM/APC; `last` is the previous byte (ESC or 0xC2 may start an ST).
    String {
        last: u8,
    },
}

#[derive(Debug, Default)]
pub struct ScreenFilter {
    state: State,
    csi: Vec<u8>,
    dropped: usize,
    /// The bytes of a multi-byte UTF-8 character so far, and how many it needs.
    utf8: Vec<u8>,
    utf8_len: usize,
}

/// What a UTF-8 terminal shows for bytes that are not UTF-8.
const REPLACEMENT: &[u8] = "\u{fffd}".as_bytes();

impl ScreenFilter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the part of `input` that only acts on the screen to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            self.byte(b, out);
        }
    }

    /// Convenience: filters one chunk into a new buffer.
    pub fn filter(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len());
        self.push(input, &mut out);
        out
    }

    fn byte(&mut self, b: u8, out: &mut Vec<u8>) {
        match self.state {
            State::Ground => self.ground(b, out),
            State::Escape => self.escape(b, out),
            State::EscapeArg(first) => {
                self.state = State::Ground;
                if (0x20..0x7f).contains(&b) {
                    out.extend_from_slice(&[0x1b, first, b]);
                }
            }
            State::EscapeDrop => self.state = State::Ground,
            State::Csi => self.csi_byte(b, out),
            State::String { last } => self.string_byte(b, last, out),
        }
    }

    fn ground(&mut self, b: u8, out: &mut Vec<u8>) {
        if !self.utf8.is_empty() {
            if (0x80..=0xbf).contains(&b) {
                self.utf8.push(b);
                if self.utf8.len() == self.utf8_len {
                    self.character(out);
                }
                return;
            }
            // A character cut short: the terminal would show a replacement.
            self.utf8.clear();
            out.extend_from_slice(REPLACEMENT);
        }
        match b {
            0x1b => self.state = State::Escape,
            // Backspace, tab, line feed, vertical tab, form feed, carriage return, shift out
            // and in: screen only.
            0x08..=0x0f => out.push(b),
            // Other C0 controls: BEL (sound, urgency), ENQ (answerback typed into our input)...
            0x00..=0x1f | 0x7f => {}
            0x20..=0x7e => out.push(b),
            0xc2..=0xf4 => {
                self.utf8_len = match b {
                    0xc2..=0xdf => 2,
                    0xe0..=0xef => 3,
                    _ => 4,
                };
                self.utf8.push(b);
            }
            // Stray continuation bytes and bytes UTF-8 never uses; a terminal in 8-bit mode
            // could read 0x80-0x9f as C1 controls.
            _ => out.extend_from_slice(REPLACEMENT),
        }
    }

    /// A complete multi-byte character: UTF-8 encoded C1 controls are controls to a terminal.
    fn character(&mut self, out: &mut Vec<u8>) {
        let c = std::str::from_utf8(&self.utf8)
            .ok()
            .and_then(|s| s.chars().next());
        match c.map(u32::from) {
            // CSI.
            Some(0x9b) => self.start_csi(),
            // DCS, SOS, OSC, PM, APC.
            Some(0x90 | 0x98 | 0x9d | 0x9e | 0x9f) => self.start_string(),
            // Any other C1 control (NEL, IND, RI, a stray ST...): dropped.
            Some(0x80..=0x9f) => {}
            Some(_) => out.extend_from_slice(&self.utf8),
            // Overlong, surrogate or out of range: never decoded into a control.
            None => out.extend_from_slice(REPLACEMENT),
        }
        self.utf8.clear();
    }

    fn escape(&mut self, b: u8, out: &mut Vec<u8>) {
        self.state = State::Ground;
        match b {
            b'[' => self.start_csi(),
            // OSC, DCS, SOS, PM, APC.
            b']' | b'P' | b'X' | b'^' | b'_' => self.start_string(),
            // Charset designations and DEC line attributes take one more byte.
            b'(' | b')' | b'*' | b'+' | b'-' | b'.' | b'/' | b'#' => {
                self.state = State::EscapeArg(b)
            }
            // UTF-8/ISO 2022 switching, 7/8-bit control announcements: dropped with their arg.
            b'%' | b' ' => self.state = State::EscapeDrop,
            // Save/restore cursor, index, next line, tab set, reverse index.
            b'7' | b'8' | b'D' | b'E' | b'H' | b'M' => out.extend_from_slice(&[0x1b, b]),
            0x1b => self.state = State::Escape,
            // RIS (full reset), keypad modes, stray ST and anything unknown: dropped.
            _ => {}
        }
    }

    fn start_csi(&mut self) {
        self.csi.clear();
        self.state = State::Csi;
    }

    fn start_string(&mut self) {
        self.dropped = 0;
        self.state = State::String { last: 0 };
    }

    fn csi_byte(&mut self, b: u8, out: &mut Vec<u8>) {
        match b {
            // CAN and SUB abort a sequence; ESC starts a new one.
            0x18 | 0x1a => self.state = State::Ground,
            0x1b => self.state = State::Escape,
            0x40..=0x7e => {
                self.state = State::Ground;
                if screen_only(&self.csi, b) {
                    out.extend_from_slice(b"\x1b[");
                    out.extend_from_slice(&self.csi);
                    out.push(b);
                }
            }
            0x20..=0x3f if self.csi.len() < MAX_CSI => self.csi.push(b),
            // Too long, or a byte that cannot be in a control sequence: dropped, resync.
            _ => self.state = State::Ground,
        }
    }

    fn string_byte(&mut self, b: u8, last: u8, out: &mut Vec<u8>) {
        match (last, b) {
            // BEL ends OSC; CAN and SUB abort; ESC \ and U+009C are ST.
            (_, 0x07 | 0x18 | 0x1a) | (0x1b, b'\\') | (0xc2, 0x9c) => self.state = State::Ground,
            _ => {
                self.dropped += 1;
                if self.dropped > MAX_STRING {
                    // Not a real sequence: show what follows instead of hiding it.
                    self.state = State::Ground;
                    out.extend_from_slice(
                        b"\r\n\x1b[0m\x1b[7m proctor: an unterminated OSC/DCS string was dropped \x1b[0m\r\n",
                    );
                    return;
                }
                self.state = State::String { last: b };
            }
        }
    }
}

/// Whether `CSI params final` only draws on the screen.
fn screen_only(params: &[u8], fin: u8) -> bool {
    // Intermediate bytes mark DECSTR, DECSCUSR, mode requests and the like: terminal settings.
    if params.iter().any(|b| (0x20..=0x2f).contains(b)) {
        return false;
    }
    match params.first() {
        Some(b'?') => match fin {
            b'h' | b'l' => params[1..]
                .split(|&b| b == b';')
                .all(|m| SCREEN_PRIVATE_MODES.contains(&m)),
            // Selective erase.
            b'J' | b'K' => true,
            _ => false,
        },
        // `>`, `<`, `=`: secondary device attributes, key modifier modes, XTVERSION...
        Some(b'>' | b'<' | b'=') => false,
        // Insert/replace mode is the only ANSI mode that concerns the screen.
        _ if fin == b'h' || fin == b'l' => params == b"4",
        _ => SCREEN_CSI_FINALS.contains(&fin),
    }
}

#[cfg(test)]
#[path = "screen_tests.rs"]
mod tests;
