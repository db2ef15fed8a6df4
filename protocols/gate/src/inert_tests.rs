use super::*;

#[test]
fn terminal_escapes_are_shown_not_obeyed() {
    // The repaint from the issue: the line is erased and rewritten on screen.
    let sql = "DELETE FROM accounts --\x1b[G\x1b[2KDELETE FROM accounts_staging";
    assert_eq!(
        line(sql),
        "DELETE FROM accounts --\\x1b[G\\x1b[2KDELETE FROM accounts_staging"
    );
    // OSC 52 (clipboard) and OSC 2 (title), ended by BEL and by ST.
    assert_eq!(
        line("x\x1b]52;c;Y3VybA==\x07y\x1b]2;t\x1b\\"),
        "x\\x1b]52;c;Y3VybA==\\x07y\\x1b]2;t\\x1b\\"
    );
    // 8-bit CSI and DEL.
    assert_eq!(line("a\u{9b}2Kb\x7f"), "a<U+009B>2Kb\\x7f");
}

#[test]
fn newlines_are_layout_only_when_the_caller_keeps_them() {
    let s = "select 1;\n\tselect 2;\r\nselect 3";
    assert_eq!(line(s), "select 1;\\n\\tselect 2;\\r\\nselect 3");
    assert_eq!(text(s), "select 1;\n\tselect 2;\\r\nselect 3");
    // A forged log line stays on its own line.
    assert_eq!(
        Line("bob\n2026-12-07 INFO session opened privilege=\"break-glass\"").to_string(),
        "bob\\n2026-12-07 INFO session opened privilege=\"break-glass\""
    );
}

#[test]
fn bidi_and_invisible_characters_are_marked_with_their_code_point() {
    // Trojan Source: the override makes "WHERE id=42" appear in a statement without one.
    let s = "DELETE FROM accounts /*\u{202e} } 24=di EREHW \u{2066}*/";
    assert_eq!(
        line(s),
        "DELETE FROM accounts /*<U+202E> } 24=di EREHW <U+2066>*/"
    );
    for c in [
        '\u{200b}',
        '\u{200c}',
        '\u{200d}',
        '\u{200e}',
        '\u{200f}',
        '\u{061c}',
        '\u{2060}',
        '\u{2064}',
        '\u{feff}',
        '\u{00ad}',
        '\u{180e}',
        '\u{115f}',
        '\u{1160}',
        '\u{3164}',
        '\u{ffa0}',
        '\u{2028}',
        '\u{2029}',
        '\u{202a}',
        '\u{2069}',
        '\u{e0041}',
        '\u{e007f}',
    ] {
        let shown = line(&c.to_string()).into_owned();
        assert_eq!(shown, format!("<U+{:04X}>", c as u32), "{c:?}");
    }
}

#[test]
fn ordinary_text_is_borrowed_unchanged() {
    for s in [
        "SELECT * FROM \"Kunden\" WHERE name = 'Zoë' -- ünïcödé, 中文, emoji 🎉",
        "rm -rf /tmp/x && echo \\x1b <U+202E>",
        "",
    ] {
        assert!(matches!(line(s), Cow::Borrowed(_)), "{s}");
        assert!(matches!(text(s), Cow::Borrowed(_)), "{s}");
    }
}

#[test]
fn any_display_is_escaped() {
    let e = std::io::Error::other("bad user \"a\x1b]52;c;eA==\x07\nb\"");
    assert_eq!(
        LineOf(&e).to_string(),
        "bad user \"a\\x1b]52;c;eA==\\x07\\nb\""
    );
}

/// xorshift64*: a deterministic generator, so a failing case can be reproduced from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Random strings biased towards what matters here: controls, escapes, bidi and invisible
    /// characters, the token characters `\` and `<`, and any other scalar value.
    fn string(&mut self) -> String {
        const SPECIAL: &[char] = &[
            '\x1b',
            '\n',
            '\r',
            '\t',
            '\0',
            '\x07',
            '\x7f',
            '\u{85}',
            '\u{9b}',
            '\u{9d}',
            '\u{202e}',
            '\u{2066}',
            '\u{200b}',
            '\u{feff}',
            '\u{2028}',
            '\u{e0020}',
            '\\',
            '<',
            'U',
            '+',
            '>',
            'x',
            '[',
            ']',
            ';',
        ];
        let len = self.below(40);
        (0..len)
            .map(|_| match self.below(4) {
                0 => SPECIAL[self.below(SPECIAL.len() as u64) as usize],
                1 => char::from(0x20 + self.below(0x5f) as u8),
                2 => char::from_u32(self.below(0x3000) as u32).unwrap_or('?'),
                _ => char::from_u32(self.below(0x11_0000) as u32).unwrap_or('?'),
            })
            .collect()
    }
}

/// Reads the tokens back: only valid for inputs with no `\` or `<` of their own, where the
/// tokens are unambiguous.
fn decode(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if let Some(r) = rest.strip_prefix('\\') {
            let (c, used) = match r.as_bytes().first() {
                Some(b'n') => ('\n', 1),
                Some(b't') => ('\t', 1),
                Some(b'r') => ('\r', 1),
                Some(b'x') => (
                    char::from(u8::from_str_radix(&r[1..3], 16).expect("hex")),
                    3,
                ),
                other => panic!("unknown token \\{other:?} in {s:?}"),
            };
            out.push(c);
            rest = &r[used..];
        } else if let Some(r) = rest.strip_prefix("<U+") {
            let end = r.find('>').expect("closing >");
            let v = u32::from_str_radix(&r[..end], 16).expect("hex code point");
            out.push(char::from_u32(v).expect("scalar"));
            rest = &r[end + 1..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

#[test]
fn property_random_strings_come_out_inert_complete_and_stable() {
    let seed = std::env::var("INERT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1e57_u64);
    let mut rng = Rng(seed | 1);
    for case in 0..20_000 {
        let s = rng.string();
        for keep in [Keep::Nothing, Keep::Lines] {
            let shown = inert(&s, keep);
            let ctx = || format!("seed {seed} case {case} {keep:?}: {s:?} -> {shown:?}");
            // Nothing a terminal obeys, nothing invisible, survives.
            assert!(!shown.chars().any(|c| needs_escape(c, keep)), "{}", ctx());
            if keep == Keep::Nothing {
                assert!(!shown.contains(['\n', '\r', '\x1b']), "{}", ctx());
            } else {
                assert_eq!(
                    shown.matches('\n').count(),
                    s.matches('\n').count(),
                    "{}",
                    ctx()
                );
            }
            // Never truncated; escaping twice changes nothing more.
            assert!(shown.len() >= s.len(), "{}", ctx());
            assert_eq!(inert(&shown, keep), shown, "{}", ctx());
            // The Display wrappers and the function agree.
            let displayed = match keep {
                Keep::Nothing => Line(&s).to_string(),
                Keep::Lines => Text(&s).to_string(),
            };
            assert_eq!(displayed, shown, "{}", ctx());
            // Nothing dropped, nothing reordered: the tokens read back to the input.
            let plain: String = s.chars().filter(|c| *c != '\\' && *c != '<').collect();
            assert_eq!(decode(&inert(&plain, keep)), plain, "{}", ctx());
        }
    }
}
