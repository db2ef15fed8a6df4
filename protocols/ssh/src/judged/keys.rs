//! Keystrokes from the agent's terminal, decoded into the keys the judged-shell editor knows.
//!
//! Bytes may arrive split anywhere (an escape sequence or a UTF-8 character across two SSH
//! packets), so the decoder keeps its state between calls. Whatever it does not know becomes
//! [`Key::Unknown`]: the editor rings the bell and drops it; nothing undecoded ever reaches
//! the target.

/// One key, as the editor acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A character to insert (TAB included; in a paste, everything printable).
    Char(char),
    Enter,
    /// A line break inside a bracketed paste: breaks the line without submitting it.
    PasteBreak,
    Backspace,
    /// Delete under the cursor (the Delete key).
    Delete,
    Left,
    Right,
    Home,
    End,
    Up,
    Down,
    /// Ctrl-U
    KillStart,
    /// Ctrl-K
    KillEnd,
    /// Ctrl-W
    KillWord,
    /// Ctrl-C
    Interrupt,
    /// Ctrl-D
    EndOfFile,
    /// The start or the end of a bracketed paste: nothing to do.
    PasteMark,
    /// A byte or sequence the editor does not follow.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Ground,
    Esc,
    /// `ESC [` and the parameter bytes so far.
    Csi(Vec<u8>),
    /// `ESC O`
    Ss3,
    /// A UTF-8 character: the bytes so far and how many in all.
    Utf8(Vec<u8>, usize),
}

/// Longest CSI sequence followed; longer ones are dropped as unknown.
const MAX_CSI: usize = 16;

#[derive(Debug, Clone)]
pub struct Decoder {
    state: State,
    paste: bool,
    /// The previous byte was a CR: a LF right after it is the same Enter (CR LF clients).
    after_cr: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            state: State::Ground,
            paste: false,
            after_cr: false,
        }
    }
}

impl Decoder {
    /// Inside a bracketed paste.
    pub fn pasting(&self) -> bool {
        self.paste
    }

    /// Decodes one byte; appends the keys it completes (none, one, or two when a broken
    /// sequence ends on a byte that starts something new).
    pub fn push(&mut self, b: u8, out: &mut Vec<Key>) {
        let after_cr = std::mem::take(&mut self.after_cr);
        match std::mem::replace(&mut self.state, State::Ground) {
            State::Ground => self.ground(b, after_cr, out),
            State::Esc => match b {
                b'[' => self.state = State::Csi(Vec::new()),
                b'O' => self.state = State::Ss3,
                // ESC ESC: the first is dropped, the second may start a sequence.
                0x1b => {
                    out.push(Key::Unknown);
                    self.state = State::Esc;
                }
                // Alt-key combinations and lone escapes are not followed.
                _ => out.push(Key::Unknown),
            },
            State::Ss3 => out.push(match b {
                b'A' => Key::Up,
                b'B' => Key::Down,
                b'C' => Key::Right,
                b'D' => Key::Left,
                b'H' => Key::Home,
                b'F' => Key::End,
                _ => Key::Unknown,
            }),
            State::Csi(mut params) => {
                if (0x20..=0x3f).contains(&b) {
                    if params.len() >= MAX_CSI {
                        out.push(Key::Unknown);
                    } else {
                        params.push(b);
                        self.state = State::Csi(params);
                    }
                } else if (0x40..=0x7e).contains(&b) {
                    let key = self.csi(&params, b);
                    out.push(key);
                } else {
                    // Not a CSI byte: the sequence is broken; the byte is read afresh.
                    out.push(Key::Unknown);
                    self.ground(b, false, out);
                }
            }
            State::Utf8(mut bytes, need) => {
                if b & 0xc0 != 0x80 {
                    out.push(Key::Unknown);
                    self.ground(b, false, out);
                    return;
                }
                bytes.push(b);
                if bytes.len() < need {
                    self.state = State::Utf8(bytes, need);
                    return;
                }
                match std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|s| s.chars().next())
                {
                    Some(c) => out.push(Key::Char(c)),
                    None => out.push(Key::Unknown),
                }
            }
        }
    }

    fn ground(&mut self, b: u8, after_cr: bool, out: &mut Vec<Key>) {
        let key = match b {
            0x1b => {
                self.state = State::Esc;
                return;
            }
            b'\r' => {
                self.after_cr = true;
                self.enter()
            }
            b'\n' if after_cr => return,
            b'\n' => self.enter(),
            b'\t' => Key::Char('\t'),
            0x20..=0x7e => Key::Char(b as char),
            0xc2..=0xdf => {
                self.state = State::Utf8(vec![b], 2);
                return;
            }
            0xe0..=0xef => {
                self.state = State::Utf8(vec![b], 3);
                return;
            }
            0xf0..=0xf4 => {
                self.state = State::Utf8(vec![b], 4);
                return;
            }
            // Control keys mean nothing inside a paste: it is text.
            _ if self.paste => Key::Unknown,
            0x01 => Key::Home,
            0x02 => Key::Left,
            0x03 => Key::Interrupt,
            0x04 => Key::EndOfFile,
            0x05 => Key::End,
            0x06 => Key::Right,
            0x08 | 0x7f => Key::Backspace,
            0x0b => Key::KillEnd,
            0x0e => Key::Down,
            0x10 => Key::Up,
            0x15 => Key::KillStart,
            0x17 => Key::KillWord,
            _ => Key::Unknown,
        };
        out.push(key);
    }

    fn enter(&self) -> Key {
        if self.paste {
            Key::PasteBreak
        } else {
            Key::Enter
        }
    }

    fn csi(&mut self, params: &[u8], fin: u8) -> Key {
        if self.paste {
            // Only the end of the paste is followed inside it.
            if params == b"201" && fin == b'~' {
                self.paste = false;
                return Key::PasteMark;
            }
            return Key::Unknown;
        }
        match (params, fin) {
            (b"", b'A') => Key::Up,
            (b"", b'B') => Key::Down,
            (b"", b'C') => Key::Right,
            (b"", b'D') => Key::Left,
            (b"", b'H') | (b"1" | b"7", b'~') => Key::Home,
            (b"", b'F') | (b"4" | b"8", b'~') => Key::End,
            (b"3", b'~') => Key::Delete,
            (b"200", b'~') => {
                self.paste = true;
                Key::PasteMark
            }
            _ => Key::Unknown,
        }
    }
}

/// Decodes a whole buffer (tests).
#[cfg(test)]
pub fn decode(bytes: &[u8]) -> Vec<Key> {
    let mut d = Decoder::default();
    let mut out = Vec::new();
    for &b in bytes {
        d.push(b, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_utf8_and_split_sequences() {
        assert_eq!(
            decode("aé€\r".as_bytes()),
            vec![Key::Char('a'), Key::Char('é'), Key::Char('€'), Key::Enter]
        );
        let mut d = Decoder::default();
        let mut out = Vec::new();
        for &b in b"\x1b[" {
            d.push(b, &mut out);
        }
        assert!(out.is_empty());
        d.push(b'D', &mut out);
        assert_eq!(out, vec![Key::Left]);
    }

    #[test]
    fn cr_lf_is_one_enter_and_unknown_keys_are_unknown() {
        assert_eq!(decode(b"\r\n"), vec![Key::Enter]);
        assert_eq!(decode(b"\n\n"), vec![Key::Enter, Key::Enter]);
        for k in [
            &b"\x0f"[..],
            b"\x18",
            b"\x12",
            b"\x16",
            b"\x1bx",
            b"\x1b[1;5C",
            b"\xff",
        ] {
            assert_eq!(decode(k), vec![Key::Unknown], "{k:?}");
        }
        assert_eq!(decode(b"\xc3("), vec![Key::Unknown, Key::Char('(')]);
    }

    #[test]
    fn bracketed_paste_is_text() {
        let keys = decode(b"\x1b[200~ls\x15\r\x1b[Dx\x1b[201~\x15");
        assert_eq!(
            keys,
            vec![
                Key::PasteMark,
                Key::Char('l'),
                Key::Char('s'),
                Key::Unknown,
                Key::PasteBreak,
                Key::Unknown,
                Key::Char('x'),
                Key::PasteMark,
                Key::KillStart
            ]
        );
    }
}
